//! Quantization as an edit of a whole model or of a pruned rewrite: choose each tensor's type
//! with [`mix`], convert the tensors that change (while they are written), copy the others
//! verbatim, and set the metadata llama-quantize sets. Writing, checking and putting the file in
//! place is the jobs layer's (`jobs::quantize`).

use std::borrow::Cow;
use std::path::PathBuf;

use crate::arch::names;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Metadata, Model, ModelTensor, OutTensor, TensorData, Value};

use super::imatrix::ImatrixData;
use super::mix::{self, Choice, FileType, MixContext, TensorDesc};
use crate::kernels::{can_dequantize, dequantize, is_quantized, quantize};

/// GGML_QNT_VERSION: the block-format version llama-quantize records.
pub const QUANTIZATION_VERSION: u32 = 2;

/// How to quantize.
pub struct QuantizeParams<'a> {
    pub ftype: FileType,
    /// `--pure`: the default type everywhere (shape fallbacks still apply).
    pub pure: bool,
    pub imatrix: Option<&'a ImatrixData>,
    /// Recorded in `quantize.imatrix.file`, as llama-quantize does.
    pub imatrix_path: Option<PathBuf>,
}

impl QuantizeParams<'_> {
    /// Plain `llama-quantize IN OUT TYPE`: the mix, no imatrix.
    pub fn new(ftype: FileType) -> QuantizeParams<'static> {
        QuantizeParams {
            ftype,
            pure: false,
            imatrix: None,
            imatrix_path: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct QuantizeReport {
    pub n_tensors: usize,
    pub n_converted: usize,
    /// Tensors whose mix type did not fit their rows: (name, wanted, got).
    pub fallbacks: Vec<(String, GgmlType, GgmlType)>,
    /// Tensors converted from an already quantized type: (name, from, to).
    pub requantized: Vec<(String, GgmlType, GgmlType)>,
    /// Converted tensors that had no importance entry although an imatrix was given.
    pub missing_imatrix: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The type every tensor of `model` gets.
pub fn plan(model: &Model, ftype: FileType, ctx: &MixContext) -> Result<Vec<Choice>> {
    let descs: Vec<TensorDesc> = model
        .tensors
        .iter()
        .map(|t| TensorDesc {
            name: &t.info.name,
            dims: &t.info.dims,
            ggml_type: t.info.ggml_type,
        })
        .collect();
    mix::choose_types(ftype, ctx, &descs)
}

/// The metadata llama-quantize writes: the input's, without split keys, with
/// `general.quantization_version` and `general.file_type` (moved to the end, as
/// `gguf_set_val_u32` does), and the `quantize.imatrix.*` keys when an imatrix was used.
pub fn output_metadata(input: &Metadata, ftype: FileType, params: &QuantizeParams) -> Metadata {
    let mut meta = input.clone();
    let mut put = |k: &str, v: Value| {
        meta.remove(k);
        meta.set(k, v);
    };
    put(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    put("general.file_type", Value::U32(ftype.llama_ftype()));
    if let Some(im) = params.imatrix {
        if let Some(p) = &params.imatrix_path {
            let s: String = p.to_string_lossy().chars().take(127).collect();
            put("quantize.imatrix.file", Value::String(s.into_bytes()));
        }
        if let Some(ds) = im.datasets.first() {
            let s: String = ds.chars().take(127).collect();
            put("quantize.imatrix.dataset", Value::String(s.into_bytes()));
        }
        put(
            "quantize.imatrix.entries_count",
            Value::U32(im.len() as u32),
        );
        if im.chunk_count > 0 {
            put("quantize.imatrix.chunks_count", Value::U32(im.chunk_count));
        }
    }
    for k in ["split.no", "split.count", "split.tensors.count"] {
        meta.remove(k);
    }
    meta
}

/// Converts one tensor's bytes from `from` to `to`, with an optional importance vector per
/// expert matrix (`n_per_row * n_mat` values).
pub fn convert_tensor(
    name: &str,
    bytes: &[u8],
    dims: &[u64],
    from: GgmlType,
    to: GgmlType,
    imatrix: Option<&[f32]>,
) -> Result<Vec<u8>> {
    let n_per_row = *dims.first().unwrap_or(&1) as usize;
    let n: u64 = dims.iter().product();
    let mut f32s = vec![0f32; n as usize];
    dequantize(from, bytes, &mut f32s).map_err(|e| Error::InTensor {
        name: name.to_string(),
        source: Box::new(e),
    })?;
    let n_mat = dims.get(2).copied().unwrap_or(1).max(1) as usize;
    match imatrix {
        Some(w) if n_mat > 1 => {
            let per_mat = f32s.len() / n_mat;
            let mut out = Vec::new();
            for e in 0..n_mat {
                out.extend(quantize(
                    to,
                    &f32s[e * per_mat..(e + 1) * per_mat],
                    n_per_row,
                    Some(&w[e * n_per_row..(e + 1) * n_per_row]),
                )?);
            }
            Ok(out)
        }
        _ => quantize(to, &f32s, n_per_row, imatrix),
    }
}

/// A whole model quantized as an edit, not yet written: llama-quantize's metadata and every
/// tensor, converted ones as data made while writing (one in memory at a time).
pub struct QuantizedModel<'a> {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<OutTensor<'a>>,
    pub report: QuantizeReport,
}

/// Quantizes every tensor of `model` as `params` say: everything that can fail is checked here,
/// before anything is written (the conversions themselves run when the tensors are written).
pub fn quantize_tensors<'a>(
    model: &'a Model,
    params: &QuantizeParams<'a>,
) -> Result<QuantizedModel<'a>> {
    // What llama.cpp's loader (and so llama-quantize) refuses is refused before anything is
    // planned or written: the mix is sized by the block count.
    crate::verify::check_loadable(model)?;
    check_imatrix(params)?;
    let ctx = MixContext::from_metadata(model.metadata(), params.imatrix.is_some(), params.pure)?;
    let choices = plan(model, params.ftype, &ctx)?;
    let mut report = QuantizeReport {
        n_tensors: model.tensors.len(),
        ..Default::default()
    };
    // Every tensor's checks pass before any output size is computed, as before writing.
    let fates = model
        .tensors
        .iter()
        .zip(&choices)
        .map(|(t, c)| {
            let info = &t.info;
            let fate = decide(
                &mut report,
                &info.name,
                &info.dims,
                info.ggml_type,
                c,
                params,
            )?;
            report.bytes_in += info.size;
            Ok(fate)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tensors = Vec::with_capacity(model.tensors.len());
    for ((t, c), fate) in model.tensors.iter().zip(&choices).zip(fates) {
        tensors.push(model_tensor(model, t, c.ty, fate, &mut report)?);
    }
    Ok(QuantizedModel {
        version: model.shards[0].content.version,
        metadata: output_metadata(model.metadata(), params.ftype, params),
        tensors,
        report,
    })
}

/// One tensor of a whole-model quantization as the writer takes it: a verbatim copy, or a
/// conversion from the model's bytes.
fn model_tensor<'a>(
    model: &'a Model,
    t: &'a ModelTensor,
    to: GgmlType,
    fate: Fate<'a>,
    report: &mut QuantizeReport,
) -> Result<OutTensor<'a>> {
    let info = &t.info;
    let len = converted_len(&info.name, to, info.n_elements())?;
    report.bytes_out += len;
    let data = match fate {
        Fate::Kept => model.copy_of(t),
        Fate::Converted { importance } => Conversion {
            name: info.name.clone(),
            dims: info.dims.clone(),
            from: info.ggml_type,
            to,
            len,
            source: model.data(t),
            changed: None,
            importance: importance.map(Cow::Borrowed),
        }
        .into_data(),
    };
    Ok(OutTensor {
        name: info.name.clone(),
        dims: info.dims.clone(),
        ggml_type: to,
        data,
    })
}

/// Quantizes a pruned model on its way out: every tensor of `rewrite` gets the type the mix
/// chooses at the PRUNED depth and new block indices (what llama-quantize would choose for the
/// pruned file, not what it would choose for the source), tensors whose type changes become
/// converted data made while writing, the others stay verbatim copies (still verified byte for
/// byte by `jobs::write_verified`), and the metadata gets llama-quantize's keys.
///
/// `params.imatrix`, if any, must already use the output's names
/// ([`ImatrixData::after_layer_removal`]). Nothing is converted here: the conversions run when
/// the rewrite is written.
pub fn quantize_rewrite<'a>(
    model: &'a Model,
    rewrite: &mut crate::prune::Rewrite<'a>,
    params: &QuantizeParams,
) -> Result<QuantizeReport> {
    check_imatrix(params)?;
    let choices = choose_types(rewrite, params)?;
    let mut report = QuantizeReport {
        n_tensors: rewrite.tensors.len(),
        ..Default::default()
    };
    for ((t, c), src) in rewrite
        .tensors
        .iter_mut()
        .zip(&choices)
        .zip(&rewrite.sources)
    {
        report.bytes_in += t.data.len();
        match decide(&mut report, &t.name, &t.dims, t.ggml_type, c, params)? {
            Fate::Kept => report.bytes_out += t.data.len(),
            Fate::Converted { importance } => {
                // Copied: the conversion outlives `params`.
                let importance = importance.map(|w| Cow::Owned(w.to_vec()));
                convert_in_place(model.data(src), t, c.ty, importance, &mut report)?;
            }
        }
    }
    rewrite.metadata = output_metadata(&rewrite.metadata, params.ftype, params);
    Ok(report)
}

/// Turns a rewritten tensor into its conversion to `to`. A tensor an earlier step changed in
/// memory (a healed ffn_down) converts from those bytes, not from the source file's.
fn convert_in_place<'a>(
    source: &'a [u8],
    t: &mut OutTensor<'a>,
    to: GgmlType,
    importance: Option<Cow<'a, [f32]>>,
    report: &mut QuantizeReport,
) -> Result<()> {
    let len = converted_len(&t.name, to, t.dims.iter().product())?;
    report.bytes_out += len;
    let changed = match std::mem::replace(&mut t.data, TensorData::Bytes(Vec::new())) {
        TensorData::Bytes(b) => Some(b),
        _ => None,
    };
    t.data = Conversion {
        name: t.name.clone(),
        dims: t.dims.clone(),
        from: t.ggml_type,
        to,
        len,
        source,
        changed,
        importance,
    }
    .into_data();
    t.ggml_type = to;
    Ok(())
}

/// What happens to one tensor, decided before anything is written.
enum Fate<'i> {
    /// It keeps its type and bytes.
    Kept,
    /// It is converted, steered by this importance vector if the matrix has one that fits.
    Converted { importance: Option<&'i [f32]> },
}

/// Records one tensor's choice in `report` and checks that its conversion can run: the source
/// type can be dequantized and the importance vector, if any, fits the rows.
fn decide<'i>(
    report: &mut QuantizeReport,
    name: &str,
    dims: &[u64],
    from: GgmlType,
    c: &Choice,
    params: &QuantizeParams<'i>,
) -> Result<Fate<'i>> {
    if let Some(wanted) = c.fallback_from {
        report.fallbacks.push((name.to_string(), wanted, c.ty));
    }
    if c.ty == from {
        return Ok(Fate::Kept);
    }
    if !can_dequantize(from) {
        return Err(Error::QuantUnsupported {
            ty: from,
            op: "dequantize",
        });
    }
    if is_quantized(from) {
        report.requantized.push((name.to_string(), from, c.ty));
    }
    let importance = match params.imatrix {
        None => None,
        Some(im) => importance_of(im, name, dims, report)?,
    };
    report.n_converted += 1;
    Ok(Fate::Converted { importance })
}

/// The importance vector a tensor converts with: `None` if the matrix has no entry (noted in
/// the report) or, for token_embd, one of the wrong length, which llama-quantize tolerates
/// (it never uses one); any other length is refused.
fn importance_of<'i>(
    im: &'i ImatrixData,
    name: &str,
    dims: &[u64],
    report: &mut QuantizeReport,
) -> Result<Option<&'i [f32]>> {
    // One value per column of each expert matrix.
    let want = dims[0] * dims.get(2).copied().unwrap_or(1);
    match im.get(name) {
        None => {
            report.missing_imatrix.push(name.to_string());
            Ok(None)
        }
        Some(w) if w.len() as u64 == want => Ok(Some(w)),
        Some(_) if name == names::TOKEN_EMBD => Ok(None),
        Some(w) => Err(Error::ImportanceLength {
            name: name.to_string(),
            got: w.len(),
            want,
        }),
    }
}

/// The bytes `n_el` elements take as `to`.
fn converted_len(name: &str, to: GgmlType, n_el: u64) -> Result<u64> {
    to.bytes_for(n_el).ok_or_else(|| Error::ElementsDoNotFit {
        name: name.to_string(),
        n_el,
        ty: to,
    })
}

/// One tensor's conversion, run when the writer reaches it (one in memory at a time).
struct Conversion<'a> {
    name: String,
    dims: Vec<u64>,
    from: GgmlType,
    to: GgmlType,
    /// Bytes of the converted tensor.
    len: u64,
    /// The tensor's bytes in the source file.
    source: &'a [u8],
    /// Bytes an earlier step made in memory, converted instead of `source`.
    changed: Option<Vec<u8>>,
    importance: Option<Cow<'a, [f32]>>,
}

impl<'a> Conversion<'a> {
    fn into_data(self) -> TensorData<'a> {
        TensorData::Lazy {
            len: self.len,
            make: Box::new(move || {
                crate::interrupt::check()?;
                let bytes = self.changed.as_deref().unwrap_or(self.source);
                convert_tensor(
                    &self.name,
                    bytes,
                    &self.dims,
                    self.from,
                    self.to,
                    self.importance.as_deref(),
                )
            }),
        }
    }
}

/// The type [`quantize_rewrite`] will give each tensor of `rewrite`, by output name; healing
/// writes the tensors it changes in these types, so that quantizing keeps its bytes.
pub fn planned_types(
    rewrite: &crate::prune::Rewrite,
    params: &QuantizeParams,
) -> Result<std::collections::HashMap<String, GgmlType>> {
    let choices = choose_types(rewrite, params)?;
    Ok(rewrite
        .tensors
        .iter()
        .zip(choices)
        .map(|(t, c)| (t.name.clone(), c.ty))
        .collect())
}

fn choose_types(
    rewrite: &crate::prune::Rewrite,
    params: &QuantizeParams,
) -> Result<Vec<mix::Choice>> {
    let ctx = MixContext::from_metadata(&rewrite.metadata, params.imatrix.is_some(), params.pure)?;
    let descs: Vec<TensorDesc> = rewrite
        .tensors
        .iter()
        .map(|t| TensorDesc {
            name: &t.name,
            dims: &t.dims,
            ggml_type: t.ggml_type,
        })
        .collect();
    mix::choose_types(params.ftype, &ctx, &descs)
}

/// The importance matrix, if any, holds only finite values: llama-quantize refuses the others
/// too, since one NaN poisons every block it touches.
fn check_imatrix(params: &QuantizeParams) -> Result<()> {
    let Some(im) = params.imatrix else {
        return Ok(());
    };
    for (name, e) in &im.entries {
        if let Some(v) = e.sums.iter().find(|v| !v.is_finite()) {
            return Err(Error::ImatrixNonFinite {
                name: name.clone(),
                value: *v,
            });
        }
    }
    Ok(())
}
