//! Training-free healing after layer removal (ReplaceMe, Shopkhoev et al., 2025).
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
//! **Never worse.** The last quarter of the calibration windows is held back. A run's fold is kept
//! only if, with the weights as they will be written (requantized), it lowers the squared error of
//! the stream after the run on the held-back tokens; otherwise the run is left unhealed and the
//! report says so.
//!
//! **Layout.** `pass` runs the calibration pass over the forward pass's observer interface and
//! hands each run's sample to `heal_run`'s sequence: `fit` chooses the rows (outliers) and
//! solves for `T`; `fold` writes `T` into the weights, refits the norm and requantizes; `report`
//! holds what is reported. Tensor names come from `arch::names`.

mod fit;
mod fold;
mod pass;
mod report;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::forward::{Batch, Forward};
use crate::gguf::{GgmlType, Model};
use crate::prune::Rewrite;

pub use fit::ridge_solve;
pub use report::{Fold, HealReport, RunReport, TensorChange};

use fit::{mean_sq_dist, mean_sq_norm, Rows};
use fold::{Found, Target};
use pass::RunSample;

/// Largest relative RMS error (of the stream after the run) a fold may leave at outlier
/// positions when it makes them worse.
pub const OUTLIER_REL_ERR: f64 = 0.5;

/// What healing needs; defaults match the measurements in the docs.
#[derive(Clone, Debug)]
pub struct HealOptions {
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
        runs: Vec::new(),
        windows: windows.len(),
        held_windows,
        tokens: lens.iter().sum(),
        pass_seconds: 0.0,
        fit_seconds: 0.0,
    };
    // Maximal runs of removed blocks, each healed at the block before it.
    let all_runs: Vec<Vec<usize>> = rewrite
        .plan
        .runs()
        .into_iter()
        .map(Vec::from_iter)
        .collect();
    pass::run(
        &fw,
        windows,
        &all_runs,
        &mut report,
        progress,
        &mut |il, run, x, sample| heal_run(&ctx, rewrite, (il, run), x, sample),
    )?;
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
/// block `il`; if the fold is kept, writes it into `rewrite` and updates `x` to the healed
/// block's output.
fn heal_run(
    ctx: &Context,
    rewrite: &mut Rewrite,
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
    let anchored = rows.anchored();
    let t = fit::fit_map(&sample.m, &sample.a2, d, &anchored, options.ridge)?;
    let folded = fold::fold(ctx.model, &target, &t, d, sample.ff)?;
    let source_type = target.down.info.ggml_type;
    let out_name = &rewrite.tensors[fold::rewrite_index(rewrite, &target.down_name)?].name;
    let requantized = fold::requantize(&folded, source_type, out_name, options, sample, &anchored)?;
    let out = fold::outputs(sample, &target, &folded, &requantized, &rows.fit, ctx.eps);
    measure(&mut rep, sample, &rows, &out);
    let mut notes = Vec::new();
    if requantized.fallback {
        notes.push(format!(
            "{source_type} cannot be quantized by this build: written as F16"
        ));
    }
    if out.norm.is_some() {
        notes.push(fold::approximate_note());
    }
    if !never_worse(&rep, &rows) && !options.force {
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
    // Keep: write the tensors and continue the pass with the healed block.
    rep.tensors = fold::write(rewrite, &target, requantized, out.norm.as_deref())?;
    pass::replace_ffn_output(x, &sample.m, &out.written);
    rep.healed = true;
    rep.note = notes.join("; ");
    Ok(rep)
}

/// Fills in `rep`'s held-back measures of the folded outputs `out`.
fn measure(rep: &mut RunReport, sample: &RunSample, rows: &Rows, out: &fold::Outputs) {
    let d = sample.d;
    rep.outlier_norm = mean_sq_norm(&sample.y.data, d, &rows.sinks);
    rep.err_outliers_before = mean_sq_dist(&sample.m, &sample.a2, d, &rows.sinks);
    rep.err_outliers_after = mean_sq_dist(&out.written, &sample.a2, d, &rows.sinks);
    rep.err_float = mean_sq_dist(&out.float, &sample.a2, d, &rows.held);
    rep.err_after = mean_sq_dist(&out.written, &sample.a2, d, &rows.held);
    rep.fold = Some(if out.norm.is_some() {
        Fold::Approximate
    } else {
        Fold::Exact
    });
}

/// Whether the fold as written lowers the held-back error (module docs: never worse).
fn never_worse(rep: &RunReport, rows: &Rows) -> bool {
    let (held, sinks) = (rows.held.len() as f64, rows.sinks.len() as f64);
    // Outlier positions must not get worse either: their error is summed with the others'.
    let total = |typical: f64, outliers: f64| typical * held + outliers * sinks;
    // Outlier positions carry streams two orders of magnitude above the rest, so their squared
    // error would decide alone; they may get worse only while staying within OUTLIER_REL_ERR
    // relative RMS error of their stream after the run. Measured: SmolLM2's sink went to 3.6x its
    // norm with a zero-prior ridge (file unusable, PPL 7e6); gemma3's goes from 24% to 35% when
    // healing 8-9, and that file's perplexity drops from 42.7 to 30.9.
    let outliers_ok = rows.sinks.is_empty()
        || total(rep.err_after, rep.err_outliers_after)
            < total(rep.err_before, rep.err_outliers_before)
        || rep.err_outliers_after <= OUTLIER_REL_ERR.powi(2) * rep.outlier_norm;
    rep.err_after < rep.err_before && outliers_ok
}
