//! Quantization as an edit of a whole model or of a pruned rewrite: choose each tensor's type
//! with [`mix`], convert the tensors that change (while they are written), copy the others
//! verbatim, and set the metadata llama-quantize sets. Writing, checking and putting the file in
//! place is the jobs layer's (`jobs::quantize`).

use std::path::PathBuf;

use crate::arch::names;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Metadata, Model, OutTensor, TensorData, Value};

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
    dequantize(from, bytes, &mut f32s)
        .map_err(|e| Error::Invalid(format!("tensor {name:?}: {e}")))?;
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
    let ftype = params.ftype;
    // What llama.cpp's loader (and so llama-quantize) refuses is refused before anything is
    // planned or written: the mix is sized by the block count.
    crate::verify::check_loadable(model)?;
    if let Some(im) = params.imatrix {
        check_finite(im)?;
    }
    let ctx = MixContext::from_metadata(model.metadata(), params.imatrix.is_some(), params.pure)?;
    let choices = plan(model, ftype, &ctx)?;
    let mut report = QuantizeReport {
        n_tensors: model.tensors.len(),
        ..Default::default()
    };
    // Check everything that can fail before writing anything.
    for (t, c) in model.tensors.iter().zip(&choices) {
        let info = &t.info;
        report.bytes_in += info.size;
        if let Some(wanted) = c.fallback_from {
            report.fallbacks.push((info.name.clone(), wanted, c.ty));
        }
        if c.ty == info.ggml_type {
            continue;
        }
        if !can_dequantize(info.ggml_type) {
            return Err(Error::QuantUnsupported {
                ty: info.ggml_type,
                op: "dequantize",
            });
        }
        if is_quantized(info.ggml_type) {
            report
                .requantized
                .push((info.name.clone(), info.ggml_type, c.ty));
        }
        if let Some(im) = params.imatrix {
            let want = info.dims[0] * info.dims.get(2).copied().unwrap_or(1);
            match im.get(&info.name) {
                None => report.missing_imatrix.push(info.name.clone()),
                Some(w) if w.len() as u64 != want && info.name != names::TOKEN_EMBD => {
                    return Err(Error::Invalid(format!(
                        "importance vector of {:?} has {} values, the tensor needs {want}",
                        info.name,
                        w.len()
                    )))
                }
                _ => {}
            }
        }
        report.n_converted += 1;
    }

    let meta = output_metadata(model.metadata(), ftype, params);
    let mut tensors = Vec::with_capacity(model.tensors.len());
    for (t, c) in model.tensors.iter().zip(&choices) {
        let info = &t.info;
        let to = c.ty;
        let len = to.bytes_for(info.n_elements()).ok_or_else(|| {
            Error::Invalid(format!(
                "tensor {:?}: {} elements do not fit {to}",
                info.name,
                info.n_elements()
            ))
        })?;
        report.bytes_out += len;
        let data = if to == info.ggml_type {
            model.copy_of(t)
        } else {
            let imatrix = params
                .imatrix
                .and_then(|im| im.get(&info.name))
                .filter(|w| {
                    w.len() as u64 == info.dims[0] * info.dims.get(2).copied().unwrap_or(1)
                });
            let from = info.ggml_type;
            let bytes = model.data(t);
            let name = info.name.clone();
            let dims = info.dims.clone();
            TensorData::Lazy {
                len,
                make: Box::new(move || {
                    crate::interrupt::check()?;
                    convert_tensor(&name, bytes, &dims, from, to, imatrix)
                }),
            }
        };
        tensors.push(OutTensor {
            name: info.name.clone(),
            dims: info.dims.clone(),
            ggml_type: to,
            data,
        });
    }
    Ok(QuantizedModel {
        version: model.shards[0].content.version,
        metadata: meta,
        tensors,
        report,
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
    let ftype = params.ftype;
    if let Some(im) = params.imatrix {
        check_finite(im)?;
    }
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
        let from = t.ggml_type;
        let to = c.ty;
        let n_el: u64 = t.dims.iter().product();
        report.bytes_in += t.data.len();
        if let Some(wanted) = c.fallback_from {
            report.fallbacks.push((t.name.clone(), wanted, to));
        }
        if to == from {
            report.bytes_out += t.data.len();
            continue;
        }
        if !can_dequantize(from) {
            return Err(Error::QuantUnsupported {
                ty: from,
                op: "dequantize",
            });
        }
        if is_quantized(from) {
            report.requantized.push((t.name.clone(), from, to));
        }
        let want = t.dims[0] * t.dims.get(2).copied().unwrap_or(1);
        let weights: Option<Vec<f32>> = match params.imatrix {
            None => None,
            Some(im) => match im.get(&t.name) {
                None => {
                    report.missing_imatrix.push(t.name.clone());
                    None
                }
                Some(w) if w.len() as u64 == want => Some(w.to_vec()),
                // llama-quantize tolerates a mismatched token_embd entry (it never uses one).
                Some(_) if t.name == names::TOKEN_EMBD => None,
                Some(w) => {
                    return Err(Error::Invalid(format!(
                        "importance vector of {:?} has {} values, the tensor needs {want}",
                        t.name,
                        w.len()
                    )))
                }
            },
        };
        let len = to.bytes_for(n_el).ok_or_else(|| {
            Error::Invalid(format!(
                "tensor {:?}: {n_el} elements do not fit {to}",
                t.name
            ))
        })?;
        report.bytes_out += len;
        report.n_converted += 1;
        // A tensor an earlier step changed in memory (a healed ffn_down) converts from those
        // bytes, not from the source file's.
        let changed = match std::mem::replace(&mut t.data, TensorData::Bytes(Vec::new())) {
            TensorData::Bytes(b) => Some(b),
            _ => None,
        };
        let bytes = model.data(src);
        let name = t.name.clone();
        let dims = t.dims.clone();
        t.ggml_type = to;
        t.data = TensorData::Lazy {
            len,
            make: Box::new(move || {
                crate::interrupt::check()?;
                let from_bytes = changed.as_deref().unwrap_or(bytes);
                convert_tensor(&name, from_bytes, &dims, from, to, weights.as_deref())
            }),
        };
    }
    rewrite.metadata = output_metadata(&rewrite.metadata, ftype, params);
    Ok(report)
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

/// llama-quantize refuses these too: one NaN poisons every block it touches.
fn check_finite(im: &ImatrixData) -> Result<()> {
    for (name, e) in &im.entries {
        if let Some(v) = e.sums.iter().find(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "importance matrix entry {name:?} holds a non-finite value ({v})"
            )));
        }
    }
    Ok(())
}
