//! Layer scores on the residual stream: ShortGPT's Block Influence and the angular distance of
//! Gromov et al., from one layer-major forward pass over calibration windows.
//!
//! - BI_i = 1 - mean over tokens of cos(x_i, x_{i+1}), x_i the raw residual stream entering
//!   block i (every block, the last one included, is scored on the raw stream: ShortGPT's code
//!   compared its last block against the final-normed state).
//! - Angular distance of a run of n blocks from l: mean over tokens of arccos(cos(x_l, x_{l+n}))/pi.
//! - Every token position of every window counts (PruneMe uses the last token only); a NaN
//!   cosine (a zero vector) counts as 0.5, as in ShortGPT's code.
//! - Windows come from [`crate::calibration`] ([`Layout::Calibration`](crate::calibration::Layout)):
//!   they do not overlap and carry no cache from one to the next. Defaults: 512-token windows
//!   (the context llama-perplexity and llama-imatrix runs use; long enough for gemma's 512-token
//!   sliding window; ShortGPT used 256), at most 8192 tokens, BOS first in each window when the
//!   model adds one.
//! - `--remove N` (see [`select_layers`]): one-shot BI, iterative BI and the best angular run are
//!   all built from every calibration window (the comparison windows included); the set whose
//!   pruned model has the lowest KL divergence from the unpruned model on the last quarter of
//!   the windows (at least one) wins. A metric asked for ([`Metric`]) gives its set without a
//!   comparison (unless refining); with a single window there is no comparison either and the
//!   default takes iterative BI's set. First and last blocks are kept by default.

mod compare;
pub mod experts;
pub mod select;

use crate::error::Result;
use crate::forward::{ops, Batch, BlockObserver, Forward, RunOptions, StateCache};
pub use experts::{ExpertSaliency, ExpertScores};
use rayon::prelude::*;
pub use select::{select_layers, Candidate, Metric, SelectOptions, Selection};

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

/// What one scoring pass skips, computes and shows.
pub struct ScoreOptions<'a> {
    /// Blocks skipped in this pass (their scores are `NaN`).
    pub skip: &'a [usize],
    /// Angular distance of runs of up to this many kept blocks (at least 1).
    pub max_run: usize,
    /// Also shown the inside of every block (the matmul inputs an importance matrix is made
    /// of), so one pass yields both.
    pub observer: Option<&'a mut dyn BlockObserver>,
    /// Resume from states of these windows kept by earlier passes.
    pub resume: Option<Resume<'a>>,
}

/// Where a pass resumes: blocks before the resume point keep their scores from `prior`,
/// computed with the same blocks skipped there. Only BI is carried over (angular distances
/// before the resume point are `NaN`), so resumed passes are for BI alone.
pub struct Resume<'a> {
    pub cache: &'a mut StateCache,
    pub prior: &'a [f64],
}

impl Default for ScoreOptions<'_> {
    fn default() -> Self {
        ScoreOptions {
            skip: &[],
            max_run: 1,
            observer: None,
            resume: None,
        }
    }
}

/// Runs `windows` through the model and scores every run block, as `options` says.
/// `progress(block)` after each block.
pub fn score_layers(
    fw: &Forward,
    windows: &[Vec<u32>],
    options: ScoreOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<LayerScores> {
    let ScoreOptions {
        skip,
        max_run,
        observer,
        resume,
    } = options;
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
    let (cache, prior) = match resume {
        Some(Resume { cache, prior }) => (Some(cache), Some(prior)),
        None => (None, None),
    };
    let run = RunOptions {
        skip,
        cache,
        observer,
    };
    let (x, start) = fw.run(windows, run, &mut observe, progress)?;
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
