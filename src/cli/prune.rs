//! The default command: `gguf-prune MODEL --layers 20,21,22 [-o OUT]`.
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The input GGUF model (never modified).
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Layers to remove, by original index: `20,21,22` or ranges like `12-15`.
    #[arg(long)]
    pub layers: Option<String>,
    /// Output path (default: MODEL with `.pruned` before `.gguf`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: PruneArgs) -> anyhow::Result<()> {
    anyhow::bail!("pruning is not written yet ({:?})", args.model)
}
