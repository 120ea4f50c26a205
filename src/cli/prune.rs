//! The default command: `gguf-prune MODEL --layers 20,21,22 [-o OUT]`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gguf_prune::gguf::{Model, WriteOptions};
use gguf_prune::jobs::prune::{
    layer_count, prune, ImatrixSource, PruneJobReport, PruneOptions, PruneQuantize, Removal,
};
use gguf_prune::jobs::{Notice, PruneReport};
use gguf_prune::output::{self, OutputRule};
use gguf_prune::prune::{parse_layer_list, PrunePlan};
use gguf_prune::quant::{FileType, ImatrixData};
use gguf_prune::score::{SelectOptions, Selection};

use super::progress::JobBars;
use super::select::SelectArgs;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The input GGUF model (never modified). For a split model, its first shard.
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Layers to remove, by original index: `20,21,22`, or ranges such as `12-15`.
    #[arg(long, value_name = "LIST", conflicts_with = "remove")]
    pub layers: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub heal: super::heal::HealArgs,
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
    /// Skip the byte-for-byte comparison of the written tensors with the source (the output's
    /// structure is still checked before it is put in place). Faster on large models.
    #[arg(long)]
    pub no_verify: bool,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub quant: PruneQuantArgs,
}

/// Quantizing the pruned model in the same write.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneQuantArgs {
    /// Also quantize the output to this file type (Q4_K_M, Q8_0, ... as llama-quantize names
    /// them), choosing each tensor's type with llama-quantize's mix at the pruned depth. By
    /// default the importance matrix collected in the calibration pass is used.
    #[arg(long, value_name = "TYPE")]
    pub quantize: Option<String>,
    /// With --quantize: no mix, the file type's default type for every quantizable tensor.
    #[arg(long, requires = "quantize")]
    pub pure: bool,
    /// With --quantize: use this importance matrix of the SOURCE model (llama-imatrix's GGUF or
    /// .dat, or one saved by --imatrix-out) instead of collecting one; its layer names are
    /// renumbered for the pruned model.
    #[arg(
        long,
        value_name = "FILE",
        requires = "quantize",
        conflicts_with = "no_imatrix"
    )]
    pub imatrix: Option<PathBuf>,
    /// With --quantize: quantize without an importance matrix (as plain llama-quantize does).
    #[arg(long, requires = "quantize")]
    pub no_imatrix: bool,
    /// Save the importance matrix collected in the calibration pass (llama-imatrix's GGUF
    /// format, names of the SOURCE model's layers, so --imatrix and llama-quantize accept it).
    #[arg(long, value_name = "FILE")]
    pub imatrix_out: Option<PathBuf>,
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
    // Compared as bytes: the suffix is ASCII, the rest of the name need not be.
    let Some(cut) = stem.len().checked_sub(15).filter(|&c| c > 0) else {
        return stem;
    };
    let b = &stem.as_bytes()[cut..];
    if b[0] == b'-'
        && &b[6..10] == b"-of-"
        && b[1..6].iter().chain(&b[10..15]).all(u8::is_ascii_digit)
    {
        // The 15 bytes are ASCII, so `cut` is a character boundary.
        return &stem[..cut];
    }
    stem
}

pub fn run(args: PruneArgs) -> anyhow::Result<()> {
    let input = args.model.clone().expect("clap requires MODEL");
    // Every argument that can be refused is refused before any work.
    let calib_options = args.select.to_options()?;
    let q = &args.quant;
    if q.quantize.is_some() && args.heal.heal_type.is_some() {
        bail!("--heal-type and --quantize both set the healed tensors' type: with --quantize they take the type the quantization mix gives them; drop --heal-type");
    }
    let ftype = match &q.quantize {
        Some(name) => Some(FileType::parse(name).context("--quantize")?),
        None => None,
    };
    let model = Model::open(&input)?;
    if calib_options.is_some()
        || args.heal.heal.is_some()
        || q.imatrix_out.is_some()
        || ftype.is_some()
    {
        args.select.check(&model)?;
    }
    if args.heal.heal.is_some() {
        args.heal.check()?;
    }
    let n_layers = layer_count(&model)?;
    let imatrix = match &q.imatrix {
        Some(p) => ImatrixSource::Given {
            data: ImatrixData::read_for(p, &model).context("--imatrix")?,
            path: p.clone(),
        },
        None if q.no_imatrix => ImatrixSource::Without,
        None => ImatrixSource::Collected,
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&input));
    let rule = super::output_rule(
        args.force,
        &[&model],
        &[args.select.calib.as_ref(), q.imatrix.as_ref()],
    );
    check_outputs(&output, q.imatrix_out.as_ref(), args.split_max_size, &rule)?;
    let removal = removal(&args, calib_options, n_layers)?;
    let options = job_options(&args, removal, ftype, imatrix, output, rule);
    let mut bars = JobBars::new(!args.json, print_notice);
    let report = prune(&model, &options, &mut bars).map_err(super::name_flags)?;
    if let (Some(saved), false) = (&report.imatrix_out, args.json) {
        eprintln!(
            "importance matrix: {} entries, {} chunks of {} tokens, saved to {}",
            saved.entries,
            saved.chunk_count,
            saved.chunk_size,
            saved.path.display()
        );
    }
    print_report(&report, &args.select, args.json)
}

/// Which layers to remove: `--layers` (checked against the model before any pass) or
/// `--remove N`'s scoring.
fn removal(
    args: &PruneArgs,
    scored: Option<SelectOptions>,
    n_layers: usize,
) -> anyhow::Result<Removal> {
    Ok(match (&args.layers, scored) {
        (Some(list), _) => {
            let layers = parse_layer_list(list)?;
            PrunePlan::new(n_layers, &layers)?; // a bad list is reported before the pass
            Removal::Layers {
                layers,
                calibration: args.select.options(0),
            }
        }
        (None, Some(options)) => Removal::Scored(options),
        (None, None) => bail!("say which layers to remove: --remove N (scored), or --layers LIST (e.g. --layers 20,21,22)"),
    })
}

/// The job's options from the checked arguments.
fn job_options(
    args: &PruneArgs,
    removal: Removal,
    ftype: Option<FileType>,
    imatrix: ImatrixSource,
    output: PathBuf,
    rule: OutputRule,
) -> PruneOptions {
    let select = &args.select;
    PruneOptions {
        removal,
        heal: args
            .heal
            .heal
            .is_some()
            .then(|| args.heal.options(select.calib.clone(), select.ctx)),
        quantize: ftype.map(|ftype| PruneQuantize {
            ftype,
            pure: args.quant.pure,
            imatrix,
        }),
        imatrix_out: args.quant.imatrix_out.clone(),
        output,
        write: WriteOptions {
            output: rule,
            split_max_bytes: args.split_max_size,
            skip_byte_comparison: args.no_verify,
        },
    }
}

/// The prune command's words for a job's notices (stderr, not with `--json`).
fn print_notice(notice: &Notice) {
    match notice {
        Notice::Requantizing(tensors) => {
            let mut from: Vec<String> = tensors.iter().map(|(_, f, _)| f.to_string()).collect();
            from.dedup();
            eprintln!(
                "warning: requantizing {} already quantized tensors ({}): the result is worse than quantizing from F16/F32",
                tensors.len(),
                from.join(", ")
            );
        }
        Notice::NoImportanceData(names) => eprintln!(
            "note: no importance data for {} converted tensors (e.g. {}; llama-imatrix collects none for the embedding and output head either)",
            names.len(),
            names[0]
        ),
        Notice::Fallbacks(_) => {}
    }
}

/// Checks every output path before the calibration pass: the model's (for a split, only its
/// folder: the shard names depend on sizes known when writing) and --imatrix-out's, which must
/// not be the model's.
fn check_outputs(
    output: &Path,
    imatrix_out: Option<&PathBuf>,
    split: Option<u64>,
    rule: &OutputRule,
) -> anyhow::Result<()> {
    match split {
        None => output::check(output, rule)?,
        Some(_) => output::check_folder(output)?,
    }
    if let Some(path) = imatrix_out {
        output::check(path, rule).context("--imatrix-out")?;
        if output::same_target(path, output) {
            bail!(
                "--imatrix-out {} is the model's output path: give them different names",
                path.display()
            );
        }
    }
    Ok(())
}

/// Prints what the prune did: pretty JSON, or lines of text.
fn print_report(job: &PruneJobReport, select: &SelectArgs, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(job);
    }
    let report = &job.prune;
    if let Some(h) = &job.heal {
        super::heal::print_report(h);
    }
    if let Some(sel) = &job.selection {
        print_selection(sel, &report.removed, select);
    }
    print_outcome(report);
    if let Some(q) = &job.quantize {
        println!(
            "quantized to {} ({} of {} tensors converted, {}importance matrix)",
            q.ftype.name(),
            q.report.n_converted,
            q.report.n_tensors,
            if q.with_imatrix { "" } else { "no " }
        );
    }
    print_verified(report);
    Ok(())
}

/// The report as pretty JSON: the prune's fields, then healing, quantization and selection.
fn print_json(job: &PruneJobReport) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(&job.prune)?;
    if let Some(h) = &job.heal {
        value["heal"] = serde_json::to_value(h)?;
    }
    if let Some(q) = &job.quantize {
        value["quantize"] = serde_json::json!({
            "type": q.ftype.name(),
            "imatrix": q.with_imatrix,
            "converted": q.report.n_converted,
            "requantized": q.report.requantized.len(),
        });
    }
    if let Some(sel) = &job.selection {
        value["selection"] = serde_json::json!({
            "method": sel.method,
            "order": sel.order,
            "bi": sel.scores.bi.iter().map(|&x| if x.is_finite() { Some(x) } else { None }).collect::<Vec<_>>(),
            "candidates": sel.candidates,
            "tokens": sel.n_tokens,
            "held_out_tokens": sel.held_out_tokens,
        });
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// How the layers were chosen: the method and how candidates were compared, every candidate
/// with its held-out divergence, and the BI of each removed block.
fn print_selection(sel: &Selection, removed: &[usize], select: &SelectArgs) {
    let how = if sel.held_out_tokens > 0 {
        format!("candidates compared on {}", sel.held_out_tokens)
    } else if select.metric.is_some() {
        "one metric asked for, no comparison".to_string()
    } else {
        format!(
            "not compared with the other metrics: the text gives a single window of {} tokens; \
             a longer --calib or a smaller --ctx lets the default compare them",
            select.ctx
        )
    };
    println!(
        "chosen by {} on {} calibration tokens ({how})",
        sel.method, sel.n_tokens
    );
    for c in &sel.candidates {
        let layers: Vec<String> = c.removed.iter().map(usize::to_string).collect();
        let kl = c
            .held_out_kl
            .map_or(String::new(), |k| format!("  KL {k:.4}"));
        let ppl = c
            .held_out_ppl
            .map_or(String::new(), |p| format!("  PPL {p:.2}"));
        println!("  candidate {:<12} {}{kl}{ppl}", c.method, layers.join(","));
    }
    let scores: Vec<String> = removed
        .iter()
        .map(|&i| format!("{i}: BI {:.4}", sel.scores.bi[i]))
        .collect();
    println!("  scores of the removed blocks: {}", scores.join(", "));
}

/// What was removed, the sizes before and after, and the files written.
fn print_outcome(report: &PruneReport) {
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
}

/// How far the output was checked against the source.
fn print_verified(report: &PruneReport) {
    if !report.bytes_compared {
        println!("verified: structure (tensors not compared byte for byte: --no-verify)");
    } else if report.verified {
        println!("verified: structure, and every tensor byte for byte against the source");
    } else {
        println!("verified: structure, and every copied tensor byte for byte against the source");
    }
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
