//! Pruning and quantizing in one write, and the importance matrix collected in the scoring pass,
//! checked against llama.cpp: llama-imatrix for the matrix, llama-quantize for the bytes,
//! llama-perplexity for loading the result.

pub mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gguf_prune::gguf::Model;
use gguf_prune::quant::ImatrixData;

/// One F16 copy of SmolLM2 for every test here (llama-quantize makes it from the Q4_1 file).
fn smol_f16() -> &'static Path {
    static F16: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &F16.get_or_init(|| {
        let dir = common::workdir();
        let out = dir.path().join("smol.F16.gguf");
        common::run_ok(
            Command::new(common::llama_tool("llama-quantize"))
                .arg("--allow-requantize")
                .arg(common::smollm2())
                .arg(&out)
                .arg("F16"),
        );
        (dir, out)
    })
    .1
}

/// Tensor names, types and bytes of two files are the same.
fn assert_same_tensors(ours: &Path, reference: &Path) {
    let a = Model::open(ours).unwrap();
    let b = Model::open(reference).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.info.name, y.info.name);
        assert_eq!(
            x.info.ggml_type, y.info.ggml_type,
            "type of {}",
            x.info.name
        );
        assert_eq!(x.info.dims, y.info.dims, "dims of {}", x.info.name);
        assert!(
            a.data(x) == b.data(y),
            "bytes of {} ({}) differ from llama-quantize's",
            x.info.name,
            x.info.ggml_type
        );
    }
}

const LAYERS: [usize; 4] = [20, 21, 22, 23];

#[test]
fn imatrix_from_the_scoring_pass_matches_llama_imatrix() {
    let f16 = smol_f16();
    let dir = common::workdir();
    let text = common::calibration_text();
    // llama-imatrix: 4 chunks of 512 tokens, its default output head exclusion.
    let reference = dir.path().join("ref.imatrix.gguf");
    common::run_ok(
        Command::new(common::llama_tool("llama-imatrix"))
            .arg("-m")
            .arg(f16)
            .arg("-f")
            .arg(&text)
            .args(["-c", "512", "--chunks", "4", "--no-ppl", "-t", "2", "-o"])
            .arg(&reference),
    );
    // Ours: the same windows, collected during the scoring pass of --remove.
    let ours = dir.path().join("ours.imatrix.gguf");
    let pruned = dir.path().join("pruned.gguf");
    common::run_ok(
        common::gguf_prune()
            .arg(f16)
            .args([
                "--remove",
                "2",
                "--metric",
                "bi",
                "--ctx",
                "512",
                "--max-tokens",
                "2048",
            ])
            .arg("--calib")
            .arg(&text)
            .arg("--imatrix-out")
            .arg(&ours)
            .arg("-o")
            .arg(&pruned),
    );
    let a = ImatrixData::read(&ours).unwrap();
    let b = ImatrixData::read(&reference).unwrap();
    let names_a: Vec<&String> = a.entries.keys().collect();
    let names_b: Vec<&String> = b.entries.keys().collect();
    assert_eq!(names_a, names_b);
    assert_eq!(a.len(), 30 * 7);
    assert_eq!(a.chunk_count, b.chunk_count);
    assert_eq!(a.chunk_size, 512);
    // Per weight: relative L2 difference of the per-column means, and their cosine.
    let mut worst = 0f64;
    let mut worst_name = String::new();
    let mut sum = 0f64;
    for name in a.entries.keys() {
        assert_eq!(a.entries[name].counts, b.entries[name].counts, "{name}");
        let (x, y) = (a.get(name).unwrap(), b.get(name).unwrap());
        assert_eq!(x.len(), y.len(), "{name}");
        let d: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2))
            .sum();
        let n: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum();
        let rel = (d / n).sqrt();
        sum += rel;
        if rel > worst {
            worst = rel;
            worst_name = name.clone();
        }
    }
    let mean = sum / a.len() as f64;
    eprintln!("imatrix vs llama-imatrix: relative L2 difference mean {mean:.2e}, worst {worst:.2e} ({worst_name})");
    assert!(
        mean < 0.01 && worst < 0.05,
        "mean {mean}, worst {worst} ({worst_name})"
    );

    // llama-quantize accepts our file, and it changes the output.
    let q = |imatrix: Option<&Path>, out: &Path| {
        let mut cmd = Command::new(common::llama_tool("llama-quantize"));
        if let Some(im) = imatrix {
            cmd.arg("--imatrix").arg(im);
        }
        common::run_ok(cmd.arg(f16).arg(out).arg("Q4_K_M"));
    };
    let plain = dir.path().join("plain.gguf");
    let weighted = dir.path().join("weighted.gguf");
    q(None, &plain);
    q(Some(&ours), &weighted);
    let (p, w) = (
        Model::open(&plain).unwrap(),
        Model::open(&weighted).unwrap(),
    );
    let changed = p
        .tensors
        .iter()
        .zip(&w.tensors)
        .filter(|(x, y)| p.data(x) != w.data(y))
        .count();
    assert!(
        changed > 100,
        "only {changed} tensors changed with our imatrix"
    );
    assert_eq!(
        w.metadata()
            .get_u32("quantize.imatrix.entries_count")
            .unwrap(),
        210
    );
    drop((p, w));

    // A given imatrix (llama-imatrix's, source names) on a pruned + quantized output gives what
    // llama-quantize gives on the pruned file with that imatrix renumbered.
    let pruned_f16 = dir.path().join("pruned.F16.gguf");
    common::run_ok(
        common::gguf_prune()
            .arg(f16)
            .args(["--layers", "20-23", "-o"])
            .arg(&pruned_f16),
    );
    let renumbered = dir.path().join("renumbered.imatrix.gguf");
    b.after_layer_removal(&LAYERS)
        .write_gguf(&renumbered, &Default::default())
        .unwrap();
    let expected = dir.path().join("expected.gguf");
    common::run_ok(
        Command::new(common::llama_tool("llama-quantize"))
            .arg("--imatrix")
            .arg(&renumbered)
            .arg(&pruned_f16)
            .arg(&expected)
            .arg("Q4_K_M"),
    );
    let got = dir.path().join("got.gguf");
    common::run_ok(
        common::gguf_prune()
            .arg(f16)
            .args(["--layers", "20-23", "--quantize", "Q4_K_M", "--imatrix"])
            .arg(&reference)
            .arg("-o")
            .arg(&got),
    );
    assert_same_tensors(&got, &expected);
}

#[test]
fn layers_and_quantize_match_llama_quantize_of_the_pruned_file() {
    let f16 = smol_f16();
    let dir = common::workdir();
    let pruned = dir.path().join("pruned.F16.gguf");
    common::run_ok(
        common::gguf_prune()
            .arg(f16)
            .args(["--layers", "20-23", "-o"])
            .arg(&pruned),
    );
    let expected = dir.path().join("expected.Q4_K_M.gguf");
    common::run_ok(
        Command::new(common::llama_tool("llama-quantize"))
            .arg(&pruned)
            .arg(&expected)
            .arg("Q4_K_M"),
    );
    let got = dir.path().join("got.Q4_K_M.gguf");
    let out = common::run_ok(
        common::gguf_prune()
            .arg(f16)
            .args([
                "--layers",
                "20-23",
                "--quantize",
                "Q4_K_M",
                "--no-imatrix",
                "-o",
            ])
            .arg(&got),
    );
    assert!(out.contains("quantized to Q4_K_M"), "{out}");
    assert_same_tensors(&got, &expected);
    let m = Model::open(&got).unwrap();
    assert_eq!(m.metadata().get_u32("llama.block_count").unwrap(), 26);
    assert_eq!(m.metadata().get_u32("general.file_type").unwrap(), 15);
    drop(m);
    let ppl = common::llama_perplexity(&got, 512, 2);
    assert!(ppl.is_finite() && ppl > 1.0 && ppl < 1000.0, "PPL {ppl}");
}

#[test]
fn requantizing_a_quantized_source_warns() {
    let dir = common::workdir();
    let out = dir.path().join("small.Q8_0.gguf");
    let output = common::gguf_prune()
        .arg(common::smollm2())
        .args([
            "--layers",
            "20-23",
            "--quantize",
            "Q8_0",
            "--no-imatrix",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("warning: requantizing"), "{err}");
    let m = Model::open(&out).unwrap();
    assert_eq!(
        m.tensor("blk.0.attn_q.weight")
            .unwrap()
            .info
            .ggml_type
            .to_string(),
        "Q8_0"
    );
}
