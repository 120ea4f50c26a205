//! Tensor names as llama.cpp's loader spells them (`LLM_TENSOR_NAMES` in `llama-arch.cpp`,
//! gguf-py's `"blk.{bid}.attn_q"` templates). They are the same for every architecture the
//! forward pass runs, so they are stated here once rather than in each `formats/` file.
//!
//! A block tensor is `blk.{bid}.{name}.weight` (or `.bias`), where `name` is one of the block
//! names below; [`block_weight`] and [`block_bias`] build the full name, and
//! [`crate::blocks::block_index`] reads `bid` back.

use crate::blocks::BLOCK_PREFIX;

// === Global tensors ===
/// Token embeddings, one row per vocabulary entry; also the output head when `output.weight`
/// is absent (tied embeddings).
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// The norm after the last block.
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// The output head (vocabulary projection).
pub const OUTPUT: &str = "output.weight";
/// The output head's bias (phi2-style heads).
pub const OUTPUT_BIAS: &str = "output.bias";
/// llama3's RoPE frequency divisors, shared by every layer.
pub const ROPE_FREQS: &str = "rope_freqs.weight";
/// phi3's RoPE divisors below the original context length.
pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";
/// phi3's RoPE divisors above the original context length.
pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";

// === Block tensors (the `{name}` of `blk.{bid}.{name}.weight`) ===
pub const ATTN_NORM: &str = "attn_norm";
pub const ATTN_Q: &str = "attn_q";
pub const ATTN_K: &str = "attn_k";
pub const ATTN_V: &str = "attn_v";
/// q, k and v stacked in one matrix (phi3).
pub const ATTN_QKV: &str = "attn_qkv";
pub const ATTN_Q_NORM: &str = "attn_q_norm";
pub const ATTN_K_NORM: &str = "attn_k_norm";
pub const ATTN_OUTPUT: &str = "attn_output";
/// gpt-oss's per-head softmax sink logits.
pub const ATTN_SINKS: &str = "attn_sinks";
/// gemma2/3's norm of the attention output.
pub const POST_ATTN_NORM: &str = "post_attention_norm";
pub const FFN_NORM: &str = "ffn_norm";
pub const FFN_GATE: &str = "ffn_gate";
/// The up projection; phi3's holds the gate and up projections stacked.
pub const FFN_UP: &str = "ffn_up";
pub const FFN_DOWN: &str = "ffn_down";
/// gemma2/3's norm of the FFN output.
pub const POST_FFN_NORM: &str = "post_ffw_norm";

/// `blk.{il}.{name}`: the weight and the bias without their suffix, as messages name them.
pub fn block_tensor(il: usize, name: &str) -> String {
    format!("{BLOCK_PREFIX}{il}.{name}")
}

/// `blk.{il}.{name}.weight`.
pub fn block_weight(il: usize, name: &str) -> String {
    format!("{BLOCK_PREFIX}{il}.{name}.weight")
}

/// `blk.{il}.{name}.bias`.
pub fn block_bias(il: usize, name: &str) -> String {
    format!("{BLOCK_PREFIX}{il}.{name}.bias")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_round_trip() {
        assert_eq!(block_weight(7, FFN_DOWN), "blk.7.ffn_down.weight");
        assert_eq!(block_bias(0, ATTN_Q), "blk.0.attn_q.bias");
        assert_eq!(
            crate::blocks::block_index(&block_weight(12, ATTN_Q)),
            Some(12)
        );
    }
}
