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
/// gemma3n/gemma4's per-layer token embeddings (a global tensor packing per-layer rows).
pub const PER_LAYER_TOKEN_EMBD: &str = "per_layer_token_embd.weight";
/// Learned absolute positions (gpt2-style models); never quantized by llama-quantize.
pub const POSITION_EMBD: &str = "position_embd.weight";
/// BERT-style token-type embeddings; never quantized by llama-quantize.
pub const TOKEN_TYPES: &str = "token_types.weight";

/// The suffix of a weight (as opposed to a bias): `blk.{bid}.{name}.weight`, `output.weight`.
pub const WEIGHT_SUFFIX: &str = ".weight";

// === Block tensors (the `{name}` of `blk.{bid}.{name}.weight`) ===
pub const ATTN_NORM: &str = "attn_norm";
pub const ATTN_Q: &str = "attn_q";
pub const ATTN_K: &str = "attn_k";
pub const ATTN_V: &str = "attn_v";
/// q, k and v stacked in one matrix (phi3).
pub const ATTN_QKV: &str = "attn_qkv";
/// MLA's stacked k and v up-projection (deepseek2).
pub const ATTN_KV_B: &str = "attn_kv_b";
/// T5's relative position bias.
pub const ATTN_REL_B: &str = "attn_rel_b";
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

// === Mixture-of-experts block tensors ===
/// The router: one row of `n_embd` per expert, whose products with a token are the logits
/// that pick its experts.
pub const FFN_GATE_INP: &str = "ffn_gate_inp";
/// The router's token-to-expert table of hash-routed layers.
pub const FFN_GATE_TID2EID: &str = "ffn_gate_tid2eid";
/// Every expert's gate projection stacked in one 3-D tensor `[n_embd, n_ff_exp, n_expert]`.
pub const FFN_GATE_EXPS: &str = "ffn_gate_exps";
/// Every expert's up projection, `[n_embd, n_ff_exp, n_expert]`.
pub const FFN_UP_EXPS: &str = "ffn_up_exps";
/// Every expert's down projection, `[n_ff_exp, n_embd, n_expert]`.
pub const FFN_DOWN_EXPS: &str = "ffn_down_exps";

/// `blk.{il}.{name}`: the weight and the bias without their suffix, as messages name them.
pub fn block_tensor(il: usize, name: &str) -> String {
    format!("{BLOCK_PREFIX}{il}.{name}")
}

/// `blk.{il}.{name}.weight`.
pub fn block_weight(il: usize, name: &str) -> String {
    format!("{BLOCK_PREFIX}{il}.{name}{WEIGHT_SUFFIX}")
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
