//! The residual stream of a layer-major pass and the states kept between passes.

use crate::error::{Error, Result};

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
    pub(super) fn check_finite(&self, block: usize) -> Result<()> {
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
    pub(super) fn starts(&self) -> Vec<usize> {
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

    pub(super) fn insert(&mut self, b: usize, skip: &[usize], x: &Batch) {
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
