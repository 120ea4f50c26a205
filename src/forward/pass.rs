//! Layer-major passes: every window of a batch goes through block i before any goes through
//! block i+1, so each weight is dequantized once per batch.

use super::{candle, dequantize, Batch, BlockObserver, Forward, StateCache};
use crate::arch::names::*;
use crate::error::{Error, Result};

/// What a layer-major pass skips, resumes from and shows.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Blocks not run (the removed layers of a pruned file).
    pub skip: &'a [usize],
    /// States of these windows to resume from (the latest one valid for `skip`) and to record
    /// into; `None` starts at the embedding.
    pub cache: Option<&'a mut StateCache>,
    /// Shown the inside of every block run (so that one calibration pass can both score blocks
    /// and collect an importance matrix).
    pub observer: Option<&'a mut dyn BlockObserver>,
}

impl Forward<'_> {
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

    /// Runs the windows through every block not in `options.skip`, layer-major, calling
    /// `observe(il, &batch)` with the residual stream entering each run block `il`, then
    /// `observe(n_layer, &batch)` with the final stream; `progress(il)` after each block, run or
    /// skipped. Returns the final stream and the block the pass resumed at from
    /// `options.cache` (0 without one; `observe` is called only from there on).
    pub fn run(
        &self,
        windows: &[Vec<u32>],
        options: RunOptions,
        observe: &mut dyn FnMut(usize, &Batch) -> Result<()>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Batch, usize)> {
        let RunOptions {
            skip,
            mut cache,
            mut observer,
        } = options;
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
            // Lent for this block (`&mut **o` shortens the observer's lifetime to the call's).
            let obs = observer
                .as_mut()
                .map(|o| &mut **o as &mut dyn BlockObserver);
            self.block_forward(il, &w, &mut x, obs)?;
            x.check_finite(il)?;
            progress(il);
        }
        observe(self.hp.n_layer, &x)?;
        Ok((x, start))
    }
}
