//! `gguf-prune inspect`.
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The GGUF file.
    pub model: PathBuf,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    anyhow::bail!("inspect is not written yet ({})", args.model.display())
}
