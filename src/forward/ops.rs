//! Element-wise and row-wise kernels on plain `f32` rows, matching ggml's CPU definitions.
//! Matrix products go through candle (see [`super::Linear`]); these are the cheap parts.

use rayon::prelude::*;

/// RMS norm of each `dim`-wide row in place, then a per-element weight (llama.cpp's
/// `build_norm(.., LLM_NORM_RMS)`; gemma's `1 + w` is already folded into GGUF weights).
pub fn rms_norm(x: &mut [f32], dim: usize, weight: Option<&[f32]>, eps: f32) {
    x.par_chunks_mut(dim).for_each(|row| {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / ((ss / dim as f64) as f32 + eps).sqrt();
        match weight {
            Some(w) => row.iter_mut().zip(w).for_each(|(v, w)| *v = *v * scale * w),
            None => row.iter_mut().for_each(|v| *v *= scale),
        }
    });
}

pub use crate::arch::RopeStyle;

/// Rotary position embedding of `x` laid out as `[tokens, heads, head_dim]`, token t at
/// position `t`, rotating the first `n_rot` values of each head.
pub fn rope(
    x: &mut [f32],
    n_head: usize,
    head_dim: usize,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    style: RopeStyle,
) {
    Rope {
        n_rot,
        base,
        freq_scale,
        factors: None,
        mscale: 1.0,
        style,
        yarn: None,
    }
    .apply(x, n_head, head_dim)
}

/// YaRN's correction of interpolated RoPE (ggml's `rope_yarn`, on when llama.cpp's
/// `yarn_ext_factor` is not 0, i.e. for `rope.scaling.type = yarn`): pairs that turn fast
/// enough over the original context keep their extrapolated (unscaled) angle, slow ones take the
/// interpolated one (times `freq_scale`), and a linear ramp between two pair indices blends them;
/// cos and sin are scaled by `1 + 0.1 ln(1 / freq_scale)` on top of the attention factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// Weight of the ramp (llama.cpp's `yarn_ext_factor`, 1 for YaRN files).
    pub ext_factor: f32,
    /// Rotations over the original context above which a pair extrapolates (llama.cpp's
    /// `yarn_beta_fast`, 32).
    pub beta_fast: f32,
    /// Rotations below which a pair interpolates (`yarn_beta_slow`, 1).
    pub beta_slow: f32,
    /// The context the model was trained on (`rope.scaling.original_context_length`).
    pub n_ctx_orig: usize,
}

impl Yarn {
    /// The pair indices where the ramp starts and ends (ggml's `ggml_rope_yarn_corr_dims`): the
    /// pair that turns `beta` times over the original context is
    /// `n_rot ln(n_ctx_orig / (2 pi beta)) / (2 ln base)`.
    pub fn corr_dims(&self, n_rot: usize, base: f32) -> (f32, f32) {
        let dim = |beta: f32| {
            n_rot as f32 * (self.n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = dim(self.beta_fast).floor();
        let end = dim(self.beta_slow).ceil();
        (start.max(0.0), end.min(n_rot as f32 - 1.0))
    }

    /// How much of pair `i`'s angle is extrapolated: 1 below `low`, 0 above `high`, linear
    /// between (ggml's `rope_yarn_ramp`), times the ramp's weight.
    fn mix(&self, (low, high): (f32, f32), i: usize) -> f32 {
        let y = (i as f32 - low) / (high - low).max(0.001);
        (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor
    }

    /// The magnitude correction for interpolating by `freq_scale`.
    fn mscale(&self, freq_scale: f32) -> f32 {
        1.0 + 0.1 * (1.0 / freq_scale).ln()
    }
}

/// RoPE as ggml_rope_ext computes it: pair i of position p turns by
/// `p * freq_scale * base^(-2i/n_rot) / factors[i]`, and cos and sin are scaled by `mscale`
/// (llama.cpp's attention factor); with `yarn`, YaRN blends in the unscaled angle (see [`Yarn`]).
pub struct Rope<'a> {
    pub n_rot: usize,
    pub base: f32,
    pub freq_scale: f32,
    /// Per-pair frequency divisors (n_rot / 2 values).
    pub factors: Option<&'a [f32]>,
    pub mscale: f32,
    pub style: RopeStyle,
    pub yarn: Option<Yarn>,
}

impl Rope<'_> {
    /// Rotates `x`, laid out as `[tokens, heads, head_dim]`, token t at position t.
    pub fn apply(&self, x: &mut [f32], n_head: usize, head_dim: usize) {
        let (n_rot, style, mscale) = (self.n_rot, self.style, self.mscale);
        let half = n_rot / 2;
        // theta_i = pos * base^(-2i/n_rot), as ggml computes it (powers of theta_scale).
        let inv: Vec<f32> = (0..half)
            .map(|i| {
                let f = self.base.powf(-2.0 * i as f32 / n_rot as f32);
                match self.factors {
                    Some(ff) => f / ff[i],
                    None => f,
                }
            })
            .collect();
        let freq_scale = self.freq_scale;
        // Per pair, the share of the extrapolated angle (none without YaRN).
        let yarn = self.yarn.map(|y| {
            let dims = y.corr_dims(n_rot, self.base);
            let mix: Vec<f32> = (0..half).map(|i| y.mix(dims, i)).collect();
            (mix, mscale * y.mscale(freq_scale))
        });
        x.par_chunks_mut(n_head * head_dim)
            .enumerate()
            .for_each(|(pos, tok)| {
                let cs: Vec<(f32, f32)> = match &yarn {
                    None => {
                        let p = pos as f32 * freq_scale;
                        inv.iter()
                            .map(|&f| {
                                let t = p * f;
                                (t.cos() * mscale, t.sin() * mscale)
                            })
                            .collect()
                    }
                    Some((mix, m)) => inv
                        .iter()
                        .zip(mix)
                        .map(|(&f, &mix)| {
                            let extrap = pos as f32 * f;
                            let interp = freq_scale * extrap;
                            let t = interp * (1.0 - mix) + extrap * mix;
                            (t.cos() * m, t.sin() * m)
                        })
                        .collect(),
                };
                for head in tok.chunks_mut(head_dim) {
                    for (i, &(c, s)) in cs.iter().enumerate() {
                        let (a, b) = match style {
                            RopeStyle::Norm => (2 * i, 2 * i + 1),
                            RopeStyle::Neox => (i, i + half),
                        };
                        let (x0, x1) = (head[a], head[b]);
                        head[a] = x0 * c - x1 * s;
                        head[b] = x0 * s + x1 * c;
                    }
                }
            });
    }
}

/// ggml's tanh approximation of GELU.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// The softmax of attention scores: scaled, optionally soft-capped, causal (optionally within
/// a sliding window), optionally with attention sinks.
pub struct Softmax<'a> {
    /// Multiplies every score first (1/sqrt(head_dim) and the like).
    pub scale: f32,
    /// gemma2's `cap * tanh(s / cap)` of each scaled score.
    pub softcap: Option<f32>,
    /// Query q sees keys k with q - k < window (and always k <= q).
    pub window: Option<usize>,
    /// One logit per head that joins each row's normalisation without a value to weigh (gpt-oss's
    /// `attn_sinks`, ggml's `soft_max_add_sinks`): the row's weights sum to less than 1 by
    /// `exp(sink) / (exp(sink) + sum exp(score))`. Not scaled, not soft-capped.
    pub sinks: Option<&'a [f32]>,
}

impl Softmax<'_> {
    /// Normalises `scores`, laid out as `[heads, t, t]`, row by row in place.
    pub fn apply(&self, scores: &mut [f32], t: usize) {
        scores
            .par_chunks_mut(t)
            .enumerate()
            .for_each(|(row_index, row)| {
                let q = row_index % t;
                let sink = self.sinks.map(|s| s[row_index / t]);
                self.row(row, q, sink)
            });
    }

    /// Query `q`'s row, in ggml's order: the maximum over the visible scores and the sink, the
    /// sum of exponentials in f64, the sink's term added last.
    fn row(&self, row: &mut [f32], q: usize, sink: Option<f32>) {
        let lo = match self.window {
            Some(w) => (q + 1).saturating_sub(w),
            None => 0,
        };
        let mut max = f32::NEG_INFINITY;
        for v in &mut row[lo..=q] {
            let mut s = *v * self.scale;
            if let Some(cap) = self.softcap {
                s = cap * (s / cap).tanh();
            }
            *v = s;
            max = max.max(s);
        }
        if let Some(sk) = sink {
            max = if max > sk { max } else { sk };
        }
        let mut sum = 0.0f64;
        for v in &mut row[lo..=q] {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
        if let Some(sk) = sink {
            sum += (sk - max).exp() as f64;
        }
        let inv = (1.0 / sum) as f32;
        row[..lo].iter_mut().for_each(|v| *v = 0.0);
        row[lo..=q].iter_mut().for_each(|v| *v *= inv);
        row[q + 1..].iter_mut().for_each(|v| *v = 0.0);
    }
}

/// gpt-oss's clamped SwiGLU of one gate and up value (ggml's `swiglu_oai`; llama.cpp's
/// openai-moe passes alpha [`SWIGLU_OAI_ALPHA`] and limit [`SWIGLU_OAI_LIMIT`]): the gate is
/// capped at `limit` from above only, the up value clamped to `[-limit, limit]`, and the result
/// is `gate * sigmoid(alpha * gate) * (up + 1)`.
pub fn swiglu_oai(gate: f32, up: f32, alpha: f32, limit: f32) -> f32 {
    // std::min and std::clamp: a NaN input passes through, as in ggml.
    let x = if limit < gate { limit } else { gate };
    let y = if up < -limit {
        -limit
    } else if limit < up {
        limit
    } else {
        up
    };
    x / (1.0 + (alpha * -x).exp()) * (y + 1.0)
}

/// The sigmoid's sharpness in gpt-oss's SwiGLU (llama.cpp `LLM_FFN_SWIGLU_OAI_MOE`).
pub const SWIGLU_OAI_ALPHA: f32 = 1.702;
/// The clamp of gpt-oss's SwiGLU inputs.
pub const SWIGLU_OAI_LIMIT: f32 = 7.0;

/// Cosine similarity of two rows (f64 accumulation); `None` when either is zero or not finite.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let c = ab / (aa.sqrt() * bb.sqrt());
    c.is_finite().then_some(c.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(window: Option<usize>, sinks: Option<&[f32]>) -> Softmax<'_> {
        Softmax {
            scale: 1.0,
            softcap: None,
            window,
            sinks,
        }
    }

    #[test]
    fn softmax_respects_causality_and_window() {
        let t = 4;
        let mut s = vec![1.0f32; t * t];
        softmax(Some(2), None).apply(&mut s, t);
        // Row 3 sees keys 2 and 3 only.
        assert_eq!(&s[12..16], &[0.0, 0.0, 0.5, 0.5]);
        assert_eq!(&s[0..4], &[1.0, 0.0, 0.0, 0.0]);
    }

    /// A sink joins the denominator: with equal scores 0 and a sink of ln 2 over 2 visible keys,
    /// each key gets 1 / (1 + 1 + 2); a sink far above the scores takes nearly all the weight
    /// (where the maximum must come from the sink, or the exponentials would overflow).
    #[test]
    fn sinks_join_the_denominator_per_head() {
        let t = 2;
        // Two heads of 2 x 2 scores: head 0 with sink ln 2, head 1 with sink 100.
        let mut s = vec![0.0f32; 2 * t * t];
        softmax(None, Some(&[2f32.ln(), 100.0])).apply(&mut s, t);
        assert!((s[0] - 1.0 / 3.0).abs() < 1e-6, "{s:?}"); // 1 key + sink 2
        assert_eq!(s[1], 0.0);
        assert!((s[2] - 0.25).abs() < 1e-6 && (s[3] - 0.25).abs() < 1e-6);
        assert!(s[4..].iter().all(|&p| (0.0..1e-40).contains(&p)), "{s:?}");
        // Without sinks each row sums to 1.
        let mut s = vec![0.0f32; 2 * t * t];
        softmax(None, None).apply(&mut s, t);
        assert_eq!(&s[2..4], &[0.5, 0.5]);
    }

    /// ggml's definition at hand-picked points: below the limits plain SiLU-like gating with
    /// alpha (gate 1, up 0: 1 / (1 + e^-1.702)); the gate capped at 7 from above but not from
    /// below; up clamped to [-7, 7] before the + 1.
    #[test]
    fn swiglu_oai_clamps_as_ggml() {
        let f = |g, u| swiglu_oai(g, u, SWIGLU_OAI_ALPHA, SWIGLU_OAI_LIMIT);
        let sig = |x: f32| 1.0 / (1.0 + (-1.702 * x).exp());
        assert!((f(1.0, 0.0) - sig(1.0)).abs() < 1e-7);
        assert!((f(1.0, 2.0) - 3.0 * sig(1.0)).abs() < 1e-6);
        assert_eq!(f(9.0, 0.0), f(7.0, 0.0));
        assert!((f(-9.0, 0.0) - -9.0 * sig(-9.0)).abs() < 1e-9);
        assert_eq!(f(1.0, 20.0), f(1.0, 7.0));
        assert_eq!(f(1.0, -20.0), f(1.0, -7.0));
        assert!((f(1.0, -7.0) - -6.0 * sig(1.0)).abs() < 1e-6);
        assert!(f(f32::NAN, 0.0).is_nan());
    }

    #[test]
    fn rope_styles_pair_differently() {
        // One head of 4 values at position 1, base 1 (theta = 1 for every pair).
        let mut n = vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        rope(&mut n, 1, 4, 4, 1.0, 1.0, RopeStyle::Norm);
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((n[4] - c).abs() < 1e-6 && (n[5] - s).abs() < 1e-6);
        let mut x = vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        rope(&mut x, 1, 4, 4, 1.0, 1.0, RopeStyle::Neox);
        assert!((x[4] - c).abs() < 1e-6 && (x[6] - s).abs() < 1e-6 && x[5] == 0.0);
    }

    #[test]
    fn rope_factors_divide_the_angle_and_mscale_scales() {
        // One head of 2 values at position 1, base 1: angle 1 / factor 2 = 0.5, times 3.
        let mut x = vec![0.0, 0.0, 1.0, 0.0];
        Rope {
            n_rot: 2,
            base: 1.0,
            freq_scale: 1.0,
            factors: Some(&[2.0]),
            mscale: 3.0,
            style: RopeStyle::Neox,
            yarn: None,
        }
        .apply(&mut x, 1, 2);
        assert!((x[2] - 3.0 * 0.5f32.cos()).abs() < 1e-6);
        assert!((x[3] - 3.0 * 0.5f32.sin()).abs() < 1e-6);
    }

    /// YaRN on 2 pairs, base 10000, 4x interpolation, original context 128: the ramp runs
    /// from pair floor(4 ln(128 / 64 pi) / 2 ln 10^4) = floor(-0.098) -> 0 to
    /// ceil(4 ln(128 / 2 pi) / 2 ln 10^4) = ceil(0.654) = 1, so pair 0 keeps its unscaled angle
    /// and pair 1 takes the interpolated one; both are scaled by 1 + 0.1 ln 4.
    #[test]
    fn yarn_extrapolates_fast_pairs_and_interpolates_slow_ones() {
        let yarn = Yarn {
            ext_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 128,
        };
        assert_eq!(yarn.corr_dims(4, 10000.0), (0.0, 1.0));
        // Position 1, one head of 4 values (NEOX pairs (0, 2) and (1, 3)).
        let mut x = vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        Rope {
            n_rot: 4,
            base: 10000.0,
            freq_scale: 0.25,
            factors: None,
            mscale: 2.0,
            style: RopeStyle::Neox,
            yarn: Some(yarn),
        }
        .apply(&mut x, 1, 4);
        let m = 2.0 * (1.0 + 0.1 * 4f32.ln());
        let (t0, t1) = (1.0f32, 0.25f32 * 0.01);
        let want = [m * t0.cos(), m * t1.cos(), m * t0.sin(), m * t1.sin()];
        for (got, want) in x[4..].iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{:?} vs {want:?}", &x[4..]);
        }
        // Halfway up a ramp from 0 to 2, half of each angle.
        assert_eq!(yarn.mix((0.0, 2.0), 1), 0.5);
        assert_eq!(yarn.mix((1.0, 1.0), 0), 1.0);
        assert_eq!(yarn.mix((1.0, 1.0), 2), 0.0);
    }

    #[test]
    fn cosine_of_zero_is_none() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), None);
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]).unwrap() - 1.0).abs() < 1e-12);
    }
}
