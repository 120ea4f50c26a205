//! Training-free healing after layer removal (ReplaceMe, Shopkhoev et al., 2025, and the methods
//! below that also fold into the weights).
//!
//! For each maximal contiguous run of removed blocks `l+1..=l+n`, block `l` (the kept block just
//! before the run) is given a `d x d` map `T` such that its FFN output `M`, mapped by `T`, stands
//! in for the whole run:
//!
//! - `A1` = block `l`'s FFN output `M` (what is added to the residual stream, see
//!   [`crate::forward::BlockObserver::ffn_output`]), one row per calibration token;
//! - `A2` = `h_{l+n} + M - h_l`, with `h_l` the stream leaving block `l` and `h_{l+n}` the stream
//!   leaving the last removed block, so that `h_l - M + M T ≈ h_{l+n}`;
//! - `T = I + (A1^T A1 + a I)^-1 A1^T (A2 - A1)` in f64, ridge `a = ridge * trace(A1^T A1) / d`:
//!   the ridge pulls `T` toward the identity (the unhealed block) rather than toward zero, so
//!   directions the calibration tokens barely explore keep the unhealed map. Without this, the
//!   directions of attention-sink activations (left out of the fit, below) were mapped far off
//!   and the healed SmolLM2 file measured PPL 7e6 in llama.cpp.
//!
//! Runs are fitted in order on the pruned model: one layer-major pass runs the kept blocks (with
//! earlier runs' heals applied) and, at each run, the removed blocks on a copy of the stream to
//! get the target. The pass is separate from the scoring pass (which chooses the runs first).
//!
//! **Folding.** Where block `l`'s FFN output is `ffn_down(g)` (llama, qwen, phi3: no norm
//! between `ffn_down` and the stream) the fold is exact: `ffn_down' = T^T ffn_down`. Where a
//! post-FFN norm sits in between (gemma2/3's `post_ffw_norm`) no exact fold exists; the fold is
//! approximate: `ffn_down' = (diag(w) T)^T ffn_down`, which makes the normalised direction right,
//! and the norm weight `w'` is refitted by least squares against `A2` (per channel). The report
//! says which was used.
//!
//! **Outliers.** The first position of every window, and any position whose stream leaving block
//! `l` has a norm above [`HealOptions::outlier_factor`] (10) times the median norm, are outliers
//! (attention sinks: on SmolLM2 block 11 writes a stream of norm ~24,000 at position 0, ~180x the
//! median). They are left out of the error measures and their rows are not fitted as ordinary
//! tokens; since the fold acts on every position, they enter the normal equations only as
//! anchors with their own target, which keeps `T` from wrecking them (and the requantization's
//! importance weights include them, so their few huge activations survive). The held-back check
//! also requires that their error, summed with the others', goes down.
//!
//! **Methods** ([`HealMethod`]). `lstsq` is the map above. `cosine` refines it to minimise the
//! cosine distance between the healed and the target stream ([`cosine`]); `patch` fits only `d`
//! channel scales in a Hadamard-rotated basis, `T = H diag(s) H^T / d` (LinearPatch, [`patch`]);
//! all three are a `T`, folded as above. `comp` (Prune&Comp, [`comp`]) rescales the stream at the
//! cut to the magnitude the removed blocks would have left, folded into the writes of the blocks
//! after the cut. `auto`, the default, fits all four and keeps, per run, the least-squares map
//! if its fold lowers the held-back error, else the fold of another method with the lowest
//! held-back error that lowers it ([`choose`], which says why the held-back error cannot rank
//! the methods against each other).
//!
//! **Never worse.** The last quarter of the calibration windows is held back. A run's fold is kept
//! only if, with the weights as they will be written (requantized), it lowers the squared error of
//! the stream after the run on the held-back tokens; otherwise the run is left unhealed and the
//! report says so. With `auto` the rule applies to the method kept.
//!
//! **Layout.** `pass` runs the calibration pass over the forward pass's observer interface and
//! hands each run's sample to `heal_run`'s sequence: `fit` chooses the rows (outliers) and
//! solves for `T`; `choose` fits each method asked for (`cosine`, `patch`, `comp`) and measures
//! it; `fold` writes `T` into the weights, refits the norm and requantizes; `comp` rescales the
//! later blocks after the pass; `report` holds what is reported. Tensor names come from
//! `arch::names`.

mod choose;
mod comp;
mod cosine;
mod fit;
mod fold;
mod method;
mod pass;
mod patch;
mod report;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::forward::{Batch, Forward};
use crate::gguf::{GgmlType, Model};
use crate::prune::Rewrite;

pub use fit::ridge_solve;
pub use method::HealMethod;
pub use report::{Fold, HealReport, RunReport, TensorChange, Tried, SMALL_CALIBRATION};

use fit::{mean_sq_dist, mean_sq_norm, Rows};
use fold::{Found, Target};
use pass::RunSample;

/// Largest relative RMS error (of the stream after the run) a fold may leave at outlier
/// positions when it makes them worse.
pub const OUTLIER_REL_ERR: f64 = 0.5;

/// What healing needs; defaults match the measurements in the docs.
#[derive(Clone, Debug)]
pub struct HealOptions {
    /// How each removed run is healed.
    pub method: HealMethod,
    /// Calibration text file; `None` is the built-in text.
    pub calib: Option<PathBuf>,
    /// Tokens per calibration window.
    pub ctx: usize,
    /// Calibration tokens in all (fit and held-back).
    pub max_tokens: usize,
    /// Relative ridge: `a = ridge * trace(A1^T A1) / d`.
    pub ridge: f64,
    /// Positions whose stream norm exceeds this many times the median are left out.
    pub outlier_factor: f64,
    /// Type for the changed tensors; `None`: the source tensor's type (F16 where it cannot be
    /// quantized by this build).
    pub heal_type: Option<GgmlType>,
    /// Types a later quantization gives the output tensors, by output name
    /// ([`crate::quant::planned_types`]); they take precedence over `heal_type`.
    pub planned_types: HashMap<String, GgmlType>,
    /// Keep a fold even if it does not lower the held-back error (tests only).
    pub force: bool,
}

impl Default for HealOptions {
    fn default() -> Self {
        HealOptions {
            method: HealMethod::Auto,
            calib: None,
            ctx: 512,
            max_tokens: 5120,
            ridge: 1e-3,
            outlier_factor: 10.0,
            heal_type: None,
            planned_types: HashMap::new(),
            force: false,
        }
    }
}

/// Heals `rewrite` (the pruned model built from `model`) in place: replaces `ffn_down` (and the
/// post-FFN norm weight where there is one) of the block before each removed run.
/// `progress(stage, done, total)`.
pub fn heal_rewrite(
    model: &Model,
    rewrite: &mut Rewrite,
    options: &HealOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<HealReport> {
    crate::limits::check_context(model, options.ctx)?;
    crate::limits::check_token_budget(options.max_tokens)?;
    let windows = crate::calibration::calibration_windows(
        model,
        options.calib.as_deref(),
        options.ctx,
        options.max_tokens,
    )?;
    heal_with_windows(model, rewrite, &windows, options, progress)
}

/// [`heal_rewrite`] on given token windows (the last quarter, at least one, held back).
pub fn heal_with_windows(
    model: &Model,
    rewrite: &mut Rewrite,
    windows: &[Vec<u32>],
    options: &HealOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<HealReport> {
    if windows.len() < 2 {
        return Err(Error::Heal(format!(
            "healing needs at least 2 calibration windows (one held back); got {}",
            windows.len()
        )));
    }
    let fw = Forward::new(model)?;
    let held_windows = (windows.len() / 4).max(1);
    let lens: Vec<usize> = windows.iter().map(Vec::len).collect();
    let ctx = Context {
        model,
        eps: fw.hp.eps,
        post_norm: fw.spec.post_norms,
        options,
        fit_rows: lens[..windows.len() - held_windows].iter().sum(),
        lens: &lens,
    };
    let mut report = HealReport {
        method: options.method,
        runs: Vec::new(),
        windows: windows.len(),
        held_windows,
        tokens: lens.iter().sum(),
        pass_seconds: 0.0,
        fit_seconds: 0.0,
        rescaled: Vec::new(),
    };
    // Maximal runs of removed blocks, each healed at the block before it.
    let all_runs: Vec<Vec<usize>> = rewrite
        .plan
        .runs()
        .into_iter()
        .map(Vec::from_iter)
        .collect();
    // The write scale of each source block (magnitude compensation), applied after the pass.
    let mut scales = vec![1.0; fw.n_layer()];
    pass::run(
        &fw,
        windows,
        &all_runs,
        &mut report,
        progress,
        &mut |il, run, x, sample| heal_run(&ctx, (rewrite, &mut scales), (il, run), x, sample),
    )?;
    report.rescaled = comp::apply(model, rewrite, &scales)?;
    Ok(report)
}

/// What every run's heal shares: the source model, the two facts of the forward recipe the fold
/// depends on, the options and the windows' layout.
struct Context<'a> {
    model: &'a Model,
    /// The RMS-norm epsilon.
    eps: f32,
    /// A post-FFN norm sits between `ffn_down` and the stream (the approximate fold).
    post_norm: bool,
    options: &'a HealOptions,
    /// Token rows of the fit windows (the held-back windows' rows follow).
    fit_rows: usize,
    /// Tokens in each window.
    lens: &'a [usize],
}

/// Fits, folds and checks one run (block `il` absorbing `run`), given the stream `x` leaving
/// block `il`: every method asked for is a candidate ([`choose`]); if the chosen fold lowers the
/// held-back error, writes it into `rewrite` (a compensation into `scales`, the write scale of
/// each source block) and updates `x` to the healed block's output.
fn heal_run(
    ctx: &Context,
    (rewrite, scales): (&mut Rewrite, &mut [f64]),
    (il, run): (usize, &[usize]),
    x: &mut Batch,
    sample: &RunSample,
) -> Result<RunReport> {
    let (d, options) = (sample.d, ctx.options);
    let rows = Rows::new(&x.data, d, ctx.lens, ctx.fit_rows, options.outlier_factor);
    let mut rep = RunReport::skipped(run, Some(il), "");
    rep.fit_tokens = rows.fit.len();
    rep.held_tokens = rows.held.len();
    rep.excluded = rows.excluded;
    rep.err_before = mean_sq_dist(&sample.m, &sample.a2, d, &rows.held);
    rep.run_norm = mean_sq_dist(&sample.y.data, &x.data, d, &rows.held);
    if let Some(why) = rows.too_few(d) {
        rep.note = why;
        return Ok(rep);
    }
    let target = match Target::find(ctx.model, il, sample.ff, d, ctx.post_norm)? {
        Found::Target(t) => t,
        Found::NotFoldable(why) => {
            rep.note = why;
            return Ok(rep);
        }
    };
    rep.outlier_norm = mean_sq_norm(&sample.y.data, d, &rows.sinks);
    rep.err_outliers_before = mean_sq_dist(&sample.m, &sample.a2, d, &rows.sinks);
    let out_name = rewrite.tensors[fold::rewrite_index(rewrite, &target.down_name)?]
        .name
        .clone();
    let inputs = choose::Inputs {
        ctx,
        sample,
        rows: &rows,
        h: &x.data,
        target: &target,
        out_name: &out_name,
        rewrite,
        last: run[run.len() - 1],
    };
    let Some(choice) = choose::choose(&inputs, &mut rep)? else {
        return Ok(rep);
    };
    let best = choice.best;
    rep.method = Some(best.method);
    rep.fold = Some(best.fold);
    (rep.err_float, rep.err_after) = (best.err_float, best.err_after);
    rep.err_outliers_after = best.err_outliers_after;
    rep.params = best.params;
    rep.tokens_per_param = rows.fit.len() as f64 / best.params as f64;
    rep.small_calibration = rep.tokens_per_param * (d as f64) < report::SMALL_CALIBRATION;
    let mut notes = best.notes;
    if !choice.lowers && !options.force {
        notes.insert(
            0,
            format!(
                "left unhealed: the fold does not lower the held-back error ({:.4e} -> {:.4e}; outlier positions {:.4e} -> {:.4e})",
                rep.err_before, rep.err_after, rep.err_outliers_before, rep.err_outliers_after
            ),
        );
        rep.note = notes.join("; ");
        return Ok(rep);
    }
    // Keep: write the fold and continue the pass with the healed block.
    match best.change {
        choose::Change::Map(requantized) => {
            rep.tensors = fold::write(rewrite, &target, requantized, best.out.norm.as_deref())?;
        }
        choose::Change::Scale(s) => {
            let last = run[run.len() - 1];
            scales[last + 1..].iter_mut().for_each(|v| *v /= s);
        }
    }
    pass::replace_ffn_output(x, &sample.m, &best.out.written);
    rep.healed = true;
    rep.note = notes.join("; ");
    Ok(rep)
}
