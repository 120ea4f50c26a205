//! Quantization: ggml's reference kernels ported to Rust, llama.cpp's per-tensor type mixes,
//! and its importance-matrix files.
//!
//! The kernels are byte-for-byte ports: for a given f32 row and importance vector they produce
//! the same blocks as llama-quantize (tests/quant.rs checks this on real models), so a model
//! quantized here is the model a llama.cpp user would have made.
//!
//! - [`quantize`] / [`dequantize`]: whole tensors, rows in parallel.
//! - [`mix`]: which type each tensor gets for a file type such as Q4_K_M.
//! - [`imatrix`]: llama-imatrix's GGUF and legacy `.dat` files.
//! - [`model`]: quantize a whole GGUF model, one tensor in memory at a time.
//!
//! # Example: one tensor
//!
//! ```
//! use gguf_prune::gguf::GgmlType;
//! use gguf_prune::quant::{dequantize, quantize};
//!
//! let rows: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
//! let q = quantize(GgmlType::Q4_K, &rows, 256, None)?; // 2 rows of 256
//! assert_eq!(q.len(), 2 * 144);
//! let mut back = vec![0f32; rows.len()];
//! dequantize(GgmlType::Q4_K, &q, &mut back)?;
//! assert!(rows.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.1));
//! # Ok::<(), gguf_prune::Error>(())
//! ```

pub mod collect;
pub mod imatrix;
pub mod kquants;
pub mod legacy;
pub mod mix;
pub mod model;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

pub use imatrix::ImatrixData;
pub use mix::{llama_quantize_names, FileType, FileTypeError, MixContext};
pub use model::{planned_types, quantize_model, QuantizeParams, QuantizeReport};

/// f32 to IEEE half bits, round to nearest even (ggml's `GGML_FP32_TO_FP16` in ggml-base).
#[inline]
pub(crate) fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

#[inline]
pub(crate) fn f16_value(lo: u8, hi: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// f32 to bf16 as ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN made quiet.
#[inline]
fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// Whether [`quantize`] can produce this type.
pub fn can_quantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

/// Whether [`dequantize`] can read this type.
pub fn can_dequantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
    )
}

/// Whether the type is a block-quantized one (not a float or integer type).
pub fn is_quantized(ty: GgmlType) -> bool {
    use GgmlType::*;
    ty.is_known() && !matches!(ty, F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64)
}

fn row_bytes(ty: GgmlType, n_per_row: usize) -> Result<usize> {
    ty.bytes_for(n_per_row as u64)
        .map(|b| b as usize)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "a row of {n_per_row} elements cannot be stored as {ty} (blocks of {})",
                ty.block_size().unwrap_or(0)
            ))
        })
}

/// Rows per parallel task: enough work per task to hide scheduling (about 16k elements, as
/// llama.cpp's chunking).
fn rows_per_task(n_per_row: usize) -> usize {
    (16384 / n_per_row.max(1)).max(1)
}

/// Quantizes `src` (rows of `n_per_row` f32 values) to `ty`, as llama-quantize would.
///
/// `imatrix`, if given, holds one importance weight per column (llama.cpp's per-column mean of
/// squared activations) and steers the K-quants and Q4_0..Q5_1 exactly as in ggml; Q8_0 and the
/// float types ignore it. Without it the reference (`_ref`) algorithms are used, as in ggml.
pub fn quantize(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
) -> Result<Vec<u8>> {
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(Error::Invalid(format!(
            "{} values do not make whole rows of {n_per_row}",
            src.len()
        )));
    }
    if let Some(w) = imatrix {
        if w.len() != n_per_row {
            return Err(Error::Invalid(format!(
                "importance vector has {} entries, rows have {n_per_row}",
                w.len()
            )));
        }
    }
    if !can_quantize(ty) {
        return Err(Error::QuantUnsupported {
            ty,
            op: "quantize to",
        });
    }
    let rb = row_bytes(ty, n_per_row)?;
    let n_rows = src.len() / n_per_row;
    let mut out = vec![0u8; n_rows * rb];
    let per = rows_per_task(n_per_row);
    out.par_chunks_mut(rb * per)
        .zip(src.par_chunks(n_per_row * per))
        .try_for_each(|(dst, rows)| {
            crate::interrupt::check()?;
            for (d, r) in dst.chunks_exact_mut(rb).zip(rows.chunks_exact(n_per_row)) {
                quantize_row(ty, r, imatrix, d);
            }
            Ok::<(), Error>(())
        })?;
    Ok(out)
}

fn quantize_row(ty: GgmlType, row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    use GgmlType::*;
    match ty {
        F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(row) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        F16 => {
            for (o, &v) in out.chunks_exact_mut(2).zip(row) {
                o.copy_from_slice(&f16_bits(v));
            }
        }
        BF16 => {
            for (o, &v) in out.chunks_exact_mut(2).zip(row) {
                o.copy_from_slice(&bf16_bits(v).to_le_bytes());
            }
        }
        Q4_0 => legacy::quantize_q4_0(row, imatrix, out),
        Q4_1 => legacy::quantize_q4_1(row, imatrix, out),
        Q5_0 => legacy::quantize_q5_0(row, imatrix, out),
        Q5_1 => legacy::quantize_q5_1(row, imatrix, out),
        Q8_0 => legacy::quantize_q8_0(row, out),
        Q2_K => kquants::quantize_q2_k(row, imatrix, out),
        Q3_K => kquants::quantize_q3_k(row, imatrix, out),
        Q4_K => kquants::quantize_q4_k(row, imatrix, out),
        Q5_K => kquants::quantize_q5_k(row, imatrix, out),
        Q6_K => kquants::quantize_q6_k(row, imatrix, out),
        _ => unreachable!("checked by can_quantize"),
    }
}

/// Dequantizes `bytes` of type `ty` into `out` (whose length is the element count).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    if !can_dequantize(ty) {
        return Err(Error::QuantUnsupported {
            ty,
            op: "dequantize",
        });
    }
    let need = ty.bytes_for(out.len() as u64).ok_or_else(|| {
        Error::Invalid(format!(
            "{} elements are not whole {ty} blocks of {}",
            out.len(),
            ty.block_size().unwrap_or(0)
        ))
    })?;
    if bytes.len() as u64 != need {
        return Err(Error::Invalid(format!(
            "{} elements of {ty} take {need} bytes, got {}",
            out.len(),
            bytes.len()
        )));
    }
    let block = ty.block_size().unwrap_or(1) as usize;
    let bsize = ty.type_size().unwrap_or(1) as usize;
    // Tasks of whole blocks, about 64k elements each.
    let blocks_per_task = (65536 / block).max(1);
    out.par_chunks_mut(block * blocks_per_task)
        .zip(bytes.par_chunks(bsize * blocks_per_task))
        .for_each(|(o, b)| dequantize_blocks(ty, b, o));
    Ok(())
}

fn dequantize_blocks(ty: GgmlType, b: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match ty {
        F32 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        F16 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = f16_value(c[0], c[1]);
            }
        }
        BF16 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        Q4_0 => legacy::dequantize_q4_0(b, out),
        Q4_1 => legacy::dequantize_q4_1(b, out),
        Q5_0 => legacy::dequantize_q5_0(b, out),
        Q5_1 => legacy::dequantize_q5_1(b, out),
        Q8_0 => legacy::dequantize_q8_0(b, out),
        Q2_K => kquants::dequantize_q2_k(b, out),
        Q3_K => kquants::dequantize_q3_k(b, out),
        Q4_K => kquants::dequantize_q4_k(b, out),
        Q5_K => kquants::dequantize_q5_k(b, out),
        Q6_K => kquants::dequantize_q6_k(b, out),
        Q8_K => kquants::dequantize_q8_k(b, out),
        _ => unreachable!("checked by can_dequantize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even_like_ggml() {
        use kquants::nearest_int;
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(3.7), 4);
        assert_eq!(nearest_int(-3.7), -4);
    }

    #[test]
    fn every_type_round_trips_within_its_precision() {
        let n = 512;
        let src: Vec<f32> = (0..2 * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let imatrix: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
        for (ty, tol) in [
            (GgmlType::F16, 1e-3),
            (GgmlType::BF16, 1e-2),
            (GgmlType::Q8_0, 0.02),
            (GgmlType::Q6_K, 0.05),
            (GgmlType::Q5_0, 0.1),
            (GgmlType::Q5_1, 0.1),
            (GgmlType::Q5_K, 0.1),
            (GgmlType::Q4_0, 0.2),
            (GgmlType::Q4_1, 0.2),
            (GgmlType::Q4_K, 0.2),
            (GgmlType::Q3_K, 0.4),
            (GgmlType::Q2_K, 0.8),
        ] {
            for w in [None, Some(&imatrix[..])] {
                let q = quantize(ty, &src, n, w).unwrap();
                assert_eq!(q.len() as u64, ty.bytes_for(src.len() as u64).unwrap());
                let mut back = vec![0f32; src.len()];
                dequantize(ty, &q, &mut back).unwrap();
                let rmse = (src
                    .iter()
                    .zip(&back)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
                    / src.len() as f32)
                    .sqrt();
                assert!(rmse < tol, "{ty} (imatrix {}): rmse {rmse}", w.is_some());
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(quantize(GgmlType::Q4_K, &[0.0; 576], 576, None).is_err());
        assert!(quantize(GgmlType::Q4_0, &[0.0; 64], 64, Some(&[1.0; 32])).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0; 17], &mut [0.0; 32]).is_err());
        assert!(quantize(GgmlType::IQ2_XXS, &[0.0; 256], 256, None).is_err());
    }
}
