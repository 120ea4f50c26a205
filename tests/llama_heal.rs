//! Healing: a synthetic model whose removed run is exactly linear in the absorbing block's FFN
//! output (healing must recover the unpruned output to float precision, and the default method
//! must choose that map), and the two real models (healed files load in llama.cpp, perplexity
//! not above the unhealed file's; every method's file measures the same in llama-perplexity as
//! in our eval).

pub mod common;
pub mod support;

use support::{f32_bytes, TinyModel, F32};

use gguf_prune::forward::{Forward, RunOptions};
use gguf_prune::gguf::{Model, WriteOptions};
use gguf_prune::heal::{heal_with_windows, HealMethod, HealOptions};
use gguf_prune::jobs::write_verified;
use gguf_prune::prune::{rewrite, PrunePlan};
use std::path::Path;

const D: usize = 32;
const HALF: usize = D / 2;
const FF: usize = 64;
const VOCAB: usize = 40;

/// Zeroes rows (output units) `rows` of a weight stored `n_out` rows of `n_in`.
fn zero_rows(mut w: Vec<f32>, n_in: usize, rows: std::ops::Range<usize>) -> Vec<f32> {
    for r in rows {
        w[r * n_in..(r + 1) * n_in]
            .iter_mut()
            .for_each(|v| *v = 0.0);
    }
    w
}

/// A 4-block llama whose blocks 1-2 act on the stream as an exact linear map of block 0's FFN
/// output:
/// - the RMS-norm epsilon is 1e12, so in f32 every norm is the constant scale 1e-6 (the mean
///   square vanishes against eps) and norm weights of 1e6 undo it: norms are linear;
/// - the stream splits into S1 (dims 0..16) and S2 (16..32): embeddings and block 0's attention
///   write S1 only, block 0's FFN output M writes S2 only;
/// - blocks 1-2 have no attention output, read only S2 (ffn_norm weight 0 on S1) and gate with a
///   constant (gate weight 0, bias 2), so each adds a fixed linear map of the S2 part.
///
/// So the stream after block 2 is h_0 - M + M T for one d x d matrix T; block 3 is an ordinary
/// nonlinear block that makes any error visible downstream.
fn linear_run_llama(path: &Path) {
    let model = TinyModel {
        rms_eps: 1e12,
        ..TinyModel::llama(4)
    };
    let mut g = model.gguf(|w| {
        let linear = matches!(w.block, Some(1 | 2));
        match (w.role, w.block) {
            ("token_embd", _) => {
                let mut embd = w.noise(1.0);
                for row in embd.chunks_mut(D) {
                    row[HALF..].iter_mut().for_each(|v| *v = 0.0);
                }
                embd
            }
            ("attn_norm" | "output_norm", _) => vec![1e6; D],
            ("ffn_norm", _) => (0..D)
                .map(|j| if linear && j < HALF { 0.0 } else { 1e6 })
                .collect(),
            ("attn_output", Some(0)) => zero_rows(w.noise(0.3), D, HALF..D),
            ("attn_output" | "ffn_gate", _) if linear => vec![0.0; w.len],
            ("ffn_down", Some(0)) => zero_rows(w.noise(0.3), FF, 0..HALF),
            ("ffn_down", _) if linear => w.noise(0.1),
            _ => w.noise(0.3),
        }
    });
    for il in [1, 2] {
        let bias = f32_bytes(&[2.0; FF]);
        g = g.tensor(&format!("blk.{il}.ffn_gate.bias"), &[FF as u64], F32, bias);
    }
    std::fs::write(path, g.build().bytes).unwrap();
}

fn windows() -> Vec<Vec<u32>> {
    (0..8)
        .map(|w| {
            (0..24)
                .map(|i| ((i * 7 + w * 3 + i * i) % VOCAB) as u32)
                .collect()
        })
        .collect()
}

fn final_stream(path: &Path, skip: &[usize]) -> Vec<f32> {
    let model = Model::open(path).unwrap();
    let fw = Forward::new(&model).unwrap();
    let options = RunOptions {
        skip,
        ..Default::default()
    };
    fw.run(&windows(), options, &mut |_, _| Ok(()), &mut |_| {})
        .unwrap()
        .0
        .data
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn healing_an_exactly_linear_run_recovers_the_unpruned_output() {
    let dir = common::workdir();
    let src = dir.path().join("linear.gguf");
    linear_run_llama(&src);
    let model = Model::open(&src).unwrap();
    let plan = PrunePlan::new(4, &[1, 2]).unwrap();
    let mut rw = rewrite(&model, &plan).unwrap();
    let options = HealOptions {
        ridge: 1e-12,
        ..HealOptions::default()
    };
    let report =
        heal_with_windows(&model, &mut rw, &windows(), &options, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.runs.len(), 1);
    let run = &report.runs[0];
    assert!(run.healed, "{run:?}");
    assert_eq!(run.block, Some(0));
    assert!(run.err_before > 1e-3, "the run does something: {run:?}");
    assert!(run.err_after < 1e-9 * run.err_before, "{run:?}");
    let healed = dir.path().join("healed.gguf");
    let rep = write_verified(
        &model,
        rw,
        &healed,
        &WriteOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(!rep.verified, "ffn_down was rewritten");

    let full = final_stream(&src, &[]);
    let pruned = final_stream(&src, &[1, 2]);
    let out = final_stream(&healed, &[]);
    assert_eq!(full.len(), out.len());
    let (e_pruned, e_healed) = (max_rel(&pruned, &full), max_rel(&out, &full));
    assert!(
        e_pruned > 1e-2,
        "removing the run changes the output ({e_pruned})"
    );
    assert!(
        e_healed < 1e-5,
        "healed output off by {e_healed} (pruned: {e_pruned})"
    );
}

/// The default (auto) fits every method on the exactly linear run, keeps the least-squares map
/// (it lowers the held-back error, and is the exact one: no method does better than a tie) and
/// writes the same bytes as `lstsq` alone; every method tried is reported, and no single method
/// is kept that would raise the error.
#[test]
fn auto_keeps_the_lowest_held_back_error_and_writes_that_methods_bytes() {
    let dir = common::workdir();
    let src = dir.path().join("linear.gguf");
    linear_run_llama(&src);
    let model = Model::open(&src).unwrap();
    let plan = PrunePlan::new(4, &[1, 2]).unwrap();
    let heal = |method: HealMethod| {
        let mut rw = rewrite(&model, &plan).unwrap();
        let options = HealOptions {
            method,
            ridge: 1e-12,
            ..HealOptions::default()
        };
        let report =
            heal_with_windows(&model, &mut rw, &windows(), &options, &mut |_, _, _| {}).unwrap();
        let path = dir.path().join(format!("{method}.gguf"));
        write_verified(&model, rw, &path, &WriteOptions::default(), &mut |_, _| {}).unwrap();
        (report, std::fs::read(&path).unwrap())
    };
    let (auto, auto_bytes) = heal(HealMethod::Auto);
    let run = &auto.runs[0];
    assert_eq!(auto.method, HealMethod::Auto);
    assert!(run.healed, "{run:?}");
    assert_eq!(run.method, Some(HealMethod::Lstsq), "{run:?}");
    let tried: Vec<HealMethod> = run.tried.iter().map(|t| t.method).collect();
    assert_eq!(tried, HealMethod::ALL[1..].to_vec());
    // No method tried is better than the kept one by more than a tie (0.1%, or a billionth of
    // the unhealed error: the float noise of two exact fits).
    let tie = (1e-3 * run.err_after).max(1e-9 * run.err_before);
    for t in &run.tried {
        assert!(
            t.err_after.is_nan() || t.err_after >= run.err_after - tie,
            "{t:?}"
        );
        assert_eq!(t.lowers, t.err_after < run.err_before, "{t:?}");
    }
    let (lstsq, lstsq_bytes) = heal(HealMethod::Lstsq);
    assert_eq!(lstsq.runs[0].tried.len(), 1);
    assert!(
        auto_bytes == lstsq_bytes,
        "auto wrote other bytes than lstsq"
    );
    // Each single method is never worse than unhealed on the held-back tokens.
    for method in [HealMethod::Cosine, HealMethod::Patch, HealMethod::Comp] {
        let (report, _) = heal(method);
        let r = &report.runs[0];
        assert!(!r.healed || r.err_after < r.err_before, "{method}: {r:?}");
        assert_eq!(r.tried.len(), 1, "{method}");
        if r.healed {
            assert_eq!(r.method, Some(method));
        }
    }
}

#[test]
fn a_run_at_block_zero_is_left_unhealed() {
    let dir = common::workdir();
    let src = dir.path().join("linear.gguf");
    linear_run_llama(&src);
    let model = Model::open(&src).unwrap();
    let plan = PrunePlan::new(4, &[0, 2]).unwrap();
    let mut rw = rewrite(&model, &plan).unwrap();
    let report = heal_with_windows(
        &model,
        &mut rw,
        &windows(),
        &HealOptions::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(report.runs.len(), 2);
    assert!(!report.runs[0].healed && report.runs[0].block.is_none());
    assert_eq!(report.runs[1].block, Some(1));
}

/// Prunes `layers` from a real model with and without `--heal` (`tokens` of the calibration text in
/// windows of 512), checks the heal report, and compares llama-perplexity on both files.
/// Every run must be healed. Returns both perplexities.
fn check_real(model: &Path, layers: &str, tokens: u32, chunks: u32) -> (f64, f64) {
    let dir = common::workdir();
    let pruned = dir.path().join("pruned.gguf");
    let healed = dir.path().join("healed.gguf");
    common::run_ok(
        common::gguf_prune()
            .arg(model)
            .args(["--layers", layers, "-o"])
            .arg(&pruned),
    );
    let json = common::run_ok(
        common::gguf_prune()
            .arg(model)
            .args(["--layers", layers, "--heal", "--json", "--heal-tokens"])
            .arg(tokens.to_string())
            .arg("--calib")
            .arg(common::calibration_text())
            .arg("-o")
            .arg(&healed),
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let runs = v["heal"]["runs"].as_array().expect("heal runs");
    assert!(!runs.is_empty());
    assert!(
        runs.iter().all(|r| r["healed"].as_bool() == Some(true)),
        "every run healed: {runs:?}"
    );
    for r in runs {
        let (before, after) = (r["err_before"].as_f64(), r["err_after"].as_f64());
        if r["healed"].as_bool() == Some(true) {
            assert!(after < before, "{r}");
        }
    }
    let p = common::llama_perplexity(&pruned, 512, chunks);
    let h = common::llama_perplexity(&healed, 512, chunks);
    // Healing must pay off clearly, not just break even.
    assert!(h < 0.95 * p, "healed {h} not below unhealed {p} ({layers})");
    (p, h)
}

#[test]
fn smollm2_healed_loads_in_llama_cpp_and_is_not_worse() {
    let (p, h) = check_real(&common::smollm2(), "12-15", 2048, 3);
    eprintln!("SmolLM2 12-15: pruned {p}, healed {h}");
}

#[test]
fn gemma3_healed_loads_in_llama_cpp_and_is_not_worse() {
    let (p, h) = check_real(&common::gemma3(), "8,9", 5120, 3);
    eprintln!("gemma3 8-9: pruned {p}, healed {h}");
}

/// `--heal --quantize`: the healed ffn_down is written in the type the quantization mix gives it
/// (the same type as in the unhealed quantized file), and the file is better than that one.
#[test]
fn smollm2_heal_composes_with_quantize() {
    let dir = common::workdir();
    let plain = dir.path().join("q.gguf");
    let healed = dir.path().join("qh.gguf");
    let base = || {
        let mut c = common::gguf_prune();
        c.arg(common::smollm2()).args([
            "--layers",
            "12-15",
            "--quantize",
            "Q4_K_M",
            "--no-imatrix",
        ]);
        c
    };
    common::run_ok(base().arg("-o").arg(&plain));
    let json = common::run_ok(
        base()
            .args(["--heal", "--heal-tokens", "2048", "--json", "--calib"])
            .arg(common::calibration_text())
            .arg("-o")
            .arg(&healed),
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let run = &v["heal"]["runs"][0];
    assert_eq!(run["healed"].as_bool(), Some(true), "{run}");
    let change = &run["tensors"][0];
    assert_eq!(change["name"].as_str(), Some("blk.11.ffn_down.weight"));
    let plain_model = Model::open(&plain).unwrap();
    let mix_type = plain_model
        .tensor("blk.11.ffn_down.weight")
        .unwrap()
        .info
        .ggml_type
        .to_string();
    assert_eq!(change["type_after"].as_str(), Some(mix_type.as_str()));
    let healed_model = Model::open(&healed).unwrap();
    let t = |m: &Model| m.tensor("blk.11.ffn_down.weight").unwrap().info.ggml_type;
    assert_eq!(t(&healed_model), t(&plain_model));
    assert_ne!(
        healed_model.data(healed_model.tensor("blk.11.ffn_down.weight").unwrap()),
        plain_model.data(plain_model.tensor("blk.11.ffn_down.weight").unwrap()),
        "the healed bytes were kept, not requantized from the source"
    );
    let p = common::llama_perplexity(&plain, 512, 3);
    let h = common::llama_perplexity(&healed, 512, 3);
    assert!(h < 0.95 * p, "healed {h} not below unhealed {p}");
}

/// Prunes `layers` from SmolLM2 and heals it with `method` (2048 tokens of the built-in text):
/// the healed file loads in llama.cpp, its llama-perplexity equals our eval's within the
/// tolerance of `llama_eval.rs` (2%), every healed run reports `method` and lowers its held-back
/// error. Returns (llama-perplexity, number of runs healed).
fn check_method(model: &Path, layers: &str, method: &str, dir: &Path) -> (f64, usize) {
    let healed = dir.join(format!("{method}.gguf"));
    let json = common::run_ok(
        common::gguf_prune()
            .arg(model)
            .args([
                "--layers",
                layers,
                "--heal",
                method,
                "--json",
                "--heal-tokens",
            ])
            .arg("2048")
            .arg("--calib")
            .arg(common::calibration_text())
            .arg("-o")
            .arg(&healed),
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    assert_eq!(v["heal"]["method"].as_str(), Some(method));
    let runs = v["heal"]["runs"].as_array().expect("heal runs");
    let mut n_healed = 0;
    for r in runs {
        if r["healed"].as_bool() == Some(true) {
            n_healed += 1;
            assert!(r["err_after"].as_f64() < r["err_before"].as_f64(), "{r}");
            if method != "auto" {
                assert_eq!(r["method"].as_str(), Some(method), "{r}");
            }
            assert!(
                r["tokens_per_param"].as_f64().is_some_and(|t| t > 0.0),
                "{r}"
            );
        }
    }
    let llama = common::llama_perplexity(&healed, 512, 3);
    let ours: serde_json::Value = serde_json::from_str(&common::run_ok(
        common::gguf_prune()
            .arg("eval")
            .arg(&healed)
            .arg("--text")
            .arg(common::eval_text())
            .args(["-c", "512", "--chunks", "3", "-t", "2", "--json"]),
    ))
    .expect("eval JSON");
    let ppl = ours["ppl"].as_f64().unwrap();
    assert!(
        (ppl / llama - 1.0).abs() < 0.02,
        "{method}: gguf-prune eval PPL {ppl} vs llama-perplexity {llama}"
    );
    (llama, n_healed)
}

/// Every method on SmolLM2 minus {12-15, 25} (an exact fold into llama-style blocks; `comp`
/// rescales the later blocks' Q4_1/Q8_0 writes through their scale fields). The unhealed file is
/// the control: auto must beat it clearly.
#[test]
fn smollm2_every_method_loads_in_llama_cpp_and_matches_our_eval() {
    let dir = common::workdir();
    let (model, layers) = (common::smollm2(), "12-15,25");
    let pruned = dir.path().join("pruned.gguf");
    common::run_ok(
        common::gguf_prune()
            .arg(&model)
            .args(["--layers", layers, "-o"])
            .arg(&pruned),
    );
    let control = common::llama_perplexity(&pruned, 512, 3);
    for method in ["lstsq", "cosine", "patch", "comp", "auto"] {
        let (h, n) = check_method(&model, layers, method, dir.path());
        eprintln!("SmolLM2 {layers} {method}: {h} ({n} runs healed), unhealed {control}");
        // Only auto is held to the control: a single method may lower the held-back error and
        // still measure worse (patch, 2048 tokens: 69.70 against 69.04 unhealed).
        if method == "auto" {
            assert!(n >= 1 && h < 0.95 * control, "auto: {h} vs {control}");
        }
    }
}

/// gemma3 minus {8,9}: the approximate fold through the post-FFN norm (`lstsq`, `cosine`,
/// `patch`) and `comp`'s rescaling of the later blocks' post-norm weights.
#[test]
fn gemma3_methods_load_in_llama_cpp_and_match_our_eval() {
    let dir = common::workdir();
    for method in ["cosine", "patch", "comp"] {
        let (h, n) = check_method(&common::gemma3(), "8,9", method, dir.path());
        eprintln!("gemma3 8,9 {method}: {h} ({n} runs healed)");
    }
}
