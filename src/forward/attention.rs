//! Self-attention of a block: the q/k/v projections, RoPE, masked softmax per window, and the
//! output projection added to the residual stream.

use super::{candle, ops, Batch, BlockObserver, BlockWeights, Forward};
use crate::arch::names::*;
use crate::error::Result;
use candle_core::{Device, Tensor};

/// Per-frequency RoPE divisors (ggml_rope_ext's `freq_factors`, n_rot / 2 values), shared by
/// every layer: llama3's `rope_freqs.weight`, or phi3's `rope_factors_short.weight` /
/// `rope_factors_long.weight`, which llama.cpp picks by context size (`get_rope_factors`).
#[derive(Default)]
pub(super) struct RopeFactors {
    pub(super) freqs: Option<Vec<f32>>,
    pub(super) short: Option<Vec<f32>>,
    pub(super) long: Option<Vec<f32>>,
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

impl Forward<'_> {
    /// The attention half of block `il`: adds its output to every window of `x`, showing `obs`
    /// the inputs of the q/k/v and output matmuls.
    pub(super) fn attention_half(
        &self,
        il: usize,
        w: &BlockWeights,
        x: &mut Batch,
        obs: &mut dyn BlockObserver,
    ) -> Result<()> {
        let hp = &self.hp;
        let n = x.n_tokens();
        let h = self.normed(x, &w.attn_norm);
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
            ops::rms_norm(&mut q, hp.head_dim_k, Some(qn), hp.eps);
        }
        if let Some(kn) = &w.k_norm {
            ops::rms_norm(&mut k, hp.head_dim_k, Some(kn), hp.eps);
        }
        let attn = self.attend_windows(il, w, x, [&mut q, &mut k], &v)?;
        obs.matmul_input(il, ATTN_OUTPUT, &attn, n);
        let mut a = w.o.forward(&attn, n)?;
        crate::interrupt::check()?;
        self.half_output(&mut a, w.post_attn_norm.as_deref());
        x.data.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
        Ok(())
    }

    /// RoPE and attention of each window of `x` apart, from q `[n, n_head, hd]` and k/v
    /// `[n, n_kv, hd]` over the batch's `n` tokens; returns `[n, n_head, hd_v]`.
    fn attend_windows(
        &self,
        il: usize,
        w: &BlockWeights,
        x: &Batch,
        [q, k]: [&mut [f32]; 2],
        v: &[f32],
    ) -> Result<Vec<f32>> {
        let hp = &self.hp;
        let (nh, nkv, hdk, hdv) = (hp.n_head, hp.n_head_kv(il), hp.head_dim_k, hp.head_dim_v);
        let mut attn = vec![0.0f32; x.n_tokens() * nh * hdv];
        let softmax = ops::Softmax {
            scale: hp.attn_scale,
            softcap: hp.attn_softcap,
            window: hp.swa_window(il),
            sinks: w.attn_sinks.as_deref(),
        };
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
                    yarn: hp.rope_yarn,
                };
                rope.apply(qw, nh, hdk);
                rope.apply(kw, nkv, hdk);
            }
            let vw = &v[start * nkv * hdv..(start + len) * nkv * hdv];
            let out = self.attention(qw, kw, vw, len, nkv, &softmax)?;
            attn[start * nh * hdv..(start + len) * nh * hdv].copy_from_slice(&out);
        }
        Ok(attn)
    }

    /// Attention of one window: q `[t, n_head, hd]`, k/v `[t, n_kv, hd]`; returns `[t, n_head, hd_v]`.
    fn attention(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        nkv: usize,
        softmax: &ops::Softmax,
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
            softmax.apply(&mut s, t);
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
}
