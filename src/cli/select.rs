//! Layer-selection options shared by `score` and the prune command (`--remove N`).

use anyhow::Context;
use gguf_prune::gguf::Model;
use gguf_prune::limits;
use gguf_prune::score::{select::DEFAULT_CTX, select::DEFAULT_MAX_TOKENS, Metric, SelectOptions};
use std::path::PathBuf;

/// `--metric`'s values: the library's [`Metric`], spelled for the command line (the library
/// knows nothing of clap). The doc comments are the help text.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MetricArg {
    /// One-shot Block Influence: the N lowest-BI blocks.
    Bi,
    /// The contiguous run of N blocks with the lowest angular distance (Gromov et al.).
    Angular,
    /// Iterative BI: remove the lowest-BI block, re-score, repeat.
    Iterative,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Metric {
        match m {
            MetricArg::Bi => Metric::Bi,
            MetricArg::Angular => Metric::Angular,
            MetricArg::Iterative => Metric::Iterative,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// Remove the N most redundant blocks, chosen by scoring the model on calibration text.
    #[arg(long, value_name = "N")]
    pub remove: Option<usize>,
    /// Use one metric only: bi (one-shot Block Influence), angular (best contiguous run by
    /// angular distance), iterative (re-score after each removal). Default: build all three
    /// sets from the calibration windows and keep the one whose pruned model stays closest
    /// (KL divergence) to the unpruned model on the last quarter of them.
    #[arg(long, value_enum)]
    pub metric: Option<MetricArg>,
    /// Also try a greedy set guided by the KL divergence on the comparison windows (the 3 lowest-BI blocks tried
    /// at each step): slower, sometimes better.
    #[arg(long)]
    pub refine: bool,
    /// Calibration text file (default: the built-in text).
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
    /// Tokens per calibration window (windows do not overlap and share no cache); at most the
    /// model's training context and 8192.
    #[arg(long, default_value_t = DEFAULT_CTX, value_name = "N")]
    pub ctx: usize,
    /// At most this many calibration tokens (the last window is cut short to meet it); 2 to
    /// 131072.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_name = "N")]
    pub max_tokens: usize,
    #[arg(short = 't', long, value_name = "N", help = THREADS_HELP)]
    pub threads: Option<usize>,
    /// Allow removing the first and the last block (kept by default: removing them hurts most).
    #[arg(long)]
    pub allow_ends: bool,
}

impl SelectArgs {
    /// The library options, or `None` when no `--remove` was given (the prune command calls it).
    #[allow(dead_code)]
    pub fn to_options(&self) -> anyhow::Result<Option<SelectOptions>> {
        self.apply_threads()?;
        let Some(remove) = self.remove else {
            if self.metric.is_some() || self.refine {
                anyhow::bail!("--metric and --refine need --remove N");
            }
            return Ok(None);
        };
        if remove == 0 {
            anyhow::bail!("--remove 0 removes nothing: give at least 1 (or `gguf-prune score` for the scores alone)");
        }
        Ok(Some(self.options(remove)))
    }

    /// Refuses a window length or token budget `model` cannot justify, before any text is read.
    pub fn check(&self, model: &Model) -> anyhow::Result<()> {
        limits::check_context(model, self.ctx).context("--ctx")?;
        limits::check_token_budget(self.max_tokens).context("--max-tokens")
    }

    /// Options for scoring with `remove` blocks (0: scores only).
    pub fn options(&self, remove: usize) -> SelectOptions {
        SelectOptions {
            remove,
            metric: self.metric.map(Metric::from),
            refine: self.refine,
            calib: self.calib.clone(),
            ctx: self.ctx,
            max_tokens: self.max_tokens,
            allow_ends: self.allow_ends,
            min_tokens: 0,
        }
    }

    /// Sizes rayon's pool and candle's gemm (which reads `RAYON_NUM_THREADS`) once, before any
    /// work starts.
    pub fn apply_threads(&self) -> anyhow::Result<()> {
        set_threads(self.threads, "-t/--threads")
    }
}

/// Help text of every `-t/--threads` option.
pub const THREADS_HELP: &str =
    "Threads (default: all cores); 1 to the number of CPUs this process may use.";

/// Refuses a thread count of 0 or above the CPUs this process may use
/// (`std::thread::available_parallelism`): more threads only contend for the same cores (and
/// `-t 1000` started 1401). `flag` names the option in the error.
pub fn check_threads(threads: usize, flag: &str) -> anyhow::Result<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 0 {
        anyhow::bail!("{flag} must be at least 1");
    }
    if threads > cpus {
        anyhow::bail!("{flag} {threads}: this machine gives this process {cpus} CPUs; use at most {cpus} threads");
    }
    Ok(threads)
}

/// Sizes rayon's pool and candle's gemm to `threads` (when given) before any pool exists: rayon
/// reads `RAYON_NUM_THREADS` once, and candle's CPU kernels read it too. Shared by every command
/// with a `--threads` option; `flag` names the option in the errors of [`check_threads`].
pub fn set_threads(threads: Option<usize>, flag: &str) -> anyhow::Result<()> {
    if let Some(t) = threads {
        let t = check_threads(t, flag)?;
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    Ok(())
}
