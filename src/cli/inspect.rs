//! `gguf-prune inspect FILE [--json]`.

use std::path::PathBuf;

use gguf_prune::gguf::Model;
use gguf_prune::inspect::summarize;

use super::prune::human_bytes;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The GGUF file (for a split model, its first shard).
    pub model: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show at most this many items of each metadata array.
    #[arg(long, default_value_t = 8)]
    pub max_items: usize,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let model = Model::open(&args.model)?;
    let s = summarize(&model, args.max_items);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("{}", s.path);
    println!(
        "  GGUF v{}, {} shard(s), {}, alignment {}",
        s.version,
        s.shards,
        human_bytes(s.file_bytes),
        s.alignment
    );
    println!(
        "  architecture {}{}",
        s.architecture.as_deref().unwrap_or("(none)"),
        s.name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    println!(
        "  {} blocks, {} tensors, {:.1} M parameters, {} of tensor data",
        s.block_count.map_or("?".into(), |n| n.to_string()),
        s.tensor_count,
        s.parameters as f64 / 1e6,
        human_bytes(s.tensor_bytes)
    );
    println!("\nblocks:");
    println!(
        "  {:>5} {:>8} {:>10} {:>11}  types",
        "block", "tensors", "params", "bytes"
    );
    for b in &s.blocks {
        println!(
            "  {:>5} {:>8} {:>9.2}M {:>11}  {}",
            b.index,
            b.tensors,
            b.parameters as f64 / 1e6,
            human_bytes(b.bytes),
            b.types
        );
    }
    println!(
        "  {:>5} {:>8} {:>9.2}M {:>11}  (embeddings, output, norms)",
        "other",
        s.other.tensors,
        s.other.parameters as f64 / 1e6,
        human_bytes(s.other.bytes)
    );
    println!("\ntensor types:");
    let width = s.types.values().map(|g| g.bytes).max().unwrap_or(1).max(1);
    for (t, g) in &s.types {
        let bar = "#".repeat(((g.bytes as f64 / width as f64) * 40.0).round() as usize);
        println!(
            "  {t:>8} {:>5} tensors {:>11}  {bar}",
            g.tensors,
            human_bytes(g.bytes)
        );
    }
    println!("\nmetadata ({} keys):", s.metadata.len());
    for m in &s.metadata {
        println!("  {} = {}", m.key, m.value);
    }
    Ok(())
}
