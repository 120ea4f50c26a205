//! Expert saliency of mixture-of-experts blocks, from the routing the forward pass reports
//! ([`BlockObserver::expert_routing`]) during the same calibration pass that scores layers.
//!
//! - REAP (Lasby et al., "REAP: Router-weighted Expert Activation Pruning", 2025): expert j's
//!   saliency is the mean, over the tokens routed to j, of its router weight times the L2 norm
//!   of its output; an expert no token picked scores 0. The least salient experts are the ones
//!   to prune, the same number in every block.
//! - Frequency, the baseline: the fraction of the block's tokens routed to j.

use crate::error::{Error, Result};
use crate::forward::{BlockObserver, ExpertRoute, Forward};

/// Sums over the calibration tokens of one block's experts.
#[derive(Clone, Copy, Debug, Default)]
struct ExpertSums {
    /// Tokens routed to the expert.
    routed: u64,
    /// Sum of router weight x output norm over those tokens.
    weighted_norm: f64,
}

/// A [`BlockObserver`] collecting every MoE block's routing into [`ExpertScores`].
#[derive(Clone, Debug)]
pub struct ExpertSaliency {
    n_expert: usize,
    /// Per block: tokens seen, and sums per expert (empty for blocks not run).
    blocks: Vec<(u64, Vec<ExpertSums>)>,
}

/// One MoE block's expert scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlockExperts {
    pub index: usize,
    /// Calibration tokens that went through the block.
    pub tokens: u64,
    /// REAP saliency of each expert.
    pub reap: Vec<f64>,
    /// Fraction of the block's tokens routed to each expert.
    pub frequency: Vec<f64>,
}

/// The expert scores of every block run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExpertScores {
    pub n_expert: usize,
    pub blocks: Vec<BlockExperts>,
}

impl ExpertSaliency {
    /// An empty collector for `fw`'s experts; [`Error::NoExperts`] for a dense model.
    pub fn new(fw: &Forward) -> Result<ExpertSaliency> {
        let moe = fw.hp.moe.as_ref().ok_or_else(|| Error::NoExperts {
            arch: fw
                .model
                .metadata()
                .architecture()
                .unwrap_or("unknown")
                .to_string(),
        })?;
        Ok(ExpertSaliency {
            n_expert: moe.n_expert,
            blocks: vec![(0, Vec::new()); fw.n_layer()],
        })
    }

    /// REAP saliency and frequency of every expert of every block that saw tokens.
    pub fn scores(&self) -> ExpertScores {
        let blocks = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, (tokens, _))| *tokens > 0)
            .map(|(index, (tokens, sums))| BlockExperts {
                index,
                tokens: *tokens,
                reap: sums
                    .iter()
                    .map(|s| s.weighted_norm / s.routed.max(1) as f64)
                    .collect(),
                frequency: sums
                    .iter()
                    .map(|s| s.routed as f64 / *tokens as f64)
                    .collect(),
            })
            .collect();
        ExpertScores {
            n_expert: self.n_expert,
            blocks,
        }
    }
}

impl BlockObserver for ExpertSaliency {
    fn expert_routing(&mut self, il: usize, routes: &[ExpertRoute], n: usize) {
        let Some((tokens, sums)) = self.blocks.get_mut(il) else {
            return;
        };
        if sums.is_empty() {
            *sums = vec![ExpertSums::default(); self.n_expert];
        }
        *tokens += n as u64;
        for r in routes {
            if let Some(s) = sums.get_mut(r.expert) {
                s.routed += 1;
                s.weighted_norm += f64::from(r.weight) * f64::from(r.norm);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_is_the_mean_over_routed_tokens() {
        let mut s = ExpertSaliency {
            n_expert: 3,
            blocks: vec![(0, Vec::new()); 2],
        };
        let r = |expert, weight, norm| ExpertRoute {
            expert,
            weight,
            norm,
        };
        // Two tokens, top-2: expert 0 twice, expert 1 once, expert 2 never.
        let routes = [
            r(0, 0.75, 2.0),
            r(1, 0.25, 4.0),
            r(0, 0.5, 1.0),
            r(1, 0.5, 3.0),
        ];
        s.expert_routing(1, &routes, 2);
        let scores = s.scores();
        assert_eq!(scores.blocks.len(), 1);
        let b = &scores.blocks[0];
        assert_eq!((b.index, b.tokens), (1, 2));
        assert_eq!(b.reap, vec![(1.5 + 0.5) / 2.0, (1.0 + 1.5) / 2.0, 0.0]);
        assert_eq!(b.frequency, vec![1.0, 1.0, 0.0]);
    }
}
