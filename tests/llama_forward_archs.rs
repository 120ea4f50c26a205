//! The forward pass on qwen2, qwen3, gemma2 and phi3 (and llama3's RoPE factors), checked
//! against real llama.cpp.
//!
//! No real model of these architectures is on this machine, so each test builds one from the real
//! SmolLM2 weights: its tokenizer, six of its blocks ([`BLOCKS`]) and its embedding, dequantized
//! to F32 so that the only difference between llama.cpp and us is the architecture code, laid
//! out with the target architecture's tensor names and metadata keys (llama.cpp
//! `llama-arch.cpp`, `llama-model.cpp`, `src/models/<arch>.cpp`):
//! - every arch: q/k rows reordered from llama's interleaved RoPE pairs to the NEOX halves these
//!   architectures use (the inverse of the HF-to-GGUF llama permutation), so attention computes
//!   what SmolLM2's does;
//! - qwen2: random q/k/v biases, an untied output head with a random bias;
//! - qwen3: heads widened from 64 to 128 values (`key_length` != n_embd / n_head, as in real
//!   Qwen3), random `attn_q_norm` / `attn_k_norm` weights around 1;
//! - gemma2: heads widened to 128 (its attention scale is 1/sqrt(key_length), not
//!   1/sqrt(n_embd / n_head)), post-attention and post-FFN norms, attention (20) and final (30)
//!   logit soft-capping, the sqrt(n_embd) embedding scale (the stored embedding is divided by it
//!   and the output norm multiplied, so the tied head is unchanged), GELU gating, sliding-window
//!   layers by the default period 2 with a 64-token window and their own RoPE base;
//! - phi3: fused `attn_qkv` with a fused bias (and, in a second file, separate q/k/v biases
//!   beside the fused weight, which llama.cpp also accepts), fused `ffn_up` holding [gate; up],
//!   and a 64-token `sliding_window` key that llama.cpp ignores for phi3 (a window that small
//!   changes the logits completely, see the gemma2 control, so matching shows we ignore it too);
//!   a third file has Phi-4-mini's long-context RoPE: `rope_factors_short/long` tensors, an
//!   original context below -c (so the long ones apply), `rope.scaling.attn_factor`, and RoPE on
//!   3/4 of each head;
//! - llama (SmolLM2's own layout) with llama3's `rope_freqs.weight`.
//!
//! Six of thirty blocks do not make a good language model: perplexities here are 1e5 to 2e6
//! (SmolLM2 whole: 21.5 on this excerpt; every set of 2 to 12 blocks tried stayed above 1e4, and
//! dropping block 28 or 29 alone already gives 312 or 77). Its predictions are still sharp and
//! shaped by real weights, which is what the comparison needs: the negative controls move the
//! mean KL by 0.06 to 12 nats.
//!
//! For each file llama-perplexity writes its logits (`--kl-divergence-base`, -c 512, 2 chunks of
//! an excerpt of the evaluation text) and `gguf-prune eval --kl-base` compares ours with them: mean KL
//! below [`KL_BOUND`] and perplexity within 1%. Negative controls (a variant without one
//! feature, or read as another architecture, evaluated against the same llama.cpp logits) must
//! exceed the bound, so each check can fail.

pub mod common;
pub mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gguf_prune::gguf::{self, Metadata, Model, Value};

/// SmolLM2's blocks kept, in order (fewer is faster; the first and last ones keep a model that
/// predicts text, where its first blocks alone only echo the input token).
const BLOCKS: &[usize] = &[0, 1, 2, 27, 28, 29];
const N_BLOCKS: usize = BLOCKS.len();
const CTX: &str = "512";
const CHUNKS: &str = "2";
/// llama-perplexity's context and chunks.
const LLAMA_ARGS: [&str; 6] = ["-c", CTX, "-b", CTX, "--chunks", CHUNKS];
/// Mean KL(llama.cpp || gguf-prune) every architecture must stay below.
const KL_BOUND: f64 = 0.01;
/// Our perplexity within this fraction of llama-perplexity's.
const PPL_TOL: f64 = 0.01;

const N_EMBD: usize = 576;
const N_HEAD: usize = 9;
const N_HEAD_KV: usize = 3;
const HEAD_DIM: usize = 64;
const N_FF: usize = 1536;
/// Head size of the widened architectures (qwen3, gemma2).
const WIDE_HEAD: usize = 128;

/// One F32 tensor: ggml dims (innermost first) and values, rows of `dims[0]`.
#[derive(Clone)]
struct T {
    dims: Vec<u64>,
    data: Vec<f32>,
}

impl T {
    fn rows(&self) -> usize {
        self.data.len() / self.dims[0] as usize
    }
    fn row(&self, r: usize) -> &[f32] {
        let n = self.dims[0] as usize;
        &self.data[r * n..(r + 1) * n]
    }
    /// A matrix of the same row width holding the given rows, `None` meaning a random row.
    fn pick(&self, rows: &[Option<usize>], seed: u64, scale: f32) -> T {
        let n = self.dims[0] as usize;
        let mut data = Vec::with_capacity(rows.len() * n);
        for (i, r) in rows.iter().enumerate() {
            match r {
                Some(r) => data.extend_from_slice(self.row(*r)),
                None => data.extend(support::noise(seed * 1_000_003 + i as u64, n, scale)),
            }
        }
        T {
            dims: vec![n as u64, rows.len() as u64],
            data,
        }
    }
    fn vector(data: Vec<f32>) -> T {
        T {
            dims: vec![data.len() as u64],
            data,
        }
    }
    /// Rows of `self` followed by rows of each of `others` (same row width).
    fn concat_rows(&self, others: &[&T]) -> T {
        let mut data = self.data.clone();
        for o in others {
            assert_eq!(o.dims[0], self.dims[0]);
            data.extend_from_slice(&o.data);
        }
        let rows = data.len() as u64 / self.dims[0];
        T {
            dims: vec![self.dims[0], rows],
            data,
        }
    }
}

/// SmolLM2's metadata and the tensors of its first blocks, dequantized once per test process.
struct Smol {
    meta: Metadata,
    tensors: HashMap<String, T>,
}

fn smol() -> &'static Smol {
    static SMOL: OnceLock<Smol> = OnceLock::new();
    SMOL.get_or_init(|| {
        let model = Model::open(common::smollm2()).unwrap();
        let mut tensors = HashMap::new();
        for t in &model.tensors {
            let name = &t.info.name;
            let keep = match name.strip_prefix("blk.") {
                Some(rest) => BLOCKS.contains(&rest.split('.').next().unwrap().parse().unwrap()),
                None => true,
            };
            if !keep {
                continue;
            }
            let mut data = vec![0f32; t.info.n_elements() as usize];
            gguf_prune::quant::dequantize(t.info.ggml_type, model.data(t), &mut data).unwrap();
            tensors.insert(
                name.clone(),
                T {
                    dims: t.info.dims.clone(),
                    data,
                },
            );
        }
        Smol {
            meta: model.metadata().clone(),
            tensors,
        }
    })
}

fn src(name: &str) -> &'static T {
    smol()
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("SmolLM2 has no {name}"))
}

/// The rows of a q or k weight (heads of `HEAD_DIM` rows) in NEOX order: llama's GGUF stores each
/// head's RoPE pairs interleaved (2i, 2i+1); NEOX pairs (i, i + half). With `wide`, each head
/// grows to `wide` rows, the original halves at the start of the new halves (same pairing,
/// random extra pairs).
fn neox_rows(n_heads: usize, wide: usize) -> Vec<Option<usize>> {
    let (half, new_half) = (HEAD_DIM / 2, wide / 2);
    let mut rows = Vec::new();
    for h in 0..n_heads {
        for r in 0..wide {
            let (part, i) = (r / new_half, r % new_half);
            rows.push((i < half).then_some(h * HEAD_DIM + 2 * i + part));
        }
    }
    rows
}

/// The rows of a v weight with heads widened to `wide` (original values first, random after).
fn wide_v_rows(n_heads: usize, wide: usize) -> Vec<Option<usize>> {
    (0..n_heads)
        .flat_map(|h| (0..wide).map(move |r| (r < HEAD_DIM).then_some(h * HEAD_DIM + r)))
        .collect()
}

/// `attn_output` taking heads of `wide` values: each output row's inputs per head are the
/// original ones followed by small random weights.
fn wide_output(o: &T, wide: usize, seed: u64) -> T {
    let mut data = Vec::with_capacity(N_EMBD * N_HEAD * wide);
    for r in 0..o.rows() {
        let row = o.row(r);
        for h in 0..N_HEAD {
            data.extend_from_slice(&row[h * HEAD_DIM..(h + 1) * HEAD_DIM]);
            data.extend(support::noise(
                seed * 7919 + (r * N_HEAD + h) as u64,
                wide - HEAD_DIM,
                0.02,
            ));
        }
    }
    T {
        dims: vec![(N_HEAD * wide) as u64, o.dims[1]],
        data,
    }
}

/// granite's multipliers in the granite_swa file (Granite 4's are 12, 0.22, 1/128 and 8; these
/// are milder, so that the stored weights compensating them stay SmolLM2's up to a factor).
struct GraniteScales {
    embedding: f32,
    residual: f32,
    attention: f32,
    logit: f32,
}

const GRANITE: GraniteScales = GraniteScales {
    embedding: 4.0,
    residual: 0.5,
    attention: 0.1,
    logit: 2.0,
};

/// granite_swa's sliding layers (window 64), a per-layer array as llama.cpp requires.
const GRANITE_SWA_PATTERN: &[bool] = &[true, false, true, true, false, true];

/// A block half's output weight multiplied by 1 / residual_scale, so that the scaled output is
/// SmolLM2's.
fn granite_residual(w: &T) -> T {
    let mut w = w.clone();
    w.data.iter_mut().for_each(|x| *x /= GRANITE.residual);
    w
}

fn ones_plus_noise(seed: u64, n: usize, scale: f32, center: f32) -> T {
    T::vector(
        support::noise(seed, n, scale)
            .into_iter()
            .map(|v| center * (1.0 + v))
            .collect(),
    )
}

/// Which architecture to build, and deliberate mistakes for the negative controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    Qwen2,
    Qwen3,
    Gemma2,
    Phi3,
    /// SmolLM2's own layout, for llama3's `rope_freqs.weight`.
    Llama,
    /// SmolLM2's layout with granite's multipliers, attention sinks and a per-layer sliding
    /// window pattern.
    GraniteSwa,
}

#[derive(Clone, Copy, Debug, Default)]
struct Variant {
    /// qwen2: leave out the q/k/v biases.
    no_biases: bool,
    /// Write this `general.architecture` (and key prefix) instead of the real one.
    label_as: Option<&'static str>,
    /// gemma2: this sliding window instead of 64.
    window: Option<u32>,
    /// gemma2: no attention logit soft-capping key.
    no_attn_softcap: bool,
    /// phi3: ffn_up holding [up; gate] instead of [gate; up].
    swap_gate_up: bool,
    /// phi3: separate attn_q/k/v biases beside the fused attn_qkv weight (llama.cpp accepts them
    /// when attn_qkv.bias is absent, for legacy and custom files).
    split_qkv_bias: bool,
    /// gemma2: no final logit soft-capping key.
    no_final_softcap: bool,
    /// gemma2: no rope.freq_base_swa key (sliding layers use the global base).
    no_swa_base: bool,
    /// gemma2: a per-layer `sliding_window_pattern` (true: sliding), as a pruned file carries.
    swa_pattern: Option<&'static [bool]>,
    /// phi3: rope_factors_short/long tensors, `rope.scaling.attn_factor` and this
    /// `rope.scaling.original_context_length` (the long factors apply above it);
    /// llama: a `rope_freqs.weight` tensor (the value is ignored).
    rope_factors: Option<u32>,
    /// phi3 with `rope_factors`: leave out `rope.scaling.attn_factor`.
    no_rope_attn_factor: bool,
    /// `rope.scaling.type`, `.factor` and `.original_context_length` (llama: YaRN).
    rope_scaling: Option<(&'static str, f32, u32)>,
    /// granite_swa: every sink at -1e30, which is the same as no sinks.
    no_sinks: bool,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma2 => "gemma2",
            Arch::Phi3 => "phi3",
            Arch::Llama => "llama",
            Arch::GraniteSwa => "granite_swa",
        }
    }

    fn head_dim(self) -> usize {
        match self {
            Arch::Qwen3 | Arch::Gemma2 => WIDE_HEAD,
            Arch::Qwen2 | Arch::Phi3 | Arch::Llama | Arch::GraniteSwa => HEAD_DIM,
        }
    }

    /// Values rotated per head: all, except phi3 with long-context RoPE, which rotates 3/4 of
    /// them as Phi-4-mini does (partial_rotary_factor 0.75).
    fn n_rot(self, v: Variant) -> usize {
        if self == Arch::Phi3 && v.rope_factors.is_some() {
            self.head_dim() * 3 / 4
        } else {
            self.head_dim()
        }
    }

    /// The metadata and tensors of this architecture's file.
    fn build(self, v: Variant) -> (Metadata, Vec<(String, T)>) {
        let s = smol();
        let arch = v.label_as.unwrap_or(self.name());
        let hd = self.head_dim();
        let mut meta = Metadata::new();
        meta.set("general.architecture", Value::String(arch.into()));
        for (k, val) in s.meta.iter() {
            if k.starts_with("general.") && k != "general.architecture" {
                meta.set(k, val.clone());
            }
        }
        meta.set("general.file_type", Value::U32(0)); // all F32
        let key = |k: &str| gguf::arch_key(arch, k);
        meta.set(&key("block_count"), Value::U32(N_BLOCKS as u32));
        meta.set(&key("context_length"), Value::U32(8192));
        meta.set(&key("embedding_length"), Value::U32(N_EMBD as u32));
        meta.set(&key("feed_forward_length"), Value::U32(N_FF as u32));
        meta.set(&key("attention.head_count"), Value::U32(N_HEAD as u32));
        meta.set(
            &key("attention.head_count_kv"),
            Value::U32(N_HEAD_KV as u32),
        );
        meta.set(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5));
        meta.set(&key("rope.freq_base"), Value::F32(100_000.0));
        meta.set(
            &key("rope.dimension_count"),
            Value::U32(self.n_rot(v) as u32),
        );
        if hd != HEAD_DIM {
            meta.set(&key("attention.key_length"), Value::U32(hd as u32));
            meta.set(&key("attention.value_length"), Value::U32(hd as u32));
        }
        match self {
            Arch::Gemma2 => {
                meta.set(
                    &key("attention.sliding_window"),
                    Value::U32(v.window.unwrap_or(64)),
                );
                if let Some(pattern) = v.swa_pattern {
                    meta.set(
                        &key("attention.sliding_window_pattern"),
                        Value::Array(gguf::Array::Bool(pattern.to_vec())),
                    );
                }
                if !v.no_swa_base {
                    meta.set(&key("rope.freq_base_swa"), Value::F32(10_000.0));
                }
                if !v.no_attn_softcap {
                    meta.set(&key("attn_logit_softcapping"), Value::F32(20.0));
                }
                if !v.no_final_softcap {
                    meta.set(&key("final_logit_softcapping"), Value::F32(30.0));
                }
            }
            Arch::Phi3 => {
                // llama.cpp disables phi3's sliding window whatever this says.
                meta.set(&key("attention.sliding_window"), Value::U32(64));
                if let Some(orig) = v.rope_factors {
                    meta.set(
                        &key("rope.scaling.original_context_length"),
                        Value::U32(orig),
                    );
                    if !v.no_rope_attn_factor {
                        meta.set(&key("rope.scaling.attn_factor"), Value::F32(1.19));
                    }
                }
            }
            Arch::GraniteSwa => {
                meta.set(&key("attention.sliding_window"), Value::U32(64));
                meta.set(
                    &key("attention.sliding_window_pattern"),
                    Value::Array(gguf::Array::Bool(GRANITE_SWA_PATTERN.to_vec())),
                );
                let g = GRANITE;
                meta.set(&key("embedding_scale"), Value::F32(g.embedding));
                meta.set(&key("residual_scale"), Value::F32(g.residual));
                meta.set(&key("attention.scale"), Value::F32(g.attention));
                meta.set(&key("logit_scale"), Value::F32(g.logit));
            }
            Arch::Qwen2 | Arch::Qwen3 | Arch::Llama => {}
        }
        if let Some((ty, factor, orig)) = v.rope_scaling {
            meta.set(&key("rope.scaling.type"), Value::String(ty.into()));
            meta.set(&key("rope.scaling.factor"), Value::F32(factor));
            meta.set(
                &key("rope.scaling.original_context_length"),
                Value::U32(orig),
            );
        }
        for (k, val) in s.meta.iter() {
            if k.starts_with("tokenizer.") {
                meta.set(k, val.clone());
            }
        }

        let mut out: Vec<(String, T)> = Vec::new();
        let embd = src("token_embd.weight");
        let mut out_norm = src("output_norm.weight").clone();
        if self == Arch::Gemma2 {
            // gemma2 multiplies embeddings by sqrt(n_embd); store them divided so the model sees
            // SmolLM2's, and fold the factor into the output norm so the tied head is unchanged.
            let f = (N_EMBD as f32).sqrt();
            let mut e = embd.clone();
            e.data.iter_mut().for_each(|x| *x /= f);
            out.push(("token_embd.weight".into(), e));
            out_norm.data.iter_mut().for_each(|x| *x *= f);
        } else if self == Arch::GraniteSwa {
            // Stored so that the multipliers give back SmolLM2's embeddings and logits.
            let mut e = embd.clone();
            e.data.iter_mut().for_each(|x| *x /= GRANITE.embedding);
            out.push(("token_embd.weight".into(), e));
            out_norm.data.iter_mut().for_each(|x| *x *= GRANITE.logit);
        } else {
            out.push(("token_embd.weight".into(), embd.clone()));
        }
        out.push(("output_norm.weight".into(), out_norm));
        if v.rope_factors.is_some() {
            // Divisors of each rotated pair's frequency, 1 to 4 (llama3's and phi3's range the
            // low frequencies up to 8 to 60; larger ones at every frequency matter at ctx 512).
            let factors = |seed| {
                T::vector(
                    support::noise(seed, self.n_rot(v) / 2, 1.5)
                        .into_iter()
                        .map(|x| 2.5 + x)
                        .collect(),
                )
            };
            if self == Arch::Llama {
                out.push(("rope_freqs.weight".into(), factors(11)));
            } else {
                out.push(("rope_factors_long.weight".into(), factors(12)));
                out.push(("rope_factors_short.weight".into(), factors(13)));
            }
        }
        if self == Arch::Qwen2 {
            // qwen2 may have its own output head, with a bias (llama.cpp's output_b).
            out.push(("output.weight".into(), embd.clone()));
            out.push((
                "output.bias".into(),
                T::vector(support::noise(7, embd.rows(), 2.0)),
            ));
        }

        for (il, &from) in BLOCKS.iter().enumerate() {
            let seed = (self as u64 + 1) * 1000 + il as u64 * 10;
            let p = |n: &str| format!("blk.{il}.{n}");
            let w = |n: &str| src(&format!("blk.{from}.{n}.weight"));
            let (q, k) = if matches!(self, Arch::Llama | Arch::GraniteSwa) {
                (w("attn_q").clone(), w("attn_k").clone())
            } else {
                (
                    w("attn_q").pick(&neox_rows(N_HEAD, hd), seed, 0.02),
                    w("attn_k").pick(&neox_rows(N_HEAD_KV, hd), seed + 1, 0.02),
                )
            };
            let vv = if hd == HEAD_DIM {
                w("attn_v").clone()
            } else {
                w("attn_v").pick(&wide_v_rows(N_HEAD_KV, hd), seed + 2, 0.02)
            };
            let o = if hd == HEAD_DIM {
                w("attn_output").clone()
            } else {
                wide_output(w("attn_output"), hd, seed + 3)
            };
            out.push((p("attn_norm.weight"), w("attn_norm").clone()));
            if self == Arch::Phi3 {
                out.push((p("attn_qkv.weight"), q.concat_rows(&[&k, &vv])));
                let n_qkv = N_EMBD + 2 * N_HEAD_KV * HEAD_DIM;
                let b = support::noise(seed + 4, n_qkv, 0.3);
                if v.split_qkv_bias {
                    let (q_end, k_end) = (N_EMBD, N_EMBD + N_HEAD_KV * HEAD_DIM);
                    out.push((p("attn_q.bias"), T::vector(b[..q_end].to_vec())));
                    out.push((p("attn_k.bias"), T::vector(b[q_end..k_end].to_vec())));
                    out.push((p("attn_v.bias"), T::vector(b[k_end..].to_vec())));
                } else {
                    out.push((p("attn_qkv.bias"), T::vector(b)));
                }
            } else {
                let (nq, nk) = (q.rows(), k.rows());
                out.push((p("attn_q.weight"), q));
                out.push((p("attn_k.weight"), k));
                out.push((p("attn_v.weight"), vv));
                if self == Arch::Qwen2 && !v.no_biases {
                    out.push((
                        p("attn_q.bias"),
                        T::vector(support::noise(seed + 5, nq, 0.5)),
                    ));
                    out.push((
                        p("attn_k.bias"),
                        T::vector(support::noise(seed + 6, nk, 0.5)),
                    ));
                    out.push((
                        p("attn_v.bias"),
                        T::vector(support::noise(seed + 7, nk, 0.1)),
                    ));
                }
            }
            if self == Arch::GraniteSwa {
                out.push((p("attn_output.weight"), granite_residual(&o)));
                let sinks = if v.no_sinks {
                    vec![-1e30; N_HEAD]
                } else {
                    support::noise(seed + 12, N_HEAD, 3.0)
                };
                out.push((p("attn_sinks.weight"), T::vector(sinks)));
            } else {
                out.push((p("attn_output.weight"), o));
            }
            if self == Arch::Qwen3 {
                out.push((
                    p("attn_q_norm.weight"),
                    ones_plus_noise(seed + 8, hd, 0.3, 1.0),
                ));
                out.push((
                    p("attn_k_norm.weight"),
                    ones_plus_noise(seed + 9, hd, 0.3, 1.0),
                ));
            }
            if self == Arch::Gemma2 {
                out.push((
                    p("post_attention_norm.weight"),
                    ones_plus_noise(seed + 10, N_EMBD, 0.2, 0.5),
                ));
                out.push((
                    p("post_ffw_norm.weight"),
                    ones_plus_noise(seed + 11, N_EMBD, 0.2, 0.5),
                ));
            }
            out.push((p("ffn_norm.weight"), w("ffn_norm").clone()));
            if self == Arch::Phi3 {
                let (g, u) = (w("ffn_gate"), w("ffn_up"));
                let fused = if v.swap_gate_up {
                    u.concat_rows(&[g])
                } else {
                    g.concat_rows(&[u])
                };
                out.push((p("ffn_up.weight"), fused));
            } else {
                out.push((p("ffn_gate.weight"), w("ffn_gate").clone()));
                out.push((p("ffn_up.weight"), w("ffn_up").clone()));
            }
            let down = w("ffn_down");
            let down = if self == Arch::GraniteSwa {
                granite_residual(down)
            } else {
                down.clone()
            };
            out.push((p("ffn_down.weight"), down));
        }
        (meta, out)
    }

    /// Writes this architecture's file to `dir/<file>`.
    fn write(self, v: Variant, dir: &Path, file: &str) -> PathBuf {
        let (meta, tensors) = self.build(v);
        let path = dir.join(file);
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| common::f32_tensor(&name, &t.dims, t.data))
            .collect();
        common::write_gguf(&path, 3, &meta, tensors);
        path
    }
}

fn excerpt(dir: &Path) -> PathBuf {
    common::eval_excerpt(dir, 12_000)
}

/// How close to llama.cpp a file must come (and how far its controls must stay).
#[derive(Clone, Copy)]
struct Bounds {
    /// Mean KL(llama.cpp || gguf-prune) below this.
    kl: f64,
    /// Our perplexity within this fraction of llama-perplexity's.
    ppl: f64,
}

const DEFAULT_BOUNDS: Bounds = Bounds {
    kl: KL_BOUND,
    ppl: PPL_TOL,
};

/// Builds `arch`, checks llama.cpp against us, then each negative control against the same
/// llama.cpp logits.
fn check(arch: Arch, variant: Variant, controls: &[(&str, Variant)]) {
    check_within(arch, variant, controls, DEFAULT_BOUNDS)
}

/// [`check`] with other bounds.
fn check_within(arch: Arch, variant: Variant, controls: &[(&str, Variant)], bounds: Bounds) {
    let dir = common::workdir();
    let text = excerpt(dir.path());
    let model = arch.write(variant, dir.path(), "model.gguf");
    let base = dir.path().join("base.logits");
    let llama_ppl = common::llama_kl_base(&model, &text, &base, &LLAMA_ARGS);
    let (kl, top1, ppl) = common::eval_vs_base(&model, &base);
    eprintln!(
        "{}: KL {kl:.6}, top-1 {top1:.4}, PPL ours {ppl:.4} vs llama.cpp {llama_ppl:.4}",
        arch.name()
    );
    assert!(
        llama_ppl.is_finite() && llama_ppl > 1.0,
        "{}: llama-perplexity PPL {llama_ppl}",
        arch.name()
    );
    assert!(
        (-1e-4..bounds.kl).contains(&kl),
        "{}: KL(llama.cpp || gguf-prune) = {kl}",
        arch.name()
    );
    assert!(top1 > 0.95, "{}: top-1 agreement {top1}", arch.name());
    assert!(
        (ppl / llama_ppl - 1.0).abs() < bounds.ppl,
        "{}: PPL ours {ppl} vs llama-perplexity {llama_ppl}",
        arch.name()
    );
    for (what, v) in controls {
        let wrong = arch.write(*v, dir.path(), "wrong.gguf");
        let (kl_wrong, top1_wrong, ppl_wrong) = common::eval_vs_base(&wrong, &base);
        eprintln!(
            "{} control ({what}): KL {kl_wrong:.6}, top-1 {top1_wrong:.4}, PPL {ppl_wrong:.4}",
            arch.name()
        );
        assert!(
            kl_wrong > bounds.kl,
            "{} control ({what}) should not match llama.cpp, KL {kl_wrong}",
            arch.name()
        );
        std::fs::remove_file(&wrong).unwrap();
    }
}

#[test]
fn qwen2_matches_llama_cpp() {
    check(
        Arch::Qwen2,
        Variant::default(),
        &[(
            "q/k/v biases left out",
            Variant {
                no_biases: true,
                ..Variant::default()
            },
        )],
    );
}

#[test]
fn qwen3_matches_llama_cpp() {
    check(
        Arch::Qwen3,
        Variant::default(),
        &[(
            "read as qwen2, q/k norms ignored",
            Variant {
                label_as: Some("qwen2"),
                ..Variant::default()
            },
        )],
    );
}

#[test]
fn gemma2_matches_llama_cpp() {
    check(
        Arch::Gemma2,
        Variant::default(),
        &[
            (
                "sliding window 4096 instead of 64",
                Variant {
                    window: Some(4096),
                    ..Variant::default()
                },
            ),
            (
                "no attention soft-capping",
                Variant {
                    no_attn_softcap: true,
                    ..Variant::default()
                },
            ),
            (
                "no final soft-capping",
                Variant {
                    no_final_softcap: true,
                    ..Variant::default()
                },
            ),
            (
                "sliding layers on the global RoPE base",
                Variant {
                    no_swa_base: true,
                    ..Variant::default()
                },
            ),
        ],
    );
}

/// phi3 long-context RoPE (Phi-3.5-mini, Phi-4-mini): factor tensors and an attention factor,
/// RoPE on 48 of 64 values (Phi-4-mini's partial rotation). With the original context 256 below
/// -c 512, llama.cpp takes the long factors.
#[test]
fn phi3_rope_factors_match_llama_cpp() {
    let v = Variant {
        rope_factors: Some(256),
        ..Variant::default()
    };
    check(
        Arch::Phi3,
        v,
        &[
            (
                "short factors (original context 4096)",
                Variant {
                    rope_factors: Some(4096),
                    ..v
                },
            ),
            (
                "no attention factor",
                Variant {
                    no_rope_attn_factor: true,
                    ..v
                },
            ),
        ],
    );
}

/// llama3's `rope_freqs.weight` (Llama 3.1, 3.2), on SmolLM2's own layout.
#[test]
fn llama3_rope_freqs_match_llama_cpp() {
    check(
        Arch::Llama,
        Variant {
            rope_factors: Some(0),
            ..Variant::default()
        },
        &[("rope_freqs left out", Variant::default())],
    );
}

/// YaRN RoPE (`rope.scaling.type = yarn`, as gpt-oss and long-context Qwen files have) on
/// SmolLM2's own layout. With an original context of 128 and a factor of 4, -c 512 is past the
/// original context and YaRN's ramp covers pairs 0 to 9 of 32 (RoPE base 1e5): the fast pairs
/// keep their angles, the rest turn 4 times slower, and cos and sin grow by 1 + 0.1 ln 4. Held
/// to the bounds (mean KL below 1e-4, perplexity within 0.1%); the controls read the
/// same factor as linear scaling, or no scaling at all.
#[test]
fn llama_yarn_rope_matches_llama_cpp() {
    let yarn = Variant {
        rope_scaling: Some(("yarn", 4.0, 128)),
        ..Variant::default()
    };
    check_within(
        Arch::Llama,
        yarn,
        &[
            (
                "linear scaling by the same factor",
                Variant {
                    rope_scaling: Some(("linear", 4.0, 128)),
                    ..Variant::default()
                },
            ),
            ("no rope scaling", Variant::default()),
        ],
        Bounds {
            kl: 1e-4,
            ppl: 1e-3,
        },
    );
}

/// Attention sinks on a dense architecture (granite_swa, the one besides gpt-oss that has them
/// in llama.cpp), with granite's four multipliers and a per-layer sliding-window pattern, held
/// to the bounds. Controls: sinks at -1e30 (no sinks), the file read as llama (no sinks,
/// multipliers or window).
#[test]
fn granite_swa_sinks_match_llama_cpp() {
    check_within(
        Arch::GraniteSwa,
        Variant::default(),
        &[
            (
                "sinks at -1e30 (ignored)",
                Variant {
                    no_sinks: true,
                    ..Variant::default()
                },
            ),
            (
                "read as llama",
                Variant {
                    label_as: Some("llama"),
                    ..Variant::default()
                },
            ),
        ],
        Bounds {
            kl: 1e-4,
            ppl: 1e-3,
        },
    );
}

/// The layout a pruned gemma2 file has: the kept layers' own pattern, not the period.
#[test]
fn gemma2_pattern_array_matches_llama_cpp() {
    const PATTERN: &[bool] = &[true, true, false, true, false, false];
    check(
        Arch::Gemma2,
        Variant {
            swa_pattern: Some(PATTERN),
            ..Variant::default()
        },
        &[("pattern array left out (period 2)", Variant::default())],
    );
}

#[test]
fn phi3_matches_llama_cpp() {
    check(
        Arch::Phi3,
        Variant::default(),
        &[(
            "ffn_up halves swapped",
            Variant {
                swap_gate_up: true,
                ..Variant::default()
            },
        )],
    );
}

#[test]
fn phi3_fused_qkv_with_separate_biases() {
    let v = Variant {
        split_qkv_bias: true,
        ..Variant::default()
    };
    check(Arch::Phi3, v, &[]);
}
