//! The default command: `gguf-prune MODEL --layers 20,21,22 [-o OUT]`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gguf_prune::gguf::{Model, WriteOptions};
use gguf_prune::pipeline::{prune_model, PruneReport};
use gguf_prune::prune::{block_count, parse_layer_list, PrunePlan};

use super::progress::ByteProgress;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The input GGUF model (never modified). For a split model, its first shard.
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Layers to remove, by original index: `20,21,22`, or ranges such as `12-15`.
    #[arg(long, value_name = "LIST")]
    pub layers: Option<String>,
    /// Output path [default: MODEL with `.pruned` before `.gguf`].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Write the output as shards of at most this size (e.g. `500M`, `2G`), named
    /// `OUT-00001-of-0000N.gguf` as llama.cpp's gguf-split does.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split_max_size: Option<u64>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses `500M`, `2G`, `1024K` or a plain byte count.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 500M or 2G"))?;
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use K, M or G)")),
    };
    n.checked_mul(scale)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is not a usable size"))
}

/// `dir/name.gguf` -> `dir/name.pruned.gguf`.
fn default_output(model: &Path) -> PathBuf {
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".gguf").unwrap_or(&name);
    let stem = strip_shard_suffix(stem);
    model.with_file_name(format!("{stem}.pruned.gguf"))
}

/// `name-00001-of-00003` -> `name`.
fn strip_shard_suffix(stem: &str) -> &str {
    let bytes = stem.as_bytes();
    if bytes.len() > 15 && stem.is_char_boundary(stem.len() - 15) {
        let tail = &stem[stem.len() - 15..];
        let b = tail.as_bytes();
        if b[0] == b'-'
            && &tail[6..10] == "-of-"
            && b[1..6].iter().chain(&b[10..15]).all(u8::is_ascii_digit)
        {
            return &stem[..stem.len() - 15];
        }
    }
    stem
}

pub fn run(args: PruneArgs) -> anyhow::Result<()> {
    let input = args.model.clone().expect("clap requires MODEL");
    let model = Model::open(&input)?;
    let n_layers = block_count(model.metadata())
        .with_context(|| format!("{}: cannot read the block count", input.display()))?;

    let removed = match &args.layers {
        Some(list) => parse_layer_list(list)?,
        None => bail!("say which layers to remove: --layers LIST (e.g. --layers 20,21,22)"),
    };
    let plan = PrunePlan::new(n_layers, &removed)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&input));
    let options = WriteOptions {
        overwrite: args.force,
        split_max_bytes: args.split_max_size,
        protect: vec![],
    };

    let mut bar = ByteProgress::new("writing", !args.json);
    let report = prune_model(&model, &plan, &output, &options, &mut |done, total| {
        bar.update(done, total)
    })?;
    bar.finish();
    print_report(&report, args.json)
}

fn print_report(report: &PruneReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let list: Vec<String> = report.removed.iter().map(usize::to_string).collect();
    println!(
        "removed {} of {} layers: {}",
        report.removed.len(),
        report.layers_before,
        list.join(",")
    );
    println!(
        "size: {} -> {} ({:.1}% smaller), {} -> {} tensors",
        human_bytes(report.bytes_before),
        human_bytes(report.bytes_after),
        100.0 * (1.0 - report.bytes_after as f64 / report.bytes_before.max(1) as f64),
        report.tensors_before,
        report.tensors_after
    );
    for out in &report.outputs {
        println!("wrote {}", out.display());
    }
    println!("verified: structure, and every tensor byte for byte against the source");
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_and_sizes() {
        assert_eq!(
            default_output(Path::new("/m/a.Q4_K_M.gguf")),
            PathBuf::from("/m/a.Q4_K_M.pruned.gguf")
        );
        assert_eq!(
            default_output(Path::new("a-00001-of-00003.gguf")),
            PathBuf::from("a.pruned.gguf")
        );
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5X").is_err());
    }
}
