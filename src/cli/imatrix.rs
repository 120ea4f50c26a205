//! `gguf-prune imatrix`: an importance matrix from calibration text, as llama-imatrix makes one.

use std::path::PathBuf;

use anyhow::Context;
use gguf_prune::gguf::Model;
use gguf_prune::jobs::imatrix::{imatrix, ImatrixOptions};
use gguf_prune::score::select::{DEFAULT_CTX, DEFAULT_MAX_TOKENS};
use gguf_prune::score::SelectOptions;

use super::progress::JobBars;

/// Collect an importance matrix (per-column mean of squared matmul inputs of every block weight)
/// by running the model over calibration text, and save it in llama-imatrix's GGUF format for
/// `gguf-prune --quantize --imatrix`, `gguf-prune quantize --imatrix` or llama-quantize.
/// The prune command collects the same matrix in its scoring pass (--imatrix-out there).
///
/// Example:
///   gguf-prune imatrix model.F16.gguf -o model.imatrix.gguf --calib wiki.train.raw
#[derive(Debug, clap::Args)]
pub struct ImatrixArgs {
    /// The model to run (first shard of a split model).
    pub model: PathBuf,
    /// Where to write the importance matrix (GGUF).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Calibration text file (default: the built-in text).
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
    /// Tokens per window (llama-imatrix's -c); at most the model's training context and 8192.
    #[arg(long, default_value_t = DEFAULT_CTX, value_name = "N")]
    pub ctx: usize,
    /// At most this many tokens (llama-imatrix's --chunks times -c); at least one window
    /// (--ctx), at most 131072. The text must give one whole window.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_name = "N")]
    pub max_tokens: usize,
    #[arg(short = 't', long, value_name = "N", help = super::select::THREADS_HELP)]
    pub threads: Option<usize>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ImatrixArgs) -> anyhow::Result<()> {
    super::select::set_threads(args.threads, "-t/--threads")?;
    let model = Model::open(&args.model)?;
    gguf_prune::limits::check_context(&model, args.ctx).context("--ctx")?;
    gguf_prune::limits::check_token_budget(args.max_tokens).context("--max-tokens")?;
    if args.max_tokens < args.ctx {
        anyhow::bail!(
            "--max-tokens {} is less than one window of --ctx {} tokens: an importance matrix counts whole windows, as llama-imatrix counts whole chunks",
            args.max_tokens,
            args.ctx
        );
    }
    let rule = super::output_rule(args.force, &[&model], &[args.calib.as_ref()]);
    gguf_prune::output::check(&args.output, &rule)?;
    let options = ImatrixOptions {
        calibration: SelectOptions {
            remove: 0,
            calib: args.calib.clone(),
            ctx: args.ctx,
            max_tokens: args.max_tokens,
            min_tokens: args.ctx,
            ..Default::default()
        },
        output: args.output.clone(),
        rule,
    };
    let report = imatrix(&model, &options, &mut JobBars::new(true, |_| {}))?;
    let saved = &report.saved;
    println!(
        "{} entries from {} tokens ({} chunks of {}), wrote {}",
        saved.entries,
        report.tokens,
        saved.chunk_count,
        saved.chunk_size,
        saved.path.display()
    );
    Ok(())
}
