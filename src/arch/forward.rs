//! The `[forward]` table of `formats/<arch>.toml`: how gguf-prune's forward pass computes one
//! decoder block of the architecture (llama.cpp's `src/models/<arch>.cpp`), as data.
//!
//! Only what the graph does is stated here. What the same file's `[layers]` table already says
//! is not repeated: the sliding-window layers follow its sliding-window role and the 27B
//! attention scale its `[[layers.depth]]` rule; [`super::format::parse`] copies both into the
//! [`ForwardSpec`] it returns.

use serde::Deserialize;

use super::format::Role;
use super::names::*;
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Metadata, Value};

/// `{arch}.expert_count`: experts per MoE block.
pub const EXPERT_COUNT: &str = "expert_count";
/// `{arch}.expert_used_count`: experts each token is routed to (top-k).
pub const EXPERT_USED_COUNT: &str = "expert_used_count";
/// `{arch}.expert_feed_forward_length`: the width of each expert's FFN.
pub const EXPERT_FEED_FORWARD_LENGTH: &str = "expert_feed_forward_length";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    GeluTanh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNorm {
    None,
    Optional,
    Required,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionScale {
    /// 1/sqrt(head_dim).
    HeadDim,
    /// gemma: 1/sqrt(head_dim), but 1/sqrt(n_embd/n_head) at the depth `[[layers.depth]]`
    /// lists (the 27B model).
    Gemma,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingScale {
    None,
    SqrtNEmbd,
}

/// How RoPE pairs the values of a head (llama.cpp `LLAMA_ROPE_TYPE_NORM` / `_NEOX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Consecutive pairs (2i, 2i+1).
    Norm,
    /// Pairs (i, i + n_rot/2).
    Neox,
}

/// Whether an architecture's blocks are mixtures of experts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Experts {
    /// Every block routes to experts; llama.cpp refuses `expert_count` 0 (qwen3moe).
    Required,
    /// Every block routes to experts when `{arch}.expert_count` is above 0, else every block is
    /// dense (llama: Mixtral's layout).
    Optional,
}

/// How the router's logits become the experts' weights (llama.cpp
/// `llama_expert_gating_func_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gating {
    /// Softmax over every expert's logit; the top-k probabilities are the weights (`SOFTMAX`).
    Softmax,
    /// Top-k by logit, then softmax over the selected logits (`SOFTMAX_WEIGHT`, gpt-oss). The
    /// same weights as `softmax` followed by `normalize`.
    SoftmaxSelected,
    /// An independent sigmoid per expert's logit (`SIGMOID`, DeepSeek-V3 style).
    Sigmoid,
}

/// Which key gives the width of each expert's FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpertWidth {
    /// `{arch}.expert_feed_forward_length`; without it `feed_forward_length /
    /// expert_used_count` (qwen3moe).
    ExpertFeedForwardLength,
    /// `{arch}.feed_forward_length` (llama with experts).
    FeedForwardLength,
}

/// The `[forward.moe]` table: how a mixture-of-experts FFN routes each token (llama.cpp
/// `build_moe_ffn`): router logits, gating, top-k (`{arch}.expert_used_count`), optional
/// normalization of the selected weights, then the weighted sum of the selected experts' gated
/// FFNs (with the block's `activation`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeSpec {
    pub experts: Experts,
    pub gating: Gating,
    /// Divide the selected experts' weights by their sum (llama.cpp's `norm_w`).
    pub normalize: bool,
    pub expert_width: ExpertWidth,
}

/// How one architecture's decoder block is computed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    pub activation: Activation,
    /// RoPE pairing; `None` for no RoPE (`rope = "none"`).
    #[serde(deserialize_with = "rope_style")]
    pub rope: Option<RopeStyle>,
    pub embedding_scale: EmbeddingScale,
    #[serde(default)]
    pub post_norms: bool,
    /// phi3: `ffn_up` holds the gate and up projections stacked, and there is no `ffn_gate`.
    #[serde(default)]
    pub fused_gate_up: bool,
    pub qk_norm: QkNorm,
    pub attention_scale: AttentionScale,
    #[serde(default)]
    pub attn_softcap: bool,
    /// gpt-oss: every block has `attn_sinks`, one logit per head added to each attention
    /// softmax's denominator.
    #[serde(default)]
    pub attn_sinks: bool,
    /// granite: the `embedding_scale`, `residual_scale`, `attention.scale` and `logit_scale`
    /// multipliers (llama.cpp's "For Granite architectures" steps).
    #[serde(default)]
    pub granite_scales: bool,
    /// The window of sliding layers when `{arch}.attention.sliding_window` is absent.
    #[serde(default)]
    pub swa_default_window: Option<u32>,
    /// RoPE base of sliding layers without `{arch}.rope.freq_base_swa`: "global" or a number.
    #[serde(default)]
    pub swa_rope_base: Option<String>,
    /// Mixture-of-experts FFN; `None`: every block's FFN is dense.
    #[serde(default)]
    pub moe: Option<MoeSpec>,
    /// From `[layers]`: the sliding-window role (the one llama.cpp reads from
    /// `{arch}.attention.sliding_window_pattern`); None when no layer slides.
    #[serde(skip)]
    pub sliding_window: Option<Role>,
    /// From `[layers]`: every depth listed under `[[layers.depth]]`.
    #[serde(skip)]
    pub depth_changes: Vec<u64>,
}

fn rope_style<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<RopeStyle>, D::Error> {
    let s = <String as Deserialize>::deserialize(d)?;
    match s.as_str() {
        "norm" => Ok(Some(RopeStyle::Norm)),
        "neox" => Ok(Some(RopeStyle::Neox)),
        "none" => Ok(None),
        other => Err(serde::de::Error::custom(format!(
            "rope = {other:?}: expected norm, neox or none"
        ))),
    }
}

impl ForwardSpec {
    /// The recipe for `arch`, or `Error::Unsupported` naming it.
    pub fn for_arch(arch: &str) -> Result<ForwardSpec> {
        let formats = super::format::formats()?;
        formats
            .find(arch)
            .and_then(|f| f.forward.clone())
            .ok_or_else(|| Error::Unsupported {
                arch: arch.to_string(),
                what: format!(
                    "the forward pass (scoring, perplexity) is not implemented for it; supported: {}",
                    Self::supported().collect::<Vec<_>>().join(", ")
                ),
            })
    }

    /// Architectures with a `[forward]` table.
    pub fn supported() -> impl Iterator<Item = &'static str> {
        let archs = super::format::formats().map_or(&[][..], |f| &f.archs[..]);
        archs
            .iter()
            .filter(|f| f.forward.is_some())
            .flat_map(|f| f.layers.architectures.iter().map(String::as_str))
    }

    /// Whether a model of this architecture (`arch`, with metadata `meta`) has
    /// mixture-of-experts blocks: always where they are required, else when
    /// `{arch}.expert_count` is above 0.
    pub fn has_experts(&self, arch: &str, meta: &Metadata) -> bool {
        match &self.moe {
            None => false,
            Some(moe) => {
                let count = meta.get(&arch_key(arch, EXPERT_COUNT));
                moe.experts == Experts::Required || count.and_then(Value::to_u64).unwrap_or(0) > 0
            }
        }
    }

    /// The weights every block must have (`blk.N.{name}.weight`), as llama.cpp's loader creates
    /// them without `TENSOR_NOT_REQUIRED`. Attention is either the fused `attn_qkv` or all of
    /// `attn_q`, `attn_k`, `attn_v`, and the FFN dense or experts: the caller passes which the
    /// block holds ([`ForwardSpec::has_experts`]).
    pub fn block_weights(&self, fused_qkv: bool, experts: bool) -> Vec<&'static str> {
        // In this order: the first missing one is the one an error names.
        let moe = self.moe.as_ref().filter(|_| experts);
        let mut names = vec![ATTN_NORM, ATTN_OUTPUT, FFN_NORM];
        match moe {
            Some(_) => names.extend([FFN_GATE_INP, FFN_UP_EXPS, FFN_DOWN_EXPS]),
            None => names.extend([FFN_UP, FFN_DOWN]),
        }
        if fused_qkv {
            names.push(ATTN_QKV);
        } else {
            names.extend([ATTN_Q, ATTN_K, ATTN_V]);
        }
        match moe {
            // llama.cpp's llama creates ffn_gate_exps TENSOR_NOT_REQUIRED; qwen3moe, whose
            // blocks are always experts, requires it.
            Some(moe) if moe.experts == Experts::Required => names.push(FFN_GATE_EXPS),
            Some(_) => {}
            None if !self.fused_gate_up => names.push(FFN_GATE),
            None => {}
        }
        if self.qk_norm == QkNorm::Required {
            names.extend([ATTN_Q_NORM, ATTN_K_NORM]);
        }
        if self.post_norms {
            names.extend([POST_ATTN_NORM, POST_FFN_NORM]);
        }
        if self.attn_sinks {
            names.push(ATTN_SINKS);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_weights_dense_and_experts() {
        let llama = ForwardSpec::for_arch("llama").unwrap();
        let dense = [ATTN_NORM, ATTN_OUTPUT, FFN_NORM, FFN_UP, FFN_DOWN];
        let attn = [ATTN_Q, ATTN_K, ATTN_V];
        let want: Vec<&str> = dense
            .iter()
            .chain(&attn)
            .chain(&[FFN_GATE])
            .copied()
            .collect();
        assert_eq!(llama.block_weights(false, false), want);
        let experts = [FFN_GATE_INP, FFN_UP_EXPS, FFN_DOWN_EXPS];
        let want: Vec<&str> = dense[..3]
            .iter()
            .chain(&experts)
            .chain(&attn)
            .copied()
            .collect();
        assert_eq!(llama.block_weights(false, true), want);
        let qwen3moe = ForwardSpec::for_arch("qwen3moe").unwrap();
        assert!(qwen3moe.block_weights(false, true).contains(&FFN_GATE_EXPS));

        let mut meta = Metadata::new();
        assert!(!llama.has_experts("llama", &meta));
        assert!(qwen3moe.has_experts("qwen3moe", &meta));
        meta.set(&arch_key("llama", EXPERT_COUNT), Value::U32(8));
        assert!(llama.has_experts("llama", &meta));
    }
}
