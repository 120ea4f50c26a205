//! The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): quantization as ggml's
//! `quantize_row_*_ref` (no importance matrix) and `quantize_row_*_impl` (with one), and
//! dequantization as `dequantize_row_*`.
//!
//! Written from ggml-quants.c (llama.cpp 0c1e57098). The float operations are done in the same
//! order as there, because the C build of ggml-base uses plain SSE2 without FMA contraction, and
//! any reordering changes the rounding and so the bytes.

// The loops index several arrays with one counter, as ggml does, so that the port can be
// checked against the C line by line.
#![allow(clippy::needless_range_loop)]

use super::search::{importance, make_qkx_quants, make_qx_quants, signed_absmax, sum_squares};
use super::{f16_bits, f16_value, Kernel};
use crate::gguf::GgmlType;

/// Elements per block.
pub const QK: usize = 32;

/// d (f16), `qs[16]` (two 4-bit levels a byte, offset by 8).
pub const Q4_0: Kernel = Kernel {
    ty: GgmlType::Q4_0,
    block: QK,
    bytes: 2 + QK / 2,
    quantize: Some(quantize_q4_0),
    dequantize: dequantize_q4_0,
};

/// d (f16), m (f16), `qs[16]`.
pub const Q4_1: Kernel = Kernel {
    ty: GgmlType::Q4_1,
    block: QK,
    bytes: 2 + 2 + QK / 2,
    quantize: Some(quantize_q4_1),
    dequantize: dequantize_q4_1,
};

/// d (f16), qh (u32, the fifth bits), `qs[16]`.
pub const Q5_0: Kernel = Kernel {
    ty: GgmlType::Q5_0,
    block: QK,
    bytes: 2 + 4 + QK / 2,
    quantize: Some(quantize_q5_0),
    dequantize: dequantize_q5_0,
};

/// d (f16), m (f16), qh (u32), `qs[16]`.
pub const Q5_1: Kernel = Kernel {
    ty: GgmlType::Q5_1,
    block: QK,
    bytes: 2 + 2 + 4 + QK / 2,
    quantize: Some(quantize_q5_1),
    dequantize: dequantize_q5_1,
};

/// d (f16), `qs[32]` (i8).
pub const Q8_0: Kernel = Kernel {
    ty: GgmlType::Q8_0,
    block: QK,
    bytes: 2 + QK,
    quantize: Some(quantize_q8_0),
    dequantize: dequantize_q8_0,
};

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `(int8_t)f` as the C compiler does it on x86-64: truncate to a 32-bit int, keep the low byte.
#[inline]
fn c_i8(f: f32) -> i8 {
    f as i32 as i8
}

fn sigma2_of_row(row: &[f32]) -> f32 {
    sum_squares(row) / row.len() as f32
}

pub fn quantize_q4_0(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    if let Some(qw) = imatrix {
        let sigma2 = sigma2_of_row(row);
        let mut weight = [0f32; QK];
        let mut l = [0i8; QK];
        for (ib, (xb, y)) in row
            .chunks_exact(QK)
            .zip(out.chunks_exact_mut(Q4_0.bytes))
            .enumerate()
        {
            importance(xb, &qw[QK * ib..QK * (ib + 1)], sigma2, &mut weight);
            let d = make_qx_quants(QK, 8, xb, &mut l, Some(&weight));
            y[0..2].copy_from_slice(&f16_bits(d));
            for j in 0..16 {
                y[2 + j] = (l[j] as u8) | ((l[j + 16] as u8) << 4);
            }
        }
        return;
    }
    for (x, y) in row.chunks_exact(QK).zip(out.chunks_exact_mut(Q4_0.bytes)) {
        let (max, _) = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[0..2].copy_from_slice(&f16_bits(d));
        for j in 0..16 {
            let xi0 = (c_i8(x[j] * id + 8.5)).min(15) as u8;
            let xi1 = (c_i8(x[j + 16] * id + 8.5)).min(15) as u8;
            y[2 + j] = xi0 | (xi1 << 4);
        }
    }
}

pub fn quantize_q4_1(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    if let Some(qw) = imatrix {
        let sigma2 = sigma2_of_row(row);
        let mut weight = [0f32; QK];
        let (mut l, mut laux) = ([0u8; QK], [0u8; QK]);
        for (ib, (xb, y)) in row
            .chunks_exact(QK)
            .zip(out.chunks_exact_mut(Q4_1.bytes))
            .enumerate()
        {
            importance(xb, &qw[QK * ib..QK * (ib + 1)], sigma2, &mut weight);
            let mut min = 0.0;
            let d = make_qkx_quants(
                QK, 15, xb, &weight, &mut l, &mut min, &mut laux, -0.9, 0.05, 36, false,
            );
            y[0..2].copy_from_slice(&f16_bits(d));
            y[2..4].copy_from_slice(&f16_bits(-min));
            for j in 0..16 {
                y[4 + j] = l[j] | (l[j + 16] << 4);
            }
        }
        return;
    }
    for (x, y) in row.chunks_exact(QK).zip(out.chunks_exact_mut(Q4_1.bytes)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[0..2].copy_from_slice(&f16_bits(d));
        y[2..4].copy_from_slice(&f16_bits(min));
        for j in 0..16 {
            let xi0 = c_i8((x[j] - min) * id + 0.5).min(15) as u8;
            let xi1 = c_i8((x[j + 16] - min) * id + 0.5).min(15) as u8;
            y[4 + j] = xi0 | (xi1 << 4);
        }
    }
}

fn pack_q5(l: &[u8], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..16 {
        let (xi0, xi1) = (l[j], l[j + 16]);
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= (((xi0 & 0x10) as u32) >> 4) << j;
        qh |= (((xi1 & 0x10) as u32) >> 4) << (j + 16);
    }
    qh
}

pub fn quantize_q5_0(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; QK];
    if let Some(qw) = imatrix {
        let sigma2 = sigma2_of_row(row);
        let mut weight = [0f32; QK];
        let mut li = [0i8; QK];
        for (ib, (xb, y)) in row
            .chunks_exact(QK)
            .zip(out.chunks_exact_mut(Q5_0.bytes))
            .enumerate()
        {
            importance(xb, &qw[QK * ib..QK * (ib + 1)], sigma2, &mut weight);
            let d = make_qx_quants(QK, 16, xb, &mut li, Some(&weight));
            y[0..2].copy_from_slice(&f16_bits(d));
            for j in 0..QK {
                l[j] = li[j] as u8;
            }
            let qh = pack_q5(&l, &mut y[6..]);
            y[2..6].copy_from_slice(&qh.to_le_bytes());
        }
        return;
    }
    for (x, y) in row.chunks_exact(QK).zip(out.chunks_exact_mut(Q5_0.bytes)) {
        let (max, _) = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[0..2].copy_from_slice(&f16_bits(d));
        for j in 0..QK {
            l[j] = c_i8(x[j] * id + 16.5).min(31) as u8;
        }
        let qh = pack_q5(&l, &mut y[6..]);
        y[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

pub fn quantize_q5_1(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; QK];
    if let Some(qw) = imatrix {
        let sigma2 = sigma2_of_row(row);
        let mut weight = [0f32; QK];
        let mut laux = [0u8; QK];
        for (ib, (xb, y)) in row
            .chunks_exact(QK)
            .zip(out.chunks_exact_mut(Q5_1.bytes))
            .enumerate()
        {
            importance(xb, &qw[QK * ib..QK * (ib + 1)], sigma2, &mut weight);
            let mut min = 0.0;
            let d = make_qkx_quants(
                QK, 31, xb, &weight, &mut l, &mut min, &mut laux, -0.9, 0.05, 36, false,
            );
            y[0..2].copy_from_slice(&f16_bits(d));
            y[2..4].copy_from_slice(&f16_bits(-min));
            let qh = pack_q5(&l, &mut y[8..]);
            y[4..8].copy_from_slice(&qh.to_le_bytes());
        }
        return;
    }
    for (x, y) in row.chunks_exact(QK).zip(out.chunks_exact_mut(Q5_1.bytes)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[0..2].copy_from_slice(&f16_bits(d));
        y[2..4].copy_from_slice(&f16_bits(min));
        for j in 0..QK {
            // ggml: (uint8_t)(x0 + 0.5f), no clamp
            l[j] = ((x[j] - min) * id + 0.5) as i32 as u8;
        }
        let qh = pack_q5(&l, &mut y[8..]);
        y[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

/// Q8_0 ignores the importance matrix in ggml too.
pub fn quantize_q8_0(row: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (x, y) in row.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_0.bytes)) {
        let mut amax = 0.0f32;
        for &v in x {
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[0..2].copy_from_slice(&f16_bits(d));
        for j in 0..QK {
            y[2 + j] = (x[j] * id).round() as i32 as i8 as u8;
        }
    }
}

pub fn dequantize_q4_0(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q4_0.bytes)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_value(b[0], b[1]);
        for j in 0..16 {
            y[j] = ((b[2 + j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q4_1.bytes)
        .zip(out.chunks_exact_mut(QK))
    {
        let (d, m) = (f16_value(b[0], b[1]), f16_value(b[2], b[3]));
        for j in 0..16 {
            y[j] = (b[4 + j] & 0x0f) as f32 * d + m;
            y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
        }
    }
}

pub fn dequantize_q5_0(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q5_0.bytes)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_value(b[0], b[1]);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            y[j] = (((b[6 + j] & 0x0f) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((b[6 + j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

pub fn dequantize_q5_1(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q5_1.bytes)
        .zip(out.chunks_exact_mut(QK))
    {
        let (d, m) = (f16_value(b[0], b[1]), f16_value(b[2], b[3]));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            y[j] = ((b[8 + j] & 0x0f) | h0) as f32 * d + m;
            y[j + 16] = ((b[8 + j] >> 4) | h1) as f32 * d + m;
        }
    }
}

pub fn dequantize_q8_0(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q8_0.bytes)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_value(b[0], b[1]);
        for j in 0..QK {
            y[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}
