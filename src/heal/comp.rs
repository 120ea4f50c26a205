//! Prune&Comp-style magnitude compensation: removing blocks leaves the stream at the cut
//! shorter than the removed blocks would have made it, so the blocks after the cut add their
//! outputs to a stream of the wrong magnitude. The stream at the cut is rescaled by
//! `s = mean |h_{l+n}| / mean |h_l|` (mean token norms over the fit rows).
//!
//! **Fold.** Every later block reads the stream through an RMS norm and the output passes the
//! final norm, both blind to scale (their epsilon aside), so scaling the stream at the cut by `s`
//! is the same as scaling every later block's writes to the stream by `1 / s`: its attention
//! output and FFN output projections (and their biases), or, where a post-norm sits on the way
//! to the stream (gemma2/3), that norm's weight. Quantized weights are scaled through their
//! blocks' f16 scale fields (and minimums), so nothing is requantized; the f16 rounding is the
//! only error. The calibration pass goes on with the stream scaled by `s` (the same model up to
//! that global factor), so later runs fit on what the folded model computes.

use crate::arch::names::{self, ATTN_OUTPUT, FFN_DOWN, POST_ATTN_NORM, POST_FFN_NORM};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Model, TensorData};
use crate::prune::Rewrite;

use super::fold::rewrite_index;
use super::report::TensorChange;

/// Prune&Comp's scale on `rows`: the mean norm of `y` (the stream leaving the run) over the mean
/// norm of `h` (the stream leaving the absorbing block).
pub(super) fn fit_scale(h: &[f32], y: &[f32], d: usize, rows: &[usize]) -> f64 {
    let mean_norm = |a: &[f32]| -> f64 {
        rows.iter()
            .map(|&r| {
                a[r * d..(r + 1) * d]
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum::<f64>()
            / rows.len().max(1) as f64
    };
    mean_norm(y) / mean_norm(h).max(f64::MIN_POSITIVE)
}

/// The absorbing block's FFN output that stands for the rescaled stream: `s h = h - M + M'`
/// with `M' = M + (s - 1) h`.
pub(super) fn output(m: &[f32], h: &[f32], s: f64) -> Vec<f32> {
    m.iter()
        .zip(h)
        .map(|(&m, &h)| (f64::from(m) + (s - 1.0) * f64::from(h)) as f32)
        .collect()
}

/// The source tensors through which block `il` writes to the stream.
fn write_tensors(model: &Model, il: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (post, proj) in [(POST_ATTN_NORM, ATTN_OUTPUT), (POST_FFN_NORM, FFN_DOWN)] {
        let norm = names::block_weight(il, post);
        if model.tensor(&norm).is_some() {
            out.push(norm);
        } else {
            out.push(names::block_weight(il, proj));
            let bias = names::block_bias(il, proj);
            if model.tensor(&bias).is_some() {
                out.push(bias);
            }
        }
    }
    out
}

/// The kept blocks after `last` (the run's last removed block).
fn later_blocks(rewrite: &Rewrite, last: usize) -> Vec<usize> {
    (last + 1..rewrite.plan.n_layers)
        .filter(|&b| rewrite.plan.new_index(b).is_some())
        .collect()
}

/// Why the writes of the kept blocks after `last` cannot be rescaled, if they cannot: a missing
/// tensor or a type without a scale field.
pub(super) fn why_not_foldable(model: &Model, rewrite: &Rewrite, last: usize) -> Option<String> {
    for b in later_blocks(rewrite, last) {
        for name in write_tensors(model, b) {
            let Some(t) = model.tensor(&name) else {
                return Some(format!("{name} is missing"));
            };
            if scale_fields(t.info.ggml_type).is_none() {
                return Some(format!(
                    "{name} is {}: rescaling it is not implemented",
                    t.info.ggml_type
                ));
            }
        }
    }
    None
}

/// Multiplies the writes of each block `b` of `rewrite` by `scales[b]` (source block indices;
/// scales of 1 leave the block alone). Returns the changed tensors.
pub(super) fn apply(
    model: &Model,
    rewrite: &mut Rewrite,
    scales: &[f64],
) -> Result<Vec<TensorChange>> {
    let mut changes = Vec::new();
    for (b, &s) in scales.iter().enumerate() {
        if s == 1.0 || rewrite.plan.new_index(b).is_none() {
            continue;
        }
        for name in write_tensors(model, b) {
            let idx = rewrite_index(rewrite, &name)?;
            let source = rewrite.sources[idx];
            let out = &mut rewrite.tensors[idx];
            let mut bytes = match std::mem::replace(&mut out.data, TensorData::Bytes(Vec::new())) {
                TensorData::Bytes(b) => b,
                _ => model.data(source).to_vec(),
            };
            if !scale_bytes(out.ggml_type, &mut bytes, s as f32) {
                return Err(Error::Heal(format!(
                    "{name}: rescaling by {s} leaves the range of its {} scales",
                    out.ggml_type
                )));
            }
            changes.push(TensorChange {
                name: out.name.clone(),
                type_before: source.info.ggml_type.to_string(),
                type_after: out.ggml_type.to_string(),
                bytes_before: source.info.size,
                bytes_after: bytes.len() as u64,
                requant_rel_err: 0.0,
            });
            out.data = TensorData::Bytes(bytes);
        }
    }
    Ok(changes)
}

/// Where the scale fields sit: (bytes per block, byte offsets of its f16 fields that every value
/// of the block is linear in), for the float types (every element) and the block types whose
/// values are `d * q` or `d * q - m` with f16 `d`, `m` (ggml's block structs).
fn scale_fields(ty: GgmlType) -> Option<(usize, &'static [usize])> {
    use GgmlType::*;
    Some(match ty {
        F16 => (2, &[0]),
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => (ty.type_size()? as usize, &[0]),
        Q4_1 | Q5_1 | Q4_K | Q5_K => (ty.type_size()? as usize, &[0, 2]),
        Q2_K => (84, &[80, 82]),
        Q3_K => (110, &[108]),
        Q6_K => (210, &[208]),
        F32 => (4, &[]),
        _ => return None,
    })
}

/// Scales every value of `bytes` (of type `ty`) by `f` through its scale fields; false if a
/// scale leaves the f16 range.
fn scale_bytes(ty: GgmlType, bytes: &mut [u8], f: f32) -> bool {
    let Some((size, fields)) = scale_fields(ty) else {
        return false;
    };
    if ty == GgmlType::F32 {
        for c in bytes.chunks_mut(4) {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * f;
            c.copy_from_slice(&v.to_le_bytes());
        }
        return true;
    }
    let mut ok = true;
    for block in bytes.chunks_mut(size) {
        for &o in fields {
            let old = half::f16::from_bits(u16::from_le_bytes([block[o], block[o + 1]]));
            let new = half::f16::from_f32(old.to_f32() * f);
            ok &= new.is_finite();
            block[o..o + 2].copy_from_slice(&new.to_bits().to_le_bytes());
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_through_scale_fields_scales_every_value() {
        let values: Vec<f32> = (0..512)
            .map(|k| ((k * 29 % 17) as f32 - 8.0) * 0.01)
            .collect();
        for ty in [
            GgmlType::F16,
            GgmlType::F32,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let mut bytes = crate::quant::quantize(ty, &values, 256, None).unwrap();
            let mut before = vec![0f32; values.len()];
            crate::quant::dequantize(ty, &bytes, &mut before).unwrap();
            assert!(scale_bytes(ty, &mut bytes, 0.75), "{ty}");
            let mut after = vec![0f32; values.len()];
            crate::quant::dequantize(ty, &bytes, &mut after).unwrap();
            // f16 rounding of the scale fields: relative 2^-11 of each, of the block's range.
            let range = before.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in after.iter().zip(&before) {
                assert!((a - 0.75 * b).abs() <= 2e-3 * range, "{ty}: {a} vs {b}");
            }
        }
    }
}
