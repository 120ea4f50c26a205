//! What healing reports: per removed run, how its fold was made, the held-back errors before and
//! after, and the tensors it replaced (serialized as the `heal` object of `--json`).

/// How a run's fold was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fold {
    /// `ffn_down' = T^T ffn_down`: the block computes exactly `M T`.
    Exact,
    /// Post-FFN norm in between: direction folded into `ffn_down`, norm weight refitted.
    Approximate,
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
    pub runs: Vec<RunReport>,
    pub windows: usize,
    pub held_windows: usize,
    pub tokens: usize,
    /// Seconds in the forward pass (blocks) and in fitting and folding.
    pub pass_seconds: f64,
    pub fit_seconds: f64,
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
        }
    }
}
