//! Perplexity and KL divergence, computed the way `llama-perplexity` computes them, so figures
//! from `gguf-prune eval` and from llama.cpp can be put side by side.
//!
//! The procedure (llama.cpp `tools/perplexity/perplexity.cpp`, default mode):
//! - the windows are llama-perplexity's chunks ([`crate::calibration::Layout::Perplexity`]); each
//!   window is evaluated from an empty cache;
//! - only the second half is scored: position `p` in `n_ctx/2 ..= n_ctx-2` predicts token `p+1`,
//!   `n_ctx - 1 - n_ctx/2` tokens per window;
//! - per token, `nll = -(logit[t] - max - ln(sum exp(logit - max)))`, the exponentials in f32 and
//!   their sum in f64 ([`metrics::row_nll`]); PPL = `exp(mean nll)`, error `PPL * sqrt(var(nll) / (count - 1))`.
//!
//! KL divergence compares each row with a reference distribution stored as llama.cpp stores it
//! ([`kl_base`]: log-probabilities quantized to u16 per row), whether the reference comes from a
//! `--kl-divergence-base` file or from a reference model run here.
//!
//! Everything here is a pure function of token ids and a [`LogitsSource`], so it is tested with
//! synthetic sources whose results are known in closed form.

pub mod kl_base;
pub mod metrics;

pub use crate::forward::LogitsSource;
pub use kl_base::{BaseRow, KlBase};

use crate::error::{Error, Result};
use metrics::{
    covariance, kl_vs_base, max_and_argmax, mean_and_uncertainty, percentile, row_nll,
    sum_exp_shifted, NllSum,
};

/// Progress after each finished window.
#[derive(Clone, Copy, Debug)]
pub struct ChunkDone {
    /// 1-based index of the window just finished.
    pub chunk: usize,
    pub n_chunks: usize,
    /// Perplexity over all windows so far (llama-perplexity's `[i]x.xxxx`).
    pub ppl: f64,
    /// Mean KL divergence so far, when comparing.
    pub kld: Option<f64>,
}

/// The perplexity of a model on some windows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    pub ppl_err: f64,
    /// Tokens scored (llama.cpp's `count`).
    pub n_tokens: usize,
    pub chunks: usize,
    pub n_ctx: usize,
    /// Running estimate after each window.
    pub per_chunk: Vec<f64>,
}

fn check_row(
    n_vocab: usize,
    windows: &[Vec<u32>],
    first: usize,
    w: usize,
    p: usize,
    row: &[f32],
) -> Result<()> {
    if row.len() != n_vocab {
        return Err(Error::LogitsSource(format!(
            "row of {} logits, expected n_vocab {n_vocab}",
            row.len()
        )));
    }
    if w >= windows.len() || p < first || p >= windows[w].len() {
        return Err(Error::LogitsSource(format!(
            "row for window {w} position {p} is outside {} windows of {} tokens scored from {first}",
            windows.len(),
            windows.first().map_or(0, Vec::len)
        )));
    }
    Ok(())
}

fn check_tokens(tokens: &[Vec<u32>], n_vocab: usize) -> Result<()> {
    for (w, win) in tokens.iter().enumerate() {
        if let Some((p, t)) = win.iter().enumerate().find(|(_, &t)| t as usize >= n_vocab) {
            return Err(Error::VocabMismatch(format!(
                "token id {t} at window {w} position {p} is not below the model's n_vocab {n_vocab}"
            )));
        }
    }
    Ok(())
}

/// Tracks which (window, position) a source should deliver next, so a source that skips or
/// repeats rows is an error instead of a silently wrong figure.
struct RowOrder {
    first: usize,
    n_ctx: usize,
    next: (usize, usize),
}

impl RowOrder {
    fn new(first: usize, n_ctx: usize, window0: usize) -> RowOrder {
        RowOrder {
            first,
            n_ctx,
            next: (window0, first),
        }
    }

    fn expect(&mut self, w: usize, p: usize) -> Result<()> {
        if (w, p) != self.next {
            return Err(Error::LogitsSource(format!(
                "got the row for window {w} position {p}, expected window {} position {}",
                self.next.0, self.next.1
            )));
        }
        self.next = if p + 1 == self.n_ctx {
            (w + 1, self.first)
        } else {
            (w, p + 1)
        };
        Ok(())
    }

    fn check_done(&self, end_window: usize) -> Result<()> {
        if self.next != (end_window, self.first) {
            return Err(Error::LogitsSource(format!(
                "stopped at window {} position {}, before the end of window {}",
                self.next.0,
                self.next.1,
                end_window - 1
            )));
        }
        Ok(())
    }
}

/// Runs `source` over `group` (windows of `n_ctx` tokens scored from `first`), handing each row
/// to `f(w, p, row)` only after checking its length, its place and its order, then checks that
/// the source delivered every row.
#[allow(clippy::type_complexity)]
fn checked_logits(
    source: &mut dyn LogitsSource,
    group: &[Vec<u32>],
    first: usize,
    n_ctx: usize,
    n_vocab: usize,
    f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
) -> Result<()> {
    let mut order = RowOrder::new(first, n_ctx, 0);
    source.logits(group, first, &mut |w, p, row| {
        check_row(n_vocab, group, first, w, p, row)?;
        order.expect(w, p)?;
        f(w, p, row)
    })?;
    order.check_done(group.len())
}

/// Perplexity of `source` over `windows` (llama-perplexity's chunks, from
/// [`crate::calibration::split`]), llama-perplexity's way.
/// `progress` is called after each window.
pub fn perplexity(
    source: &mut dyn LogitsSource,
    windows: &[Vec<u32>],
    windows_per_call: usize,
    progress: &mut dyn FnMut(&ChunkDone),
) -> Result<Perplexity> {
    perplexity_inner(source, windows, windows_per_call, progress, None)
}

/// [`perplexity`], also writing every scored row to `out` as llama-perplexity
/// `--kl-divergence-base` does, so llama.cpp can compare its own model with our logits
/// (`llama-perplexity -m MODEL --kl-divergence-base FILE --kl-divergence`). The negative
/// log-likelihoods then come from the row encoder, as in llama.cpp's saving run.
pub fn perplexity_saving<W: std::io::Write>(
    source: &mut dyn LogitsSource,
    windows: &[Vec<u32>],
    windows_per_call: usize,
    progress: &mut dyn FnMut(&ChunkDone),
    out: &mut kl_base::KlBaseWriter<W>,
    out_path: &std::path::Path,
) -> Result<Perplexity> {
    let mut row_bytes = vec![0u8; kl_base::row_bytes(source.n_vocab())];
    let mut save = |row: &[f32], target: usize| -> Result<f64> {
        let nll = kl_base::encode_row(row, target, &mut row_bytes);
        out.write_row(&row_bytes).map_err(|source| Error::Io {
            path: out_path.to_path_buf(),
            source,
        })?;
        Ok(nll)
    };
    perplexity_inner(source, windows, windows_per_call, progress, Some(&mut save))
}

#[allow(clippy::type_complexity)]
fn perplexity_inner(
    source: &mut dyn LogitsSource,
    windows: &[Vec<u32>],
    windows_per_call: usize,
    progress: &mut dyn FnMut(&ChunkDone),
    mut save: Option<&mut dyn FnMut(&[f32], usize) -> Result<f64>>,
) -> Result<Perplexity> {
    let n_vocab = source.n_vocab();
    check_tokens(windows, n_vocab)?;
    let n_ctx = windows.first().map_or(0, Vec::len);
    let first = kl_base::first_scored(n_ctx);
    let n_chunks = windows.len();
    let mut sum = NllSum::default();
    let mut per_chunk = Vec::with_capacity(n_chunks);
    for start in (0..n_chunks).step_by(windows_per_call.max(1)) {
        crate::interrupt::check()?;
        let group = &windows[start..(start + windows_per_call.max(1)).min(n_chunks)];
        checked_logits(source, group, first, n_ctx, n_vocab, &mut |w, p, row| {
            if p + 1 < n_ctx {
                let target = group[w][p + 1] as usize;
                sum.add(match save.as_mut() {
                    Some(save) => save(row, target)?,
                    None => row_nll(row, target),
                });
            } else {
                per_chunk.push(sum.ppl());
                progress(&ChunkDone {
                    chunk: start + w + 1,
                    n_chunks,
                    ppl: sum.ppl(),
                    kld: None,
                });
            }
            Ok(())
        })?;
    }
    let (ppl, ppl_err) = sum.estimate();
    Ok(Perplexity {
        ppl,
        ppl_err,
        n_tokens: sum.count,
        chunks: n_chunks,
        n_ctx,
        per_chunk,
    })
}

/// Sums for comparing a model's rows with reference rows, field for field llama.cpp's
/// `kl_divergence_result`, plus the per-token values for the median and percentiles.
#[derive(Clone, Debug, Default)]
pub struct KlAccumulator {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    n_same_top: usize,
    count: usize,
    kld_values: Vec<f32>,
    p_diff_values: Vec<f32>,
}

impl KlAccumulator {
    /// Adds one position: the model's `logits`, the reference row `base`, the actual next token.
    /// The arithmetic (f32 where llama.cpp uses float, the -16 cut on reference log-probabilities,
    /// first-maximum ties for the top token) follows llama.cpp's KL `log_softmax`.
    pub fn add(&mut self, logits: &[f32], base: &BaseRow<'_>, target: usize) {
        let (max_logit, imax) = max_and_argmax(logits);
        let log_sum_exp = sum_exp_shifted(logits, max_logit).ln() as f32;

        let nll: f32 = max_logit + log_sum_exp - logits[target];
        self.sum_nll += nll as f64;
        self.sum_nll2 += (nll * nll) as f64;
        let nll_base: f32 = -base.log_prob(target);
        self.sum_nll_base += nll_base as f64;
        self.sum_nll_base2 += (nll_base * nll_base) as f64;
        self.sum_nll_nll_base += (nll * nll_base) as f64;

        let log_norm = max_logit + log_sum_exp;
        let (kld, _, imax_base) = kl_vs_base(logits, base, log_norm);
        self.sum_kld += kld;
        self.sum_kld2 += kld * kld;
        self.count += 1;
        if imax == imax_base {
            self.n_same_top += 1;
        }

        let p_diff = (-nll).exp() - (-nll_base).exp();
        self.sum_p_diff += p_diff as f64;
        let p_diff2 = (p_diff * p_diff) as f64;
        self.sum_p_diff2 += p_diff2;
        self.sum_p_diff4 += p_diff2 * p_diff2;
        self.max_p_diff = self.max_p_diff.max(p_diff.abs());
        self.kld_values.push(kld as f32);
        self.p_diff_values.push(p_diff);
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn ppl(&self) -> f64 {
        (self.sum_nll / self.count as f64).exp()
    }

    pub fn kl_mean(&self) -> f64 {
        self.sum_kld / self.count as f64
    }

    /// The summary llama-perplexity prints at the end of `--kl-divergence`.
    pub fn finish(mut self, chunks: usize, n_ctx: usize) -> KlDivergence {
        let n = self.count;
        let (log_ppl, log_ppl_unc) = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n);
        let (log_ppl_base, log_ppl_base_unc) =
            mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n);
        let cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n);
        let ppl = log_ppl.exp();
        let ppl_base = log_ppl_base.exp();
        let ln_ratio = log_ppl - log_ppl_base;
        let ln_ratio_unc =
            (log_ppl_unc * log_ppl_unc + log_ppl_base_unc * log_ppl_base_unc - 2.0 * cov).sqrt();
        let (kl_mean, kl_err) = mean_and_uncertainty(self.sum_kld, self.sum_kld2, n);
        let (p_diff_mean, _) = mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n);
        let (p_diff_mse, p_diff_mse_unc) =
            mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n);
        let p_diff_rms = p_diff_mse.sqrt();
        let top1 = self.n_same_top as f64 / n as f64;
        self.kld_values.sort_by(f32::total_cmp);
        let kv = &self.kld_values;
        let median = if kv.is_empty() {
            0.0
        } else if kv.len().is_multiple_of(2) {
            0.5 * (kv[kv.len() / 2] + kv[kv.len() / 2 - 1])
        } else {
            kv[kv.len() / 2]
        };
        KlDivergence {
            ppl,
            ppl_err: ppl * log_ppl_unc,
            ppl_base,
            ppl_base_err: ppl_base * log_ppl_base_unc,
            ln_ppl_ratio: ln_ratio,
            ln_ppl_ratio_err: ln_ratio_unc,
            kl_mean,
            kl_err,
            kl_median: median as f64,
            kl_p90: percentile(kv, 0.90) as f64,
            kl_p99: percentile(kv, 0.99) as f64,
            kl_max: kv.last().copied().unwrap_or(0.0) as f64,
            p_diff_mean,
            p_diff_rms,
            p_diff_rms_err: if p_diff_rms > 0.0 {
                0.5 / p_diff_rms * p_diff_mse_unc
            } else {
                0.0
            },
            p_diff_max: self.max_p_diff as f64,
            top1,
            top1_err: if n > 1 {
                (top1 * (1.0 - top1) / (n - 1) as f64).sqrt()
            } else {
                0.0
            },
            n_tokens: n,
            chunks,
            n_ctx,
        }
    }
}

/// A comparison of a model with a reference distribution (llama-perplexity `--kl-divergence`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct KlDivergence {
    /// Perplexity of the model (llama.cpp "Mean PPL(Q)").
    pub ppl: f64,
    pub ppl_err: f64,
    /// Perplexity of the reference, from its stored rows ("Mean PPL(base)").
    pub ppl_base: f64,
    pub ppl_base_err: f64,
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_err: f64,
    /// Mean KL(reference || model) per token, in nats.
    pub kl_mean: f64,
    pub kl_err: f64,
    pub kl_median: f64,
    pub kl_p90: f64,
    pub kl_p99: f64,
    pub kl_max: f64,
    /// Mean and RMS of p(model, actual token) - p(reference, actual token).
    pub p_diff_mean: f64,
    pub p_diff_rms: f64,
    pub p_diff_rms_err: f64,
    pub p_diff_max: f64,
    /// Fraction of positions where both put the same token first ("Same top p").
    pub top1: f64,
    pub top1_err: f64,
    pub n_tokens: usize,
    pub chunks: usize,
    pub n_ctx: usize,
}

/// The shape of a KL run: `n_chunks` windows of `n_ctx` tokens scored from `first`, rows of
/// `n_vocab` logits.
struct KlShape {
    n_chunks: usize,
    first: usize,
    n_ctx: usize,
    n_vocab: usize,
}

/// Adds `model`'s scored rows of `group` (the windows from index `start`) to `acc`, each against
/// `base_row(w, i)`, the reference row of window `w`'s `i`-th scored position, and reports each
/// finished window to `progress`.
fn kl_group<'b>(
    model: &mut dyn LogitsSource,
    group: &[Vec<u32>],
    start: usize,
    shape: &KlShape,
    base_row: &dyn Fn(usize, usize) -> BaseRow<'b>,
    acc: &mut KlAccumulator,
    progress: &mut dyn FnMut(&ChunkDone),
) -> Result<()> {
    let (first, n_ctx) = (shape.first, shape.n_ctx);
    checked_logits(
        model,
        group,
        first,
        n_ctx,
        shape.n_vocab,
        &mut |w, p, row| {
            if p + 1 < n_ctx {
                acc.add(row, &base_row(w, p - first), group[w][p + 1] as usize);
            } else {
                let done = ChunkDone {
                    chunk: start + w + 1,
                    n_chunks: shape.n_chunks,
                    ppl: acc.ppl(),
                    kld: Some(acc.kl_mean()),
                };
                progress(&done);
            }
            Ok(())
        },
    )
}

/// Compares `source` with the rows stored in a `--kl-divergence-base` file, on the file's own
/// tokens and context size (as llama-perplexity `--kl-divergence` does). `bos` replaces position
/// 0 of every window when the model adds BOS; `max_chunks` limits the chunks read.
pub fn kl_divergence_vs_base(
    source: &mut dyn LogitsSource,
    base: &KlBase,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    windows_per_call: usize,
    progress: &mut dyn FnMut(&ChunkDone),
) -> Result<KlDivergence> {
    let n_vocab = source.n_vocab();
    if base.n_vocab() != n_vocab {
        return Err(Error::VocabMismatch(format!(
            "{} holds rows of {} tokens, the model's output has {n_vocab}",
            base.path().display(),
            base.n_vocab()
        )));
    }
    if max_chunks == Some(0) {
        return Err(Error::NoChunks);
    }
    let n_chunks = max_chunks.map_or(base.n_chunks(), |c| c.min(base.n_chunks()));
    let n_ctx = base.n_ctx();
    let windows: Vec<Vec<u32>> = (0..n_chunks)
        .map(|c| {
            let mut w = base.chunk_tokens(c);
            if let Some(b) = bos {
                w[0] = b;
            }
            w
        })
        .collect();
    check_tokens(&windows, n_vocab)?;
    let first = kl_base::first_scored(n_ctx);
    let shape = KlShape {
        n_chunks,
        first,
        n_ctx,
        n_vocab,
    };
    let mut acc = KlAccumulator::default();
    for start in (0..n_chunks).step_by(windows_per_call.max(1)) {
        crate::interrupt::check()?;
        let group = &windows[start..(start + windows_per_call.max(1)).min(n_chunks)];
        let base_row = |w: usize, i: usize| base.row(start + w, i);
        kl_group(source, group, start, &shape, &base_row, &mut acc, progress)?;
    }
    Ok(acc.finish(n_chunks, n_ctx))
}

/// The reference rows of a group of windows are kept in memory; this bounds that memory by
/// shrinking the group (never below one window).
const REF_ROWS_BUDGET: usize = 1 << 30;

/// Compares `model` with `reference` on the same windows: the reference's rows are encoded as
/// llama.cpp encodes a `--kl-divergence-base` file, then compared exactly as `--kl-divergence`
/// compares, so the figures match a base-file run of the two models through llama.cpp.
pub fn kl_divergence_vs_model(
    model: &mut dyn LogitsSource,
    reference: &mut dyn LogitsSource,
    windows: &[Vec<u32>],
    windows_per_call: usize,
    progress: &mut dyn FnMut(&ChunkDone),
) -> Result<KlDivergence> {
    let n_vocab = model.n_vocab();
    if reference.n_vocab() != n_vocab {
        return Err(Error::VocabMismatch(format!(
            "the reference model's output has {} tokens, the model's {n_vocab}",
            reference.n_vocab()
        )));
    }
    check_tokens(windows, n_vocab)?;
    let n_ctx = windows.first().map_or(0, Vec::len);
    let first = kl_base::first_scored(n_ctx);
    let rows = kl_base::rows_per_window(n_ctx);
    let rb = kl_base::row_bytes(n_vocab);
    let per_call = windows_per_call.clamp(1, (REF_ROWS_BUDGET / (rows * rb).max(1)).max(1));
    let n_chunks = windows.len();
    let shape = KlShape {
        n_chunks,
        first,
        n_ctx,
        n_vocab,
    };
    let mut acc = KlAccumulator::default();
    let mut stored = Vec::new();
    for start in (0..n_chunks).step_by(per_call) {
        crate::interrupt::check()?;
        let group = &windows[start..(start + per_call).min(n_chunks)];
        stored.clear();
        stored.resize(group.len() * rows * rb, 0u8);
        checked_logits(reference, group, first, n_ctx, n_vocab, &mut |w, p, row| {
            if p + 1 < n_ctx {
                let at = (w * rows + p - first) * rb;
                kl_base::encode_row(row, group[w][p + 1] as usize, &mut stored[at..at + rb]);
            }
            Ok(())
        })?;
        let base_row = |w: usize, i: usize| {
            let at = (w * rows + i) * rb;
            BaseRow::from_bytes(&stored[at..at + rb], n_vocab)
        };
        kl_group(model, group, start, &shape, &base_row, &mut acc, progress)?;
    }
    Ok(acc.finish(n_chunks, n_ctx))
}

#[cfg(test)]
mod tests;
