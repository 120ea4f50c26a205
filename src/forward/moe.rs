//! Mixture-of-experts FFNs (llama.cpp `build_moe_ffn` in `llama-graph.cpp`): a router scores
//! every expert for each token, the top-k are selected and weighted as the architecture's
//! `[forward.moe]` table says, and the token's FFN output is the weighted sum of the selected
//! experts' gated FFNs.
//!
//! Expert weights are 3-D tensors (`[n_in, n_out, n_expert]`, one expert after another, each
//! expert's rows whole quantization blocks), so one expert is a contiguous byte range: only the
//! experts some token of the batch was routed to are dequantized, and each multiplies only the
//! rows of its tokens, so the cost follows the active parameters rather than the total.

use super::config::per_layer;
use super::{BlockObserver, ExpertRoute, Forward, Linear};
use crate::arch::forward::{
    ExpertWidth, Experts, ForwardSpec, Gating, MoeSpec, EXPERT_COUNT, EXPERT_FEED_FORWARD_LENGTH,
    EXPERT_USED_COUNT,
};
use crate::arch::names::*;
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Metadata};

/// The sum of the selected weights is clamped to at least this before normalizing (llama.cpp:
/// 6.103515625e-5 = 2^-14, the smallest normal F16, against a division by zero).
const MIN_WEIGHT_SUM: f32 = 1.0 / 16384.0;

/// The experts of a mixture-of-experts model and how tokens are routed to them.
#[derive(Clone, Debug)]
pub struct MoeHparams {
    /// Experts per block (`{arch}.expert_count`).
    pub n_expert: usize,
    /// Experts each token is routed to (`{arch}.expert_used_count`), the same in every block.
    pub n_used: usize,
    /// Width of each expert's FFN.
    pub n_ff: usize,
    /// The recipe's routing, copied here so that one value says how this model routes.
    pub spec: MoeSpec,
}

impl MoeHparams {
    /// The experts of a model of `arch` whose recipe is `spec`, `None` for dense blocks. Refuses
    /// what llama.cpp's loader refuses (no experts where they are required, a top-k of 0 or above
    /// the expert count) and per-layer top-k values, which llama.cpp routes with layer 0's.
    pub fn read(
        arch: &str,
        meta: &Metadata,
        spec: &ForwardSpec,
        n_layer: usize,
    ) -> Result<Option<MoeHparams>> {
        let Some(moe) = &spec.moe else {
            return Ok(None);
        };
        let k = |s: &str| arch_key(arch, s);
        let first = |key: &str| -> Result<Option<usize>> {
            Ok(per_layer(meta, &k(key), n_layer)?.and_then(|v| v.first().copied()))
        };
        let n_expert = first(EXPERT_COUNT)?.unwrap_or(0);
        if n_expert == 0 {
            return match moe.experts {
                Experts::Optional => Ok(None),
                Experts::Required => Err(Error::Hparam {
                    key: k(EXPERT_COUNT),
                    value: "0".into(),
                    why: format!("{arch} blocks are mixtures of experts"),
                }),
            };
        }
        let used = per_layer(meta, &k(EXPERT_USED_COUNT), n_layer)?.unwrap_or_default();
        let n_used = used.first().copied().unwrap_or(0);
        if n_used == 0 || n_used > n_expert {
            return Err(Error::Hparam {
                key: k(EXPERT_USED_COUNT),
                value: n_used.to_string(),
                why: format!("expected 1 to expert_count {n_expert}"),
            });
        }
        if used.iter().any(|&u| u != n_used) {
            return Err(Error::Unsupported {
                arch: arch.into(),
                what: format!("per-layer expert_used_count {used:?}"),
            });
        }
        let n_ff_dense = first("feed_forward_length")?.unwrap_or(0);
        let n_ff = match moe.expert_width {
            ExpertWidth::FeedForwardLength => n_ff_dense,
            ExpertWidth::ExpertFeedForwardLength => first(EXPERT_FEED_FORWARD_LENGTH)?
                .filter(|&w| w > 0)
                .unwrap_or(n_ff_dense / n_used),
        };
        Ok(Some(MoeHparams {
            n_expert,
            n_used,
            n_ff,
            spec: moe.clone(),
        }))
    }
}

/// A block's router, dequantized. Its experts stay in the file until a token picks them.
pub(super) struct MoeWeights {
    router: Linear,
}

/// Row-wise softmax of one vector, in f32 with the sum in f64 as ggml's `soft_max` does.
fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|&v| (v - max).exp()).collect();
    let sum: f64 = e.iter().map(|&v| f64::from(v)).sum();
    let scale = (1.0 / sum) as f32;
    e.into_iter().map(|v| v * scale).collect()
}

/// The experts one token goes to and their weights, given its router logits: scores by the
/// gating, the `n_used` highest (ties to the lower index), their weights normalized if the
/// recipe says so. In llama.cpp's slot order, the highest score first.
pub fn route(logits: &[f32], n_used: usize, spec: &MoeSpec) -> Vec<(usize, f32)> {
    let scores = match spec.gating {
        Gating::Softmax => softmax(logits),
        Gating::SoftmaxSelected => logits.to_vec(),
        Gating::Sigmoid => logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect(),
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(n_used);
    let mut weights: Vec<f32> = order.iter().map(|&e| scores[e]).collect();
    if spec.gating == Gating::SoftmaxSelected {
        weights = softmax(&weights);
    }
    if spec.normalize {
        let sum = weights.iter().sum::<f32>().max(MIN_WEIGHT_SUM);
        weights.iter_mut().for_each(|w| *w /= sum);
    }
    order.into_iter().zip(weights).collect()
}

impl Forward<'_> {
    /// Block `il`'s router and expert tensors have the shapes `moe` implies.
    pub(super) fn check_expert_shapes(&self, il: usize, moe: &MoeHparams) -> Result<()> {
        let p = |s: &str| block_weight(il, s);
        let d = Some(self.hp.n_embd as u64);
        let (f, e) = (Some(moe.n_ff as u64), Some(moe.n_expert as u64));
        self.shape(&p(FFN_GATE_INP), &[d, e])?;
        self.shape(&p(FFN_GATE_EXPS), &[d, f, e])?;
        self.shape(&p(FFN_UP_EXPS), &[d, f, e])?;
        self.shape(&p(FFN_DOWN_EXPS), &[f, d, e])?;
        Ok(())
    }

    /// Block `il`'s router.
    pub(super) fn load_experts(&self, il: usize) -> Result<MoeWeights> {
        Ok(MoeWeights {
            router: self.linear(&block_weight(il, FFN_GATE_INP))?,
        })
    }

    /// Expert `e` of block `il`'s 3-D weight `name` (shape checked by [`Forward::new`]).
    fn expert(&self, il: usize, name: &str, e: usize) -> Result<Linear> {
        let name = block_weight(il, name);
        let t = self.tensor(&name)?;
        let (n_in, n_out) = (t.info.dims[0] as usize, t.info.dims[1] as usize);
        let ty = t.info.ggml_type;
        let row = ty
            .bytes_for(n_in as u64)
            .ok_or_else(|| Error::Forward(format!("{name}: type {ty} rows of {n_in}")))?
            as usize;
        let per_expert = row * n_out;
        let bytes = &self.model.data(t)[e * per_expert..(e + 1) * per_expert];
        Linear::dequantized(&name, ty, bytes, n_in, n_out)
    }

    /// The experts' FFN output for `n` rows `h` of block `il`: each token's selected experts'
    /// outputs times their weights, summed. `obs` sees the router's input and the routing.
    pub(super) fn moe_ffn(
        &self,
        il: usize,
        w: &MoeWeights,
        h: &[f32],
        n: usize,
        obs: &mut dyn BlockObserver,
    ) -> Result<Vec<f32>> {
        let moe = self
            .hp
            .moe
            .as_ref()
            .ok_or_else(|| Error::Forward(format!("block {il} has experts, the model none")))?;
        let d = self.hp.n_embd;
        obs.matmul_input(il, FFN_GATE_INP, h, n);
        let logits = w.router.forward(h, n)?;
        let k = moe.n_used;
        let mut routes = vec![ExpertRoute::default(); n * k];
        // Per expert, its (token, slot) pairs.
        let mut tokens: Vec<Vec<(usize, usize)>> = vec![Vec::new(); moe.n_expert];
        for (t, row) in logits.chunks_exact(moe.n_expert).enumerate() {
            for (slot, (e, weight)) in route(row, k, &moe.spec).into_iter().enumerate() {
                tokens[e].push((t, slot));
                routes[t * k + slot] = ExpertRoute {
                    expert: e,
                    weight,
                    norm: 0.0,
                };
            }
        }
        let mut out = vec![0f32; n * d];
        for (e, routed) in tokens.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            crate::interrupt::check()?;
            let x: Vec<f32> = routed
                .iter()
                .flat_map(|&(t, _)| &h[t * d..(t + 1) * d])
                .copied()
                .collect();
            let m = routed.len();
            let gate = self.expert(il, FFN_GATE_EXPS, e)?;
            let up = self.expert(il, FFN_UP_EXPS, e)?;
            let g = self.gated(&gate, &up, &x, m)?;
            let y = self.expert(il, FFN_DOWN_EXPS, e)?.forward(&g, m)?;
            for (&(t, slot), y) in routed.iter().zip(y.chunks_exact(d)) {
                let route = &mut routes[t * k + slot];
                route.norm = y.iter().map(|v| v * v).sum::<f32>().sqrt();
                let o = &mut out[t * d..(t + 1) * d];
                o.iter_mut()
                    .zip(y)
                    .for_each(|(o, y)| *o += route.weight * y);
            }
        }
        obs.expert_routing(il, &routes, n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gating: Gating, normalize: bool) -> MoeSpec {
        MoeSpec {
            experts: Experts::Required,
            gating,
            normalize,
            expert_width: ExpertWidth::ExpertFeedForwardLength,
        }
    }

    #[test]
    fn softmax_top_k_normalized() {
        let logits = [0.0, 2.0, 1.0, (0.5f32).ln()];
        let r = route(&logits, 2, &spec(Gating::Softmax, false));
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2]);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((r[0].1 - 2f32.exp() / z).abs() < 1e-6);
        let r = route(&logits, 2, &spec(Gating::Softmax, true));
        let e = 1f32.exp();
        assert!((r[0].1 - e / (e + 1.0)).abs() < 1e-6);
        assert!((r[0].1 + r[1].1 - 1.0).abs() < 1e-6);
    }

    /// Softmax over the selected logits is softmax over all of them, normalized: why no
    /// negative control can tell the two apart on qwen3moe.
    #[test]
    fn softmax_selected_equals_normalized_softmax() {
        let logits = [0.3, -1.2, 2.5, 0.9, 0.1];
        let a = route(&logits, 3, &spec(Gating::Softmax, true));
        for normalize in [false, true] {
            let b = route(&logits, 3, &spec(Gating::SoftmaxSelected, normalize));
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.0, y.0);
                assert!((x.1 - y.1).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn sigmoid_and_ties() {
        let r = route(&[0.0, 0.0, 0.0], 2, &spec(Gating::Sigmoid, false));
        assert_eq!(r, vec![(0, 0.5), (1, 0.5)]);
        // A zero sum is clamped, not divided by.
        let r = route(&[-200.0, -200.0], 1, &spec(Gating::Sigmoid, true));
        assert!(r[0].1.is_finite());
    }
}
