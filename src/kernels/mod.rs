//! ggml's quantize and dequantize kernels ported to Rust, with one table of the block types
//! they handle.
//!
//! The kernels are byte-for-byte ports: for a given f32 row and importance vector they produce
//! the same blocks as llama-quantize (tests/llama_quantize.rs checks this on real models), so a model
//! quantized here is the model a llama.cpp user would have made. Each family has its file
//! (`float`, `legacy` for the 32-element blocks, `kquants` for the 256-element super-blocks,
//! `mxfp` for the microscaling FP4 blocks, `search` for the scale fits they share) and one [`Kernel`] row per type; [`KERNELS`] lists
//! the rows, and a compile-time check holds each row's layout to the GGUF type table.
//!
//! - [`quantize`] / [`dequantize`]: whole tensors, rows in parallel.
//! - [`kernel`]: the row of one type.
//!
//! # Example: one tensor
//!
//! ```
//! use gguf_prune::gguf::GgmlType;
//! use gguf_prune::kernels::{dequantize, quantize};
//!
//! let rows: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
//! let q = quantize(GgmlType::Q4_K, &rows, 256, None)?; // 2 rows of 256
//! assert_eq!(q.len(), 2 * 144);
//! let mut back = vec![0f32; rows.len()];
//! dequantize(GgmlType::Q4_K, &q, &mut back)?;
//! assert!(rows.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.1));
//! # Ok::<(), gguf_prune::Error>(())
//! ```

pub mod float;
pub mod kquants;
pub mod legacy;
pub mod mxfp;
mod search;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// Quantizes one row (a whole number of blocks) into `out`, steered by one importance weight
/// per element if given (types that ignore it in ggml ignore it here).
pub type QuantizeRow = fn(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]);

/// Dequantizes whole blocks into `out`, `block` elements per block.
pub type DequantizeRow = fn(blocks: &[u8], out: &mut [f32]);

/// One block type as the kernels see it: its layout and its two kernels.
pub struct Kernel {
    pub ty: GgmlType,
    /// Elements per block.
    pub block: usize,
    /// Bytes per block, written as the sum of the block's fields.
    pub bytes: usize,
    /// None for a type that is only ever read.
    pub quantize: Option<QuantizeRow>,
    pub dequantize: DequantizeRow,
}

/// Every type the kernels handle.
pub const KERNELS: &[Kernel] = &[
    float::F32,
    float::F16,
    float::BF16,
    legacy::Q4_0,
    legacy::Q4_1,
    legacy::Q5_0,
    legacy::Q5_1,
    legacy::Q8_0,
    kquants::Q2_K,
    kquants::Q3_K,
    kquants::Q4_K,
    kquants::Q5_K,
    kquants::Q6_K,
    kquants::Q8_K,
    mxfp::MXFP4,
];

// The kernels walk blocks with their rows' layouts; the reader, the writer and every size check
// use the GGUF type table (gguf/types.rs). The two must agree, and a type has one row.
const _: () = {
    let mut i = 0;
    while i < KERNELS.len() {
        let k = &KERNELS[i];
        assert!(matches!(k.ty.block_size(), Some(n) if n == k.block as u64));
        assert!(matches!(k.ty.type_size(), Some(n) if n == k.bytes as u64));
        let mut j = 0;
        while j < i {
            assert!(KERNELS[j].ty.to_u32() != k.ty.to_u32());
            j += 1;
        }
        i += 1;
    }
};

/// The row of `ty`, if the kernels handle it.
pub fn kernel(ty: GgmlType) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.ty == ty)
}

/// Whether [`quantize`] can produce this type.
pub fn can_quantize(ty: GgmlType) -> bool {
    kernel(ty).is_some_and(|k| k.quantize.is_some())
}

/// Whether [`dequantize`] can read this type.
pub fn can_dequantize(ty: GgmlType) -> bool {
    kernel(ty).is_some()
}

/// Whether the type is a block-quantized one (not a float or integer type).
pub fn is_quantized(ty: GgmlType) -> bool {
    use GgmlType::*;
    ty.is_known() && !matches!(ty, F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64)
}

/// f32 to IEEE half bits, round to nearest even (ggml's `GGML_FP32_TO_FP16` in ggml-base).
#[inline]
fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

#[inline]
fn f16_value(lo: u8, hi: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

fn row_bytes(k: &Kernel, n_per_row: usize) -> Result<usize> {
    if !n_per_row.is_multiple_of(k.block) {
        return Err(Error::RowNotWholeBlocks {
            n_per_row,
            ty: k.ty,
            block: k.block,
        });
    }
    Ok(n_per_row / k.block * k.bytes)
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
        return Err(Error::NotWholeRows {
            len: src.len(),
            n_per_row,
        });
    }
    if let Some(w) = imatrix {
        if w.len() != n_per_row {
            return Err(Error::ImportanceWidth {
                got: w.len(),
                n_per_row,
            });
        }
    }
    let Some((k, quantize_row)) = kernel(ty).and_then(|k| Some((k, k.quantize?))) else {
        return Err(Error::QuantUnsupported {
            ty,
            op: "quantize to",
        });
    };
    let rb = row_bytes(k, n_per_row)?;
    let n_rows = src.len() / n_per_row;
    let mut out = vec![0u8; n_rows * rb];
    let per = rows_per_task(n_per_row);
    out.par_chunks_mut(rb * per)
        .zip(src.par_chunks(n_per_row * per))
        .try_for_each(|(dst, rows)| {
            crate::interrupt::check()?;
            for (d, r) in dst.chunks_exact_mut(rb).zip(rows.chunks_exact(n_per_row)) {
                quantize_row(r, imatrix, d);
            }
            Ok::<(), Error>(())
        })?;
    Ok(out)
}

/// Dequantizes `bytes` of type `ty` into `out` (whose length is the element count).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let Some(k) = kernel(ty) else {
        return Err(Error::QuantUnsupported {
            ty,
            op: "dequantize",
        });
    };
    if !out.len().is_multiple_of(k.block) {
        return Err(Error::NotWholeBlocks {
            n: out.len(),
            ty,
            block: k.block,
        });
    }
    let need = out.len() / k.block * k.bytes;
    if bytes.len() != need {
        return Err(Error::QuantDataLength {
            n: out.len(),
            ty,
            need,
            got: bytes.len(),
        });
    }
    // Tasks of whole blocks, about 64k elements each.
    let blocks_per_task = (65536 / k.block).max(1);
    out.par_chunks_mut(k.block * blocks_per_task)
        .zip(bytes.par_chunks(k.bytes * blocks_per_task))
        .for_each(|(o, b)| (k.dequantize)(b, o));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even_like_ggml() {
        use search::nearest_int;
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(3.7), 4);
        assert_eq!(nearest_int(-3.7), -4);
    }

    #[test]
    fn the_table_has_every_type_it_can_quantize_or_read() {
        use GgmlType::*;
        let quantizable = [
            F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4,
        ];
        for ty in GgmlType::all() {
            assert_eq!(can_quantize(ty), quantizable.contains(&ty), "{ty}");
            assert_eq!(
                can_dequantize(ty),
                quantizable.contains(&ty) || ty == Q8_K,
                "{ty}"
            );
        }
        assert!(kernel(GgmlType::Unknown(4)).is_none());
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
            (GgmlType::MXFP4, 0.4),
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
