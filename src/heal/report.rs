//! What healing reports: per removed run, how its fold was made, the held-back errors before and
//! after, which method made the fold (and the held-back error of every method tried), and the
//! tensors it replaced (serialized as the `heal` object of `--json`).

use super::HealMethod;

/// Below this many equations per fitted parameter (each fit token gives `d` equations, one per
/// stream channel) a run's report flags the calibration as small for the fit. The
/// least-squares map has `d^2` parameters, so it asks for `10 d` fit tokens: 5,760 on SmolLM2
/// (d = 576), more than the default budget's 4,096 fit tokens (8 of its 10 windows).
pub const SMALL_CALIBRATION: f64 = 10.0;

/// How a run's fold was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fold {
    /// `ffn_down' = T^T ffn_down`: the block computes exactly `M T`.
    Exact,
    /// Post-FFN norm in between: direction folded into `ffn_down`, norm weight refitted.
    Approximate,
    /// The stream rescaled at the cut, folded into the writes of the blocks after it (`comp`).
    Rescaled,
}

/// One method tried on a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tried {
    pub method: HealMethod,
    /// Held-back error with this method's fold as written (NaN, null in JSON: not fitted).
    pub err_after: f64,
    /// Whether the fold lowers the held-back error (the rule a kept fold must pass).
    pub lowers: bool,
    /// Why it was not fitted, if it was not.
    pub note: String,
}

/// What happened to one removed run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    /// Original indices of the removed blocks.
    pub removed: Vec<usize>,
    /// Original index of the block that absorbs the run (`None`: the run starts at block 0).
    pub block: Option<usize>,
    /// Healed (fold written) or not.
    pub healed: bool,
    /// Why not, or what to know about the fold.
    pub note: String,
    /// The method of the fold written (or, unhealed, of the best one tried).
    pub method: Option<HealMethod>,
    pub fold: Option<Fold>,
    /// Fit and held-back token rows used (after leaving out outliers).
    pub fit_tokens: usize,
    pub held_tokens: usize,
    /// Positions left out as outliers (first positions included).
    pub excluded: usize,
    /// Mean squared error per held-back token of the stream after the run, unhealed.
    pub err_before: f64,
    /// The same with the fold in f32 (before requantization).
    pub err_float: f64,
    /// The same with the fold as written (requantized).
    pub err_after: f64,
    /// The same before/after for the held-back outlier positions (left out of the fit's
    /// statistics; a fold must not make them worse either).
    pub err_outliers_before: f64,
    pub err_outliers_after: f64,
    /// Mean squared norm of the held-back outlier positions' stream after the run.
    pub outlier_norm: f64,
    /// Mean squared norm of the run's total contribution on the held-back tokens (scale).
    pub run_norm: f64,
    /// Tensors changed, with types and sizes.
    pub tensors: Vec<TensorChange>,
    /// Parameters the method fitted (`d^2` for a map, `d` for patch scales, 1 for comp).
    pub params: usize,
    /// Fit tokens per fitted parameter.
    pub tokens_per_param: f64,
    /// Fewer than [`SMALL_CALIBRATION`] equations per fitted parameter: more calibration
    /// tokens would fit this run better.
    pub small_calibration: bool,
    /// Every method tried, in order.
    pub tried: Vec<Tried>,
}

/// One tensor replaced by healing.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TensorChange {
    /// Name in the output file.
    pub name: String,
    pub type_before: String,
    pub type_after: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Relative RMS error of the written tensor against the f32 fold.
    pub requant_rel_err: f64,
}

/// What healing did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HealReport {
    /// The method asked for (`auto`: chosen per run).
    pub method: HealMethod,
    pub runs: Vec<RunReport>,
    pub windows: usize,
    pub held_windows: usize,
    pub tokens: usize,
    /// Seconds in the forward pass (blocks) and in fitting and folding.
    pub pass_seconds: f64,
    pub fit_seconds: f64,
    /// Tensors rescaled by magnitude compensation (`comp`), after the pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rescaled: Vec<TensorChange>,
}

impl HealReport {
    /// Whether any healed run's calibration was small for its fit.
    pub fn small_calibration(&self) -> bool {
        self.runs.iter().any(|r| r.healed && r.small_calibration)
    }
}

impl RunReport {
    /// A run left unhealed for `why`, nothing measured yet (the measures are NaN, which the JSON
    /// report writes as null).
    pub(super) fn skipped(run: &[usize], block: Option<usize>, why: &str) -> RunReport {
        RunReport {
            removed: run.to_vec(),
            block,
            healed: false,
            note: why.to_string(),
            method: None,
            fold: None,
            fit_tokens: 0,
            held_tokens: 0,
            excluded: 0,
            err_before: f64::NAN,
            err_float: f64::NAN,
            err_after: f64::NAN,
            err_outliers_before: f64::NAN,
            err_outliers_after: f64::NAN,
            outlier_norm: f64::NAN,
            run_norm: f64::NAN,
            tensors: Vec::new(),
            params: 0,
            tokens_per_param: f64::NAN,
            small_calibration: false,
            tried: Vec::new(),
        }
    }
}
