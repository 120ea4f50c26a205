//! The default selection's comparison: the unpruned model's next-token distributions on the
//! comparison windows (the last quarter of the calibration windows), each candidate set's KL
//! divergence from them and perplexity, and the choice of the lowest KL.

use super::select::{no_valid_set, sorted, Candidate, Named, Progress, Selection, CACHE_BYTES};
use super::LayerScores;
use crate::error::{Error, Result};
use crate::eval::metrics::{log_norm_f64, TopK};
use crate::forward::{ModelLogits, StateCache};
use crate::gguf::Model;

/// The held-back comparison: the unpruned model's distributions on the comparison windows and
/// every set measured against them so far (each set is measured once, whatever its order).
pub(super) struct Comparison<'m> {
    logits: ModelLogits<'m>,
    held: Vec<Vec<u32>>,
    cache: StateCache,
    reference: Reference,
    measured: Vec<(Vec<usize>, HeldOut)>,
}

impl<'m> Comparison<'m> {
    /// Sets the comparison windows apart from `windows` and runs the unpruned model on them.
    pub(super) fn new(model: &'m Model, windows: &[Vec<u32>], progress: Progress) -> Result<Self> {
        let mut logits = ModelLogits::new(model)?;
        let held = held_back(windows);
        let mut cache = StateCache::new(CACHE_BYTES);
        progress("reference logits", 0, 1);
        let reference = Reference::new(&mut logits, &held, Some(&mut cache))?;
        Ok(Comparison {
            logits,
            held,
            cache,
            reference,
            measured: Vec::new(),
        })
    }

    /// The divergence and perplexity of the model without `set`.
    pub(super) fn measure(&mut self, set: &[usize], progress: Progress) -> Result<HeldOut> {
        crate::interrupt::check()?;
        let key = sorted(set);
        if let Some((_, m)) = self.measured.iter().find(|(k, _)| *k == key) {
            return Ok(*m);
        }
        progress(
            "comparing candidates",
            self.measured.len(),
            self.measured.len() + 1,
        );
        let m =
            self.reference
                .measure(&mut self.logits, &self.held, &key, Some(&mut self.cache))?;
        self.measured.push((key, m));
        Ok(m)
    }

    /// Measures every candidate and picks the one of lowest KL (the first on a tie).
    pub(super) fn choose(
        &mut self,
        candidates: Vec<Named>,
        scores: LayerScores,
        n: usize,
        progress: Progress,
    ) -> Result<Selection> {
        let mut scored: Vec<Candidate> = Vec::new();
        let mut best: Option<(f64, String, Vec<usize>)> = None;
        for (method, order) in candidates {
            let m = self.measure(&order, progress)?;
            scored.push(Candidate {
                method: method.clone(),
                removed: sorted(&order),
                held_out_ppl: Some(m.ppl),
                held_out_kl: Some(m.kl),
            });
            if best.as_ref().is_none_or(|(bk, _, _)| m.kl < *bk) {
                best = Some((m.kl, method, order));
            }
        }
        let (_, method, order) = best.ok_or_else(|| no_valid_set(n))?;
        Ok(Selection {
            removed: sorted(&order),
            order,
            method: format!("{method}, lowest KL"),
            n_tokens: scores.n_tokens,
            scores,
            candidates: scored,
            held_out_tokens: self.held.iter().map(Vec::len).sum(),
        })
    }
}

/// The comparison windows: the last quarter of the windows (at least one), while the candidate
/// sets are scored on every window. Set apart from scoring, they made the default's BI set
/// differ from `--metric bi`'s on the same text (gemma3 k = 3: {8,9,16} instead of {8,9,14},
/// PPL 60.6 vs 47.8), and three candidates compared by KL from the unpruned model do not
/// overfit the windows they share.
fn held_back(windows: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let k = (windows.len() / 4).max(1);
    windows[windows.len() - k..].to_vec()
}

/// Held-back measures of one pruned model.
#[derive(Clone, Copy, Debug)]
pub struct HeldOut {
    pub kl: f64,
    pub ppl: f64,
}

/// The unpruned model's next-token distributions on the held-back windows, kept as the top
/// `TOP_K` tokens per position plus the remaining mass ([`TopK`]).
pub struct Reference {
    /// One per scored position: every position but the last of each window.
    rows: Vec<TopK>,
}

const TOP_K: usize = 64;

impl Reference {
    /// Every position but the last of each window is scored.
    pub fn new(
        logits: &mut ModelLogits,
        windows: &[Vec<u32>],
        cache: Option<&mut StateCache>,
    ) -> Result<Reference> {
        logits.skip.clear();
        let mut rows = Vec::new();
        logits.logits_cached(windows, 0, cache, &mut |w, p, row| {
            if p + 1 < windows[w].len() {
                rows.push(TopK::new(row, TOP_K));
            }
            Ok(())
        })?;
        Ok(Reference { rows })
    }

    /// KL(unpruned || pruned) and perplexity of the model without `skip`.
    pub fn measure(
        &self,
        logits: &mut ModelLogits,
        windows: &[Vec<u32>],
        skip: &[usize],
        cache: Option<&mut StateCache>,
    ) -> Result<HeldOut> {
        logits.skip = skip.to_vec();
        let (mut kl, mut nll, mut i) = (0.0f64, 0.0f64, 0usize);
        logits.logits_cached(windows, 0, cache, &mut |w, p, row| {
            if p + 1 < windows[w].len() {
                let lse = log_norm_f64(row);
                self.rows[i].add_kl(row, lse, &mut kl);
                nll += lse - row[windows[w][p + 1] as usize] as f64;
                i += 1;
            }
            Ok(())
        })?;
        if i == 0 {
            return Err(Error::Calibration("no held-back tokens to score".into()));
        }
        logits.skip.clear();
        Ok(HeldOut {
            kl: kl / i as f64,
            ppl: (nll / i as f64).exp(),
        })
    }
}
