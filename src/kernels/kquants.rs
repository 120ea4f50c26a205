//! The 256-element super-block types (Q2_K .. Q6_K, and Q8_K for dequantization): one
//! [`Kernel`] row each, with the block's layout, and the kernels.
//!
//! Written from ggml-quants.c (llama.cpp 0c1e57098): `quantize_row_qN_K_ref` when there is no
//! importance matrix (llama-quantize calls exactly these then) and `quantize_row_qN_K_impl`
//! when there is one. Every float expression keeps ggml's evaluation order (`w*x*l` is
//! `(w*x)*l`), since ggml-base is built without FMA contraction and any change moves bytes.
//!
//! Over 600 lines: five block types, each with its layout, quantizer and dequantizer in ggml's
//! order, sharing the scale packing of Q4_K/Q5_K; split by type they would lose that one copy.

// The loops index several arrays with one counter, as ggml does, so that the port can be
// checked against the C line by line.
#![allow(clippy::needless_range_loop)]

use super::search::{
    importance, make_q3_quants, make_qkx_quants, make_qp_quants, make_qx_quants, nearest_int,
    sum_squares, GROUP_MAX_EPS,
};
use super::{f16_bits, f16_value, Kernel};
use crate::gguf::GgmlType;

/// Elements per super-block.
pub const QK_K: usize = 256;

/// `scales[16]` (low nibble scale, high nibble min), `qs[64]`, d (f16), dmin (f16).
pub const Q2_K: Kernel = Kernel {
    ty: GgmlType::Q2_K,
    block: QK_K,
    bytes: QK_K / 16 + QK_K / 4 + 2 + 2,
    quantize: Some(quantize_q2_k),
    dequantize: dequantize_q2_k,
};

/// `hmask[32]`, `qs[64]`, `scales[12]`, d (f16).
pub const Q3_K: Kernel = Kernel {
    ty: GgmlType::Q3_K,
    block: QK_K,
    bytes: QK_K / 8 + QK_K / 4 + 12 + 2,
    quantize: Some(quantize_q3_k),
    dequantize: dequantize_q3_k,
};

/// d (f16), dmin (f16), `scales[12]`, `qs[128]`.
pub const Q4_K: Kernel = Kernel {
    ty: GgmlType::Q4_K,
    block: QK_K,
    bytes: 2 + 2 + 12 + QK_K / 2,
    quantize: Some(quantize_q4_k),
    dequantize: dequantize_q4_k,
};

/// d (f16), dmin (f16), `scales[12]`, `qh[32]`, `qs[128]`.
pub const Q5_K: Kernel = Kernel {
    ty: GgmlType::Q5_K,
    block: QK_K,
    bytes: 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
    quantize: Some(quantize_q5_k),
    dequantize: dequantize_q5_k,
};

/// `ql[128]`, `qh[64]`, `scales[16]` (i8), d (f16).
pub const Q6_K: Kernel = Kernel {
    ty: GgmlType::Q6_K,
    block: QK_K,
    bytes: QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
    quantize: Some(quantize_q6_k),
    dequantize: dequantize_q6_k,
};

/// d (f32), `qs[256]` (i8), `bsums[16]` (i16). ggml quantizes to it only as the other operand of a
/// dot product, so there is no quantizer here.
pub const Q8_K: Kernel = Kernel {
    ty: GgmlType::Q8_K,
    block: QK_K,
    bytes: 4 + QK_K + QK_K / 16 * 2,
    quantize: None,
    dequantize: dequantize_q8_k,
};

/// The 6-bit scale and min of sub-block `j` from the 12 packed scale bytes of Q4_K/Q5_K.
#[inline]
fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The float scale and min of sub-blocks `2n` and `2n + 1` (the low and high nibbles of the
/// `n`th 32 quant bytes) of a Q4_K/Q5_K block with super-scales `d` and `min`.
fn sub_scales_k4(d: f32, min: f32, sc: &[u8], n: usize) -> [(f32, f32); 2] {
    [2 * n, 2 * n + 1].map(|j| {
        let (s, m) = get_scale_min_k4(j, sc);
        (d * s as f32, min * m as f32)
    })
}

/// Packs eight 6-bit scales and mins the way Q4_K and Q5_K store them.
fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
    s[..12].fill(0);
    for j in 0..8 {
        let (a, b) = (ls[j], lm[j]);
        if j < 4 {
            s[j] = a;
            s[j + 4] = b;
        } else {
            s[j + 4] = (a & 0x0f) | ((b & 0x0f) << 4);
            s[j - 4] |= (a >> 4) << 6;
            s[j] |= (b >> 4) << 6;
        }
    }
}

fn pack_2bit(l: &[u8], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

// ---------------------------------------------------------------- Q2_K

/// One row to Q2_K, as ggml quantizes it. Long on purpose: it follows ggml's function step for
/// step (scale search, super-block scales, levels, packing) so the bytes stay identical to
/// llama-quantize's, and a reader can compare the two side by side.
pub fn quantize_q2_k(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut scales = [0f32; 16];
    for (ib, (x, y)) in row
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q2_K.bytes))
        .enumerate()
    {
        let (sc, rest) = y.split_at_mut(16);
        let (qs, dd) = rest.split_at_mut(64);
        if let Some(qw_row) = imatrix {
            let qw_block = &qw_row[QK_K * ib..QK_K * (ib + 1)];
            let sigma2 = sum_squares(x) / QK_K as f32;
            let mut sw = [0f32; 16];
            for j in 0..16 {
                let qw = &qw_block[16 * j..16 * j + 16];
                sw[j] = importance(&x[16 * j..16 * j + 16], qw, sigma2, &mut weights);
                scales[j] = make_qkx_quants(
                    16,
                    3,
                    &x[16 * j..],
                    &weights,
                    &mut l[16 * j..],
                    &mut mins[j],
                    &mut laux,
                    -0.9,
                    0.05,
                    36,
                    false,
                );
            }
            let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
            let dm = make_qp_quants(16, 15, &scales, &mut ls, &sw);
            let mm = make_qp_quants(16, 15, &mins, &mut lm, &sw);
            dd[0..2].copy_from_slice(&f16_bits(dm));
            dd[2..4].copy_from_slice(&f16_bits(mm));
            let dm = f16_value(dd[0], dd[1]);
            let mm = f16_value(dd[2], dd[3]);
            for j in 0..16 {
                sc[j] = ls[j] | (lm[j] << 4);
            }
            for j in 0..16 {
                let d = dm * (sc[j] & 0x0f) as f32;
                if d == 0.0 {
                    continue;
                }
                let m = mm * (sc[j] >> 4) as f32;
                for i in 0..16 {
                    l[16 * j + i] = nearest_int((x[16 * j + i] + m) / d).clamp(0, 3) as u8;
                }
            }
        } else {
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..16 {
                for i in 0..16 {
                    weights[i] = x[16 * j + i].abs();
                }
                scales[j] = make_qkx_quants(
                    16,
                    3,
                    &x[16 * j..],
                    &weights,
                    &mut l[16 * j..],
                    &mut mins[j],
                    &mut laux,
                    -0.5,
                    0.1,
                    15,
                    true,
                );
                if scales[j] > max_scale {
                    max_scale = scales[j];
                }
                if mins[j] > max_min {
                    max_min = mins[j];
                }
            }
            if max_scale > 0.0 {
                let iscale = 15.0 / max_scale;
                for j in 0..16 {
                    sc[j] = nearest_int(iscale * scales[j]) as u8;
                }
                dd[0..2].copy_from_slice(&f16_bits(max_scale / 15.0));
            } else {
                sc.fill(0);
                dd[0..2].copy_from_slice(&f16_bits(0.0));
            }
            if max_min > 0.0 {
                let iscale = 15.0 / max_min;
                for j in 0..16 {
                    let li = nearest_int(iscale * mins[j]);
                    sc[j] |= (li << 4) as u8;
                }
                dd[2..4].copy_from_slice(&f16_bits(max_min / 15.0));
            } else {
                dd[2..4].copy_from_slice(&f16_bits(0.0));
            }
            for j in 0..16 {
                let d = f16_value(dd[0], dd[1]) * (sc[j] & 0x0f) as f32;
                if d == 0.0 {
                    continue;
                }
                let dm = f16_value(dd[2], dd[3]) * (sc[j] >> 4) as f32;
                for i in 0..16 {
                    l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / d).clamp(0, 3) as u8;
                }
            }
        }
        pack_2bit(&l, qs);
    }
}

pub fn dequantize_q2_k(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q2_K.bytes)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let sc = &b[0..16];
        let d = f16_value(b[80], b[81]);
        let min = f16_value(b[82], b[83]);
        let mut k = 0;
        let mut is = 0;
        for n in 0..2 {
            let q = &b[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let s = sc[is];
                    is += 1;
                    let dl = d * (s & 0x0f) as f32;
                    let ml = min * (s >> 4) as f32;
                    for i in 0..16 {
                        y[k] = dl * ((q[16 * half + i] >> shift) & 3) as f32 - ml;
                        k += 1;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Q3_K

fn pack_scales_q3(ls: &[i32; 16], s: &mut [u8]) {
    s[..12].fill(0);
    for j in 0..16 {
        let mut l = ls[j];
        if j < 8 {
            s[j] = (l & 0x0f) as u8;
        } else {
            s[j - 8] |= ((l & 0x0f) << 4) as u8;
        }
        l >>= 4;
        s[j % 4 + 8] |= (l << (2 * (j / 4))) as u8;
    }
}

fn q3_scale(s: &[u8], j: usize) -> i8 {
    let lo = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
    ((lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8).wrapping_sub(32)
}

fn finish_q3(x: &[f32], l: &mut [i8; QK_K], y: &mut [u8]) {
    let (hmask, rest) = y.split_at_mut(32);
    let (qs, rest) = rest.split_at_mut(64);
    let (sc, dd) = rest.split_at_mut(12);
    let dall = f16_value(dd[0], dd[1]);
    for j in 0..16 {
        let d = dall * q3_scale(sc, j) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            let li = nearest_int(x[16 * j + i] / d).clamp(-4, 3);
            l[16 * j + i] = (li + 4) as i8;
        }
    }
    hmask.fill(0);
    let (mut m, mut hm) = (0usize, 1u8);
    for v in l.iter_mut() {
        if *v > 3 {
            hmask[m] |= hm;
            *v -= 4;
        }
        m += 1;
        if m == QK_K / 8 {
            m = 0;
            hm <<= 1;
        }
    }
    let lu: Vec<u8> = l.iter().map(|&v| v as u8).collect();
    pack_2bit(&lu, qs);
}

pub fn quantize_q3_k(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    for (ib, (x, y)) in row
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q3_K.bytes))
        .enumerate()
    {
        // The 6-bit sub-block scales (offset by 32), or None where ggml leaves them zero.
        let packed: Option<[i32; 16]>;
        let d_out;
        if let Some(qw_row) = imatrix {
            let qw_block = &qw_row[QK_K * ib..QK_K * (ib + 1)];
            let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
            let mut weight = [0f32; 16];
            let mut sw = [0f32; 16];
            for j in 0..16 {
                let qw = &qw_block[16 * j..16 * j + 16];
                sw[j] = importance(&x[16 * j..16 * j + 16], qw, sigma2, &mut weight);
                scales[j] = make_qx_quants(16, 4, &x[16 * j..], &mut l[16 * j..], Some(&weight));
            }
            let mut ls = [0i8; 16];
            let d_block = make_qx_quants(16, 32, &scales, &mut ls, Some(&sw));
            packed = Some(ls.map(|v| v as i32));
            d_out = f16_bits(d_block);
        } else {
            let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
            for j in 0..16 {
                scales[j] = make_q3_quants(16, 4, &x[16 * j..], &mut l[16 * j..]);
                let s = scales[j].abs();
                if s > amax {
                    amax = s;
                    max_scale = scales[j];
                }
            }
            if max_scale != 0.0 {
                let iscale = -32.0 / max_scale;
                // ggml stores nearest_int in an int8_t before clamping
                packed = Some(
                    scales.map(|s| (nearest_int(iscale * s) as i8 as i32).clamp(-32, 31) + 32),
                );
                d_out = f16_bits(1.0 / iscale);
            } else {
                packed = None;
                d_out = f16_bits(0.0);
            }
        }
        match &packed {
            Some(p) => pack_scales_q3(p, &mut y[96..108]),
            None => y[96..108].fill(0),
        }
        y[108..].copy_from_slice(&d_out);
        finish_q3(x, &mut l, y);
    }
}

pub fn dequantize_q3_k(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q3_K.bytes)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let hm = &b[0..32];
        let sc = &b[96..108];
        let d_all = f16_value(b[108], b[109]);
        let mut k = 0;
        let mut is = 0;
        let mut m = 1u8;
        for n in 0..2 {
            let q = &b[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * q3_scale(sc, is) as f32;
                    is += 1;
                    for i in 0..16 {
                        let lo = ((q[16 * half + i] >> shift) & 3) as i32;
                        let h = if hm[16 * half + i] & m != 0 { 0 } else { 4 };
                        y[k] = dl * (lo - h) as f32;
                        k += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

// ---------------------------------------------------------------- Q4_K and Q5_K

/// The scale/min search shared by Q4_K (nmax 15) and Q5_K (nmax 31); fills `l` with levels.
/// Long on purpose: one piece of ggml's Q4_K/Q5_K quantizers, kept in its order so the bytes
/// match llama-quantize's.
fn kx_scales(x: &[f32], qw_block: Option<&[f32]>, nmax: i32, l: &mut [u8; QK_K], head: &mut [u8]) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let (d, dmin);
    if let Some(qwb) = qw_block {
        let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
        let mut sw = [0f32; 8];
        for j in 0..8 {
            let qw = &qwb[32 * j..32 * j + 32];
            sw[j] = importance(&x[32 * j..32 * j + 32], qw, sigma2, &mut weights);
            scales[j] = make_qkx_quants(
                32,
                nmax,
                &x[32 * j..],
                &weights,
                &mut l[32 * j..],
                &mut mins[j],
                &mut laux,
                -0.9,
                0.05,
                36,
                false,
            );
        }
        let d_block = make_qp_quants(8, 63, &scales, &mut ls, &sw);
        let m_block = make_qp_quants(8, 63, &mins, &mut lm, &sw);
        if nmax == 31 {
            // quantize_row_q5_K_impl clamps to 63 here; the Q4_K one does not
            for j in 0..8 {
                ls[j] = ls[j].min(63);
                lm[j] = lm[j].min(63);
            }
        }
        d = d_block;
        dmin = m_block;
    } else {
        let (rmin, nstep) = if nmax == 15 { (-1.0, 20) } else { (-0.5, 15) };
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..8 {
            let xs = &x[32 * j..32 * j + 32];
            let av_x = (sum_squares(xs) / 32.0).sqrt();
            for i in 0..32 {
                weights[i] = av_x + xs[i].abs();
            }
            scales[j] = make_qkx_quants(
                32,
                nmax,
                xs,
                &weights,
                &mut l[32 * j..],
                &mut mins[j],
                &mut laux,
                rmin,
                0.1,
                nstep,
                false,
            );
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        for j in 0..8 {
            ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
        }
        d = max_scale / 63.0;
        dmin = max_min / 63.0;
    }
    pack_scales_k4(&ls, &lm, &mut head[4..16]);
    head[0..2].copy_from_slice(&f16_bits(d));
    head[2..4].copy_from_slice(&f16_bits(dmin));
    let (df, mf) = (f16_value(head[0], head[1]), f16_value(head[2], head[3]));
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &head[4..16]);
        let d = df * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = mf * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

pub fn quantize_q4_k(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (ib, (x, y)) in row
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q4_K.bytes))
        .enumerate()
    {
        let qwb = imatrix.map(|q| &q[QK_K * ib..QK_K * (ib + 1)]);
        kx_scales(x, qwb, 15, &mut l, &mut y[0..16]);
        let q = &mut y[16..];
        for (n, j) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                q[32 * n + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

pub fn quantize_q5_k(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (ib, (x, y)) in row
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q5_K.bytes))
        .enumerate()
    {
        let qwb = imatrix.map(|q| &q[QK_K * ib..QK_K * (ib + 1)]);
        kx_scales(x, qwb, 31, &mut l, &mut y[0..16]);
        let (qh, ql) = y[16..].split_at_mut(32);
        qh.fill(0);
        let (mut m1, mut m2) = (1u8, 2u8);
        for (k, n) in (0..QK_K).step_by(64).enumerate() {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * k + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }
}

pub fn dequantize_q4_k(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q4_K.bytes)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f16_value(b[0], b[1]);
        let min = f16_value(b[2], b[3]);
        let sc = &b[4..16];
        for n in 0..4 {
            let q = &b[16 + 32 * n..16 + 32 * n + 32];
            let [(d1, m1), (d2, m2)] = sub_scales_k4(d, min, sc, n);
            for i in 0..32 {
                y[64 * n + i] = d1 * (q[i] & 0x0f) as f32 - m1;
                y[64 * n + 32 + i] = d2 * (q[i] >> 4) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_q5_k(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q5_K.bytes)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f16_value(b[0], b[1]);
        let min = f16_value(b[2], b[3]);
        let sc = &b[4..16];
        let qh = &b[16..48];
        let (mut u1, mut u2) = (1u8, 2u8);
        for n in 0..4 {
            let ql = &b[48 + 32 * n..48 + 32 * n + 32];
            let [(d1, m1), (d2, m2)] = sub_scales_k4(d, min, sc, n);
            for i in 0..32 {
                let h1 = if qh[i] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[i] & u2 != 0 { 16 } else { 0 };
                y[64 * n + i] = d1 * ((ql[i] & 0x0f) as i32 + h1) as f32 - m1;
                y[64 * n + 32 + i] = d2 * ((ql[i] >> 4) as i32 + h2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

// ---------------------------------------------------------------- Q6_K

pub fn quantize_q6_k(row: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    for (ib, (x, y)) in row
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q6_K.bytes))
        .enumerate()
    {
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for j in 0..16 {
            // with an importance matrix ggml passes it raw, without the sigma2 weighting
            let qw = imatrix.map(|q| &q[QK_K * ib + 16 * j..QK_K * ib + 16 * j + 16]);
            let scale = make_qx_quants(16, 32, &x[16 * j..], &mut l[16 * j..], qw);
            scales[j] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            y.fill(0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        y[208..].copy_from_slice(&f16_bits(1.0 / iscale));
        for j in 0..16 {
            y[192 + j] = nearest_int(iscale * scales[j]).min(127) as i8 as u8;
        }
        let d_all = f16_value(y[208], y[209]);
        for j in 0..16 {
            let d = d_all * (y[192 + j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                let li = nearest_int(x[16 * j + i] / d).clamp(-32, 31);
                l[16 * j + i] = (li + 32) as i8;
            }
        }
        let (ql, rest) = y.split_at_mut(128);
        let qh = &mut rest[..64];
        for (n, j) in (0..QK_K).step_by(128).enumerate() {
            for i in 0..32 {
                let lv = |k: usize| l[j + i + k] as u8;
                ql[64 * n + i] = (lv(0) & 0x0f) | ((lv(64) & 0x0f) << 4);
                ql[64 * n + i + 32] = (lv(32) & 0x0f) | ((lv(96) & 0x0f) << 4);
                qh[32 * n + i] = (lv(0) >> 4)
                    | ((lv(32) >> 4) << 2)
                    | ((lv(64) >> 4) << 4)
                    | ((lv(96) >> 4) << 6);
            }
        }
    }
}

pub fn dequantize_q6_k(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q6_K.bytes)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f16_value(b[208], b[209]);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let yy = &mut y[128 * n..128 * n + 128];
            for i in 0..32 {
                let is = i / 16;
                let q1 = ((ql[i] & 0x0f) | ((qh[i] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[i + 32] & 0x0f) | (((qh[i] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) as i32 - 32;
                yy[i] = d * (sc[is] as i8) as f32 * q1 as f32;
                yy[i + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                yy[i + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                yy[i + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

// ---------------------------------------------------------------- Q8_K

pub fn dequantize_q8_k(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(Q8_K.bytes)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..QK_K {
            y[j] = d * (b[4 + j] as i8) as f32;
        }
    }
}
