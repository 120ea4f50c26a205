//! One decoder block: its weights, dequantized and checked against the hyper-parameters, and
//! its forward over a batch.

use super::moe::MoeWeights;
use super::{config, ops, Batch, Forward, Linear};
use crate::arch::names::*;
use crate::error::{Error, Result};

/// One decoder block's weights, dequantized.
pub struct BlockWeights {
    pub(super) attn_norm: Vec<f32>,
    pub(super) q: Linear,
    pub(super) k: Linear,
    pub(super) v: Linear,
    pub(super) o: Linear,
    pub(super) q_norm: Option<Vec<f32>>,
    pub(super) k_norm: Option<Vec<f32>>,
    pub(super) post_attn_norm: Option<Vec<f32>>,
    /// One softmax sink logit per head (gpt-oss), where the recipe has them.
    pub(super) attn_sinks: Option<Vec<f32>>,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) ffn: Ffn,
    pub(super) post_ffn_norm: Option<Vec<f32>>,
}

/// A block's FFN: one gated FFN, or a router and its experts.
pub(super) enum Ffn {
    Dense {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    Moe(MoeWeights),
}

/// Sees intermediate activations of a block during [`Forward::block_forward`].
pub trait BlockObserver {
    /// The input rows (n rows of `x.len() / n`) of the matmul with weight `blk.{il}.{weight}.weight`.
    /// Fused weights are reported under their own name (`attn_qkv`; phi3's `ffn_up` holding gate
    /// and up); `ffn_down` sees the activated product `act(gate) * up`.
    fn matmul_input(&mut self, _il: usize, _weight: &str, _x: &[f32], _n: usize) {}
    /// Block `il`'s FFN output exactly as it is added to the residual stream: after `ffn_down`
    /// (and its bias) and after the post-FFN norm where the architecture has one (gemma2/3's
    /// `post_ffw_norm`). n rows of `n_embd`.
    fn ffn_output(&mut self, _il: usize, _f: &[f32], _n: usize) {}
    /// Mixture-of-experts block `il`'s routing of its tokens: `routes` holds, token after token,
    /// each token's selected experts in slot order (`routes.len() / n` per token), with their
    /// weights and the L2 norms of their outputs (REAP's saliency, before weighting).
    fn expert_routing(&mut self, _il: usize, _routes: &[ExpertRoute], _n: usize) {}
}

/// One token's use of one expert in a mixture-of-experts block.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExpertRoute {
    pub expert: usize,
    /// The router's weight (after gating and normalization).
    pub weight: f32,
    /// L2 norm of the expert's output for the token (its `ffn_down` row, unweighted).
    pub norm: f32,
}

/// A [`BlockObserver`] that looks at nothing: what a block shows when no one watches.
struct NoObserver;

impl BlockObserver for NoObserver {}

impl Forward<'_> {
    /// Every tensor the pass reads has the shape the hyper-parameters imply (what llama.cpp's
    /// `create_tensor` checks), so that nothing is sized by a hyper-parameter the tensors do not
    /// bear out and a wrong-length norm is an error, not a NaN.
    pub(super) fn check_shapes(&self) -> Result<()> {
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
        // With experts, `feed_forward_length` is checked against them (`moe`), or is not used.
        if hp.moe.is_none() && hp.n_ff != 0 && hp.n_ff as u64 != n_ff_max {
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

    /// Checks block `il`'s weights and returns its FFN width (0 for experts).
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
        if self.spec.attn_sinks {
            self.shape(&p(ATTN_SINKS), &[Some(hp.n_head as u64)])?;
        }
        if let Some(moe) = &hp.moe {
            self.check_expert_shapes(il, moe)?;
            return Ok(0);
        }
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
    pub(super) fn shape(&self, name: &str, want: &[Option<u64>]) -> Result<Vec<u64>> {
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

    /// Dequantizes block `il`. Its shapes are not checked again: [`Forward::new`] checked every
    /// block's.
    pub fn load_block(&self, il: usize) -> Result<BlockWeights> {
        let p = |s: &str| block_weight(il, s);
        let (q, k, v) = self.load_qkv(il)?;
        let o = self.linear(&p(ATTN_OUTPUT))?;
        let ffn = match self.hp.moe {
            Some(_) => Ffn::Moe(self.load_experts(il)?),
            None => self.load_dense_ffn(il)?,
        };
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
            attn_sinks: self
                .spec
                .attn_sinks
                .then(|| self.vector(&p(ATTN_SINKS)))
                .transpose()?,
            ffn_norm: self.vector(&p(FFN_NORM))?,
            ffn,
            post_ffn_norm,
        })
    }

    /// Block `il`'s dense FFN (gate and up split out of phi3's fused `ffn_up`).
    fn load_dense_ffn(&self, il: usize) -> Result<Ffn> {
        let p = |s: &str| block_weight(il, s);
        let up_full = self.linear(&p(FFN_UP))?;
        let (gate, up) = if self.has(&p(FFN_GATE)) {
            (self.linear(&p(FFN_GATE))?, up_full)
        } else {
            // phi3: ffn_up holds [gate; up] (llama.cpp LLM_FFN_SWIGLU splits it in halves).
            let half = up_full.n_out / 2;
            (
                up_full.slice_rows(0, half)?,
                up_full.slice_rows(half, half)?,
            )
        };
        let down = self.linear(&p(FFN_DOWN))?;
        Ok(Ffn::Dense { gate, up, down })
    }

    /// Block `il`'s q, k and v projections, split out of `attn_qkv` where the file fuses them.
    fn load_qkv(&self, il: usize) -> Result<(Linear, Linear, Linear)> {
        let p = |s: &str| block_weight(il, s);
        if !self.has(&p(ATTN_QKV)) {
            return Ok((
                self.linear(&p(ATTN_Q))?,
                self.linear(&p(ATTN_K))?,
                self.linear(&p(ATTN_V))?,
            ));
        }
        let hp = &self.hp;
        let (q_out, kv_out) = (hp.n_head * hp.head_dim_k, hp.n_head_kv(il) * hp.head_dim_k);
        let v_out = hp.n_head_kv(il) * hp.head_dim_v;
        let qkv = self.linear(&p(ATTN_QKV))?;
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
        Ok((q, k, v))
    }

    /// Runs block `il` over every window of `x` in place, showing `observer`, if any, the inputs
    /// of each matmul and the FFN output.
    pub fn block_forward(
        &self,
        il: usize,
        w: &BlockWeights,
        x: &mut Batch,
        observer: Option<&mut dyn BlockObserver>,
    ) -> Result<()> {
        let obs: &mut dyn BlockObserver = match observer {
            Some(obs) => obs,
            None => &mut NoObserver,
        };
        self.attention_half(il, w, x, obs)?;
        self.ffn_half(il, w, x, obs)
    }

    /// The residual stream of `x` RMS-normalised and scaled by `weight`: a block half's input.
    pub(super) fn normed(&self, x: &Batch, weight: &[f32]) -> Vec<f32> {
        let mut h = x.data.clone();
        ops::rms_norm(&mut h, self.hp.n_embd, Some(weight), self.hp.eps);
        h
    }

    /// A block half's output as it joins the residual stream: through the half's post-norm where
    /// the architecture has one (gemma2/3), then scaled by granite's residual scale (1 elsewhere).
    pub(super) fn half_output(&self, out: &mut [f32], post_norm: Option<&[f32]>) {
        let hp = &self.hp;
        if let Some(pn) = post_norm {
            ops::rms_norm(out, hp.n_embd, Some(pn), hp.eps);
        }
        if hp.residual_scale != 1.0 {
            out.iter_mut().for_each(|v| *v *= hp.residual_scale);
        }
    }

    /// The FFN half of block `il`: adds its output to every window of `x`, showing `obs` the
    /// inputs of its matmuls and its output.
    fn ffn_half(
        &self,
        il: usize,
        w: &BlockWeights,
        x: &mut Batch,
        obs: &mut dyn BlockObserver,
    ) -> Result<()> {
        let n = x.n_tokens();
        let h = self.normed(x, &w.ffn_norm);
        let mut f = match &w.ffn {
            Ffn::Dense { gate, up, down } => {
                if self.has(&block_weight(il, FFN_GATE)) {
                    obs.matmul_input(il, FFN_GATE, &h, n);
                }
                obs.matmul_input(il, FFN_UP, &h, n);
                let g = self.gated(gate, up, &h, n)?;
                obs.matmul_input(il, FFN_DOWN, &g, n);
                down.forward(&g, n)?
            }
            Ffn::Moe(experts) => self.moe_ffn(il, experts, &h, n, obs)?,
        };
        self.half_output(&mut f, w.post_ffn_norm.as_deref());
        obs.ffn_output(il, &f, n);
        x.data.iter_mut().zip(&f).for_each(|(x, f)| *x += f);
        Ok(())
    }

    /// `act(x gate^T) * (x up^T)` for `n` rows `x`: the input of an FFN's down projection.
    pub(super) fn gated(
        &self,
        gate: &Linear,
        up: &Linear,
        x: &[f32],
        n: usize,
    ) -> Result<Vec<f32>> {
        let mut g = gate.forward(x, n)?;
        let u = up.forward(x, n)?;
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
        Ok(g)
    }
}
