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

    /// The weights every block must have (`blk.N.{name}.weight`), as llama.cpp's loader creates
    /// them without `TENSOR_NOT_REQUIRED`. Attention is either the fused `attn_qkv` or all of
    /// `attn_q`, `attn_k`, `attn_v`: the caller passes which the block holds.
    pub fn block_weights(&self, fused_qkv: bool) -> Vec<&'static str> {
        let mut names = vec![ATTN_NORM, ATTN_OUTPUT, FFN_NORM, FFN_UP, FFN_DOWN];
        if fused_qkv {
            names.push(ATTN_QKV);
        } else {
            names.extend([ATTN_Q, ATTN_K, ATTN_V]);
        }
        if !self.fused_gate_up {
            names.push(FFN_GATE);
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
