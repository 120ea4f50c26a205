//! MXFP4 (OCP microscaling FP4, gpt-oss's expert weights): blocks of 32 E2M1 values sharing
//! one power-of-two scale, quantized as ggml's `quantize_row_mxfp4_ref` and read as
//! `dequantize_row_mxfp4`.
//!
//! Written from ggml-quants.c, ggml-impl.h and ggml-common.h (llama.cpp 0.3.36). ggml stores
//! each E2M1 value doubled as a small integer (the `kvalues_mxfp4` table: 0, 1, 2, 3, 4, 6, 8,
//! 12 and their negatives) and halves the E8M0 scale instead, so every product is exact in f32.
//! The nibble layout is Q4_0's: byte j holds element j (low) and element j + 16 (high).

use super::Kernel;
use crate::gguf::GgmlType;

/// Elements per block.
pub const QK: usize = 32;

/// e (u8, E8M0 exponent), `qs[16]` (two 4-bit E2M1 codes a byte).
pub const MXFP4: Kernel = Kernel {
    ty: GgmlType::MXFP4,
    block: QK,
    bytes: 1 + QK / 2,
    quantize: Some(quantize_mxfp4),
    dequantize: dequantize_mxfp4,
};

/// E2M1 code to twice its value: sign bit 3, then 0, 0.5, 1, 1.5, 2, 3, 4, 6 doubled.
const VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of the E8M0 scale 2^(e - 127), as bits (ggml's `ggml_e8m0_to_fp32_half`): e = 0 and
/// 1 are the subnormals 2^-128 and 2^-127, every other e the normal 2^(e - 128).
#[inline]
fn half_scale(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// The exponent of a block whose largest magnitude is `amax`: its largest code (12, doubled 6)
/// times the half scale lands in [amax / 2, amax], as ggml's
/// `(uint8_t)(floorf(log2f(amax)) - 2 + 127)`. The C conversion of a float outside a byte's range
/// keeps the low byte of its 32-bit truncation on x86-64 (0 when that overflows), so the same
/// is done here for tiny (subnormal) and huge blocks.
fn exponent(amax: f32) -> u8 {
    if amax <= 0.0 {
        return 0;
    }
    let e = amax.log2().floor() - 2.0 + 127.0;
    if e.is_finite() && e.abs() < 2_147_483_648.0 {
        e as i32 as u8
    } else {
        0
    }
}

/// The code whose value times `d` is nearest `x`, the first one on a tie (ggml's
/// `best_index_mxfp4`).
#[inline]
fn best_code(x: f32, d: f32) -> u8 {
    let mut best = 0;
    let mut best_err = (VALUES[0] as f32 * d - x).abs();
    for (i, &v) in VALUES.iter().enumerate().skip(1) {
        let err = (v as f32 * d - x).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    best
}

/// MXFP4 takes no importance weights (ggml's `quantize_mxfp4` ignores them too).
pub fn quantize_mxfp4(row: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (x, y) in row.chunks_exact(QK).zip(out.chunks_exact_mut(MXFP4.bytes)) {
        let amax = x
            .iter()
            .fold(0f32, |m, v| if m < v.abs() { v.abs() } else { m });
        let e = exponent(amax);
        let d = half_scale(e);
        y[0] = e;
        for j in 0..QK / 2 {
            y[1 + j] = best_code(x[j], d) | (best_code(x[j + QK / 2], d) << 4);
        }
    }
}

pub fn dequantize_mxfp4(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks
        .chunks_exact(MXFP4.bytes)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = half_scale(b[0]);
        for (j, &q) in b[1..].iter().enumerate() {
            y[j] = VALUES[(q & 0x0f) as usize] as f32 * d;
            y[j + QK / 2] = VALUES[(q >> 4) as usize] as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_scale_is_half_of_two_to_the_e_minus_127() {
        assert_eq!(half_scale(127), 0.5);
        assert_eq!(half_scale(128), 1.0);
        assert_eq!(half_scale(2), 2f32.powi(-126));
        assert_eq!(half_scale(1), 2f32.powi(-127));
        assert_eq!(half_scale(0), 2f32.powi(-128));
        assert_eq!(half_scale(254), 2f32.powi(126));
    }

    /// A block worked by hand from ggml's definition: amax 6 gives e = floor(log2 6) - 2 + 127
    /// = 127, half scale 0.5, so the representable values are 0.5 x {0, 1, 2, 3, 4, 6, 8, 12}.
    #[test]
    fn one_block_by_hand() {
        let mut x = [0f32; QK];
        x[0] = 5.0; // 4 (code 6) and 6 (code 7) are 1 away: the first wins the tie
        x[1] = -0.3; // -0.5 (code 9) is 0.2 away, 0 (code 0) 0.3
        x[2] = 1.25; // 1 and 1.5 are 0.25 away: 1 (code 2) comes first
        x[16] = 2.9; // 3 (code 5)
        x[17] = -6.0; // -6 (code 15)
        x[18] = 0.24; // 0 (code 0): 0.5 is 0.26 away
        let mut out = [0u8; 17];
        quantize_mxfp4(&x, None, &mut out);
        assert_eq!(out[0], 127);
        assert_eq!(out[1], 6 | (5 << 4));
        assert_eq!(out[2], 9 | (15 << 4));
        assert_eq!(out[3], 2);
        assert!(out[4..].iter().all(|&b| b == 0));
        let mut back = [9f32; QK];
        dequantize_mxfp4(&out, &mut back);
        assert_eq!(&back[..3], &[4.0, -0.5, 1.0]);
        assert_eq!(&back[16..19], &[3.0, -6.0, 0.0]);
        // Code 8 is negative zero, which reads back as 0.
        dequantize_mxfp4(
            &[128, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &mut back,
        );
        assert_eq!((back[0], back[16]), (0.0, 0.0));
    }

    #[test]
    fn exponent_follows_ggml_at_the_edges() {
        assert_eq!(exponent(0.0), 0);
        assert_eq!(exponent(4.0), 127); // log2 4 = 2
        assert_eq!(exponent(3.999), 126);
        assert_eq!(exponent(2f32.powi(127)), 252);
        // 2^-130: -130 - 2 + 127 = -5, whose low byte is 251.
        assert_eq!(exponent(2f32.powi(-130)), 251);
        assert_eq!(exponent(f32::INFINITY), 0);
    }

    #[test]
    fn a_zero_block_is_exponent_zero_and_zero_codes() {
        let mut out = [1u8; 17];
        quantize_mxfp4(&[0.0; QK], None, &mut out);
        assert_eq!(out, [0u8; 17]);
    }
}
