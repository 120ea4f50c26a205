//! `gguf-prune verify`.
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The GGUF file.
    pub model: PathBuf,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    anyhow::bail!("verify is not written yet ({})", args.model.display())
}
