//! `gguf-prune verify FILE`: structural checks on any GGUF.

use std::path::PathBuf;

use gguf_prune::gguf::Model;
use gguf_prune::verify::check_structure;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The GGUF file (for a split model, its first shard).
    pub model: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let model = Model::open(&args.model)?;
    let report = check_structure(&model)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": true, "report": report }))?
        );
    } else {
        println!(
            "{}: OK ({} shard(s), {} tensors, {} bytes of tensor data{})",
            args.model.display(),
            report.shards,
            report.tensors,
            report.tensor_bytes,
            report
                .block_count
                .map(|n| format!(", {n} blocks"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
