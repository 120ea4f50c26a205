//! Which blocks `--remove N` drops: candidate sets from the scores, the architecture's rules, and
//! by default a choice among candidate sets by their KL divergence from the unpruned model on the
//! last quarter of the calibration windows (the candidate sets are built from all of them).

use super::compare::Comparison;
use super::{score_layers, LayerScores, Resume, ScoreOptions};
use crate::calibration;
use crate::error::{Error, Result};
use crate::forward::{BlockObserver, Forward, StateCache};
use crate::gguf::Model;
use std::path::PathBuf;

pub use super::compare::{HeldOut, Reference};

/// How candidate sets are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// One-shot Block Influence: the N lowest-BI blocks.
    Bi,
    /// The contiguous run of N blocks with the lowest angular distance (Gromov et al.).
    Angular,
    /// Iterative BI: remove the lowest-BI block, re-score, repeat.
    Iterative,
}

/// What `select_layers` needs; built by `SelectArgs::to_options` on the command line.
#[derive(Clone, Debug)]
pub struct SelectOptions {
    /// Blocks to remove.
    pub remove: usize,
    /// The metric; `None` is the default method (see [`select_layers`]).
    pub metric: Option<Metric>,
    /// Also try a greedy set guided by the KL divergence on the comparison windows.
    pub refine: bool,
    /// Calibration text file; `None` is the built-in text.
    pub calib: Option<PathBuf>,
    /// Tokens per window.
    pub ctx: usize,
    /// Calibration tokens in all.
    pub max_tokens: usize,
    /// Allow removing the first and last blocks.
    pub allow_ends: bool,
    /// Fewer calibration tokens than this is an error, raised before the pass (an importance
    /// matrix counts whole windows, as llama-imatrix counts whole chunks).
    pub min_tokens: usize,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions {
            remove: 0,
            metric: None,
            refine: false,
            calib: None,
            ctx: DEFAULT_CTX,
            max_tokens: DEFAULT_MAX_TOKENS,
            allow_ends: false,
            min_tokens: 0,
        }
    }
}

/// Default window: 512 tokens, the context llama-perplexity and llama-imatrix runs use, long
/// enough to exercise gemma's 512-token sliding window (ShortGPT used 256).
pub const DEFAULT_CTX: usize = 512;
pub const DEFAULT_MAX_TOKENS: usize = 8192;
/// Memory for residual-stream states kept between passes, per window set.
pub(super) const CACHE_BYTES: usize = 384 << 20;

/// One candidate set of blocks to remove.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    pub method: String,
    /// Original block indices, sorted.
    pub removed: Vec<usize>,
    /// Perplexity on the comparison windows (the last quarter of the calibration windows).
    pub held_out_ppl: Option<f64>,
    /// Mean KL divergence from the unpruned model on the comparison windows, nats per token
    /// (top-64 tokens of the unpruned model plus the rest as one bucket; with `--refine`).
    pub held_out_kl: Option<f64>,
}

/// The outcome of a selection, with what a report needs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Selection {
    /// Original indices of the removed blocks, sorted.
    pub removed: Vec<usize>,
    /// The same blocks in the order the method picked them.
    pub order: Vec<usize>,
    /// How the set was chosen.
    pub method: String,
    /// Scores of the unpruned model (one pass over the scoring windows).
    pub scores: LayerScores,
    /// Every candidate considered.
    pub candidates: Vec<Candidate>,
    /// Tokens scored (all calibration windows).
    pub n_tokens: usize,
    /// Of those, the tokens candidate sets were compared on (the last quarter of the windows).
    pub held_out_tokens: usize,
}

/// Progress of a selection: `(stage, done, total)`.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Picks `options.remove` blocks. With a metric, that metric's set. By default (no metric) the
/// sets of one-shot BI, iterative BI and angular distance are built from all calibration
/// windows, and the one whose pruned model stays closest to the unpruned model (mean KL
/// divergence of next-token distributions) on the last quarter of them wins: no single metric
/// wins on every model and k (README, "Does removing layers work?"). `refine` adds a greedy set guided by
/// that divergence (three lowest-BI blocks tried per step; costly).
/// The first and last blocks are kept unless `allow_ends`; every set passes the
/// architecture's removal rules. `observer` is shown every block of the first scoring pass over
/// the unpruned model (every calibration window): an importance matrix collected there comes
/// from the same pass as the scores.
pub fn select_layers(
    model: &Model,
    options: &SelectOptions,
    observer: Option<&mut dyn BlockObserver>,
    progress: Progress,
) -> Result<Selection> {
    let fw = Forward::new(model)?;
    let n_layer = fw.n_layer();
    let n = options.remove;
    // Everything that can be refused without the text is refused before reading it.
    crate::limits::check_context(model, options.ctx)?;
    crate::limits::check_token_budget(options.max_tokens)?;
    let allowed = removable(n_layer, options)?;
    let windows = scoring_windows(model, options)?;
    let compare = compares(options, windows.len())?;
    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let valid = |set: &[usize]| crate::arch::check_removal(model.metadata(), &names, set).is_ok();
    let search = Search {
        fw: &fw,
        windows: &windows,
        allowed: &allowed,
        valid: &valid,
        n,
    };
    // States of the scoring windows kept between iterative passes (each pass then starts at the
    // block just removed instead of at the embedding).
    let mut cache = StateCache::new(CACHE_BYTES);
    let first_pass = ScoreOptions {
        max_run: n.max(1),
        observer,
        ..Default::default()
    };
    let scores = score_layers(&fw, &windows, first_pass, &mut |il| {
        progress("scoring", il + 1, n_layer)
    })?;
    if n == 0 {
        return Ok(Selection::of_none(scores));
    }
    let wanted = |m: Metric| compare || options.metric.unwrap_or(Metric::Iterative) == m;
    let mut candidates = metric_candidates(&search, &scores, &mut cache, &wanted, progress)?;
    if !compare {
        let (method, order) = candidates
            .into_iter()
            .next()
            .ok_or_else(|| no_valid_set(n))?;
        return Ok(Selection::of_one(method, order, scores));
    }
    if !options.refine {
        // Only --refine scores again; the states would sit beside the output head.
        cache.clear();
    }
    let mut comparison = Comparison::new(model, &windows, progress)?;
    if options.refine {
        if let Some(order) = guided(&search, &scores, &mut cache, &mut comparison, progress)? {
            candidates.push(("guided".into(), order));
        }
    }
    comparison.choose(candidates, scores, n, progress)
}

/// The blocks a selection may remove (all but the first and last unless `allow_ends`), or the
/// error when `options.remove` of them cannot be removed.
fn removable(n_layer: usize, options: &SelectOptions) -> Result<Vec<usize>> {
    let n = options.remove;
    let allowed: Vec<usize> = (0..n_layer)
        .filter(|&i| options.allow_ends || (i != 0 && i + 1 != n_layer))
        .collect();
    if n >= n_layer || n > allowed.len() {
        return Err(Error::Layers(format!(
            "cannot remove {n} blocks: the model has {n_layer}, {} of them removable{}",
            allowed.len(),
            if options.allow_ends {
                ""
            } else {
                " (the first and last are kept unless allowed)"
            }
        )));
    }
    Ok(allowed)
}

/// The calibration windows every candidate set is scored on, refused when they hold fewer than
/// `options.min_tokens` tokens.
fn scoring_windows(model: &Model, options: &SelectOptions) -> Result<Vec<Vec<u32>>> {
    let windows = calibration::calibration_windows(
        model,
        options.calib.as_deref(),
        options.ctx,
        options.max_tokens,
    )?;
    let n_tokens: usize = windows.iter().map(Vec::len).sum();
    if n_tokens < options.min_tokens {
        return Err(Error::ShortCalibration {
            have: n_tokens,
            need: options.min_tokens,
            what: "an importance matrix (one whole window)",
        });
    }
    Ok(windows)
}

/// Whether candidate sets are compared on held-back windows: unless one metric was asked for
/// (without `refine`), when there is something to remove and at least two windows. `refine`
/// without them is an error.
fn compares(options: &SelectOptions, n_windows: usize) -> Result<bool> {
    let n = options.remove;
    let compare = (options.metric.is_none() || options.refine) && n > 0 && n_windows >= 2;
    if options.refine && !compare && n > 0 {
        return Err(Error::RefineNeedsWindows {
            ctx: options.ctx,
            windows: n_windows,
        });
    }
    Ok(compare)
}

impl Selection {
    /// Nothing removed (`remove` 0): only the scores.
    fn of_none(scores: LayerScores) -> Selection {
        Selection {
            removed: vec![],
            order: vec![],
            method: "none".into(),
            n_tokens: scores.n_tokens,
            scores,
            candidates: vec![],
            held_out_tokens: 0,
        }
    }

    /// The one set of the asked-for metric, not compared.
    fn of_one(method: String, order: Vec<usize>, scores: LayerScores) -> Selection {
        let removed = sorted(&order);
        let candidates = vec![Candidate {
            method: method.clone(),
            removed: removed.clone(),
            held_out_ppl: None,
            held_out_kl: None,
        }];
        Selection {
            removed,
            order,
            method,
            n_tokens: scores.n_tokens,
            scores,
            candidates,
            held_out_tokens: 0,
        }
    }
}

/// `set` sorted (a candidate's blocks in index order rather than the order they were picked).
pub(super) fn sorted(set: &[usize]) -> Vec<usize> {
    let mut s = set.to_vec();
    s.sort_unstable();
    s
}

/// What every candidate search shares: the blocks, the scoring windows, the blocks that may go,
/// the architecture's removal rules and how many to remove.
struct Search<'a> {
    fw: &'a Forward<'a>,
    windows: &'a [Vec<u32>],
    allowed: &'a [usize],
    valid: &'a dyn Fn(&[usize]) -> bool,
    n: usize,
}

/// A candidate set: the method's name and its blocks in the order picked.
pub(super) type Named = (String, Vec<usize>);

/// The sets of the metrics `wanted` asks for that reach `n` valid blocks, in the order BI,
/// angular, iterative (the order the comparison reports them and breaks ties in).
fn metric_candidates(
    search: &Search,
    scores: &LayerScores,
    cache: &mut StateCache,
    wanted: &dyn Fn(Metric) -> bool,
    progress: Progress,
) -> Result<Vec<Named>> {
    let (n, allowed, valid) = (search.n, search.allowed, search.valid);
    let mut candidates: Vec<Named> = Vec::new();
    if wanted(Metric::Bi) {
        if let Some(order) = one_shot(&scores.bi, allowed, n, valid) {
            candidates.push(("bi".into(), order));
        }
    }
    if wanted(Metric::Angular) {
        if let Some(order) = best_run(&scores.angular[n - 1], allowed, n, valid) {
            candidates.push(("angular".into(), order));
        }
    }
    if wanted(Metric::Iterative) {
        let removed = greedy(
            search,
            cache,
            &scores.bi,
            "iterative BI",
            progress,
            &mut |current, removed, _| Ok(lowest(current, allowed, removed, &[], valid)),
        )?;
        if removed.len() == n {
            candidates.push(("iterative".into(), removed));
        }
    }
    Ok(candidates)
}

/// `refine`'s set: greedy, each step trying the `WIDTH` lowest-BI blocks that can join and
/// keeping the one whose removal diverges least from the unpruned model on the comparison
/// windows. `None` when it ends before `n` blocks.
fn guided(
    search: &Search,
    scores: &LayerScores,
    cache: &mut StateCache,
    comparison: &mut Comparison,
    progress: Progress,
) -> Result<Option<Vec<usize>>> {
    const WIDTH: usize = 3;
    let (allowed, valid) = (search.allowed, search.valid);
    let removed = greedy(
        search,
        cache,
        &scores.bi,
        "guided",
        progress,
        &mut |current, removed, progress| {
            // The WIDTH lowest-BI blocks that can join the removed set.
            let mut options_here: Vec<usize> = Vec::new();
            while options_here.len() < WIDTH {
                let Some(b) = lowest(current, allowed, removed, &options_here, valid) else {
                    break;
                };
                options_here.push(b);
            }
            let mut best: Option<(f64, usize)> = None;
            for &b in &options_here {
                let m = comparison.measure(&[removed, &[b]].concat(), progress)?;
                if best.is_none_or(|(bk, _)| m.kl < bk) {
                    best = Some((m.kl, b));
                }
            }
            Ok(best.map(|(_, b)| b))
        },
    )?;
    Ok((removed.len() == search.n).then_some(removed))
}

pub(super) fn no_valid_set(n: usize) -> Error {
    Error::Layers(format!(
        "no set of {n} blocks passes the architecture's removal rules"
    ))
}

/// Chooses a greedy selection's next block from the current scores and the blocks removed so far.
type PickNext<'a> = dyn FnMut(&[f64], &[usize], Progress) -> Result<Option<usize>> + 'a;

/// Removes up to `search.n` blocks one at a time: `pick` chooses the next from the current BI
/// scores and the blocks removed so far (`None` ends early); after every pick but the last the
/// scoring windows are scored again without the removed blocks, resuming from `cache`.
fn greedy(
    search: &Search,
    cache: &mut StateCache,
    start: &[f64],
    label: &str,
    progress: Progress,
    pick: &mut PickNext,
) -> Result<Vec<usize>> {
    let (fw, n) = (search.fw, search.n);
    let n_layer = fw.n_layer();
    let mut removed: Vec<usize> = Vec::new();
    let mut current = start.to_vec();
    for step in 0..n {
        let Some(b) = pick(&current, &removed, progress)? else {
            break;
        };
        removed.push(b);
        if step + 1 < n {
            let stage = format!("{label} {}/{}", step + 2, n);
            let pass = ScoreOptions {
                skip: &removed,
                resume: Some(Resume {
                    cache,
                    prior: &current,
                }),
                ..Default::default()
            };
            current = score_layers(fw, search.windows, pass, &mut |il| {
                progress(&stage, il + 1, n_layer)
            })?
            .bi;
        }
    }
    Ok(removed)
}

/// The allowed block with the lowest score that extends `set` validly (`set` plus it passes
/// `valid`), not in `set` nor in `skip`.
fn lowest(
    scores: &[f64],
    allowed: &[usize],
    set: &[usize],
    skip: &[usize],
    valid: &dyn Fn(&[usize]) -> bool,
) -> Option<usize> {
    let mut order: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|b| !set.contains(b) && !skip.contains(b) && scores[*b].is_finite())
        .collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    order.into_iter().find(|&b| valid(&[set, &[b]].concat()))
}

/// The `n` lowest-scoring allowed blocks, skipping any that the architecture forbids.
fn one_shot(
    scores: &[f64],
    allowed: &[usize],
    n: usize,
    valid: &dyn Fn(&[usize]) -> bool,
) -> Option<Vec<usize>> {
    let mut set = Vec::new();
    while set.len() < n {
        set.push(lowest(scores, allowed, &set, &[], valid)?);
    }
    Some(set)
}

/// The contiguous allowed run of `n` blocks with the lowest angular distance.
fn best_run(
    angular: &[f64],
    allowed: &[usize],
    n: usize,
    valid: &dyn Fn(&[usize]) -> bool,
) -> Option<Vec<usize>> {
    let mut best: Option<(f64, usize)> = None;
    for (l, &a) in angular.iter().enumerate() {
        let run: Vec<usize> = (l..l + n).collect();
        if a.is_finite()
            && run.iter().all(|b| allowed.contains(b))
            && valid(&run)
            && best.is_none_or(|(ba, _)| a < ba)
        {
            best = Some((a, l));
        }
    }
    best.map(|(_, l)| (l..l + n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_takes_lowest_allowed_and_valid() {
        let s = [0.9, 0.1, 0.05, 0.3, f64::NAN, 0.01];
        let allowed = [1, 2, 3, 4];
        assert_eq!(one_shot(&s, &allowed, 2, &|_| true), Some(vec![2, 1]));
        // The architecture forbids block 2: the next lowest comes in.
        assert_eq!(
            one_shot(&s, &allowed, 2, &|set| !set.contains(&2)),
            Some(vec![1, 3])
        );
        // NaN (skipped) blocks are never picked.
        assert_eq!(one_shot(&s, &allowed, 4, &|_| true), None);
    }

    #[test]
    fn best_run_stays_inside_allowed() {
        let a = [0.01, 0.5, 0.2, 0.1, 0.4, f64::NAN];
        assert_eq!(best_run(&a, &[1, 2, 3, 4], 2, &|_| true), Some(vec![3, 4]));
        assert_eq!(
            best_run(&a, &[0, 1, 2, 3, 4], 2, &|_| true),
            Some(vec![0, 1])
        );
        assert_eq!(
            best_run(&a, &[1, 2, 3, 4], 2, &|set| !set.contains(&4)),
            Some(vec![2, 3])
        );
    }
}
