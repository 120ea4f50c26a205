//! `gguf-prune eval`: perplexity, and KL divergence against a reference, the llama-perplexity way.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gguf_prune::calibration::{self, Layout};
use gguf_prune::eval::{self, ChunkDone, KlBase, KlDivergence, LogitsSource, Perplexity};
use gguf_prune::gguf::Model;
use gguf_prune::output::{OutputRule, Pending};
use gguf_prune::tasks::{self, Accuracy, Kind, TaskDone, TaskFile};

/// Measure a model's perplexity on a text, as llama-perplexity does (same chunks, same scored
/// tokens, same formula), and optionally how far its predictions are from a reference (the
/// `Eval` command's doc in mod.rs is the help text).
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The GGUF model to evaluate.
    pub model: PathBuf,
    /// The text to evaluate on (UTF-8), e.g. wikitext-2's wiki.test.raw.
    #[arg(long, required_unless_present_any = ["kl_base", "task_file"])]
    pub text: Option<PathBuf>,
    /// Report accuracy on HellaSwag tasks in llama-perplexity's --hellaswag format (6 lines per
    /// task: context, right ending 0-3, four endings), scored as llama-perplexity scores them.
    #[arg(long, value_name = "FILE", group = "task_file", conflicts_with_all = ["text", "kl_base", "save_logits"])]
    pub hellaswag: Option<PathBuf>,
    /// Report accuracy on WinoGrande tasks in llama-perplexity's --winogrande CSV format
    /// (index,sentence with _,choice1,choice2,answer 1 or 2).
    #[arg(long, value_name = "FILE", group = "task_file", conflicts_with_all = ["text", "kl_base", "save_logits"])]
    pub winogrande: Option<PathBuf>,
    /// Report accuracy on multiple-choice tasks in llama-perplexity's --multiple-choice binary
    /// format (ARC, MMLU, TruthfulQA files made for llama.cpp).
    #[arg(long, value_name = "FILE", group = "task_file", conflicts_with_all = ["text", "kl_base", "save_logits"])]
    pub multiple_choice: Option<PathBuf>,
    /// Score this many tasks, drawn as llama-perplexity draws them (its --hellaswag-tasks,
    /// --winogrande-tasks, --multiple-choice-tasks). Default: 400 for HellaSwag, all otherwise;
    /// 0 = all for WinoGrande and multiple-choice.
    #[arg(long, value_name = "N", requires = "task_file")]
    pub tasks: Option<usize>,
    /// Tokens per chunk (llama-perplexity -c); the second half of each chunk is scored. At
    /// most the model's training context and 8192.
    #[arg(
        short = 'c',
        long = "ctx-size",
        default_value_t = 512,
        conflicts_with = "kl_base"
    )]
    pub ctx_size: usize,
    /// Evaluate at most this many chunks (default: as many as the text holds).
    #[arg(long, conflicts_with = "task_file")]
    pub chunks: Option<usize>,
    /// A reference model (typically the unpruned original): also report KL divergence of this
    /// model from it, top-token agreement, and both perplexities. Same vocabulary required.
    /// With a task file: its accuracy on the same tasks, and the share of it this model retains.
    #[arg(long = "ref", value_name = "ORIGINAL", conflicts_with = "kl_base")]
    pub reference: Option<PathBuf>,
    /// A logits file written by `llama-perplexity --kl-divergence-base FILE`: compare this model
    /// with llama.cpp's stored distributions, on the file's own tokens and context size.
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub kl_base: Option<PathBuf>,
    /// Also save this model's scored distributions in llama-perplexity's `--kl-divergence-base`
    /// format, so llama.cpp can compare its own run with ours:
    /// `llama-perplexity -m MODEL --kl-divergence-base FILE --kl-divergence`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kl_base", "reference"])]
    pub save_logits: Option<PathBuf>,
    /// Replace the --save-logits file if it exists.
    #[arg(long, requires = "save_logits")]
    pub force: bool,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    #[arg(short = 't', long, value_name = "N", help = super::select::THREADS_HELP)]
    pub threads: Option<usize>,
    /// Chunks handed to the forward pass at a time.
    #[arg(long, default_value_t = 1, hide = true)]
    pub chunks_per_pass: usize,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let line_open = std::cell::Cell::new(false);
    let result = evaluate(args, &line_open);
    if result.is_err() && line_open.get() {
        // End the running `[1]12.34,[2]...` line so that the error gets a line of its own.
        eprintln!();
    }
    result
}

/// The command; `line_open` tells whether a line of per-chunk estimates is left unfinished.
fn evaluate(args: EvalArgs, line_open: &std::cell::Cell<bool>) -> anyhow::Result<()> {
    super::select::set_threads(args.threads, "-t/--threads")?;
    let started = std::time::Instant::now();
    if let Some((kind, path, flag)) = task_file(&args) {
        return evaluate_tasks(&args, kind, path, flag, started);
    }
    // Check the cheap inputs, then what the model allows, before reading any text.
    let base = match &args.kl_base {
        Some(path) => Some(KlBase::open(path).context("--kl-base")?),
        None => None,
    };
    // Model::open's errors name the file already.
    let model = Model::open(&args.model)?;
    let rule = check_outputs(&args, &model, base.as_ref())?;
    let text = match &args.text {
        Some(path) => Some(gguf_prune::limits::read_text(path).context("--text")?),
        None => None,
    };
    let mut progress = chunk_progress(line_open);
    if let Some(base) = base {
        let kl = evaluate_vs_base(&args, &model, &base, &mut progress)?;
        return report(&args, None, Some(&kl), started);
    }
    let text = text.expect("clap requires --text without --kl-base");
    evaluate_text(&args, &model, &rule, &text, &mut progress, started)
}

/// The rule for the `--save-logits` file (checked here, before any work), and the context
/// checked against what the model allows: the `--kl-base` file's, else `-c/--ctx-size`.
fn check_outputs(
    args: &EvalArgs,
    model: &Model,
    base: Option<&KlBase>,
) -> anyhow::Result<OutputRule> {
    let rule = super::output_rule(
        args.force,
        &[model],
        &[
            args.text.as_ref(),
            args.kl_base.as_ref(),
            args.reference.as_ref(),
        ],
    );
    if let Some(path) = &args.save_logits {
        gguf_prune::output::check(path, &rule)?;
    }
    match base {
        Some(base) => gguf_prune::limits::check_context(model, base.n_ctx())
            .with_context(|| format!("{}: n_ctx", base.path().display()))?,
        None => gguf_prune::limits::check_context(model, args.ctx_size).context("-c/--ctx-size")?,
    }
    Ok(rule)
}

/// llama-perplexity's running line on stderr, `[1]12.3456,[2]...` (with `kld` when comparing),
/// ended after the last chunk; `line_open` tells whether it is unfinished.
fn chunk_progress(line_open: &std::cell::Cell<bool>) -> impl FnMut(&ChunkDone) + '_ {
    move |d: &ChunkDone| {
        match d.kld {
            None => eprint!("[{}]{:.4},", d.chunk, d.ppl),
            Some(k) => eprint!("[{}]{:.4} kld {:.5},", d.chunk, d.ppl, k),
        }
        if d.chunk == d.n_chunks {
            eprintln!();
        }
        line_open.set(d.chunk != d.n_chunks);
        let _ = std::io::stderr().flush();
    }
}

/// `eval --kl-base`: KL divergence from llama.cpp's stored distributions, on their tokens.
fn evaluate_vs_base(
    args: &EvalArgs,
    model: &Model,
    base: &KlBase,
    progress: &mut dyn FnMut(&ChunkDone),
) -> anyhow::Result<KlDivergence> {
    let bos = calibration::bos(model)?;
    eprintln!(
        "eval: {}: {} chunks of {} tokens, n_vocab {}",
        base.path().display(),
        base.n_chunks(),
        base.n_ctx(),
        base.n_vocab()
    );
    let mut source = open_logits_source(model)?;
    Ok(eval::kl_divergence_vs_base(
        &mut *source,
        base,
        bos,
        args.chunks,
        args.chunks_per_pass.max(1),
        progress,
    )?)
}

/// `eval --text`: perplexity (saving the logits if asked), or with `--ref` KL divergence from
/// the reference model, over llama-perplexity's chunks of the text.
fn evaluate_text(
    args: &EvalArgs,
    model: &Model,
    rule: &OutputRule,
    text: &str,
    progress: &mut dyn FnMut(&ChunkDone),
    started: std::time::Instant,
) -> anyhow::Result<()> {
    // llama.cpp's `-f` drops one trailing newline and processes escapes; so do we, for the same ids.
    let text = gguf_prune::tokenizer::prompt_from_file(text);
    let layout = Layout::Perplexity {
        max_chunks: args.chunks,
    };
    let tokens = calibration::tokenize(model, &text, layout)?;
    let windows = calibration::split(&tokens, args.ctx_size, layout)
        .with_context(|| format!("{}", args.model.display()))?;
    // Opened (and the model validated) before anything is printed: a model the forward pass
    // cannot run is a one-line error.
    let mut source = open_logits_source(model)?;
    eprintln!(
        "eval: {} tokens, {} chunks of {}, scoring {} tokens per chunk",
        tokens.ids.len(),
        windows.len(),
        args.ctx_size,
        eval::kl_base::rows_per_window(args.ctx_size)
    );
    let per_pass = args.chunks_per_pass.max(1);
    let Some(ref_path) = &args.reference else {
        let ppl = match &args.save_logits {
            None => eval::perplexity(&mut *source, &windows, per_pass, progress)?,
            Some(path) => save_logits(
                path,
                rule,
                &mut *source,
                &tokens.ids,
                &windows,
                per_pass,
                progress,
            )?,
        };
        return report(args, Some(&ppl), None, started);
    };
    let reference = Model::open(ref_path).context("the reference model")?;
    check_same_vocab(model, &reference)?;
    let mut ref_source = open_logits_source(&reference)?;
    let kl =
        eval::kl_divergence_vs_model(&mut *source, &mut *ref_source, &windows, per_pass, progress)?;
    report(args, None, Some(&kl), started)
}

/// The task file given, its kind, and the flag that named it.
fn task_file(args: &EvalArgs) -> Option<(Kind, &Path, &'static str)> {
    [
        (Kind::HellaSwag, &args.hellaswag, "--hellaswag"),
        (Kind::WinoGrande, &args.winogrande, "--winogrande"),
        (
            Kind::MultipleChoice,
            &args.multiple_choice,
            "--multiple-choice",
        ),
    ]
    .into_iter()
    .find_map(|(kind, path, flag)| path.as_deref().map(|p| (kind, p, flag)))
}

/// `eval --hellaswag/--winogrande/--multiple-choice`: accuracy as llama-perplexity measures it,
/// and with `--ref` the reference's on the same tasks.
fn evaluate_tasks(
    args: &EvalArgs,
    kind: Kind,
    path: &Path,
    flag: &str,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let count = match (kind, args.tasks) {
        (Kind::HellaSwag, Some(0)) => {
            anyhow::bail!(
                "--tasks 0: HellaSwag needs at least 1 task (llama-perplexity would score none)"
            )
        }
        (_, Some(0)) => None,
        (_, n) => n,
    };
    let file = TaskFile::read(kind, path, count).context(flag.to_string())?;
    if let Some(line) = file.unread_last_line() {
        eprintln!(
            "eval: {}: the last line is not read, as llama-perplexity does not read it (end the file with an empty line to score it): {line:?}",
            path.display()
        );
    }
    let model = Model::open(&args.model)?;
    gguf_prune::limits::check_context(&model, args.ctx_size).context("-c/--ctx-size")?;
    let max_tokens = args.ctx_size.saturating_mul(4);
    let acc = score_tasks(&model, &file, max_tokens, true)?;
    let reference = match &args.reference {
        Some(ref_path) => {
            let reference = Model::open(ref_path).context("the reference model")?;
            eprintln!("eval: the reference {}:", ref_path.display());
            Some(score_tasks(&reference, &file, max_tokens, false)?)
        }
        None => None,
    };
    report_tasks(args, &file, &acc, reference.as_ref(), started)
}

/// Tokenizes the picked tasks for `model` and scores them, printing llama-perplexity's running
/// line per task on stderr (`verbose`) or one line at the end.
fn score_tasks(
    model: &Model,
    file: &TaskFile,
    max_tokens: usize,
    verbose: bool,
) -> anyhow::Result<Accuracy> {
    let tok = gguf_prune::tokenizer::Tokenizer::from_metadata(model.metadata())?;
    let set = file.prepare(&tok, max_tokens)?;
    let mut source = open_logits_source(model)?;
    eprintln!(
        "eval: {}: {} of {} {} tasks",
        file.path.display(),
        set.tasks.len(),
        file.in_file(),
        file.kind.name()
    );
    let mut progress = |d: &TaskDone<'_>| {
        if verbose {
            eprintln!(
                "{}\t{:.4}\t{} {}",
                d.done,
                100.0 * d.correct as f64 / d.done as f64,
                d.choice.choice,
                d.choice.gold
            );
        }
    };
    let opts = tasks::ScoreOptions::default();
    Ok(tasks::score(&mut *source, &set, &opts, &mut progress)?)
}

fn report_tasks(
    args: &EvalArgs,
    file: &TaskFile,
    acc: &Accuracy,
    reference: Option<&Accuracy>,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let seconds = started.elapsed().as_secs_f64();
    let retained = reference
        .filter(|r| r.accuracy > 0.0)
        .map(|r| acc.accuracy / r.accuracy);
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("model".into(), args.model.display().to_string().into());
        obj.insert("file".into(), file.path.display().to_string().into());
        obj.insert("in_file".into(), file.in_file().into());
        extend_with(&mut obj, acc)?;
        if let (Some(r), Some(path)) = (reference, &args.reference) {
            obj.insert("reference".into(), path.display().to_string().into());
            obj.insert("reference_result".into(), serde_json::to_value(r)?);
            obj.insert("retained".into(), retained.into());
        }
        obj.insert("seconds".into(), seconds.into());
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", acc.summary_line())?;
    if let (Some(r), Some(path)) = (reference, &args.reference) {
        writeln!(out, "Reference {}:", path.display())?;
        writeln!(out, "{}", r.summary_line())?;
        match retained {
            Some(x) => writeln!(
                out,
                "Retained: {:.2}% of the reference's accuracy",
                100.0 * x
            )?,
            None => writeln!(out, "Retained: not defined (the reference scores 0)")?,
        }
    }
    writeln!(
        out,
        "({} of {} tasks, {:.1} s)",
        acc.tasks,
        file.in_file(),
        seconds
    )?;
    Ok(())
}

/// Runs perplexity while writing the rows to `path` (through a temporary file put in place
/// only at the end, so an interrupted run leaves no truncated file behind).
fn save_logits(
    path: &Path,
    rule: &OutputRule,
    source: &mut dyn LogitsSource,
    tokens: &[u32],
    windows: &[Vec<u32>],
    per_pass: usize,
    progress: &mut dyn FnMut(&ChunkDone),
) -> anyhow::Result<Perplexity> {
    let n_ctx = windows[0].len();
    let pending = Pending::create(path, rule)?;
    let header = &tokens[..n_ctx * windows.len()];
    let mut out = eval::kl_base::KlBaseWriter::new(
        std::io::BufWriter::new(pending.file(0)),
        n_ctx,
        source.n_vocab(),
        header,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    let ppl = eval::perplexity_saving(source, windows, per_pass, progress, &mut out, path)?;
    out.finish()
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    pending.commit()?;
    eprintln!(
        "eval: saved {} rows of logits to {}",
        windows.len() * eval::kl_base::rows_per_window(n_ctx),
        path.display()
    );
    Ok(ppl)
}

/// Refuses a reference whose token list differs: the same ids would mean different text.
fn check_same_vocab(model: &Model, reference: &Model) -> anyhow::Result<()> {
    let key = "tokenizer.ggml.tokens";
    if let (Some(a), Some(b)) = (model.metadata().get(key), reference.metadata().get(key)) {
        if a != b {
            anyhow::bail!(
                "{} and the reference {} have different token lists ({key}): KL divergence needs the same vocabulary",
                model.path().display(),
                reference.path().display()
            );
        }
    }
    Ok(())
}

/// Prints the perplexity or KL report of a text or `--kl-base` run: one JSON object, or
/// llama-perplexity's text.
fn report(
    args: &EvalArgs,
    ppl: Option<&Perplexity>,
    kl: Option<&KlDivergence>,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        return print_json(args, ppl, kl, seconds);
    }
    let mut out = std::io::stdout().lock();
    if let Some(p) = ppl {
        print_perplexity(&mut out, p, seconds)?;
    }
    if let Some(k) = kl {
        print_kl(&mut out, k, seconds)?;
    }
    Ok(())
}

/// The report as one JSON object: the model, the result's fields, what it was compared with,
/// and the time taken.
fn print_json(
    args: &EvalArgs,
    ppl: Option<&Perplexity>,
    kl: Option<&KlDivergence>,
    seconds: f64,
) -> anyhow::Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("model".into(), args.model.display().to_string().into());
    if let Some(p) = ppl {
        extend_with(&mut obj, p)?;
    }
    if let Some(k) = kl {
        extend_with(&mut obj, k)?;
        if let Some(r) = &args.reference {
            obj.insert("reference".into(), r.display().to_string().into());
        }
        if let Some(b) = &args.kl_base {
            obj.insert("kl_base".into(), b.display().to_string().into());
        }
    }
    obj.insert("seconds".into(), seconds.into());
    println!("{}", serde_json::Value::Object(obj));
    Ok(())
}

/// Adds the fields of a result struct to a JSON object.
fn extend_with(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    result: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let v = serde_json::to_value(result)?;
    obj.extend(
        v.as_object()
            .expect("a struct serializes to an object")
            .clone(),
    );
    Ok(())
}

/// llama-perplexity's running estimates and final line, then what was scored.
fn print_perplexity(out: &mut impl Write, p: &Perplexity, seconds: f64) -> std::io::Result<()> {
    writeln!(out, "{}", per_chunk_line(&p.per_chunk))?;
    writeln!(
        out,
        "Final estimate: PPL = {:.4} +/- {:.5}",
        p.ppl, p.ppl_err
    )?;
    writeln!(
        out,
        "({} chunks of {} tokens, {} tokens scored, {:.1} s)",
        p.chunks, p.n_ctx, p.n_tokens, seconds
    )
}

/// llama-perplexity's `--kl-divergence` statistics, section by section, then what was scored.
fn print_kl(out: &mut impl Write, k: &KlDivergence, seconds: f64) -> std::io::Result<()> {
    writeln!(out, "====== Perplexity statistics ======")?;
    writeln!(
        out,
        "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
        k.ppl, k.ppl_err
    )?;
    writeln!(
        out,
        "Mean PPL(base)                : {:10.6} ± {:10.6}",
        k.ppl_base, k.ppl_base_err
    )?;
    writeln!(
        out,
        "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
        k.ln_ppl_ratio, k.ln_ppl_ratio_err
    )?;
    writeln!(out)?;
    writeln!(out, "====== KL divergence statistics ======")?;
    writeln!(out, "Mean    KLD: {:10.6} ± {:10.6}", k.kl_mean, k.kl_err)?;
    writeln!(out, "Maximum KLD: {:10.6}", k.kl_max)?;
    writeln!(out, "99.0%   KLD: {:10.6}", k.kl_p99)?;
    writeln!(out, "90.0%   KLD: {:10.6}", k.kl_p90)?;
    writeln!(out, "Median  KLD: {:10.6}", k.kl_median)?;
    writeln!(out)?;
    print_token_probabilities(out, k)?;
    writeln!(
        out,
        "({} chunks of {} tokens, {} tokens scored, {:.1} s)",
        k.chunks, k.n_ctx, k.n_tokens, seconds
    )
}

/// llama-perplexity's token probability section, percentages as it prints them.
fn print_token_probabilities(out: &mut impl Write, k: &KlDivergence) -> std::io::Result<()> {
    writeln!(out, "====== Token probability statistics ======")?;
    writeln!(out, "Mean    Δp: {:6.3} %", 100.0 * k.p_diff_mean)?;
    writeln!(out, "Maximum Δp: {:6.3}%", 100.0 * k.p_diff_max)?;
    writeln!(
        out,
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * k.p_diff_rms,
        100.0 * k.p_diff_rms_err
    )?;
    writeln!(
        out,
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * k.top1,
        100.0 * k.top1_err
    )
}

/// llama-perplexity's running estimates: `[1]12.3456,[2]...`.
fn per_chunk_line(values: &[f64]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("[{}]{:.4},", i + 1, v))
        .collect()
}

/// The model side: the forward pass over `model`, producing full-vocabulary logits.
fn open_logits_source(model: &Model) -> anyhow::Result<Box<dyn LogitsSource + '_>> {
    Ok(Box::new(gguf_prune::forward::ModelLogits::new(model)?))
}
