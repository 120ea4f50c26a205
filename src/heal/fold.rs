//! The fold: `T` written into the absorbing block's `ffn_down` (and, with a post-FFN norm, the
//! norm weight refitted), requantized, and put in place of the pruned model's tensors.

use crate::error::{Error, Result};
use crate::forward::ops;
use crate::gguf::{GgmlType, Model, ModelTensor, TensorData};
use crate::prune::Rewrite;

use super::pass::RunSample;
use super::report::TensorChange;
use super::HealOptions;
use crate::arch::names::{self, FFN_DOWN, POST_FFN_NORM};

/// The source tensors of the absorbing block that the fold rewrites.
pub(super) struct Target<'m> {
    pub down: &'m ModelTensor,
    pub down_name: String,
    /// The post-FFN norm weight and its name, where the architecture has one.
    pub post_norm: Option<(&'m ModelTensor, String)>,
}

/// What [`Target::find`] found.
pub(super) enum Found<'m> {
    Target(Target<'m>),
    /// The block cannot be folded into, and why.
    NotFoldable(String),
}

impl<'m> Target<'m> {
    /// Block `il`'s `ffn_down` (`ff` inputs, `d` outputs) and, with `post_norm`, its post-FFN
    /// norm weight; [`Error::MissingTensor`] if one is missing, [`Error::Heal`] on other dims.
    pub fn find(
        model: &'m Model,
        il: usize,
        ff: usize,
        d: usize,
        post_norm: bool,
    ) -> Result<Found<'m>> {
        let down_name = names::block_weight(il, FFN_DOWN);
        let down = model
            .tensor(&down_name)
            .ok_or_else(|| Error::MissingTensor {
                name: down_name.clone(),
            })?;
        if model.tensor(&names::block_bias(il, FFN_DOWN)).is_some() {
            return Ok(Found::NotFoldable(format!(
                "{FFN_DOWN} has a bias; folding it is not implemented"
            )));
        }
        let dims = &down.info.dims;
        if dims.len() != 2 || dims[0] as usize != ff || dims[1] as usize != d {
            return Err(Error::Heal(format!(
                "{down_name} has dims {dims:?}, expected [{ff}, {d}]"
            )));
        }
        let post_norm = if post_norm {
            let name = names::block_weight(il, POST_FFN_NORM);
            let t = model
                .tensor(&name)
                .ok_or_else(|| Error::MissingTensor { name: name.clone() })?;
            Some((t, name))
        } else {
            None
        };
        Ok(Found::Target(Target {
            down,
            down_name,
            post_norm,
        }))
    }
}

/// `T` folded into the source `ffn_down`, in f32 (`d` rows of `ff`): `T^T ffn_down`, or with a
/// post-FFN norm of weight `w`, `(diag(w) T)^T ffn_down` (the norm weight is refitted later, on
/// the requantized output).
pub(super) fn fold(
    model: &Model,
    target: &Target,
    t: &[f64],
    d: usize,
    ff: usize,
) -> Result<Vec<f32>> {
    let mut down = vec![0f32; ff * d];
    let src = target.down;
    crate::quant::dequantize(src.info.ggml_type, model.data(src), &mut down)?;
    let Some((pn, _)) = target.post_norm else {
        return Ok(fold_left(t, &down, d, ff));
    };
    let mut w = vec![0f32; d];
    crate::quant::dequantize(pn.info.ggml_type, model.data(pn), &mut w)?;
    // (diag(w) T)^T D = T^T diag(w) D.
    let scaled: Vec<f32> = down
        .chunks(ff)
        .zip(&w)
        .flat_map(|(row, &wj)| row.iter().map(move |v| v * wj))
        .collect();
    Ok(fold_left(t, &scaled, d, ff))
}

/// The new `ffn_down` as it will be written.
pub(super) struct Requantized {
    pub ty: GgmlType,
    /// The source type could not be quantized by this build, so F16 was chosen.
    pub fallback: bool,
    pub bytes: Vec<u8>,
    /// `bytes` dequantized, `d` rows of `ff`.
    pub written: Vec<f32>,
    /// Relative RMS error of `written` against the f32 fold.
    pub rel_err: f64,
}

/// Index of the rewrite tensor made from source tensor `name`; [`Error::Heal`] if it was dropped.
pub(super) fn rewrite_index(rewrite: &Rewrite, name: &str) -> Result<usize> {
    rewrite
        .sources
        .iter()
        .position(|s| s.info.name == name)
        .ok_or_else(|| Error::Heal(format!("{name} is not in the pruned model")))
}

/// The type of the new `ffn_down`, output name `out_name` of source type `source`: the one a
/// later quantization plans, else the asked type, else the source type (F16 where this build
/// cannot quantize it; the flag is true then).
fn choose_type(
    options: &HealOptions,
    out_name: &str,
    source: GgmlType,
) -> Result<(GgmlType, bool)> {
    let planned = options.planned_types.get(out_name);
    let (ty, fallback) = match planned.copied().or(options.heal_type) {
        Some(t) => (t, false),
        None if crate::quant::can_quantize(source) => (source, false),
        None => (GgmlType::F16, true),
    };
    if !crate::quant::can_quantize(ty) {
        return Err(Error::HealTypeUnsupported { ty: ty.to_string() });
    }
    Ok((ty, fallback))
}

/// Quantizes the new `ffn_down` (`d` rows of `ff`) for output name `out_name`, weighting each
/// input column by its importance: the mean square of its captured activations over `rows`, outliers included (an attention sink's few huge activations must survive
/// requantization, or the sink's stream is damaged).
pub(super) fn requantize(
    down: &[f32],
    source: GgmlType,
    out_name: &str,
    options: &HealOptions,
    sample: &RunSample,
    rows: &[usize],
) -> Result<Requantized> {
    let (ty, fallback) = choose_type(options, out_name, source)?;
    let (g, ff) = (&sample.g, sample.ff);
    let mut imp = vec![0f64; ff];
    for &r in rows {
        for (i, v) in g[r * ff..(r + 1) * ff].iter().enumerate() {
            imp[i] += (*v as f64) * (*v as f64);
        }
    }
    let imp: Vec<f32> = imp.iter().map(|v| (v / rows.len() as f64) as f32).collect();
    let bytes = crate::quant::quantize(ty, down, ff, Some(&imp))?;
    let mut written = vec![0f32; down.len()];
    crate::quant::dequantize(ty, &bytes, &mut written)?;
    let rel_err = rel_err(&written, down);
    Ok(Requantized {
        ty,
        fallback,
        bytes,
        written,
        rel_err,
    })
}

/// The absorbing block's FFN output (n rows of `d`) with the fold, as it is added to the stream.
pub(super) struct Outputs {
    /// With the f32 fold.
    pub float: Vec<f32>,
    /// With the fold as written.
    pub written: Vec<f32>,
    /// The refitted post-FFN norm weight, where there is a post-FFN norm.
    pub norm: Option<Vec<f32>>,
}

/// The FFN output over the captured `ffn_down` inputs with `folded` (the f32 fold) and with
/// `written` (the fold as written). With a post-FFN norm (`target.post_norm`) its weight is refitted by
/// least squares against the target over the rows `fit`, on the written output.
pub(super) fn outputs(
    sample: &RunSample,
    target: &Target,
    folded: &[f32],
    written: &Requantized,
    fit: &[usize],
    eps: f32,
) -> Outputs {
    let (g, ff, d) = (&sample.g, sample.ff, sample.d);
    let n = g.len() / ff;
    let float = ffn_apply(g, folded, n, ff, d);
    let written = ffn_apply(g, &written.written, n, ff, d);
    if target.post_norm.is_none() {
        return Outputs {
            float,
            written,
            norm: None,
        };
    }
    let z_float = normed(float, d, eps);
    let z_written = normed(written, d, eps);
    let w_fit = refit_norm(&z_written, &sample.a2, d, fit);
    Outputs {
        float: scale_cols(z_float, &w_fit),
        written: scale_cols(z_written, &w_fit),
        norm: Some(w_fit),
    }
}

/// The note on an approximate fold.
pub(super) fn approximate_note() -> String {
    format!("approximate fold: {POST_FFN_NORM} sits between {FFN_DOWN} and the stream; direction folded into {FFN_DOWN}, norm weight refitted")
}

/// Writes the fold into `rewrite`: `ffn_down` as requantized and, with a post-FFN norm, the
/// refitted norm weight in F32. Returns the changes for the report.
pub(super) fn write(
    rewrite: &mut Rewrite,
    target: &Target,
    down: Requantized,
    norm: Option<&[f32]>,
) -> Result<Vec<TensorChange>> {
    let idx = rewrite_index(rewrite, &target.down_name)?;
    let mut changes = vec![replace(
        rewrite,
        idx,
        target.down,
        (down.ty, down.bytes),
        down.rel_err,
    )];
    if let (Some(w), Some((pn, name))) = (norm, &target.post_norm) {
        let idx = rewrite_index(rewrite, name)?;
        let bytes = crate::quant::quantize(GgmlType::F32, w, w.len(), None)?;
        changes.push(replace(rewrite, idx, pn, (GgmlType::F32, bytes), 0.0));
    }
    Ok(changes)
}

/// Puts `bytes` of type `ty` in place of rewrite tensor `idx` (made from `source`).
fn replace(
    rewrite: &mut Rewrite,
    idx: usize,
    source: &ModelTensor,
    (ty, bytes): (GgmlType, Vec<u8>),
    requant_rel_err: f64,
) -> TensorChange {
    let out = &mut rewrite.tensors[idx];
    let change = TensorChange {
        name: out.name.clone(),
        type_before: source.info.ggml_type.to_string(),
        type_after: ty.to_string(),
        bytes_before: source.info.size,
        bytes_after: bytes.len() as u64,
        requant_rel_err,
    };
    out.ggml_type = ty;
    out.data = TensorData::Bytes(bytes);
    change
}

/// `T^T D` for `T` `d x d` (row-major, f64) and `D` `d` rows of `ff` (ggml layout of
/// `ffn_down`): row j of the result is `sum_k T[k][j] D[k]`.
fn fold_left(t: &[f64], down: &[f32], d: usize, ff: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; d * ff];
    out.par_chunks_mut(ff).enumerate().for_each(|(j, row)| {
        let mut acc = vec![0f64; ff];
        for k in 0..d {
            let c = t[k * d + j];
            if c != 0.0 {
                acc.iter_mut()
                    .zip(&down[k * ff..(k + 1) * ff])
                    .for_each(|(a, &v)| *a += c * v as f64);
            }
        }
        row.iter_mut().zip(&acc).for_each(|(o, a)| *o = *a as f32);
    });
    out
}

/// `g D^T`: n rows of `ff` times `ffn_down` (`d` rows of `ff`) -> n rows of `d`.
fn ffn_apply(g: &[f32], down: &[f32], n: usize, ff: usize, d: usize) -> Vec<f32> {
    use candle_core::{Device, Tensor};
    let run = || -> candle_core::Result<Vec<f32>> {
        let gt = Tensor::from_slice(g, (n, ff), &Device::Cpu)?;
        let dt = Tensor::from_slice(down, (d, ff), &Device::Cpu)?;
        gt.matmul(&dt.t()?)?.flatten_all()?.to_vec1()
    };
    run().unwrap_or_else(|_| {
        let mut out = vec![0f32; n * d];
        for r in 0..n {
            for j in 0..d {
                out[r * d + j] = g[r * ff..(r + 1) * ff]
                    .iter()
                    .zip(&down[j * ff..(j + 1) * ff])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
        out
    })
}

fn normed(mut f: Vec<f32>, d: usize, eps: f32) -> Vec<f32> {
    ops::rms_norm(&mut f, d, None, eps);
    f
}

fn scale_cols(mut z: Vec<f32>, w: &[f32]) -> Vec<f32> {
    let d = w.len();
    z.chunks_mut(d)
        .for_each(|r| r.iter_mut().zip(w).for_each(|(v, w)| *v *= w));
    z
}

/// Per-channel least squares `w_j = sum z_j a_j / sum z_j^2` over `rows`.
fn refit_norm(z: &[f32], a2: &[f32], d: usize, rows: &[usize]) -> Vec<f32> {
    let mut num = vec![0f64; d];
    let mut den = vec![0f64; d];
    for &r in rows {
        for j in 0..d {
            let zv = z[r * d + j] as f64;
            num[j] += zv * a2[r * d + j] as f64;
            den[j] += zv * zv;
        }
    }
    num.iter()
        .zip(&den)
        .map(|(n, d)| if *d > 0.0 { (n / d) as f32 } else { 0.0 })
        .collect()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_matches_matmul() {
        let (d, ff) = (3, 4);
        let t: Vec<f64> = vec![1.0, 2.0, 0.0, 0.0, 1.0, -1.0, 0.5, 0.0, 1.0];
        let down: Vec<f32> = (0..d * ff).map(|i| i as f32 * 0.1 - 0.3).collect();
        let g: Vec<f32> = vec![0.2, -0.4, 1.0, 0.3];
        let f = ffn_apply(&g, &down, 1, ff, d);
        let ft: Vec<f64> = (0..d)
            .map(|j| (0..d).map(|k| f[k] as f64 * t[k * d + j]).sum())
            .collect();
        let folded = fold_left(&t, &down, d, ff);
        let f2 = ffn_apply(&g, &folded, 1, ff, d);
        for (a, b) in f2.iter().zip(&ft) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }
}
