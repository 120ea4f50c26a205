//! The hyper-parameters read from a model's metadata, following llama.cpp's loader
//! (`llama-model.cpp`, `src/models/`), for the per-architecture recipe ([`ForwardSpec`], read
//! with the rest of `formats/<arch>.toml` by [`crate::arch::format`]).
//!
//! Over 600 lines: nearly half is the tests, one per architecture's keys.

pub use crate::arch::forward::{Activation, AttentionScale, EmbeddingScale, ForwardSpec, QkNorm};

use crate::arch::format::{self, Role, SLIDING_WINDOW_PATTERN};
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Metadata, Value};

use super::ops::Yarn;

/// Hyper-parameters of one model, resolved per layer.
#[derive(Clone, Debug)]
pub struct Hparams {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    n_head_kv: Vec<usize>,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_rot: usize,
    pub n_ff: usize,
    pub eps: f32,
    pub rope_base: f32,
    pub rope_base_swa: f32,
    pub rope_freq_scale: f32,
    /// Scale of RoPE's cos and sin (llama.cpp's `attn_factor` as ggml_rope_ext gets it):
    /// `{arch}.rope.scaling.attn_factor` (e.g. phi3 long-context models), under YaRN times
    /// llama.cpp's magnitude correction divided by the one ggml applies again (about 1). q and k
    /// are both multiplied by it.
    pub rope_attn_factor: f32,
    /// YaRN's ramp between extrapolated and interpolated angles, for
    /// `rope.scaling.type = yarn` (llama.cpp's defaults: the llama and openai-moe loaders read
    /// no `yarn_*` keys).
    pub rope_yarn: Option<Yarn>,
    /// Context length beyond which llama.cpp uses phi3's long RoPE factors instead of the short
    /// ones (`rope.scaling.original_context_length`, else `context_length`).
    pub n_ctx_orig: usize,
    /// Per layer: sliding-window attention.
    pub swa: Vec<bool>,
    pub swa_window: usize,
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    pub embedding_scale: f32,
    /// The experts of mixture-of-experts blocks; `None`: dense blocks.
    pub moe: Option<super::moe::MoeHparams>,
    /// Multiplies each block half's output before it joins the residual stream (granite's
    /// `residual_scale`; 1 elsewhere).
    pub residual_scale: f32,
    /// Multiplies the logits (granite's `1 / logit_scale`; 1 elsewhere).
    pub logit_multiplier: f32,
}

fn scalar(meta: &Metadata, key: &str) -> Result<Option<f64>> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v.to_f64().map(Some).ok_or_else(|| Error::KeyType {
            key: key.to_string(),
            expected: "a number",
            found: v.display(4),
        }),
    }
}

/// A number where 0 means "not set" (llama.cpp's scales and soft-caps).
fn nonzero(meta: &Metadata, key: &str) -> Result<Option<f32>> {
    Ok(scalar(meta, key)?.filter(|&v| v != 0.0).map(|v| v as f32))
}

/// A key that is either one number for every layer or a per-layer array (llama.cpp `get_key_or_arr`).
pub(super) fn per_layer(meta: &Metadata, key: &str, n_layer: usize) -> Result<Option<Vec<usize>>> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => {
            if a.len() != n_layer {
                return Err(Error::PerLayerLength {
                    key: key.to_string(),
                    expected: n_layer,
                    got: a.len(),
                });
            }
            (0..a.len())
                .map(|i| {
                    a.int_at(i)
                        .and_then(|v| usize::try_from(v).ok())
                        .ok_or_else(|| Error::Forward(format!("{key}[{i}] is not a count")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some)
        }
        Some(v) => {
            let n = v.to_u64().ok_or_else(|| Error::KeyType {
                key: key.to_string(),
                expected: "an integer or array",
                found: v.display(4),
            })?;
            Ok(Some(vec![n as usize; n_layer]))
        }
    }
}

/// Per layer, whether it slides: the per-layer array under the pattern key, else the role's
/// formula with the period that key holds or, without it, the role's default.
fn sliding_layers(arch: &str, meta: &Metadata, role: &Role, n_layer: usize) -> Result<Vec<bool>> {
    let pattern_key = format::key(SLIDING_WINDOW_PATTERN, arch);
    let mut swa = vec![false; n_layer];
    match meta.get(&pattern_key) {
        Some(Value::Array(a)) => {
            if a.len() < n_layer {
                return Err(Error::PerLayerLength {
                    key: pattern_key,
                    expected: n_layer,
                    got: a.len(),
                });
            }
            for (il, s) in swa.iter_mut().enumerate() {
                *s = a
                    .int_at(il)
                    .ok_or_else(|| Error::Forward(format!("{pattern_key}[{il}] is not a bool")))?
                    != 0;
            }
        }
        other => {
            let period = match other {
                Some(v) => v.to_u64().ok_or_else(|| Error::KeyType {
                    key: pattern_key.clone(),
                    expected: "a bool array or a period",
                    found: v.display(4),
                })?,
                None => role.default.unwrap_or(0),
            };
            for (il, s) in swa.iter_mut().enumerate() {
                *s = role.formula.eval(il as u64, period, n_layer as u64);
            }
        }
    }
    Ok(swa)
}

/// Head counts and sizes of one model.
struct Heads {
    n_head: usize,
    n_head_kv: Vec<usize>,
    head_dim_k: usize,
    head_dim_v: usize,
    n_rot: usize,
}

/// RoPE's base, scaling and original context.
struct RopeHparams {
    base: f32,
    freq_scale: f32,
    attn_factor: f32,
    n_ctx_orig: usize,
    yarn: Option<Yarn>,
}

/// Which layers slide, their window and their RoPE base.
struct SlidingHparams {
    swa: Vec<bool>,
    window: usize,
    rope_base: f32,
}

impl Hparams {
    pub fn read(arch: &str, meta: &Metadata, spec: &ForwardSpec) -> Result<Hparams> {
        let k = |s: &str| arch_key(arch, s);
        let n_layer = crate::blocks::block_count(meta)?;
        let n_embd = meta.get_u32(&k("embedding_length"))? as usize;
        if n_embd == 0 {
            return Err(Error::Hparam {
                key: k("embedding_length"),
                value: "0".into(),
                why: "a model has at least one dimension".into(),
            });
        }
        let Heads {
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_rot,
        } = read_heads(arch, meta, n_layer, n_embd)?;
        let n_ff = per_layer(meta, &k("feed_forward_length"), n_layer)?
            .map_or(0, |v| v.into_iter().max().unwrap_or(0));
        let eps = scalar(meta, &k("attention.layer_norm_rms_epsilon"))?.ok_or_else(|| {
            Error::MissingKey {
                key: k("attention.layer_norm_rms_epsilon"),
            }
        })? as f32;
        let rope = read_rope(arch, meta)?;
        let sliding = read_sliding(arch, meta, spec, n_layer, rope.base)?;
        let attn_scale = attention_scale(spec, n_layer, n_embd, n_head, head_dim_k);
        let nonzero = |key: &str| nonzero(meta, &k(key));
        let attn_softcap = match spec.attn_softcap {
            true => nonzero("attn_logit_softcapping")?,
            false => None,
        };
        let final_softcap = nonzero("final_logit_softcapping")?;
        let granite = if spec.granite_scales {
            read_granite(arch, meta, n_layer)?
        } else {
            GraniteScales::default()
        };
        let embedding_scale = granite.embedding.unwrap_or(match spec.embedding_scale {
            EmbeddingScale::None => 1.0,
            EmbeddingScale::SqrtNEmbd => (n_embd as f32).sqrt(),
        });
        let attn_scale = granite.attention.unwrap_or(attn_scale);
        let hp = Hparams {
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_rot,
            n_ff,
            eps,
            rope_base: rope.base,
            rope_base_swa: sliding.rope_base,
            rope_freq_scale: rope.freq_scale,
            rope_attn_factor: rope.attn_factor,
            rope_yarn: rope.yarn,
            n_ctx_orig: rope.n_ctx_orig,
            swa: sliding.swa,
            swa_window: sliding.window,
            attn_scale,
            attn_softcap,
            final_softcap,
            embedding_scale,
            moe: super::moe::MoeHparams::read(arch, meta, spec, n_layer)?,
            residual_scale: granite.residual,
            logit_multiplier: granite.logit_multiplier,
        };
        hp.check_ranges(arch, spec)?;
        Ok(hp)
    }

    /// Refuses values that would make every result NaN or nonsense: zero head sizes, and
    /// epsilons, RoPE bases, scales and soft-caps that are not finite and positive.
    fn check_ranges(&self, arch: &str, spec: &ForwardSpec) -> Result<()> {
        let k = |s: &str| arch_key(arch, s);
        let bad = |key: String, value: String, why: &str| {
            Err(Error::Hparam {
                key,
                value,
                why: why.to_string(),
            })
        };
        for (key, v) in [
            ("attention.key_length", self.head_dim_k),
            ("attention.value_length", self.head_dim_v),
        ] {
            if v == 0 {
                return bad(k(key), "0".into(), "a head has at least one dimension");
            }
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        let mut checks = vec![
            ("attention.layer_norm_rms_epsilon", self.eps),
            ("rope.scaling.attn_factor", self.rope_attn_factor),
            ("rope.scaling.factor", 1.0 / self.rope_freq_scale),
        ];
        if spec.rope.is_some() {
            checks.push(("rope.freq_base", self.rope_base));
            checks.push(("rope.freq_base_swa", self.rope_base_swa));
        }
        checks.extend(self.attn_softcap.map(|v| ("attn_logit_softcapping", v)));
        checks.push(("residual_scale", self.residual_scale));
        checks.push(("logit_scale", 1.0 / self.logit_multiplier));
        checks.extend(self.final_softcap.map(|v| ("final_logit_softcapping", v)));
        match checks.into_iter().find(|&(_, v)| !positive(v)) {
            Some((key, v)) => bad(k(key), v.to_string(), "expected a finite number above 0"),
            None => Ok(()),
        }
    }

    pub fn n_head_kv(&self, il: usize) -> usize {
        self.n_head_kv[il]
    }

    /// The attention window of layer `il` (`None`: full causal attention).
    pub fn swa_window(&self, il: usize) -> Option<usize> {
        self.swa[il].then_some(self.swa_window)
    }

    pub fn rope_base(&self, il: usize) -> f32 {
        if self.swa[il] {
            self.rope_base_swa
        } else {
            self.rope_base
        }
    }
}

/// The head counts and sizes: one head count for every layer, key/value counts per layer
/// dividing it, head sizes from their keys or `n_embd / n_head`, and the rotated dimensions.
fn read_heads(arch: &str, meta: &Metadata, n_layer: usize, n_embd: usize) -> Result<Heads> {
    let k = |s: &str| arch_key(arch, s);
    let heads =
        per_layer(meta, &k("attention.head_count"), n_layer)?.ok_or_else(|| Error::MissingKey {
            key: k("attention.head_count"),
        })?;
    let n_head = heads.first().copied().unwrap_or(0);
    if n_head == 0 || heads.iter().any(|&h| h != n_head) {
        return Err(Error::Unsupported {
            arch: arch.into(),
            what: format!("attention.head_count {heads:?}: per-layer or zero head counts"),
        });
    }
    let key_length = scalar(meta, &k("attention.key_length"))?;
    if key_length.is_none() && !n_embd.is_multiple_of(n_head) {
        return Err(Error::Hparam {
            key: k("attention.head_count"),
            value: n_head.to_string(),
            why: format!("does not divide embedding_length {n_embd}"),
        });
    }
    let n_head_kv = per_layer(meta, &k("attention.head_count_kv"), n_layer)?
        .unwrap_or_else(|| vec![n_head; n_layer]);
    if let Some(bad) = n_head_kv.iter().find(|&&h| h == 0 || n_head % h != 0) {
        return Err(Error::Unsupported {
            arch: arch.into(),
            what: format!("head_count_kv {bad} does not divide head_count {n_head}"),
        });
    }
    let head_dim_k = key_length.map_or(n_embd / n_head, |v| v as usize);
    let head_dim_v =
        scalar(meta, &k("attention.value_length"))?.map_or(n_embd / n_head, |v| v as usize);
    let n_rot = scalar(meta, &k("rope.dimension_count"))?.map_or(head_dim_k, |v| v as usize);
    if n_rot > head_dim_k || n_rot % 2 != 0 {
        return Err(Error::Forward(format!(
            "rope.dimension_count {n_rot} does not fit head size {head_dim_k}"
        )));
    }
    Ok(Heads {
        n_head,
        n_head_kv,
        head_dim_k,
        head_dim_v,
        n_rot,
    })
}

/// RoPE's base, its linear or YaRN scaling (other scalings are refused), its attention factor
/// and the original context, as llama.cpp's loader (`llama-model.cpp`) and context
/// (`llama-context.cpp`) set them.
fn read_rope(arch: &str, meta: &Metadata) -> Result<RopeHparams> {
    let k = |s: &str| arch_key(arch, s);
    let base = scalar(meta, &k("rope.freq_base"))?.unwrap_or(10000.0) as f32;
    let yarn = match meta.get(&k("rope.scaling.type")).and_then(Value::as_str) {
        None | Some("none") | Some("linear") => false,
        Some("yarn") => true,
        Some(other) => {
            return Err(Error::Unsupported {
                arch: arch.into(),
                what: format!("rope scaling {other:?}"),
            })
        }
    };
    let factor = match scalar(meta, &k("rope.scaling.factor"))? {
        Some(f) => Some(f),
        None => scalar(meta, &k("rope.scale_linear"))?,
    };
    let rope_freq_scale = factor.filter(|&f| f != 0.0).map_or(1.0, |f| 1.0 / f) as f32;
    let key_attn_factor = scalar(meta, &k("rope.scaling.attn_factor"))?.unwrap_or(1.0) as f32;
    let original = scalar(meta, &k("rope.scaling.original_context_length"))?;
    let train = scalar(meta, &k("context_length"))?;
    let n_ctx_orig = original.or(train).map_or(usize::MAX, |v| v as usize);
    if !yarn {
        return Ok(RopeHparams {
            base,
            freq_scale: rope_freq_scale,
            attn_factor: key_attn_factor,
            n_ctx_orig,
            yarn: None,
        });
    }
    // The context YaRN corrects for: llama.cpp's `n_ctx_orig_yarn`, the training context when
    // the original one is missing or 0.
    let yarn_ctx = original
        .filter(|&v| v != 0.0)
        .or(train)
        .ok_or_else(|| Error::MissingKey {
            key: k("context_length"),
        })? as usize;
    Ok(RopeHparams {
        base,
        freq_scale: rope_freq_scale,
        attn_factor: yarn_attn_factor(1.0 / rope_freq_scale) * key_attn_factor,
        n_ctx_orig,
        yarn: Some(Yarn {
            ext_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: yarn_ctx,
        }),
    })
}

/// llama.cpp's YaRN attention factor before `rope.scaling.attn_factor`: its magnitude
/// correction `1 + 0.1 ln factor` (1 when not stretching), divided by the one ggml's rope
/// multiplies in again, in llama-context.cpp's float order.
fn yarn_attn_factor(factor: f32) -> f32 {
    let mscale = if factor <= 1.0 {
        1.0
    } else {
        0.1 * factor.ln() + 1.0
    };
    mscale * (1.0 / (1.0 + 0.1 * factor.ln()))
}

/// The recipe's attention scale (granite's `attention.scale` may replace it).
fn attention_scale(
    spec: &ForwardSpec,
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    head_dim_k: usize,
) -> f32 {
    match spec.attention_scale {
        AttentionScale::HeadDim => 1.0 / (head_dim_k as f32).sqrt(),
        AttentionScale::Gemma => {
            if spec.depth_changes.contains(&(n_layer as u64)) {
                1.0 / ((n_embd / n_head) as f32).sqrt()
            } else {
                1.0 / (head_dim_k as f32).sqrt()
            }
        }
    }
}

/// granite's multipliers (llama.cpp `LLM_KV_EMBEDDING_SCALE`, `_RESIDUAL_SCALE`,
/// `_ATTENTION_SCALE`, `_LOGIT_SCALE`; 0 or absent means "not scaled" for the first three,
/// `logit_scale` is required).
struct GraniteScales {
    embedding: Option<f32>,
    attention: Option<f32>,
    residual: f32,
    logit_multiplier: f32,
}

impl Default for GraniteScales {
    fn default() -> Self {
        GraniteScales {
            embedding: None,
            attention: None,
            residual: 1.0,
            logit_multiplier: 1.0,
        }
    }
}

/// Reads granite's multipliers, refusing the granite features the forward pass does not have:
/// layers without RoPE (`attention.rope_pattern` with a 0) and deepstack inputs
/// (`deepstack_mapping` with an entry >= 0, vision models).
fn read_granite(arch: &str, meta: &Metadata, n_layer: usize) -> Result<GraniteScales> {
    let k = |s: &str| arch_key(arch, s);
    let nonzero = |key: &str| nonzero(meta, &k(key));
    let logit_scale = nonzero("logit_scale")?.ok_or_else(|| Error::MissingKey {
        key: k("logit_scale"),
    })?;
    let refuse = |key: &str, what: &str, bad: fn(i128) -> bool| -> Result<()> {
        let Some(Value::Array(a)) = meta.get(&k(key)) else {
            return Ok(());
        };
        match (0..a.len().min(n_layer)).find(|&i| a.int_at(i).is_some_and(bad)) {
            Some(il) => Err(Error::Unsupported {
                arch: arch.into(),
                what: format!("{what} ({}[{il}])", k(key)),
            }),
            None => Ok(()),
        }
    };
    refuse("attention.rope_pattern", "layers without RoPE", |v| v == 0)?;
    refuse("deepstack_mapping", "deepstack inputs", |v| v >= 0)?;
    Ok(GraniteScales {
        embedding: nonzero("embedding_scale")?,
        attention: nonzero("attention.scale")?,
        residual: nonzero("residual_scale")?.unwrap_or(1.0),
        logit_multiplier: 1.0 / logit_scale,
    })
}

/// Which layers use sliding-window attention, the window, and their RoPE base (`rope_base`
/// unless the file or the recipe gives another).
fn read_sliding(
    arch: &str,
    meta: &Metadata,
    spec: &ForwardSpec,
    n_layer: usize,
    rope_base: f32,
) -> Result<SlidingHparams> {
    let k = |s: &str| arch_key(arch, s);
    // Sliding window: llama.cpp `load_swa_pattern` reads a per-layer bool array, else a
    // period from the same key, else the architecture's period (its sliding-window role).
    let window_key = k("attention.sliding_window");
    let window = scalar(meta, &window_key)?
        .map(|v| v as usize)
        .or(spec.swa_default_window.map(|v| v as usize));
    let role = spec.sliding_window.as_ref().filter(|r| {
        let required = r.requires_positive.as_deref();
        window.is_some_and(|w| w > 0)
            && required.is_none_or(|t| meta.contains(&format::key(t, arch)))
    });
    let swa_on = role.is_some();
    let swa = match role {
        Some(role) => sliding_layers(arch, meta, role, n_layer)?,
        None => vec![false; n_layer],
    };
    let rope_base_swa = match scalar(meta, &k("rope.freq_base_swa"))? {
        Some(v) => v as f32,
        None => match spec.swa_rope_base.as_deref() {
            None | Some("global") => rope_base,
            Some(num) => num.parse().map_err(|_| {
                Error::Forward(format!("formats/{arch}.toml: swa_rope_base {num:?}"))
            })?,
        },
    };
    Ok(SlidingHparams {
        swa,
        window: if swa_on { window.unwrap_or(0) } else { 0 },
        rope_base: rope_base_swa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::RopeStyle;
    use crate::gguf::{Array, Value};

    fn meta(arch: &str, extra: &[(&str, Value)]) -> Metadata {
        let mut m = Metadata::new();
        m.set(
            "general.architecture",
            Value::String(arch.as_bytes().to_vec()),
        );
        m.set(&arch_key(arch, "block_count"), Value::U32(12));
        m.set(&arch_key(arch, "embedding_length"), Value::U32(64));
        m.set(&arch_key(arch, "attention.head_count"), Value::U32(4));
        m.set(
            &arch_key(arch, "attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        );
        for (k, v) in extra {
            m.set(&arch_key(arch, k), v.clone());
        }
        m
    }

    fn hp(arch: &str, extra: &[(&str, Value)]) -> Hparams {
        let spec = ForwardSpec::for_arch(arch).unwrap();
        Hparams::read(arch, &meta(arch, extra), &spec).unwrap()
    }

    #[test]
    fn every_format_parses() {
        let supported: Vec<&str> = ForwardSpec::supported().collect();
        assert_eq!(
            supported,
            [
                "gemma2",
                "gemma3",
                "granite_swa",
                "llama",
                "phi3",
                "qwen2",
                "qwen3",
                "qwen3moe"
            ]
        );
        for arch in supported {
            ForwardSpec::for_arch(arch).unwrap();
        }
        let s = format::parse("x", "[layers]\narchitectures = [\"x\"]\n[forward]\nactivation = \"silu\"\nrope = \"none\"\nembedding_scale = \"none\"\nqk_norm = \"none\"\nattention_scale = \"head_dim\"\n").unwrap();
        assert_eq!(s.forward.unwrap().rope, None);
        assert!(
            matches!(ForwardSpec::for_arch("mamba"), Err(Error::Unsupported { arch, .. }) if arch == "mamba")
        );
    }

    #[test]
    fn gemma3_period_and_rope_bases() {
        let h = hp(
            "gemma3",
            &[
                ("attention.sliding_window", Value::U32(512)),
                ("rope.freq_base", Value::F32(1e6)),
            ],
        );
        let global: Vec<usize> = (0..12).filter(|&i| !h.swa[i]).collect();
        assert_eq!(global, vec![5, 11]);
        assert_eq!(h.swa_window(0), Some(512));
        assert_eq!(h.swa_window(5), None);
        assert_eq!(h.rope_base(0), 10000.0);
        assert_eq!(h.rope_base(5), 1e6);
        assert_eq!(h.embedding_scale, 8.0);
        // Without the window key gemma3 has no sliding layers.
        assert!(hp("gemma3", &[]).swa.iter().all(|s| !s));
    }

    #[test]
    fn pattern_array_wins_over_period() {
        let mut pat = vec![true; 12];
        pat[3] = false;
        let h = hp(
            "gemma3",
            &[
                ("attention.sliding_window", Value::U32(512)),
                (
                    "attention.sliding_window_pattern",
                    Value::Array(Array::Bool(pat)),
                ),
            ],
        );
        assert_eq!((0..12).filter(|&i| !h.swa[i]).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn gemma2_defaults() {
        let h = hp(
            "gemma2",
            &[
                ("attn_logit_softcapping", Value::F32(50.0)),
                ("final_logit_softcapping", Value::F32(30.0)),
                ("rope.freq_base", Value::F32(1e4)),
            ],
        );
        assert_eq!(
            (0..4).map(|i| h.swa[i]).collect::<Vec<_>>(),
            vec![true, false, true, false]
        );
        assert_eq!(h.swa_window, 4096);
        assert_eq!(h.attn_softcap, Some(50.0));
        assert_eq!(h.final_softcap, Some(30.0));
        assert_eq!(h.rope_base(0), 1e4);
        // key_length 32 != n_embd / n_head = 16: 1/sqrt(key_length), except at 46 blocks (27B).
        let h = hp("gemma2", &[("attention.key_length", Value::U32(32))]);
        assert_eq!(h.attn_scale, 1.0 / 32f32.sqrt());
        let h = hp(
            "gemma2",
            &[
                ("attention.key_length", Value::U32(32)),
                ("block_count", Value::U32(46)),
            ],
        );
        assert_eq!(h.attn_scale, 0.25);
    }

    #[test]
    fn qwen_phi_llama_recipes() {
        for arch in ["qwen2", "qwen3", "phi3"] {
            assert_eq!(
                ForwardSpec::for_arch(arch).unwrap().rope,
                Some(RopeStyle::Neox),
                "{arch}"
            );
        }
        assert_eq!(
            ForwardSpec::for_arch("llama").unwrap().rope,
            Some(RopeStyle::Norm)
        );
        assert_eq!(
            ForwardSpec::for_arch("qwen3").unwrap().qk_norm,
            QkNorm::Required
        );
        let h = hp("qwen2", &[("attention.head_count_kv", Value::U32(2))]);
        assert_eq!((h.n_head_kv(0), h.head_dim_k, h.attn_scale), (2, 16, 0.25));
        assert!(h.swa.iter().all(|s| !s));
        assert_eq!((h.rope_attn_factor, h.n_ctx_orig), (1.0, usize::MAX));
        let h = hp(
            "phi3",
            &[
                ("context_length", Value::U32(131072)),
                ("rope.scaling.original_context_length", Value::U32(4096)),
                ("rope.scaling.attn_factor", Value::F32(1.19)),
            ],
        );
        assert_eq!((h.rope_attn_factor, h.n_ctx_orig), (1.19, 4096));
        assert_eq!(h.rope_yarn, None);
        let h = hp("phi3", &[("attention.sliding_window", Value::U32(2048))]);
        assert!(
            h.swa.iter().all(|s| !s),
            "llama.cpp disables phi3's sliding window"
        );
    }

    /// gpt-oss's RoPE keys: YaRN with llama.cpp's fixed betas over the original context, and
    /// an attention factor whose two magnitude corrections cancel.
    #[test]
    fn yarn_scaling() {
        let yarn = |extra: &[(&str, Value)]| {
            let mut keys = vec![
                ("rope.scaling.type", Value::String(b"yarn".to_vec())),
                ("rope.scaling.factor", Value::F32(32.0)),
            ];
            keys.extend(extra.iter().cloned());
            let spec = ForwardSpec::for_arch("llama").unwrap();
            Hparams::read("llama", &meta("llama", &keys), &spec)
        };
        let h = yarn(&[
            ("context_length", Value::U32(131072)),
            ("rope.scaling.original_context_length", Value::U32(4096)),
        ])
        .unwrap();
        let y = h.rope_yarn.unwrap();
        assert_eq!(
            (y.ext_factor, y.beta_fast, y.beta_slow, y.n_ctx_orig),
            (1.0, 32.0, 1.0, 4096)
        );
        assert_eq!(h.rope_freq_scale, 1.0 / 32.0);
        assert!((h.rope_attn_factor - 1.0).abs() < 1e-6);
        let h = yarn(&[
            ("context_length", Value::U32(2048)),
            ("rope.scaling.attn_factor", Value::F32(0.5)),
        ])
        .unwrap();
        assert_eq!(h.rope_yarn.unwrap().n_ctx_orig, 2048);
        assert!((h.rope_attn_factor - 0.5).abs() < 1e-6);
        assert!(
            matches!(yarn(&[]), Err(Error::MissingKey { key }) if key == "llama.context_length")
        );
        let longrope = hp_err(
            "llama",
            &[("rope.scaling.type", Value::String(b"longrope".to_vec()))],
        );
        assert!(matches!(longrope, Error::Unsupported { .. }));
    }

    fn hp_err(arch: &str, extra: &[(&str, Value)]) -> Error {
        let spec = ForwardSpec::for_arch(arch).unwrap();
        Hparams::read(arch, &meta(arch, extra), &spec).unwrap_err()
    }
}
