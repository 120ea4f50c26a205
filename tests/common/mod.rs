//! Shared test fixtures: the real models and the llama.cpp reference build, fetched and built
//! by the project's scripts into the cache (`$GGUF_PRUNE_CACHE`, default `~/.cache/gguf-prune`),
//! and running the tools. Synthetic files are built by `tests/support`.
//!
//! A test crate declares it `pub mod common;`: its items are then that crate's public interface,
//! which rustc does not report as dead code when one crate uses only some of them, while unused
//! private items here are still reported (so no `allow(dead_code)`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache() -> PathBuf {
    match std::env::var_os("GGUF_PRUNE_CACHE") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/gguf-prune")
        }
    }
}

fn run_script(name: &str) {
    let status = Command::new("bash")
        .arg(repo().join("scripts").join(name))
        .status()
        .unwrap_or_else(|e| panic!("running scripts/{name}: {e}"));
    assert!(status.success(), "scripts/{name} failed");
}

/// Fetches (once per test process) and returns the cached model paths.
fn models_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        run_script("fetch-models.sh");
        cache().join("models")
    })
}

/// SmolLM2-135M-Instruct Q4_1 (llama arch, 30 blocks).
pub fn smollm2() -> PathBuf {
    models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Gemma-3-270M Q4_K_M (gemma3 arch, 18 blocks).
pub fn gemma3() -> PathBuf {
    models_dir().join("gemma-3-270m-q4_k_m.gguf")
}

/// A llama.cpp reference tool (llama-perplexity, llama-quantize, ...), built once and cached.
pub fn llama_tool(name: &str) -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        run_script("build-llama.sh");
        cache().join("llama.cpp-0.3.36/bin")
    })
    .join(name)
}

/// The project's evaluation text (`tests/data/eval.txt`, written for this project in
/// wikitext-2's layout): what the tests measure perplexity, KL and token ids on, as the README's
/// tables use wiki.test.raw.
pub fn eval_text() -> PathBuf {
    repo().join("tests/data/eval.txt")
}

/// The built-in calibration text (`src/calibration/calibration.txt`): what the tests calibrate,
/// heal and collect importance matrices on, as the README's tables use wiki.valid.raw.
pub fn calibration_text() -> PathBuf {
    repo().join("src/calibration/calibration.txt")
}

/// The `gguf-prune` binary built for this test run.
pub fn gguf_prune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gguf-prune"))
}

/// A fresh temporary folder, removed when dropped.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gguf-prune-test")
        .tempdir()
        .expect("temp dir")
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs llama-perplexity on `model` over the evaluation text and returns the final estimate.
pub fn llama_perplexity(model: &Path, ctx: u32, chunks: u32) -> f64 {
    final_ppl(&llama_log(
        Command::new(llama_tool("llama-perplexity"))
            .args(["-m"])
            .arg(model)
            .args(["-f"])
            .arg(eval_text())
            .args([
                "-c",
                &ctx.to_string(),
                "--chunks",
                &chunks.to_string(),
                "-t",
                "2",
                "-b",
                &ctx.to_string(),
            ]),
    ))
}

/// An F32 tensor held in memory (for synthetic models).
pub fn f32_tensor(
    name: &str,
    dims: &[u64],
    data: Vec<f32>,
) -> gguf_prune::gguf::OutTensor<'static> {
    gguf_prune::gguf::OutTensor {
        name: name.to_string(),
        dims: dims.to_vec(),
        ggml_type: gguf_prune::gguf::GgmlType::F32,
        data: gguf_prune::gguf::TensorData::Bytes(
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    }
}

/// Token ids `llama-tokenize` gives for the first `n_bytes` of a text file (BOS included
/// when the model adds one).
pub fn llama_tokenize_prefix(model: &Path, text_file: &Path, n_bytes: usize) -> Vec<u32> {
    let dir = workdir();
    let text = std::fs::read(text_file).unwrap();
    let prefix = dir.path().join("prefix.txt");
    std::fs::write(&prefix, &text[..n_bytes.min(text.len())]).unwrap();
    let out = run_ok(
        Command::new(llama_tool("llama-tokenize"))
            .arg("-m")
            .arg(model)
            .arg("-f")
            .arg(&prefix)
            .args(["--ids", "--log-disable"]),
    );
    let list = out
        .lines()
        .find(|l| l.starts_with('['))
        .expect("an id list");
    list.trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

/// The first lines of the evaluation text, whole, up to the first that ends past `n_bytes`,
/// written to `dir/excerpt.txt` (a short text for end-to-end runs against llama.cpp).
pub fn eval_excerpt(dir: &Path, n_bytes: usize) -> PathBuf {
    let text = std::fs::read_to_string(eval_text()).unwrap();
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if out.len() > n_bytes {
            break;
        }
        out.push_str(line);
    }
    let path = dir.join("excerpt.txt");
    std::fs::write(&path, out).unwrap();
    path
}

/// Runs a llama.cpp tool, asserting that it succeeds; returns its stderr then its stdout (the
/// tools log their figures to stderr).
pub fn llama_log(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The perplexity on llama-perplexity's `Final estimate: PPL = ...` line.
pub fn final_ppl(log: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.contains("Final estimate: PPL ="))
        .unwrap_or_else(|| panic!("no final estimate in llama-perplexity output:\n{log}"));
    line.split("PPL =")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no PPL in {line:?}"))
}

/// llama-perplexity on `model` over `text` with `args` (context, chunks, ...) and 2 threads,
/// saving its logits to `base` (`--kl-divergence-base`); returns its final PPL.
pub fn llama_kl_base(model: &Path, text: &Path, base: &Path, args: &[&str]) -> f64 {
    final_ppl(&llama_log(
        Command::new(llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(model)
            .arg("-f")
            .arg(text)
            .args(args)
            .args(["-t", "2"])
            .arg("--kl-divergence-base")
            .arg(base),
    ))
}

/// `gguf-prune eval MODEL --kl-base BASE --json`: (kl_mean, top1, ppl).
pub fn eval_vs_base(model: &Path, base: &Path) -> (f64, f64, f64) {
    let out = run_ok(
        gguf_prune()
            .arg("eval")
            .arg(model)
            .arg("--kl-base")
            .arg(base)
            .args(["-t", "2", "--json"]),
    );
    let j: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let f = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("no {k} in {j}"));
    (f("kl_mean"), f("top1"), f("ppl"))
}

/// Every tensor of `model`, copied by byte range under its own name, dims and type.
pub fn copied_tensors(model: &gguf_prune::gguf::Model) -> Vec<gguf_prune::gguf::OutTensor<'_>> {
    model
        .tensors
        .iter()
        .map(|t| gguf_prune::gguf::OutTensor {
            name: t.info.name.clone(),
            dims: t.info.dims.clone(),
            ggml_type: t.info.ggml_type,
            data: model.copy_of(t),
        })
        .collect()
}

/// Writes a GGUF file with the default options and commits it, panicking with the path on error.
pub fn write_gguf(
    path: &Path,
    version: u32,
    metadata: &gguf_prune::gguf::Metadata,
    tensors: Vec<gguf_prune::gguf::OutTensor<'_>>,
) {
    let options = gguf_prune::gguf::WriteOptions::default();
    gguf_prune::gguf::write_model(path, version, metadata, tensors, &options, &mut |_, _| {})
        .and_then(|pending| pending.commit())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Makes a named pipe `dir/name` (for checks that a pipe is refused instead of read, which
/// would block) and returns its path.
pub fn named_pipe(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let made = Command::new("mkfifo").arg(&path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
    path
}
