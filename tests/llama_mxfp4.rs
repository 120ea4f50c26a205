//! MXFP4 (gpt-oss's expert weight type) against llama.cpp on SmolLM2's real weights.
//!
//! llama-quantize writes MXFP4 for any tensor named by `--tensor-type NAME=mxfp4` (its own
//! MXFP4_MOE mix only picks 3-D expert tensors, which SmolLM2 has none of), so from an F16 copy of
//! SmolLM2 it makes a Q8_0 file whose FFN matrices are MXFP4. Then:
//! - quantize: each MXFP4 tensor's bytes equal `kernels::quantize` of the same F16 values;
//! - dequantize: llama-quantize's F32 conversion of that file (ggml's `dequantize_row_mxfp4`)
//!   equals `kernels::dequantize` of the MXFP4 bytes, bit for bit;
//! - the forward pass: our eval of the file against llama-perplexity's logits. llama.cpp's CPU
//!   matmul rounds the activations to Q8_0 before an MXFP4 or Q8_0 product and we do not, so
//!   this is a loose check (the bounds of tests/llama_forward.rs) that MXFP4 weights are read.

pub mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_prune::gguf::{GgmlType, Model};
use gguf_prune::kernels;

const FFN: [&str; 3] = ["ffn_gate", "ffn_up", "ffn_down"];

fn llama_quantize(args: &[&str], input: &Path, output: &Path, ftype: &str) {
    let mut cmd = Command::new(common::llama_tool("llama-quantize"));
    cmd.args(args).arg(input).arg(output).arg(ftype).arg("2");
    common::run_ok(&mut cmd);
}

fn f32_of(model: &Model, name: &str) -> Vec<f32> {
    let t = model.tensor(name).unwrap();
    let mut v = vec![0f32; t.info.n_elements() as usize];
    kernels::dequantize(t.info.ggml_type, model.data(t), &mut v).unwrap();
    v
}

/// SmolLM2 as F16, then as Q8_0 with MXFP4 FFN matrices, both made by llama-quantize.
fn files(dir: &Path) -> (PathBuf, PathBuf) {
    let f16 = dir.join("source.F16.gguf");
    llama_quantize(&["--allow-requantize"], &common::smollm2(), &f16, "F16");
    let mixed = dir.join("mxfp4.gguf");
    let overrides: Vec<String> = FFN.iter().map(|n| format!("{n}=mxfp4")).collect();
    let mut args = Vec::new();
    for o in &overrides {
        args.extend(["--tensor-type", o.as_str()]);
    }
    llama_quantize(&args, &f16, &mixed, "Q8_0");
    (f16, mixed)
}

/// The MXFP4 tensors of `model` (every FFN matrix of every block), checked to be there.
fn mxfp4_tensors(model: &Model) -> Vec<String> {
    let names: Vec<String> = model
        .tensors
        .iter()
        .filter(|t| t.info.ggml_type == GgmlType::MXFP4)
        .map(|t| t.info.name.clone())
        .collect();
    assert_eq!(names.len(), 30 * FFN.len(), "MXFP4 tensors: {names:?}");
    names
}

#[test]
fn mxfp4_bytes_and_values_match_llama_cpp() {
    let dir = common::workdir();
    let (f16, mixed) = files(dir.path());
    let (source, q) = (Model::open(&f16).unwrap(), Model::open(&mixed).unwrap());
    let names = mxfp4_tensors(&q);
    let mut blocks = 0;
    for name in &names {
        let t = q.tensor(name).unwrap();
        let ours = kernels::quantize(
            GgmlType::MXFP4,
            &f32_of(&source, name),
            t.info.dims[0] as usize,
            None,
        )
        .unwrap();
        assert!(
            ours == q.data(t),
            "{name}: MXFP4 bytes differ from llama-quantize"
        );
        blocks += ours.len() / 17;
    }

    // llama-quantize's F32 conversion dequantizes with ggml's own kernel.
    let f32_file = dir.path().join("back.F32.gguf");
    llama_quantize(&["--allow-requantize"], &mixed, &f32_file, "F32");
    let back = Model::open(&f32_file).unwrap();
    for name in &names {
        let theirs = back.tensor(name).unwrap();
        assert_eq!(theirs.info.ggml_type, GgmlType::F32, "{name}");
        let ours: Vec<u8> = f32_of(&q, name)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(
            ours == back.data(theirs),
            "{name}: dequantized values differ"
        );
    }
    eprintln!(
        "{} MXFP4 tensors, {blocks} blocks: quantized and dequantized bytes identical",
        names.len()
    );
}

#[test]
fn mxfp4_model_perplexity_matches_llama_cpp() {
    let dir = common::workdir();
    let (_, mixed) = files(dir.path());
    let text = common::eval_excerpt(dir.path(), 12_000);
    let base = dir.path().join("base.logits");
    let llama_ppl = common::final_ppl(&common::llama_log(
        Command::new(common::llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(&mixed)
            .arg("-f")
            .arg(&text)
            .args(["-c", "512", "-b", "512", "--chunks", "2", "-t", "2"])
            .arg("--kl-divergence-base")
            .arg(&base),
    ));
    let out = common::run_ok(
        common::gguf_prune()
            .arg("eval")
            .arg(&mixed)
            .arg("--kl-base")
            .arg(&base)
            .args(["-t", "2", "--json"]),
    );
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (kl, ppl) = (j["kl_mean"].as_f64().unwrap(), j["ppl"].as_f64().unwrap());
    eprintln!("MXFP4 FFN: KL {kl:.6}, PPL ours {ppl:.4} vs llama.cpp {llama_ppl:.4}");
    assert!(kl < 0.01, "KL(llama.cpp || gguf-prune) = {kl}");
    assert!(
        (ppl / llama_ppl - 1.0).abs() < 0.01,
        "PPL {ppl} vs {llama_ppl}"
    );
}
