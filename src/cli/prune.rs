//! The default command: `gguf-prune MODEL --layers 20,21,22 [-o OUT]`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gguf_prune::gguf::{Model, WriteOptions};
use gguf_prune::heal::heal_rewrite;
use gguf_prune::pipeline::{write_verified, PruneReport};
use gguf_prune::prune::{block_count, parse_layer_list, rewrite, PrunePlan};

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
    #[command(flatten)]
    pub select: super::select::SelectArgs,
    #[command(flatten)]
    pub heal: super::heal::HealArgs,
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

    let removed = match (&args.layers, args.select.to_options()?) {
        (Some(_), Some(_)) => bail!("--layers and --remove exclude each other"),
        (Some(list), None) => parse_layer_list(list)?,
        (None, Some(options)) => {
            let mut bar = StageProgress::new(!args.json);
            let sel = gguf_prune::score::select_layers(&model, &options, &mut |s, d, t| {
                bar.update(s, d, t)
            })
            .with_context(|| format!("choosing layers of {}", input.display()))?;
            bar.finish();
            if !args.json {
                println!("selected by {}: {:?}", sel.method, sel.removed);
            }
            sel.removed
        }
        (None, None) => bail!(
            "say which layers to remove: --layers LIST (e.g. --layers 20,21,22) or --remove N"
        ),
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

    let mut rewritten = rewrite(&model, &plan)?;
    let heal_report = if args.heal.heal {
        let heal_options = args
            .heal
            .options(args.select.calib.clone(), args.select.ctx);
        let mut bar = StageProgress::new(!args.json);
        let r = heal_rewrite(&model, &mut rewritten, &heal_options, &mut |s, d, t| {
            bar.update(s, d, t)
        })
        .with_context(|| format!("healing {}", input.display()))?;
        bar.finish();
        Some(r)
    } else {
        None
    };
    let mut bar = ByteProgress::new("writing", !args.json);
    let report = write_verified(&model, rewritten, &output, &options, &mut |done, total| {
        bar.update(done, total)
    })?;
    bar.finish();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(h) = &heal_report {
            v["heal"] = serde_json::to_value(h)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if let Some(h) = &heal_report {
        super::heal::print_report(h);
    }
    print_report(&report, args.json)
}

/// A stage/count progress bar on stderr (scoring, healing).
struct StageProgress(Option<indicatif::ProgressBar>);

impl StageProgress {
    fn new(enabled: bool) -> StageProgress {
        StageProgress(enabled.then(|| {
            let bar = indicatif::ProgressBar::new(1);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>24} [{bar:30}] {pos}/{len} {elapsed}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar
        }))
    }
    fn update(&mut self, stage: &str, done: usize, total: usize) {
        if let Some(bar) = &self.0 {
            bar.set_message(stage.to_string());
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
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
    if report.verified {
        println!("verified: structure, and every tensor byte for byte against the source");
    } else {
        println!("verified: structure, and every copied tensor byte for byte against the source");
    }
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
