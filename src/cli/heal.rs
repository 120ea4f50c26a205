//! `--heal` options of the prune command, and the heal report.

use gguf_prune::gguf::GgmlType;
use gguf_prune::heal::{HealOptions, HealReport};

#[derive(Debug, Clone, clap::Args)]
pub struct HealArgs {
    /// After removing layers, fit a d x d map per removed run on calibration text and fold it
    /// into the preceding block's ffn_down (ReplaceMe). A run whose fold does not lower the
    /// error on held-back calibration tokens is left unhealed.
    #[arg(long)]
    pub heal: bool,
    /// Type for the healed ffn_down tensors (e.g. F16, Q8_0) [default: the source tensor's type,
    /// F16 where this build cannot quantize it].
    #[arg(long, value_name = "TYPE", value_parser = parse_type, requires = "heal")]
    pub heal_type: Option<GgmlType>,
    /// Calibration tokens for healing (a quarter of the windows held back); 2 to 131072.
    #[arg(long, default_value_t = 5120, value_name = "N", requires = "heal")]
    pub heal_tokens: usize,
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
        "heal: {} calibration windows ({} held back), {} tokens; pass {:.1}s, fit {:.1}s",
        report.windows, report.held_windows, report.tokens, report.pass_seconds, report.fit_seconds
    );
    println!(
        "  {:<12} {:>5} {:>10} {:>11} {:>11} {:>11}  result",
        "run", "into", "fold", "err before", "err float", "err written"
    );
    for r in &report.runs {
        let run = match (r.removed.first(), r.removed.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
            (Some(a), _) => a.to_string(),
            _ => String::new(),
        };
        let fold = match r.fold {
            Some(gguf_prune::heal::Fold::Exact) => "exact",
            Some(gguf_prune::heal::Fold::Approximate) => "approx",
            None => "-",
        };
        println!(
            "  {:<12} {:>5} {:>10} {:>11.4e} {:>11.4e} {:>11.4e}  {}{}{}",
            run,
            r.block.map(|b| b.to_string()).unwrap_or("-".into()),
            fold,
            r.err_before,
            r.err_float,
            r.err_after,
            if r.healed { "healed" } else { "not healed" },
            if r.note.is_empty() { "" } else { ": " },
            r.note
        );
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
    println!("  (errors: mean squared error per held-back token of the stream after the run)");
}
