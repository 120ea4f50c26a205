//! `--heal` options of the prune command, and the heal report.

use gguf_prune::gguf::GgmlType;
use gguf_prune::heal::{HealMethod, HealOptions, HealReport};

#[derive(Debug, Clone, clap::Args)]
pub struct HealArgs {
    /// After removing layers, heal each removed run on calibration text, folded into the
    /// weights (no runtime cost). METHOD: lstsq (ReplaceMe's least-squares map into the
    /// preceding block's ffn_down), cosine (its cosine-distance variant), patch (LinearPatch:
    /// Hadamard rotation and channel scales fused into one map), comp (Prune&Comp: magnitude
    /// compensation folded into the later blocks' outputs), or auto: every method, keeping per
    /// run lstsq if it lowers the error on held-back calibration tokens, else the method that
    /// lowers it most. A run no method improves is left unhealed.
    #[arg(
        long,
        value_name = "METHOD",
        num_args = 0..=1,
        default_missing_value = "auto",
        value_parser = parse_method
    )]
    pub heal: Option<HealMethod>,
    /// Type for the healed ffn_down tensors (e.g. F16, Q8_0) [default: the source tensor's type,
    /// F16 where this build cannot quantize it].
    #[arg(long, value_name = "TYPE", value_parser = parse_type, requires = "heal")]
    pub heal_type: Option<GgmlType>,
    /// Calibration tokens for healing (a quarter of the windows held back); 2 to 131072.
    #[arg(long, default_value_t = 5120, value_name = "N", requires = "heal")]
    pub heal_tokens: usize,
}

fn parse_method(text: &str) -> Result<HealMethod, String> {
    HealMethod::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = HealMethod::ALL.iter().map(|m| m.name()).collect();
        format!("{text:?} is not a healing method ({})", names.join(", "))
    })
}

fn parse_type(text: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(text).ok_or_else(|| format!("{text:?} is not a ggml type (F16, Q8_0, ...)"))
}

impl HealArgs {
    /// Refuses a healing token budget out of range, before any work.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        gguf_prune::limits::check_token_budget(self.heal_tokens).context("--heal-tokens")
    }

    /// Library options, with the calibration file and window length of the selection options.
    pub fn options(&self, calib: Option<std::path::PathBuf>, ctx: usize) -> HealOptions {
        HealOptions {
            method: self.heal.unwrap_or_default(),
            calib,
            ctx,
            max_tokens: self.heal_tokens,
            heal_type: self.heal_type,
            ..HealOptions::default()
        }
    }
}

/// The per-run table of a heal report (stderr-free: printed to stdout).
pub fn print_report(report: &HealReport) {
    println!(
        "heal ({}): {} calibration windows ({} held back), {} tokens; pass {:.1}s, fit {:.1}s",
        report.method,
        report.windows,
        report.held_windows,
        report.tokens,
        report.pass_seconds,
        report.fit_seconds
    );
    println!(
        "  {:<12} {:>5} {:>7} {:>8} {:>11} {:>11} {:>11} {:>10}  result",
        "run", "into", "method", "fold", "err before", "err float", "err written", "tok/param"
    );
    for r in &report.runs {
        print_run(r);
    }
    println!("  (errors: mean squared error per held-back token of the stream after the run)");
    if !report.rescaled.is_empty() {
        println!(
            "  magnitude compensation rescaled {} tensors of the blocks after the cut",
            report.rescaled.len()
        );
    }
    if report.small_calibration() {
        println!(
            "  notice: the calibration is small for the fit (under {} equations, tokens x d, per fitted parameter): more tokens (--heal-tokens) or in-domain text (--calib) fit better",
            gguf_prune::heal::SMALL_CALIBRATION
        );
    }
}

fn print_run(r: &gguf_prune::heal::RunReport) {
    use gguf_prune::heal::Fold;
    let run = match (r.removed.first(), r.removed.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    };
    let fold = match r.fold {
        Some(Fold::Exact) => "exact",
        Some(Fold::Approximate) => "approx",
        Some(Fold::Rescaled) => "rescale",
        None => "-",
    };
    println!(
        "  {:<12} {:>5} {:>7} {:>8} {:>11.4e} {:>11.4e} {:>11.4e} {:>10.4}  {}{}{}",
        run,
        r.block.map(|b| b.to_string()).unwrap_or("-".into()),
        r.method.map(|m| m.name()).unwrap_or("-"),
        fold,
        r.err_before,
        r.err_float,
        r.err_after,
        r.tokens_per_param,
        if r.healed { "healed" } else { "not healed" },
        if r.note.is_empty() { "" } else { ": " },
        r.note
    );
    if r.tried.len() > 1 {
        let tried: Vec<String> = r
            .tried
            .iter()
            .map(|t| {
                format!(
                    "{} {:.4e}{}",
                    t.method,
                    t.err_after,
                    if t.lowers { "" } else { " (not lower)" }
                )
            })
            .collect();
        println!("      held-back error by method: {}", tried.join(", "));
    }
    if r.err_outliers_before.is_finite() {
        println!(
            "      outlier positions (left out of the fit): {:.4e} -> {:.4e}",
            r.err_outliers_before, r.err_outliers_after
        );
    }
    for t in &r.tensors {
        println!(
            "      {} {} -> {}, {} -> {} bytes, requantization error {:.2}% (relative RMS)",
            t.name,
            t.type_before,
            t.type_after,
            t.bytes_before,
            t.bytes_after,
            100.0 * t.requant_rel_err
        );
    }
}
