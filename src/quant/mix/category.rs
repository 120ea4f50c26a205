//! A tensor's role and whether it is quantized at all, read from its name as llama.cpp's
//! `tensor_get_category` and `tensor_allows_quantization` (src/llama-quant.cpp) read it.

use crate::arch::names;

/// A tensor's role, as llama.cpp's `tensor_get_category` sees it from the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

/// How llama.cpp's `tensor_get_category` matches a block name: followed by `.weight` (the
/// attention tensors), or anywhere (the FFN names, so that `ffn_up_exps` counts too).
#[derive(Debug, Clone, Copy)]
enum Pattern {
    Weight(&'static str),
    Anywhere(&'static str),
}

impl Pattern {
    fn matches(self, name: &str) -> bool {
        match self {
            Pattern::Weight(stem) => contains_weight(name, stem),
            Pattern::Anywhere(stem) => name.contains(stem),
        }
    }
}

/// Whether `name` contains `{stem}.weight` anywhere.
fn contains_weight(name: &str, stem: &str) -> bool {
    name.contains(&format!("{stem}{}", names::WEIGHT_SUFFIX))
}

impl Category {
    pub fn of(name: &str) -> Category {
        if name == names::OUTPUT {
            return Category::Output;
        }
        if name == names::TOKEN_EMBD || name == names::PER_LAYER_TOKEN_EMBD {
            return Category::TokenEmbd;
        }
        // Substring tests in llama.cpp's order: the first that matches wins.
        const BY_SUBSTRING: &[(Pattern, Category)] = &[
            (Pattern::Weight(names::ATTN_QKV), Category::AttnQkv),
            (Pattern::Weight(names::ATTN_KV_B), Category::AttnKvB),
            (Pattern::Weight(names::ATTN_V), Category::AttnV),
            (Pattern::Weight(names::ATTN_K), Category::AttnK),
            (Pattern::Weight(names::ATTN_Q), Category::AttnQ),
            (Pattern::Weight(names::ATTN_OUTPUT), Category::AttnOutput),
            (Pattern::Anywhere(names::FFN_UP), Category::FfnUp),
            (Pattern::Anywhere(names::FFN_GATE), Category::FfnGate),
            (Pattern::Anywhere(names::FFN_DOWN), Category::FfnDown),
        ];
        BY_SUBSTRING
            .iter()
            .find(|(p, _)| p.matches(name))
            .map_or(Category::Other, |&(_, c)| c)
    }

    /// attn_v and the fused tensors that contain it count together in llama.cpp.
    pub(super) fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttnV | Category::AttnQkv | Category::AttnKvB
        )
    }
}

/// Block weights llama.cpp never quantizes (`tensor_allows_quantization`): the MoE router and
/// T5's relative position bias, matched as `{name}.weight` anywhere.
const NEVER_QUANTIZED_WEIGHTS: &[&str] = &[
    names::FFN_GATE_INP,
    names::FFN_GATE_TID2EID,
    names::ATTN_REL_B,
];

/// The rest of that list: fragments matched anywhere (every norm, whole families such as
/// gemma3n's `altup`) and the names of architectures only this table meets (RWKV's
/// `time_mix_*`, vision and audio encoders), kept as llama.cpp spells them.
const NEVER_QUANTIZED: &[&str] = &[
    "_norm.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// ggml's `ggml_n_dims`: trailing dimensions of 1 do not count.
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether llama-quantize would change this tensor's type at all (2-D+ weights that are not
/// norms, routers, positional tables and the like).
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    n_dims(dims) >= 2
        && name.ends_with("weight")
        && name != names::POSITION_EMBD
        && name != names::TOKEN_TYPES
        && !NEVER_QUANTIZED_WEIGHTS
            .iter()
            .any(|stem| contains_weight(name, stem))
        && !NEVER_QUANTIZED.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_from_names() {
        assert_eq!(Category::of("output.weight"), Category::Output);
        assert_eq!(
            Category::of("per_layer_token_embd.weight"),
            Category::TokenEmbd
        );
        assert_eq!(Category::of("blk.3.attn_qkv.weight"), Category::AttnQkv);
        assert_eq!(Category::of("blk.3.attn_v.weight"), Category::AttnV);
        assert_eq!(Category::of("blk.3.attn_v.bias"), Category::Other);
        assert_eq!(Category::of("blk.3.ffn_up_exps.weight"), Category::FfnUp);
        // the router matches ffn_gate first, as in llama.cpp
        assert_eq!(Category::of("blk.3.ffn_gate_inp.weight"), Category::FfnGate);
        assert_eq!(Category::of("blk.3.attn_norm.weight"), Category::Other);
    }

    #[test]
    fn norms_routers_and_vectors_stay() {
        assert!(allows_quantization("blk.0.attn_q.weight", &[64, 64]));
        assert!(!allows_quantization("blk.0.attn_q.weight", &[64, 1]));
        assert!(!allows_quantization("blk.0.attn_q.bias", &[64, 64]));
        assert!(!allows_quantization("blk.0.ffn_gate_inp.weight", &[64, 8]));
        assert!(!allows_quantization("blk.0.attn_rel_b.weight", &[64, 8]));
        assert!(!allows_quantization("blk.0.attn_norm.weight", &[64, 8]));
        assert!(!allows_quantization("position_embd.weight", &[64, 8]));
    }
}
