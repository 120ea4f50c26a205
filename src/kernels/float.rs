//! The float types (F32, F16, BF16): one element a "block", converted as ggml converts them.

use super::{f16_bits, f16_value, Kernel};
use crate::gguf::GgmlType;

pub const F32: Kernel = Kernel {
    ty: GgmlType::F32,
    block: 1,
    bytes: 4,
    quantize: Some(quantize_f32),
    dequantize: dequantize_f32,
};

pub const F16: Kernel = Kernel {
    ty: GgmlType::F16,
    block: 1,
    bytes: 2,
    quantize: Some(quantize_f16),
    dequantize: dequantize_f16,
};

pub const BF16: Kernel = Kernel {
    ty: GgmlType::BF16,
    block: 1,
    bytes: 2,
    quantize: Some(quantize_bf16),
    dequantize: dequantize_bf16,
};

/// f32 to bf16 as ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN made quiet.
#[inline]
fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

fn quantize_f32(row: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(F32.bytes).zip(row) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

fn quantize_f16(row: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (o, &v) in out.chunks_exact_mut(F16.bytes).zip(row) {
        o.copy_from_slice(&f16_bits(v));
    }
}

fn quantize_bf16(row: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (o, &v) in out.chunks_exact_mut(BF16.bytes).zip(row) {
        o.copy_from_slice(&bf16_bits(v).to_le_bytes());
    }
}

fn dequantize_f32(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(F32.bytes)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

fn dequantize_f16(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(F16.bytes)) {
        *o = f16_value(c[0], c[1]);
    }
}

fn dequantize_bf16(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(BF16.bytes)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}
