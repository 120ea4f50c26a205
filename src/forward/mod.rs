//! A float forward pass over quantized GGUF models, one decoder block at a time.
//!
//! Weights are dequantized to f32 block by block and multiplied with candle's gemm (faster on a
//! CPU than candle's quantized matmul for Q4_1/Q5_0: 567 against 29 tokens/s on SmolLM2 Q4_1).
//! Work is layer-major: every window of a batch goes through block i before any goes through
//! block i+1, so each weight is dequantized once per batch and memory holds one block plus the
//! activations.
//!
//! What differs between architectures (norm placement, activation, RoPE pairing, sliding-window
//! layers, scales) comes from the `[forward]` table of `formats/<arch>.toml`; what a file holds
//! (biases, fused q/k/v, tied output head) is read from its tensors.

pub mod config;
pub mod ops;

use crate::arch::names::*;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Model, ModelTensor};
use crate::kernels;
use candle_core::{Device, Tensor};
pub use config::{ForwardSpec, Hparams};

/// Something that turns token windows into next-token logits, streamed row by row.
pub trait LogitsSource {
    fn n_vocab(&self) -> usize;
    /// Runs each window (token ids, already including BOS where wanted) through the model and calls
    /// `f(window_index, position, logits_row)` for every position >= `first` of every window, in order.
    #[allow(clippy::type_complexity)]
    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> crate::Result<()>,
    ) -> crate::Result<()>;
}

fn candle(what: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
    let what = what.into();
    move |source| Error::Candle { what, source }
}

/// Dequantizes ggml-typed bytes holding `rows` rows of `cols` values into a `(rows, cols)` tensor.
/// Through our kernels rather than candle's: the same bits, and faster (on every block weight of
/// SmolLM2 Q4_1 and gemma3 Q4_K_M, 2 cores under a load of about 10: candle 224 and 291 ms, ours
/// 87 and 162 ms; on one thread ours 109 and 185 ms; `benches/dequant.rs`).
fn dequantize(name: &str, ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Tensor> {
    if !kernels::can_dequantize(ty) {
        return Err(Error::Forward(format!(
            "tensor {name:?}: type {ty} cannot be dequantized"
        )));
    }
    let mut w = vec![0f32; rows * cols];
    kernels::dequantize(ty, bytes, &mut w)?;
    Tensor::from_vec(w, (rows, cols), &Device::Cpu).map_err(candle(format!("reading {name}")))
}

/// A dequantized linear layer: `y = x W^T (+ b)`, W stored `(out, in)` as in ggml.
pub struct Linear {
    w_t: Tensor,
    bias: Option<Vec<f32>>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Linear {
    /// `x` holds `n` rows of `n_in`; returns `n` rows of `n_out`.
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let xt =
            Tensor::from_slice(x, (n, self.n_in), &Device::Cpu).map_err(candle("linear input"))?;
        let y = xt.matmul(&self.w_t).map_err(candle("linear matmul"))?;
        let mut y: Vec<f32> = y
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(candle("linear output"))?;
        if let Some(b) = &self.bias {
            y.chunks_mut(self.n_out)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        Ok(y)
    }

    /// Splits the output rows `[start, start + len)` into their own layer (fused q/k/v, gate/up).
    fn slice_rows(&self, start: usize, len: usize) -> Result<Linear> {
        let w_t = self
            .w_t
            .narrow(1, start, len)
            .and_then(|t| t.contiguous())
            .map_err(candle("splitting a fused weight"))?;
        Ok(Linear {
            w_t,
            bias: self.bias.as_ref().map(|b| b[start..start + len].to_vec()),
            n_in: self.n_in,
            n_out: len,
        })
    }
}

/// One decoder block's weights, dequantized.
pub struct BlockWeights {
    attn_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Option<Vec<f32>>,
}

/// Hidden states of a batch of windows: rows of `n_embd`, window after window.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub data: Vec<f32>,
    /// Tokens in each window.
    pub lens: Vec<usize>,
    pub n_embd: usize,
}

impl Batch {
    pub fn n_tokens(&self) -> usize {
        self.lens.iter().sum()
    }
    /// [`Error::NonFinite`] naming `block` and the first window whose stream holds NaN or Inf.
    fn check_finite(&self, block: usize) -> Result<()> {
        let mut start = 0;
        for (window, &len) in self.lens.iter().enumerate() {
            let end = start + len * self.n_embd;
            if !self.data[start..end].iter().all(|v| v.is_finite()) {
                return Err(Error::NonFinite { block, window });
            }
            start = end;
        }
        Ok(())
    }

    /// Row offsets of each window.
    fn starts(&self) -> Vec<usize> {
        self.lens
            .iter()
            .scan(0, |acc, &l| {
                let s = *acc;
                *acc += l;
                Some(s)
            })
            .collect()
    }
}

/// Residual-stream states of one fixed set of windows, keyed by the block they enter and the
/// skipped blocks before it: a state entering block b is valid for any skip set that agrees
/// below b, so re-running with one more block removed resumes there instead of at the embedding.
pub struct StateCache {
    entries: Vec<(usize, Vec<usize>, Batch)>,
    budget_bytes: usize,
}

impl StateCache {
    /// A cache holding at most `budget_bytes` of states (oldest dropped first).
    pub fn new(budget_bytes: usize) -> StateCache {
        StateCache {
            entries: Vec::new(),
            budget_bytes,
        }
    }

    fn below(skip: &[usize], b: usize) -> Vec<usize> {
        let mut v: Vec<usize> = skip.iter().copied().filter(|&s| s < b).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The latest state valid for `skip`.
    pub fn lookup(&self, skip: &[usize]) -> Option<(usize, &Batch)> {
        self.entries
            .iter()
            .filter(|(b, k, _)| *k == Self::below(skip, *b))
            .max_by_key(|(b, _, _)| *b)
            .map(|(b, _, x)| (*b, x))
    }

    /// Frees every state (the budget stays).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    fn insert(&mut self, b: usize, skip: &[usize], x: &Batch) {
        let key = Self::below(skip, b);
        if self.entries.iter().any(|(eb, k, _)| *eb == b && *k == key) {
            return;
        }
        let size = x.data.len() * 4;
        if size > self.budget_bytes {
            return;
        }
        while self
            .entries
            .iter()
            .map(|e| e.2.data.len() * 4)
            .sum::<usize>()
            + size
            > self.budget_bytes
        {
            self.entries.remove(0);
        }
        self.entries.push((b, key, x.clone()));
    }
}

/// Sees intermediate activations of a block during `Forward::block_forward_observed`.
pub trait BlockObserver {
    /// The input rows (n rows of `x.len() / n`) of the matmul with weight `blk.{il}.{weight}.weight`.
    /// Fused weights are reported under their own name (`attn_qkv`; phi3's `ffn_up` holding gate
    /// and up); `ffn_down` sees the activated product `act(gate) * up`.
    fn matmul_input(&mut self, _il: usize, _weight: &str, _x: &[f32], _n: usize) {}
    /// Block `il`'s FFN output exactly as it is added to the residual stream: after `ffn_down`
    /// (and its bias) and after the post-FFN norm where the architecture has one (gemma2/3's
    /// `post_ffw_norm`). n rows of `n_embd`.
    fn ffn_output(&mut self, _il: usize, _f: &[f32], _n: usize) {}
}

/// A [`BlockObserver`] that looks at nothing.
pub struct NoObserver;

impl BlockObserver for NoObserver {}

/// A model ready to run: its GGUF, the architecture recipe and hyper-parameters.
pub struct Forward<'m> {
    pub model: &'m Model,
    pub spec: ForwardSpec,
    pub hp: Hparams,
    rope_factors: RopeFactors,
}

/// Per-frequency RoPE divisors (ggml_rope_ext's `freq_factors`, n_rot / 2 values), shared by
/// every layer: llama3's `rope_freqs.weight`, or phi3's `rope_factors_short.weight` /
/// `rope_factors_long.weight`, which llama.cpp picks by context size (`get_rope_factors`).
#[derive(Default)]
struct RopeFactors {
    freqs: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
    long: Option<Vec<f32>>,
}

impl RopeFactors {
    /// The factors for a window of `n_ctx` tokens (llama.cpp compares the context size, which
    /// for perplexity and scoring windows is the window length, with the original context).
    fn for_ctx(&self, n_ctx: usize, n_ctx_orig: usize) -> Option<&[f32]> {
        if let Some(f) = &self.freqs {
            return Some(f);
        }
        if n_ctx > n_ctx_orig {
            self.long.as_deref()
        } else {
            self.short.as_deref()
        }
    }
}

impl<'m> Forward<'m> {
    /// Reads the recipe for the model's architecture; `Error::Unsupported` for architectures
    /// the forward pass cannot run.
    pub fn new(model: &'m Model) -> Result<Forward<'m>> {
        let meta = model.metadata();
        let arch = meta.architecture()?.to_string();
        let spec = ForwardSpec::for_arch(&arch)?;
        // Block count, tensor types and block weights first: the hyper-parameters size per-layer
        // tables by the block count, which must be justified by the tensors present.
        crate::verify::check_loadable(model)?;
        let in_file = |source: Error| Error::InFile {
            path: model.path().to_path_buf(),
            source: Box::new(source),
        };
        let hp = Hparams::read(&arch, meta, &spec).map_err(in_file)?;
        let mut fw = Forward {
            model,
            spec,
            hp,
            rope_factors: RopeFactors::default(),
        };
        fw.check_shapes().map_err(in_file)?;
        let factors = RopeFactors {
            freqs: fw.rope_factor_tensor(ROPE_FREQS)?,
            short: fw.rope_factor_tensor(ROPE_FACTORS_SHORT)?,
            long: fw.rope_factor_tensor(ROPE_FACTORS_LONG)?,
        };
        fw.rope_factors = factors;
        Ok(fw)
    }

    /// Every tensor the pass reads has the shape the hyper-parameters imply (what llama.cpp's
    /// `create_tensor` checks), so that nothing is sized by a hyper-parameter the tensors do not
    /// bear out and a wrong-length norm is an error, not a NaN.
    fn check_shapes(&self) -> Result<()> {
        let hp = &self.hp;
        let d = hp.n_embd as u64;
        let n_vocab = self.shape(TOKEN_EMBD, &[Some(d), None])?[1];
        self.shape(OUTPUT_NORM, &[Some(d)])?;
        if self.has(OUTPUT) {
            self.shape(OUTPUT, &[Some(d), Some(n_vocab)])?;
        }
        let mut n_ff_max = 0;
        for il in 0..hp.n_layer {
            n_ff_max = n_ff_max.max(self.check_block_shapes(il)?);
        }
        if hp.n_ff != 0 && hp.n_ff as u64 != n_ff_max {
            let key =
                crate::gguf::arch_key(self.model.metadata().architecture()?, "feed_forward_length");
            return Err(Error::Hparam {
                key,
                value: hp.n_ff.to_string(),
                why: format!("the widest block's ffn_down takes {n_ff_max} inputs"),
            });
        }
        Ok(())
    }

    /// Checks block `il`'s weights and returns its FFN width.
    fn check_block_shapes(&self, il: usize) -> Result<u64> {
        let hp = &self.hp;
        let p = |s: &str| block_weight(il, s);
        let d = Some(hp.n_embd as u64);
        let prod = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        let (nkv, hdk, hdv) = (hp.n_head_kv(il), hp.head_dim_k, hp.head_dim_v);
        let (q, k, v) = (prod(hp.n_head, hdk), prod(nkv, hdk), prod(nkv, hdv));
        for norm in [ATTN_NORM, FFN_NORM, POST_ATTN_NORM, POST_FFN_NORM] {
            if self.has(&p(norm)) {
                self.shape(&p(norm), &[d])?;
            }
        }
        for norm in [ATTN_Q_NORM, ATTN_K_NORM] {
            if self.has(&p(norm)) {
                self.shape(&p(norm), &[Some(hdk as u64)])?;
            }
        }
        if self.has(&p(ATTN_QKV)) {
            let qkv = q
                .zip(k)
                .zip(v)
                .and_then(|((q, k), v)| q.checked_add(k)?.checked_add(v));
            self.shape(&p(ATTN_QKV), &[d, qkv.or(Some(u64::MAX))])?;
        } else {
            for (name, out) in [(ATTN_Q, q), (ATTN_K, k), (ATTN_V, v)] {
                self.shape(&p(name), &[d, out.or(Some(u64::MAX))])?;
            }
        }
        self.shape(
            &p(ATTN_OUTPUT),
            &[prod(hp.n_head, hdv).or(Some(u64::MAX)), d],
        )?;
        let up = self.shape(&p(FFN_UP), &[d, None])?[1];
        let n_ff = if self.has(&p(FFN_GATE)) {
            self.shape(&p(FFN_GATE), &[d, Some(up)])?;
            up
        } else {
            up / 2
        };
        self.shape(&p(FFN_DOWN), &[Some(n_ff), d])?;
        Ok(n_ff)
    }

    /// The dims of tensor `name`, which must have as many dimensions as `want` and each
    /// dimension given there (None: any non-zero size).
    fn shape(&self, name: &str, want: &[Option<u64>]) -> Result<Vec<u64>> {
        let dims = &self.tensor(name)?.info.dims;
        let fits = dims.len() == want.len()
            && dims
                .iter()
                .zip(want)
                .all(|(&got, w)| w.map_or(got > 0, |w| got == w));
        if fits {
            return Ok(dims.clone());
        }
        let expected = want
            .iter()
            .map(|w| w.map_or("*".to_string(), |w| w.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::TensorShape {
            name: name.to_string(),
            dims: dims.clone(),
            expected: format!("[{expected}]"),
        })
    }

    /// A RoPE frequency-factor tensor, which must hold one value per rotated pair.
    fn rope_factor_tensor(&self, name: &str) -> Result<Option<Vec<f32>>> {
        let v = self.opt_vector(name)?;
        if let Some(v) = &v {
            if v.len() != self.hp.n_rot / 2 {
                return Err(Error::Forward(format!(
                    "tensor {name:?} has {} values, expected n_rot / 2 = {}",
                    v.len(),
                    self.hp.n_rot / 2
                )));
            }
        }
        Ok(v)
    }

    pub fn n_layer(&self) -> usize {
        self.hp.n_layer
    }

    fn tensor(&self, name: &str) -> Result<&ModelTensor> {
        self.model.tensor(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
        })
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let n = t.info.n_elements() as usize;
        let v = dequantize(name, t.info.ggml_type, self.model.data(t), 1, n)?;
        v.flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(candle(format!("reading {name}")))
    }

    fn has(&self, name: &str) -> bool {
        self.model.tensor(name).is_some()
    }

    fn opt_vector(&self, name: &str) -> Result<Option<Vec<f32>>> {
        if self.model.tensor(name).is_some() {
            self.vector(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A 2-d weight `name` with `n_in` values per row, as a linear layer (bias `*.bias` if present).
    /// The 2-D weight `name` taking `n_in` inputs, and its number of outputs.
    fn matrix(&self, name: &str, n_in: usize) -> Result<(&ModelTensor, usize)> {
        let t = self.tensor(name)?;
        let dims = &t.info.dims;
        if dims.len() != 2 || dims[0] as usize != n_in {
            return Err(Error::Forward(format!(
                "tensor {name:?} has dims {dims:?}, expected [{n_in}, *]"
            )));
        }
        Ok((t, dims[1] as usize))
    }

    fn linear(&self, name: &str, n_in: usize) -> Result<Linear> {
        let (t, n_out) = self.matrix(name, n_in)?;
        let w = dequantize(name, t.info.ggml_type, self.model.data(t), n_out, n_in)?;
        let w_t = w.t().map_err(candle(format!("transposing {name}")))?;
        let bias = self.opt_vector(&name.replace(".weight", ".bias"))?;
        if let Some(b) = &bias {
            if b.len() != n_out {
                return Err(Error::Forward(format!(
                    "bias of {name:?} has {} values, expected {n_out}",
                    b.len()
                )));
            }
        }
        Ok(Linear {
            w_t,
            bias,
            n_in,
            n_out,
        })
    }

    /// Dequantizes block `il`.
    pub fn load_block(&self, il: usize) -> Result<BlockWeights> {
        let hp = &self.hp;
        let p = |s: &str| block_weight(il, s);
        let d = hp.n_embd;
        let (q_out, kv_out) = (hp.n_head * hp.head_dim_k, hp.n_head_kv(il) * hp.head_dim_k);
        let v_out = hp.n_head_kv(il) * hp.head_dim_v;
        let (q, k, v) = if self.model.tensor(&p(ATTN_QKV)).is_some() {
            let qkv = self.linear(&p(ATTN_QKV), d)?;
            if qkv.n_out != q_out + kv_out + v_out {
                return Err(Error::Forward(format!(
                    "{} has {} outputs, expected {}",
                    block_tensor(il, ATTN_QKV),
                    qkv.n_out,
                    q_out + kv_out + v_out
                )));
            }
            let mut parts = [
                qkv.slice_rows(0, q_out)?,
                qkv.slice_rows(q_out, kv_out)?,
                qkv.slice_rows(q_out + kv_out, v_out)?,
            ];
            // A fused weight without attn_qkv.bias may come with separate q/k/v biases (legacy
            // and custom files); llama.cpp's build_qkv adds them when all three are present.
            if qkv.bias.is_none() {
                let b = |s: &str| self.opt_vector(&block_bias(il, s));
                if let (Some(bq), Some(bk), Some(bv)) = (b(ATTN_Q)?, b(ATTN_K)?, b(ATTN_V)?) {
                    for (part, (name, bias)) in
                        parts
                            .iter_mut()
                            .zip([(ATTN_Q, bq), (ATTN_K, bk), (ATTN_V, bv)])
                    {
                        if bias.len() != part.n_out {
                            return Err(Error::Forward(format!(
                                "{} has {} values, expected {}",
                                block_bias(il, name),
                                bias.len(),
                                part.n_out
                            )));
                        }
                        part.bias = Some(bias);
                    }
                }
            }
            let [q, k, v] = parts;
            (q, k, v)
        } else {
            (
                self.linear(&p(ATTN_Q), d)?,
                self.linear(&p(ATTN_K), d)?,
                self.linear(&p(ATTN_V), d)?,
            )
        };
        for (name, l, want) in [
            (ATTN_Q, &q, q_out),
            (ATTN_K, &k, kv_out),
            (ATTN_V, &v, v_out),
        ] {
            if l.n_out != want {
                return Err(Error::Forward(format!(
                    "{} has {} outputs, expected {want}",
                    block_tensor(il, name),
                    l.n_out
                )));
            }
        }
        let o = self.linear(&p(ATTN_OUTPUT), hp.n_head * hp.head_dim_v)?;
        let up_full = self.linear(&p(FFN_UP), d)?;
        let (gate, up) = if self.model.tensor(&p(FFN_GATE)).is_some() {
            (self.linear(&p(FFN_GATE), d)?, up_full)
        } else {
            // phi3: ffn_up holds [gate; up] (llama.cpp LLM_FFN_SWIGLU splits it in halves).
            let half = up_full.n_out / 2;
            (
                up_full.slice_rows(0, half)?,
                up_full.slice_rows(half, half)?,
            )
        };
        let down = self.linear(&p(FFN_DOWN), gate.n_out)?;
        let (q_norm, k_norm) = match self.spec.qk_norm {
            config::QkNorm::None => (None, None),
            config::QkNorm::Optional => (
                self.opt_vector(&p(ATTN_Q_NORM))?,
                self.opt_vector(&p(ATTN_K_NORM))?,
            ),
            config::QkNorm::Required => (
                Some(self.vector(&p(ATTN_Q_NORM))?),
                Some(self.vector(&p(ATTN_K_NORM))?),
            ),
        };
        let (post_attn_norm, post_ffn_norm) = if self.spec.post_norms {
            (
                Some(self.vector(&p(POST_ATTN_NORM))?),
                Some(self.vector(&p(POST_FFN_NORM))?),
            )
        } else {
            (None, None)
        };
        Ok(BlockWeights {
            attn_norm: self.vector(&p(ATTN_NORM))?,
            q,
            k,
            v,
            o,
            q_norm,
            k_norm,
            post_attn_norm,
            ffn_norm: self.vector(&p(FFN_NORM))?,
            gate,
            up,
            down,
            post_ffn_norm,
        })
    }

    /// Token embeddings of each window (rows dequantized one by one), scaled as the arch wants.
    pub fn embed(&self, windows: &[Vec<u32>]) -> Result<Batch> {
        let t = self.tensor(TOKEN_EMBD)?;
        let d = self.hp.n_embd;
        let ty = t.info.ggml_type;
        let row_bytes = ty
            .bytes_for(d as u64)
            .ok_or_else(|| Error::Forward(format!("{TOKEN_EMBD}: type {ty} rows of {d}")))?
            as usize;
        let bytes = self.model.data(t);
        let n_vocab = bytes.len() / row_bytes;
        let mut data = Vec::with_capacity(windows.iter().map(Vec::len).sum::<usize>() * d);
        for w in windows {
            for &id in w {
                let id = id as usize;
                if id >= n_vocab {
                    return Err(Error::Forward(format!(
                        "token id {id} out of range (vocabulary of {n_vocab})"
                    )));
                }
                let row = dequantize(
                    TOKEN_EMBD,
                    ty,
                    &bytes[id * row_bytes..(id + 1) * row_bytes],
                    1,
                    d,
                )?;
                data.extend(
                    row.flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(candle("embedding row"))?,
                );
            }
        }
        if self.hp.embedding_scale != 1.0 {
            data.iter_mut().for_each(|v| *v *= self.hp.embedding_scale);
        }
        Ok(Batch {
            data,
            lens: windows.iter().map(Vec::len).collect(),
            n_embd: d,
        })
    }

    /// Runs block `il` over every window of `x` in place.
    pub fn block_forward(&self, il: usize, w: &BlockWeights, x: &mut Batch) -> Result<()> {
        self.block_forward_observed(il, w, x, &mut NoObserver)
    }

    /// [`Forward::block_forward`], showing `obs` the inputs of each matmul and the FFN output.
    pub fn block_forward_observed(
        &self,
        il: usize,
        w: &BlockWeights,
        x: &mut Batch,
        obs: &mut dyn BlockObserver,
    ) -> Result<()> {
        let hp = &self.hp;
        let (d, n) = (hp.n_embd, x.n_tokens());
        let (nh, nkv, hdk, hdv) = (hp.n_head, hp.n_head_kv(il), hp.head_dim_k, hp.head_dim_v);
        let mut h = x.data.clone();
        ops::rms_norm(&mut h, d, Some(&w.attn_norm), hp.eps);
        if self.has(&block_weight(il, ATTN_QKV)) {
            obs.matmul_input(il, ATTN_QKV, &h, n);
        } else {
            for name in [ATTN_Q, ATTN_K, ATTN_V] {
                obs.matmul_input(il, name, &h, n);
            }
        }
        let mut q = w.q.forward(&h, n)?;
        let mut k = w.k.forward(&h, n)?;
        let v = w.v.forward(&h, n)?;
        crate::interrupt::check()?;
        if let Some(qn) = &w.q_norm {
            ops::rms_norm(&mut q, hdk, Some(qn), hp.eps);
        }
        if let Some(kn) = &w.k_norm {
            ops::rms_norm(&mut k, hdk, Some(kn), hp.eps);
        }
        let mut attn = vec![0.0f32; n * nh * hdv];
        let window = hp.swa_window(il);
        let base = hp.rope_base(il);
        for (&start, &len) in x.starts().iter().zip(&x.lens) {
            crate::interrupt::check()?;
            if len == 0 {
                continue;
            }
            let qw = &mut q[start * nh * hdk..(start + len) * nh * hdk];
            let kw = &mut k[start * nkv * hdk..(start + len) * nkv * hdk];
            if let Some(style) = self.spec.rope {
                let rope = ops::Rope {
                    n_rot: hp.n_rot,
                    base,
                    freq_scale: hp.rope_freq_scale,
                    factors: self.rope_factors.for_ctx(len, hp.n_ctx_orig),
                    mscale: hp.rope_attn_factor,
                    style,
                };
                rope.apply(qw, nh, hdk);
                rope.apply(kw, nkv, hdk);
            }
            let vw = &v[start * nkv * hdv..(start + len) * nkv * hdv];
            let out = self.attention(qw, kw, vw, len, nkv, window)?;
            attn[start * nh * hdv..(start + len) * nh * hdv].copy_from_slice(&out);
        }
        obs.matmul_input(il, ATTN_OUTPUT, &attn, n);
        let mut a = w.o.forward(&attn, n)?;
        crate::interrupt::check()?;
        if let Some(pn) = &w.post_attn_norm {
            ops::rms_norm(&mut a, d, Some(pn), hp.eps);
        }
        x.data.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
        drop((a, attn, q, k, v));
        let mut h = x.data.clone();
        ops::rms_norm(&mut h, d, Some(&w.ffn_norm), hp.eps);
        if self.has(&block_weight(il, FFN_GATE)) {
            obs.matmul_input(il, FFN_GATE, &h, n);
        }
        obs.matmul_input(il, FFN_UP, &h, n);
        let mut g = w.gate.forward(&h, n)?;
        let u = w.up.forward(&h, n)?;
        crate::interrupt::check()?;
        let act: fn(f32) -> f32 = match self.spec.activation {
            config::Activation::Silu => ops::silu,
            config::Activation::GeluTanh => ops::gelu_tanh,
        };
        {
            use rayon::prelude::*;
            g.par_iter_mut()
                .zip(u.par_iter())
                .for_each(|(g, u)| *g = act(*g) * u);
        }
        obs.matmul_input(il, FFN_DOWN, &g, n);
        let mut f = w.down.forward(&g, n)?;
        if let Some(pn) = &w.post_ffn_norm {
            ops::rms_norm(&mut f, d, Some(pn), hp.eps);
        }
        obs.ffn_output(il, &f, n);
        x.data.iter_mut().zip(&f).for_each(|(x, f)| *x += f);
        Ok(())
    }

    /// Attention of one window: q `[t, n_head, hd]`, k/v `[t, n_kv, hd]`; returns `[t, n_head, hd_v]`.
    fn attention(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        nkv: usize,
        window: Option<usize>,
    ) -> Result<Vec<f32>> {
        let hp = &self.hp;
        let (nh, hdk, hdv) = (hp.n_head, hp.head_dim_k, hp.head_dim_v);
        let g = nh / nkv;
        let dev = &Device::Cpu;
        let err = candle("attention");
        let run = || -> candle_core::Result<Vec<f32>> {
            // Heads h = kv * g + j share kv head `kv` (llama.cpp's GQA grouping), so q as
            // (n_kv, g * t, hd) lines up with k as (n_kv, t, hd).
            let qt = Tensor::from_slice(q, (t, nh, hdk), dev)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((nkv, g * t, hdk))?;
            let kt = Tensor::from_slice(k, (t, nkv, hdk), dev)?
                .transpose(0, 1)?
                .contiguous()?;
            let vt = Tensor::from_slice(v, (t, nkv, hdv), dev)?
                .transpose(0, 1)?
                .contiguous()?;
            let scores = qt.matmul(&kt.t()?)?;
            let mut s: Vec<f32> = scores.flatten_all()?.to_vec1()?;
            ops::masked_softmax(&mut s, t, hp.attn_scale, hp.attn_softcap, window);
            let p = Tensor::from_vec(s, (nkv, g * t, t), dev)?;
            let o = p
                .matmul(&vt)?
                .reshape((nh, t, hdv))?
                .transpose(0, 1)?
                .contiguous()?;
            o.flatten_all()?.to_vec1()
        };
        run().map_err(err)
    }

    /// Runs the windows through every block not in `skip`, layer-major, calling
    /// `observe(il, &batch)` with the residual stream entering each run block `il`, then
    /// `observe(n_layer, &batch)` with the final stream. Returns the final stream.
    pub fn run(
        &self,
        windows: &[Vec<u32>],
        skip: &[usize],
        observe: &mut dyn FnMut(usize, &Batch) -> Result<()>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Batch> {
        self.run_cached(windows, skip, None, observe, progress)
            .map(|(x, _)| x)
    }

    /// [`Forward::run`] resuming from the latest state in `cache` that is valid for `skip`, and
    /// recording states into it. Returns the final stream and the block it resumed at
    /// (`observe` is called only from there on).
    pub fn run_cached(
        &self,
        windows: &[Vec<u32>],
        skip: &[usize],
        cache: Option<&mut StateCache>,
        observe: &mut dyn FnMut(usize, &Batch) -> Result<()>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Batch, usize)> {
        self.run_cached_observed(windows, skip, cache, observe, &mut NoObserver, progress)
    }

    /// [`Forward::run_cached`], also showing `obs` the inside of every block it runs (so that one
    /// calibration pass can both score blocks and collect an importance matrix).
    pub fn run_cached_observed(
        &self,
        windows: &[Vec<u32>],
        skip: &[usize],
        mut cache: Option<&mut StateCache>,
        observe: &mut dyn FnMut(usize, &Batch) -> Result<()>,
        obs: &mut dyn BlockObserver,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Batch, usize)> {
        let (start, mut x) = match cache.as_deref().and_then(|c| c.lookup(skip)) {
            Some((b, x)) => (b, x.clone()),
            None => (0, self.embed(windows)?),
        };
        for il in start..self.hp.n_layer {
            crate::interrupt::check()?;
            if skip.contains(&il) {
                progress(il);
                continue;
            }
            if let Some(c) = cache.as_deref_mut() {
                if il > start {
                    c.insert(il, skip, &x);
                }
            }
            observe(il, &x)?;
            let w = self.load_block(il)?;
            self.block_forward_observed(il, &w, &mut x, obs)?;
            x.check_finite(il)?;
            progress(il);
        }
        observe(self.hp.n_layer, &x)?;
        Ok((x, start))
    }

    /// `output.weight`, or the tied `token_embd.weight`.
    fn output_head_name(&self) -> &'static str {
        if self.model.tensor(OUTPUT).is_some() {
            OUTPUT
        } else {
            TOKEN_EMBD
        }
    }

    /// The output head (`output.weight`, else the tied `token_embd.weight`), dequantized whole
    /// when it fits `budget_bytes` as f32, otherwise read slice by slice from the file for every
    /// group of positions.
    pub fn output_head_within(&self, budget_bytes: usize) -> Result<OutputHead> {
        let name = self.output_head_name();
        let n_in = self.hp.n_embd;
        let (t, n_out) = self.matrix(name, n_in)?;
        let ty = t.info.ggml_type;
        let row_bytes = ty.bytes_for(n_in as u64).map(|b| b as usize);
        let has_bias = name == OUTPUT && self.model.tensor(OUTPUT_BIAS).is_some();
        match row_bytes {
            Some(row_bytes) if n_out * n_in * 4 > budget_bytes && !has_bias => {
                Ok(OutputHead::Sliced(SlicedHead {
                    name,
                    ty,
                    row_bytes,
                    n_in,
                    n_out,
                    slice_rows: (budget_bytes / 8 / (n_in * 4)).clamp(1, n_out),
                }))
            }
            _ => {
                let mut head = self.linear(name, n_in)?;
                if name == TOKEN_EMBD {
                    head.bias = None;
                }
                Ok(OutputHead::Whole(head))
            }
        }
    }
}

/// The output head as [`ModelLogits`] holds it. Dequantized to f32, gemma3's 262,144 x 640 head
/// alone is 640 MiB, more than the rest of a scoring run; sliced, it costs a dequantization of
/// the head per group of positions (about a tenth of the matmul's time) and a few MiB.
pub enum OutputHead {
    Whole(Linear),
    Sliced(SlicedHead),
}

/// An output head read from the file a slice of vocabulary rows at a time.
pub struct SlicedHead {
    name: &'static str,
    ty: GgmlType,
    row_bytes: usize,
    n_in: usize,
    n_out: usize,
    /// Vocabulary rows dequantized at a time.
    slice_rows: usize,
}

impl OutputHead {
    pub fn n_out(&self) -> usize {
        match self {
            OutputHead::Whole(l) => l.n_out,
            OutputHead::Sliced(s) => s.n_out,
        }
    }

    /// `n` rows of logits for the `n` normalised rows in `h`.
    fn forward(&self, model: &Model, h: &[f32], n: usize) -> Result<Vec<f32>> {
        match self {
            OutputHead::Whole(l) => l.forward(h, n),
            OutputHead::Sliced(s) => s.forward(model, h, n),
        }
    }
}

impl SlicedHead {
    fn forward(&self, model: &Model, h: &[f32], n: usize) -> Result<Vec<f32>> {
        let (name, n_in, n_out) = (self.name, self.n_in, self.n_out);
        let t = model
            .tensor(name)
            .ok_or_else(|| Error::Forward(format!("tensor {name:?} is missing")))?;
        let bytes = model.data(t);
        let x = Tensor::from_slice(h, (n, n_in), &Device::Cpu).map_err(candle("head input"))?;
        let mut out = vec![0f32; n * n_out];
        let mut r0 = 0;
        while r0 < n_out {
            crate::interrupt::check()?;
            let r1 = (r0 + self.slice_rows).min(n_out);
            let rows = &bytes[r0 * self.row_bytes..r1 * self.row_bytes];
            // The head is dequantized once per group of positions: most of the slicing's cost.
            let w = dequantize(name, self.ty, rows, r1 - r0, n_in)?;
            let y: Vec<f32> = x
                .matmul(&w.t().map_err(candle("head slice"))?)
                .and_then(|y| y.flatten_all())
                .and_then(|y| y.to_vec1())
                .map_err(candle("head matmul"))?;
            for (dst, src) in out.chunks_mut(n_out).zip(y.chunks(r1 - r0)) {
                dst[r0..r1].copy_from_slice(src);
            }
            r0 = r1;
        }
        Ok(out)
    }
}

/// A full-model [`LogitsSource`], optionally with some blocks skipped (what a pruned file with
/// the kept layers' true per-layer roles computes).
pub struct ModelLogits<'m> {
    pub forward: Forward<'m>,
    pub skip: Vec<usize>,
    /// Upper bound on the activations of one layer-major batch, in bytes.
    pub batch_bytes: usize,
    /// Largest output head held dequantized; larger ones are read in slices.
    pub head_bytes: usize,
    head: Option<(OutputHead, Vec<f32>)>,
}

impl<'m> ModelLogits<'m> {
    pub fn new(model: &'m Model) -> Result<ModelLogits<'m>> {
        Ok(ModelLogits {
            forward: Forward::new(model)?,
            skip: Vec::new(),
            batch_bytes: 256 << 20,
            head_bytes: 256 << 20,
            head: None,
        })
    }

    pub fn with_skip(mut self, skip: Vec<usize>) -> Self {
        self.skip = skip;
        self
    }
}

impl LogitsSource for ModelLogits<'_> {
    fn n_vocab(&self) -> usize {
        let t = self
            .forward
            .model
            .tensor(OUTPUT)
            .or_else(|| self.forward.model.tensor(TOKEN_EMBD));
        t.map(|t| t.info.dims.get(1).copied().unwrap_or(0) as usize)
            .unwrap_or(0)
    }

    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.logits_cached(windows, first, None, f)
    }
}

impl ModelLogits<'_> {
    /// [`LogitsSource::logits`] resuming from and recording into `cache` (which must belong to
    /// these windows) when all windows fit one batch.
    #[allow(clippy::type_complexity)]
    pub fn logits_cached(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        mut cache: Option<&mut StateCache>,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        if self.head.is_none() {
            self.head = Some((
                self.forward.output_head_within(self.head_bytes)?,
                self.forward.vector(OUTPUT_NORM)?,
            ));
        }
        let fw = &self.forward;
        let d = fw.hp.n_embd;
        // Activations of a block are a small multiple of n_embd per token (q, k, v, gate, up).
        let per_token = 4 * (4 * d + 3 * fw.hp.n_ff.max(d)) + 4 * fw.hp.n_head * 64;
        let mut i = 0;
        while i < windows.len() {
            let mut tokens = 0;
            let mut j = i;
            while j < windows.len()
                && (j == i || (tokens + windows[j].len()) * per_token <= self.batch_bytes)
            {
                tokens += windows[j].len();
                j += 1;
            }
            let c = if i == 0 && j == windows.len() {
                cache.as_deref_mut()
            } else {
                None
            };
            let (x, _) = fw.run_cached(
                &windows[i..j],
                &self.skip,
                c,
                &mut |_, _| Ok(()),
                &mut |_| {},
            )?;
            let (head, norm) = self.head.as_ref().expect("head loaded above");
            // Positions per head pass; a sliced head is dequantized once per pass, so it gets
            // larger passes (gemma3: 256 positions, 256 MiB of logits).
            let group = match head {
                OutputHead::Whole(_) => 128,
                OutputHead::Sliced(_) => {
                    (self.head_bytes / (4 * head.n_out()).max(1)).clamp(128, 512)
                }
            };
            for (wi, (&start, &len)) in x.starts().iter().zip(&x.lens).enumerate() {
                let mut p = first;
                while p < len {
                    crate::interrupt::check()?;
                    let e = (p + group).min(len);
                    let mut h = x.data[(start + p) * d..(start + e) * d].to_vec();
                    ops::rms_norm(&mut h, d, Some(norm), fw.hp.eps);
                    let mut logits = head.forward(fw.model, &h, e - p)?;
                    if let Some(cap) = fw.hp.final_softcap {
                        logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
                    }
                    for (r, row) in logits.chunks(head.n_out()).enumerate() {
                        f(i + wi, p + r, row)?;
                    }
                    p = e;
                }
            }
            i = j;
        }
        Ok(())
    }
}
