//! Layer scores on the residual stream: ShortGPT's Block Influence and the angular distance of
//! Gromov et al., from one layer-major forward pass over calibration windows.
//!
//! - BI_i = 1 - mean over tokens of cos(x_i, x_{i+1}), x_i the raw residual stream entering
//!   block i (every block, the last one included, is scored on the raw stream: ShortGPT's code
//!   compared its last block against the final-normed state).
//! - Angular distance of a run of n blocks from l: mean over tokens of arccos(cos(x_l, x_{l+n}))/pi.
//!   Every token position of every window counts (PruneMe uses the last token only).
//! - Every token position counts; a NaN cosine (a zero vector) counts as 0.5, as in ShortGPT's code.
//! - Windows do not overlap and carry no cache from one to the next. Defaults: 512-token
//!   windows (the context llama-perplexity and llama-imatrix runs use; long enough for gemma's
//!   512-token sliding window; ShortGPT used 256), at most 8192 tokens, BOS first in each
//!   window when the model adds one.
//! - `--remove N` (see [`select_layers`]): one-shot BI, iterative BI and the best angular run
//!   are built on every window; the set whose pruned model has the lowest KL divergence from the
//!   unpruned model on the last quarter of the windows wins. First and last blocks are kept by
//!   default.

mod deps;
pub mod select;

use crate::error::{Error, Result};
use crate::forward::{ops, Batch, BlockObserver, Forward, NoObserver, StateCache};
use crate::gguf::Model;
use rayon::prelude::*;
pub use select::{
    select_layers, select_layers_observed, Candidate, Metric, SelectOptions, Selection,
};

/// Scores of every block from one pass.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerScores {
    /// Block Influence of each block (`NaN` for blocks skipped in this pass).
    pub bi: Vec<f64>,
    /// `angular[n - 1][l]`: angular distance across blocks l..l+n (runs of kept blocks); `NaN`
    /// where the run leaves the model.
    pub angular: Vec<Vec<f64>>,
    /// Token positions scored.
    pub n_tokens: usize,
}

/// Mean cosine (NaN -> 0.5) between matching rows of two streams; rows in parallel, summed in
/// order so that scores are reproducible bit for bit.
fn mean_cosine(a: &[f32], b: &[f32], d: usize, angular: bool) -> f64 {
    let per_row: Vec<f64> = a
        .par_chunks(d)
        .zip(b.par_chunks(d))
        .map(|(x, y)| {
            let c = ops::cosine(x, y).unwrap_or(0.5);
            if angular {
                c.acos() / std::f64::consts::PI
            } else {
                c
            }
        })
        .collect();
    per_row.iter().sum::<f64>() / per_row.len().max(1) as f64
}

/// Runs `windows` through the model (skipping `skip`) and scores every run block, plus the
/// angular distance of runs of up to `max_run` kept blocks. `progress(block)` after each block.
pub fn score_layers(
    fw: &Forward,
    windows: &[Vec<u32>],
    skip: &[usize],
    max_run: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<LayerScores> {
    score_impl(fw, windows, skip, max_run, None, &mut NoObserver, progress)
}

/// [`score_layers`], also showing `obs` the inside of every block (the matmul inputs an
/// importance matrix is made of), so one pass yields both.
pub fn score_layers_observed(
    fw: &Forward,
    windows: &[Vec<u32>],
    skip: &[usize],
    max_run: usize,
    obs: &mut dyn BlockObserver,
    progress: &mut dyn FnMut(usize),
) -> Result<LayerScores> {
    score_impl(fw, windows, skip, max_run, None, obs, progress)
}

/// BI only, resuming from `cache` (states of these windows from earlier passes): blocks before
/// the resume point keep their scores from `prior`, computed with the same blocks skipped there.
pub fn score_layers_cached(
    fw: &Forward,
    windows: &[Vec<u32>],
    skip: &[usize],
    cache: &mut StateCache,
    prior: &[f64],
    progress: &mut dyn FnMut(usize),
) -> Result<LayerScores> {
    score_impl(
        fw,
        windows,
        skip,
        1,
        Some((cache, prior)),
        &mut NoObserver,
        progress,
    )
}

fn score_impl(
    fw: &Forward,
    windows: &[Vec<u32>],
    skip: &[usize],
    max_run: usize,
    cached: Option<(&mut StateCache, &[f64])>,
    obs: &mut dyn BlockObserver,
    progress: &mut dyn FnMut(usize),
) -> Result<LayerScores> {
    let n_layer = fw.n_layer();
    let d = fw.hp.n_embd;
    let max_run = max_run.max(1);
    let mut bi = vec![f64::NAN; n_layer];
    let mut angular = vec![vec![f64::NAN; n_layer]; max_run];
    // The last max_run boundary states: (block they enter, stream).
    let mut ring: std::collections::VecDeque<(usize, Vec<f32>)> = std::collections::VecDeque::new();
    let mut observe = |il: usize, x: &Batch| -> Result<()> {
        for (back, (l, s)) in ring.iter().rev().enumerate() {
            if back == 0 {
                bi[*l] = 1.0 - mean_cosine(s, &x.data, d, false);
            }
            angular[back][*l] = mean_cosine(s, &x.data, d, true);
        }
        if il < n_layer {
            ring.push_back((il, x.data.clone()));
            if ring.len() > max_run {
                ring.pop_front();
            }
        }
        Ok(())
    };
    let (x, prior, start) = match cached {
        Some((cache, prior)) => {
            let (x, start) =
                fw.run_cached_observed(windows, skip, Some(cache), &mut observe, obs, progress)?;
            (x, Some(prior), start)
        }
        None => {
            let (x, _) =
                fw.run_cached_observed(windows, skip, None, &mut observe, obs, progress)?;
            (x, None, 0)
        }
    };
    if let Some(prior) = prior {
        for l in (0..start).filter(|l| !skip.contains(l)) {
            bi[l] = prior[l];
        }
    }
    Ok(LayerScores {
        bi,
        angular,
        n_tokens: x.n_tokens(),
    })
}

/// Calibration windows: the text's tokens cut into non-overlapping windows of `ctx` tokens (BOS
/// first when the model adds one), at most `max_tokens` tokens in all (the last window cut short
/// if need be).
pub fn calibration_windows(
    model: &Model,
    text: &str,
    ctx: usize,
    max_tokens: usize,
) -> Result<Vec<Vec<u32>>> {
    if ctx < 2 {
        return Err(Error::Calibration(format!(
            "windows of {ctx} tokens: a window needs at least 2"
        )));
    }
    let meta = model.metadata();
    let bos = meta
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool())
        .unwrap_or(false)
        .then(|| meta.get_u32("tokenizer.ggml.bos_token_id").ok())
        .flatten();
    // Tokenize only what can be used: no tokenizer spends more than 16 bytes per token on text,
    // so a long file (wiki.valid.raw is 1.1 MB) need not be tokenized whole.
    let mut end = text.len().min(max_tokens.saturating_mul(16));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let ids = deps::tokenize(model, &text[..end])?;
    let body = ctx - usize::from(bos.is_some());
    let mut windows = Vec::new();
    let mut total = 0;
    for chunk in ids.chunks(body) {
        // A short tail window would weigh its few tokens like the others: keep it only if it is
        // at least half a window.
        if chunk.len() < body / 2 && !windows.is_empty() {
            break;
        }
        let mut w: Vec<u32> = bos.into_iter().collect();
        w.extend_from_slice(chunk);
        // `max_tokens` is a true cap: the last window is cut short to meet it (a multiple of
        // `ctx` gives whole windows only), unless that leaves it less than 2 tokens.
        w.truncate(max_tokens - total);
        if w.len() < 2 {
            break;
        }
        total += w.len();
        windows.push(w);
        if total == max_tokens {
            break;
        }
    }
    if windows.is_empty() || total < 2 {
        return Err(Error::Calibration(format!(
            "the calibration text gives only {} tokens",
            ids.len()
        )));
    }
    Ok(windows)
}

/// The calibration text: a file's contents (a regular file of bounded size, see
/// [`crate::limits`]), or the built-in default.
pub fn calibration_text(path: Option<&std::path::Path>) -> Result<String> {
    match path {
        Some(p) => crate::limits::read_text(p),
        None => deps::default_text(),
    }
}

pub(crate) use deps::check_removal;
