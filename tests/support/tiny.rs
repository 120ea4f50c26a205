//! The tiny synthetic models, all made with the [`Gguf`] builder: [`TinyModel`] for models the
//! forward pass runs (each test says only what is special about its weights), and two presets
//! for the metadata rules, [`tiny_llama`] and [`tiny_gemma3`], whose weights are placeholders.

use gguf_prune::gguf::{Array, Value};

use super::{f32_bytes, Gguf, F32, Q8_0};

/// Deterministic pseudo-random values in [-scale, scale].
pub fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `n` values counting from `start` in steps of 0.25, so that every tensor's bytes differ.
pub fn counting(start: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| start + i as f32 * 0.25).collect()
}

/// A llama-family model small enough to build in a test, F32 throughout, with every key and
/// weight `Forward::new` checks: `{arch}.*` hyperparameters, `token_embd`, the block weights of
/// the architecture (fused `ffn_up` for phi3, q/k norms for qwen3 and gemma3, gemma3's
/// post-norms) and `output_norm` (the output head is tied to the embedding).
#[derive(Clone, Debug)]
pub struct TinyModel {
    pub arch: &'static str,
    pub blocks: usize,
    pub width: usize,
    pub ff: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub rms_eps: f32,
    /// `{arch}.context_length`, written only when set.
    pub context: Option<u32>,
}

/// One tensor of a [`TinyModel`], as its value function sees it.
#[derive(Clone, Copy, Debug)]
pub struct Weight {
    /// The block, or None for `token_embd` and `output_norm`.
    pub block: Option<usize>,
    /// The name without `blk.N.` and `.weight`: `token_embd`, `attn_q`, `ffn_norm`, ...
    pub role: &'static str,
    /// How many values the tensor holds.
    pub len: usize,
}

/// The matrices [`Weight::noise`] seeds, in seed order.
const NOISE_ROLES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl Weight {
    /// Noise of `scale` seeded by the tensor: 1 for `token_embd`; `100 (block + 1) + k` for
    /// the k-th of [`NOISE_ROLES`] (1-based), so that every matrix differs.
    pub fn noise(&self, scale: f32) -> Vec<f32> {
        let k = NOISE_ROLES.iter().position(|&r| r == self.role);
        let seed = match (self.block, k) {
            (Some(b), Some(k)) => 100 * (b as u64 + 1) + k as u64 + 1,
            _ => 1,
        };
        noise(seed, self.len, scale)
    }
}

impl TinyModel {
    /// A four-head llama: width 32, two KV heads (head size 8), feed-forward 64, 40 tokens.
    pub fn llama(blocks: usize) -> TinyModel {
        TinyModel {
            arch: "llama",
            blocks,
            width: 32,
            ff: 64,
            heads: 4,
            kv_heads: 2,
            vocab: 40,
            rms_eps: 1e-5,
            context: None,
        }
    }

    fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// The weights of one block, in file order, with their dims (ggml order: columns first).
    fn block_weights(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (d, ff, hd) = (self.width, self.ff, self.head_dim());
        let (q, kv) = (self.heads * hd, self.kv_heads * hd);
        let mut w = vec![
            ("attn_norm", vec![d]),
            ("attn_q", vec![d, q]),
            ("attn_k", vec![d, kv]),
            ("attn_v", vec![d, kv]),
            ("attn_output", vec![q, d]),
            ("ffn_norm", vec![d]),
            ("ffn_down", vec![ff, d]),
        ];
        if self.arch == "phi3" {
            w.push(("ffn_up", vec![d, 2 * ff]));
        } else {
            w.extend([("ffn_up", vec![d, ff]), ("ffn_gate", vec![d, ff])]);
        }
        if matches!(self.arch, "qwen3" | "gemma3") {
            w.extend([("attn_q_norm", vec![hd]), ("attn_k_norm", vec![hd])]);
        }
        if self.arch == "gemma3" {
            w.extend([("post_attention_norm", vec![d]), ("post_ffw_norm", vec![d])]);
        }
        w
    }

    /// The model as a [`Gguf`] to build (or to edit first), every tensor's values given by
    /// `values`, which must return [`Weight::len`] of them.
    pub fn gguf(&self, values: impl Fn(Weight) -> Vec<f32>) -> Gguf {
        let key = |k: &str| format!("{}.{k}", self.arch);
        let mut g = Gguf::new(3)
            .kv("general.architecture", Value::String(self.arch.into()))
            .kv(&key("block_count"), Value::U32(self.blocks as u32));
        for (k, v) in [
            ("embedding_length", self.width),
            ("feed_forward_length", self.ff),
            ("attention.head_count", self.heads),
            ("attention.head_count_kv", self.kv_heads),
        ] {
            g = g.kv(&key(k), Value::U32(v as u32));
        }
        g = g
            .kv(
                &key("attention.layer_norm_rms_epsilon"),
                Value::F32(self.rms_eps),
            )
            .kv(&key("rope.freq_base"), Value::F32(10000.0));
        if let Some(n) = self.context {
            g = g.kv(&key("context_length"), Value::U32(n));
        }
        let add = |g: Gguf, name: String, block, role, dims: &[usize]| {
            let len = dims.iter().product();
            let data = values(Weight { block, role, len });
            assert_eq!(data.len(), len, "values for {name}");
            let dims: Vec<u64> = dims.iter().map(|&n| n as u64).collect();
            g.tensor(&name, &dims, F32, f32_bytes(&data))
        };
        let embd = [self.width, self.vocab];
        g = add(g, "token_embd.weight".into(), None, "token_embd", &embd);
        for b in 0..self.blocks {
            for (role, dims) in self.block_weights() {
                g = add(g, format!("blk.{b}.{role}.weight"), Some(b), role, &dims);
            }
        }
        add(
            g,
            "output_norm.weight".into(),
            None,
            "output_norm",
            &[self.width],
        )
    }
}

/// The llama block weights [`tiny_llama`] holds besides `attn_norm`, `attn_q` and `ffn_down`.
pub const LLAMA_REST: [&str; 6] = [
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
];

/// A small llama-style model for the metadata rules: `n_layers` blocks of F32 tensors, per-layer
/// arrays for `head_count_kv` and `feed_forward_length`, an output norm and embeddings. Its
/// weights are not llama-shaped (the forward pass refuses it; see [`TinyModel`] for one it runs).
pub fn tiny_llama(version: u32, n_layers: u32) -> Gguf {
    let n = n_layers as usize;
    let mut g = Gguf::new(version)
        .kv("general.architecture", Value::String(b"llama".to_vec()))
        .kv("general.name", Value::String(b"tiny".to_vec()))
        .kv("llama.block_count", Value::U32(n_layers))
        .kv("llama.context_length", Value::U32(128))
        .kv("llama.embedding_length", Value::U32(8))
        .kv(
            "llama.feed_forward_length",
            Value::Array(Array::I32((0..n).map(|i| 16 + 8 * i as i32).collect())),
        )
        .kv("llama.attention.head_count", Value::U32(2))
        .kv(
            "llama.attention.head_count_kv",
            Value::Array(Array::I32((0..n).map(|i| 1 + (i % 2) as i32).collect())),
        )
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vec![
                b"a".to_vec(),
                b"b".to_vec(),
                vec![0xe9],
            ])),
        )
        .f32_tensor("token_embd.weight", &[8, 3], 0.0);
    for i in 0..n_layers {
        let s = 100.0 * (i + 1) as f32;
        g = g
            .f32_tensor(&format!("blk.{i}.attn_norm.weight"), &[8], s)
            .f32_tensor(&format!("blk.{i}.attn_q.weight"), &[8, 8], s + 1.0)
            .f32_tensor(&format!("blk.{i}.ffn_down.weight"), &[5, 8], s + 2.0);
        // The rest of a llama block's weights, so that verification (which wants every weight
        // llama.cpp's loader requires) passes; their shapes matter only to the forward pass.
        for (j, w) in LLAMA_REST.iter().enumerate() {
            g = g.f32_tensor(&format!("blk.{i}.{w}.weight"), &[4], s + 3.0 + j as f32);
        }
    }
    g.f32_tensor("output_norm.weight", &[8], -1.0)
}

/// A gemma3-style model: `gemma3.attention.sliding_window_pattern` as a per-layer bool array
/// (global layers at il % 6 == 5) and a Q8_0 tensor per layer.
pub fn tiny_gemma3(n_layers: u32) -> Gguf {
    let n = n_layers as usize;
    let mut g = Gguf::new(3)
        .kv("general.architecture", Value::String(b"gemma3".to_vec()))
        .kv("gemma3.block_count", Value::U32(n_layers))
        .kv("gemma3.attention.sliding_window", Value::U32(512))
        .kv(
            "gemma3.attention.sliding_window_pattern",
            Value::Array(Array::Bool((0..n).map(|i| i % 6 < 5).collect())),
        );
    for i in 0..n_layers {
        // One Q8_0 block: f16 scale then 32 int8s.
        let mut block = vec![0x00, 0x3c];
        block.extend((0..32).map(|j| (i as u8).wrapping_mul(7).wrapping_add(j)));
        g = g.tensor(&format!("blk.{i}.attn_k.weight"), &[32], Q8_0, block);
    }
    g
}
