//! `gguf-prune quantize`.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use gguf_prune::gguf::{GgmlType, Model};
use gguf_prune::jobs::quantize::{quantize, QuantizeOptions};
use gguf_prune::jobs::{Notice, Progress};
use gguf_prune::quant::{FileType, ImatrixData, QuantizeParams};

/// Quantize a GGUF model the way llama-quantize does (same kernels, same type mixes, byte for
/// byte), reading F32/F16/BF16 or already quantized sources.
///
/// Examples:
///   gguf-prune quantize model.F16.gguf model.Q4_K_M.gguf Q4_K_M
///   gguf-prune quantize small.F16.gguf small.Q4_K_M.gguf q4_k_m --imatrix imatrix.gguf -t 4
#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// The model to read (first shard of a split model).
    pub input: PathBuf,
    /// The file to write.
    pub output: PathBuf,
    /// File type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M,
    /// Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, the aliases Q3_K, Q4_K, Q5_K (the _M
    /// mixes), any case, or llama-quantize's number for one of them.
    pub ftype: String,
    /// No mix: every quantizable tensor gets the file type's default type.
    #[arg(long)]
    pub pure: bool,
    /// Importance matrix from llama-imatrix (GGUF or legacy .dat).
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    #[arg(short = 't', long = "threads", value_name = "N", help = super::select::THREADS_HELP)]
    pub threads: Option<usize>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let threads = match args.threads {
        Some(t) => super::select::check_threads(t, "-t/--threads")?,
        None => 0,
    };
    let ftype = FileType::parse(&args.ftype)?;
    let model = Model::open(&args.input)?;
    let imatrix = match &args.imatrix {
        Some(p) => {
            let im = ImatrixData::read_for(p, &model).context("--imatrix")?;
            eprintln!("imatrix: {} entries from {}", im.len(), p.display());
            Some(im)
        }
        None => None,
    };
    let rule = super::output_rule(args.force, &[&model], &[args.imatrix.as_ref()]);
    gguf_prune::output::check(&args.output, &rule)?;
    let options = QuantizeOptions {
        params: QuantizeParams {
            ftype,
            pure: args.pure,
            imatrix: imatrix.as_ref(),
            imatrix_path: args.imatrix.clone(),
        },
        output: args.output.clone(),
        rule,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let start = Instant::now();
    let report = pool
        .install(|| quantize(&model, &options, &mut TensorLines))
        .map_err(super::name_flags)?
        .quantize;
    eprintln!(
        "{} -> {}: {:.2} MiB -> {:.2} MiB, {} of {} tensors converted, {:.2} s",
        args.input.display(),
        args.output.display(),
        report.bytes_in as f64 / 1048576.0,
        report.bytes_out as f64 / 1048576.0,
        report.n_converted,
        report.n_tensors,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The quantize command's progress: one line per tensor, and the job's notices, on stderr.
struct TensorLines;

impl Progress for TensorLines {
    fn tensor(&mut self, i: usize, n: usize, name: &str, from: GgmlType, to: GgmlType) {
        if from == to {
            eprintln!("[{:4}/{n}] {name:<40} {from} (copied)", i + 1);
        } else {
            eprintln!("[{:4}/{n}] {name:<40} {from} -> {to}", i + 1);
        }
    }

    fn notice(&mut self, notice: &Notice) {
        match notice {
            Notice::Requantizing(tensors) => eprintln!(
                "warning: requantizing already quantized tensors ({}): the result is worse than quantizing from F16/F32",
                counts(tensors.iter().map(|(_, from, _)| from.to_string()))
            ),
            Notice::Fallbacks(tensors) => eprintln!(
                "note: rows not divisible by the block size, fallback types used as llama-quantize does: {}",
                counts(tensors.iter().map(|(_, wanted, got)| format!("{wanted} -> {got}")))
            ),
            Notice::NoImportanceData(names) => eprintln!(
                "warning: no importance data for {} converted tensors (e.g. {})",
                names.len(),
                names[0]
            ),
        }
    }
}

/// "Q4_1 x210, Q8_0 x1": how many times each key occurs, in key order.
fn counts(keys: impl Iterator<Item = String>) -> String {
    let mut m = BTreeMap::<String, usize>::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    m.iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
