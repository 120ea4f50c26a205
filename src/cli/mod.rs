//! Commands, one file each: a clap `Args` struct (its doc comments are the `--help` text) and a
//! `run` function that turns it into library calls. The library never sees clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use gguf_prune::gguf::Model;
use gguf_prune::output::OutputRule;

pub mod eval;
pub mod heal;
pub mod imatrix;
pub mod inspect;
pub mod progress;
pub mod prune;
pub mod quantize;
pub mod score;
pub mod select;
pub mod verify;

/// Remove whole transformer layers from GGUF models (ShortGPT), for llama.cpp.
///
/// Examples:
///   gguf-prune model.gguf --remove 8                      # score, drop the 8 most redundant blocks
///   gguf-prune model.gguf --layers 20,21,22 -o small.gguf # drop named layers, no scoring
///   gguf-prune score model.gguf --json                    # per-block scores
///   gguf-prune eval small.gguf --ref model.gguf --text wiki.test.raw
///   gguf-prune quantize model.F16.gguf model.Q4_K_M.gguf Q4_K_M
///   gguf-prune inspect model.gguf
///   gguf-prune verify small.gguf
///   gguf-prune model.F16.gguf --remove 4 --quantize Q4_K_M -o small.Q4_K_M.gguf
#[derive(Debug, Parser)]
#[command(
    verbatim_doc_comment,
    name = "gguf-prune",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub prune: prune::PruneArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model's architecture, layers, tensor types and metadata.
    Inspect(inspect::InspectArgs),
    /// Check a GGUF file's structure: counts, offsets, alignment, ranges.
    Verify(verify::VerifyArgs),
    /// Score every block (Block Influence, angular distance) on calibration text.
    Score(score::ScoreArgs),
    /// Quantize a model as llama-quantize does (Q4_K_M, Q8_0, ...), optionally with an imatrix.
    Quantize(quantize::QuantizeArgs),
    /// Perplexity and KL divergence against a reference, computed as llama-perplexity does.
    ///
    /// Examples:
    ///   gguf-prune eval small.gguf --text wiki.test.raw --chunks 20
    ///   gguf-prune eval small.gguf --ref model.gguf --text wiki.test.raw --json
    ///   llama-perplexity -m model.gguf -f wiki.test.raw --kl-divergence-base base.logits
    ///   gguf-prune eval model.gguf --kl-base base.logits
    #[command(verbatim_doc_comment)]
    Eval(eval::EvalArgs),
    /// Collect an importance matrix on calibration text, as llama-imatrix does.
    Imatrix(imatrix::ImatrixArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => prune::run(cli.prune),
        Some(Command::Inspect(args)) => inspect::run(args),
        Some(Command::Verify(args)) => verify::run(args),
        Some(Command::Quantize(args)) => quantize::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Score(args)) => score::run(args),
        Some(Command::Imatrix(args)) => imatrix::run(args),
    }
}

/// The output rule of a run that reads `models` (every shard) and the files `others`.
pub fn output_rule(force: bool, models: &[&Model], others: &[Option<&PathBuf>]) -> OutputRule {
    let shards = models
        .iter()
        .flat_map(|m| m.shards.iter().map(|s| s.path().to_path_buf()));
    let files = others.iter().flatten().map(|p| p.to_path_buf());
    OutputRule::new(force, shards.chain(files))
}

/// A library error with the option it came from named, where the library leaves that to the
/// command line (the library never names a flag).
pub fn name_flags(err: gguf_prune::Error) -> anyhow::Error {
    match err {
        gguf_prune::Error::ImatrixOutput { source } => {
            anyhow::Error::new(*source).context("--imatrix-out")
        }
        gguf_prune::Error::NeedsImatrix { ftype, tensor } => {
            anyhow::anyhow!("{ftype} needs an importance matrix (--imatrix) for tensor {tensor:?}")
        }
        gguf_prune::Error::HealTypeUnsupported { ty } => {
            anyhow::anyhow!("--heal-type {ty}: this build cannot quantize to it")
        }
        gguf_prune::Error::RefineNeedsWindows { ctx, windows } => anyhow::anyhow!(
            "--refine needs at least 2 windows of {ctx} tokens; the text gives {windows}"
        ),
        gguf_prune::Error::Step { step, source } => name_flags(*source).context(step),
        err => err.into(),
    }
}

/// First Ctrl-C, SIGTERM or SIGHUP (the `termination` feature of ctrlc): ask long work to stop
/// at its next check (it then removes its temporary output). A second one: remove temporary
/// files and exit at once.
pub fn install_ctrlc_handler() {
    let _ = ctrlc::set_handler(|| {
        static PRESSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if PRESSED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            gguf_prune::interrupt::remove_temp_files();
            std::process::exit(130);
        }
        gguf_prune::interrupt::request_stop();
    });
}
