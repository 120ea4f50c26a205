//! One run's candidate folds, one per method tried, measured on the held-back tokens as they
//! will be written, and the choice among them: among the folds that lower the held-back error
//! (the never-worse rule, module docs of [`super`]), the least-squares map ([`PREFERRED`]), else
//! the lowest error (ties, [`TIE`], to the earlier method).
//!
//! Why not simply the lowest error: the held-back error of the stream at the cut ranks folds of
//! one kind well but not folds of different kinds. Measured on gemma3 minus {8,9} (built-in
//! text, 5120 tokens): `comp` left a held-back error of 2.01e6 against `lstsq`'s 4.20e6 (4.32e6
//! unhealed), yet its file measured llama-perplexity 46.10 against 42.69 unhealed (3 chunks),
//! where `lstsq`'s heals (30.89 at 10 chunks with in-domain text); on SmolLM2 `cosine` and
//! `patch` measured worse than `lstsq` too (README's table).

use crate::error::Result;
use crate::prune::Rewrite;

use super::fit::{mean_sq_dist, Rows};
use super::fold::{self, Outputs, Requantized, Target};
use super::pass::RunSample;
use super::report::{Fold, RunReport, Tried};
use super::{comp, cosine, fit, patch, Context, HealMethod, OUTLIER_REL_ERR};

/// The method kept whenever its fold lowers the held-back error.
const PREFERRED: HealMethod = HealMethod::Lstsq;

/// Held-back errors within this fraction of each other, or within this fraction of the unhealed
/// error, are ties. Measured: on an exactly linear run the cosine fit's error (5.47e-14) and the
/// least-squares map's (5.51e-14) are both float noise against an unhealed 0.49.
pub(super) const TIE: f64 = 1e-3;
/// The unhealed error's share below which two errors tie (float noise of an exact fit).
const TIE_UNHEALED: f64 = 1e-9;

/// What one run's candidates are fitted on.
pub(super) struct Inputs<'a, 'm> {
    pub ctx: &'a Context<'a>,
    pub sample: &'a RunSample,
    pub rows: &'a Rows,
    /// The stream leaving the absorbing block, rows of `d`.
    pub h: &'a [f32],
    pub target: &'a Target<'m>,
    /// The output name of the absorbing block's `ffn_down`.
    pub out_name: &'a str,
    pub rewrite: &'a Rewrite<'m>,
    /// The run's last removed block.
    pub last: usize,
}

/// What a candidate writes.
pub(super) enum Change {
    /// A map folded into `ffn_down`, as requantized.
    Map(Requantized),
    /// Magnitude compensation: the stream at the cut scaled by this factor.
    Scale(f64),
}

/// One method's fold of a run, measured.
pub(super) struct Candidate {
    pub method: HealMethod,
    pub change: Change,
    pub out: Outputs,
    pub params: usize,
    pub notes: Vec<String>,
    pub fold: Fold,
    pub err_float: f64,
    pub err_after: f64,
    pub err_outliers_after: f64,
}

/// The chosen candidate and whether it lowers the held-back error.
pub(super) struct Choice {
    pub best: Candidate,
    pub lowers: bool,
}

/// Fits every method of `method.candidates()`, records each in `rep.tried` and returns the
/// choice; `None` if no method could be fitted (`rep.note` says why).
pub(super) fn choose(inp: &Inputs, rep: &mut RunReport) -> Result<Option<Choice>> {
    let mut lstsq = None;
    let mut best: Option<Choice> = None;
    for &method in inp.ctx.options.method.candidates() {
        crate::interrupt::check()?;
        let cand = match candidate(inp, method, &mut lstsq)? {
            Ok(c) => c,
            Err(note) => {
                rep.tried.push(Tried {
                    method,
                    err_after: f64::NAN,
                    lowers: false,
                    note,
                });
                continue;
            }
        };
        let lowers = lowers_error(&cand, rep, inp.rows);
        rep.tried.push(Tried {
            method,
            err_after: cand.err_after,
            lowers,
            note: String::new(),
        });
        // A fold that lowers the error beats one that does not; then the least-squares map
        // (PREFERRED); then the lower error, by more than a tie.
        let rank = |lowers: bool, m: HealMethod| (lowers, m == PREFERRED);
        let better = cand.err_after.is_finite()
            && best.as_ref().is_none_or(|b| {
                let margin = (TIE * b.best.err_after).max(TIE_UNHEALED * rep.err_before);
                match rank(lowers, method).cmp(&rank(b.lowers, b.best.method)) {
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Equal => cand.err_after < b.best.err_after - margin,
                }
            });
        if better {
            best = Some(Choice { best: cand, lowers });
        }
    }
    if best.is_none() {
        rep.note = rep
            .tried
            .iter()
            .map(|t| format!("{}: {}", t.method, t.note))
            .collect::<Vec<_>>()
            .join("; ");
    }
    Ok(best)
}

/// One method's candidate, or why it cannot be fitted. `lstsq` caches the least-squares map
/// (the cosine fit starts from it).
fn candidate(
    inp: &Inputs,
    method: HealMethod,
    lstsq: &mut Option<Vec<f64>>,
) -> Result<std::result::Result<Candidate, String>> {
    let (s, d) = (inp.sample, inp.sample.d);
    let ridge = inp.ctx.options.ridge;
    let anchored = inp.rows.anchored();
    let mut notes = Vec::new();
    let t = match method {
        HealMethod::Comp => return Ok(compensation(inp)),
        HealMethod::Patch => {
            let p = patch::fit_patch(&s.m, &s.a2, d, &anchored, ridge)?;
            if !p.rotated {
                notes.push(format!(
                    "no Hadamard matrix of order {d} known: scales in the stream's basis"
                ));
            }
            p.t
        }
        HealMethod::Lstsq | HealMethod::Cosine | HealMethod::Auto => {
            if lstsq.is_none() {
                *lstsq = Some(fit::fit_map(&s.m, &s.a2, d, &anchored, ridge)?);
            }
            let t0 = lstsq.as_deref().unwrap_or_default();
            if method == HealMethod::Cosine {
                cosine::fit_cosine((inp.h, &s.m, &s.y.data), d, &anchored, ridge, t0)?
            } else {
                t0.to_vec()
            }
        }
    };
    let params = if method == HealMethod::Patch {
        d
    } else {
        d * d
    };
    let ctx = inp.ctx;
    let folded = fold::fold(ctx.model, inp.target, &t, d, s.ff)?;
    let source_type = inp.target.down.info.ggml_type;
    let requantized = fold::requantize(
        &folded,
        source_type,
        inp.out_name,
        ctx.options,
        s,
        &anchored,
    )?;
    let out = fold::outputs(s, inp.target, &folded, &requantized, &inp.rows.fit, ctx.eps);
    if requantized.fallback {
        notes.push(format!(
            "{source_type} cannot be quantized by this build: written as F16"
        ));
    }
    let fold = if out.norm.is_some() {
        notes.push(fold::approximate_note());
        Fold::Approximate
    } else {
        Fold::Exact
    };
    Ok(Ok(measured(
        inp,
        method,
        (Change::Map(requantized), out, fold),
        params,
        notes,
    )))
}

/// The magnitude-compensation candidate, or why the blocks after the run cannot take it.
fn compensation(inp: &Inputs) -> std::result::Result<Candidate, String> {
    let s = inp.sample;
    if let Some(why) = comp::why_not_foldable(inp.ctx.model, inp.rewrite, inp.last) {
        return Err(why);
    }
    let scale = comp::fit_scale(inp.h, &s.y.data, s.d, &inp.rows.fit);
    let written = comp::output(&s.m, inp.h, scale);
    let out = Outputs {
        float: written.clone(),
        written,
        norm: None,
    };
    let note = format!("stream rescaled by {scale:.4}: the writes of the blocks after the run scaled by its inverse");
    Ok(measured(
        inp,
        HealMethod::Comp,
        (Change::Scale(scale), out, Fold::Rescaled),
        1,
        vec![note],
    ))
}

/// A candidate with its held-back measures.
fn measured(
    inp: &Inputs,
    method: HealMethod,
    (change, out, fold): (Change, Outputs, Fold),
    params: usize,
    notes: Vec<String>,
) -> Candidate {
    let (a2, d, rows) = (&inp.sample.a2, inp.sample.d, inp.rows);
    Candidate {
        method,
        err_float: mean_sq_dist(&out.float, a2, d, &rows.held),
        err_after: mean_sq_dist(&out.written, a2, d, &rows.held),
        err_outliers_after: mean_sq_dist(&out.written, a2, d, &rows.sinks),
        change,
        out,
        params,
        notes,
        fold,
    }
}

/// Whether the candidate, as written, lowers the held-back error of `rep` (module docs of
/// [`super`]: never worse).
fn lowers_error(c: &Candidate, rep: &RunReport, rows: &Rows) -> bool {
    let (held, sinks) = (rows.held.len() as f64, rows.sinks.len() as f64);
    // Outlier positions must not get worse either: their error is summed with the others'.
    let total = |typical: f64, outliers: f64| typical * held + outliers * sinks;
    // Outlier positions carry streams two orders of magnitude above the rest, so their squared
    // error would decide alone; they may get worse only while staying within OUTLIER_REL_ERR
    // relative RMS error of their stream after the run. Measured: SmolLM2's sink went to 3.6x its
    // norm with a zero-prior ridge (file unusable, PPL 7e6); gemma3's goes from 24% to 35% when
    // healing 8-9, and that file's perplexity drops from 42.7 to 30.9.
    let outliers_ok = rows.sinks.is_empty()
        || total(c.err_after, c.err_outliers_after)
            < total(rep.err_before, rep.err_outliers_before)
        || c.err_outliers_after <= OUTLIER_REL_ERR.powi(2) * rep.outlier_norm;
    c.err_after < rep.err_before && outliers_ok
}
