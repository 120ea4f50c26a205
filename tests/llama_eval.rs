//! `gguf-prune eval` end to end on SmolLM2 against llama-perplexity on the same excerpt.
//!
//! Tolerances: an independent f32 forward pass came within 0.6% of llama-perplexity on this
//! model (measured on wiki.test.raw), since llama.cpp quantizes activations to Q8 for its Q4_1
//! dot products.

pub mod common;

use std::process::Command;

const CTX: &str = "256";
const CHUNKS: &str = "2";

fn excerpt(dir: &std::path::Path) -> std::path::PathBuf {
    common::eval_excerpt(dir, 8000)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[test]
fn perplexity_matches_llama_perplexity() {
    let dir = common::workdir();
    let text = excerpt(dir.path());
    let model = common::smollm2();
    let llama_ppl = common::final_ppl(&common::llama_log(
        Command::new(common::llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(&model)
            .arg("-f")
            .arg(&text)
            .args(["-c", CTX, "-b", CTX, "--chunks", CHUNKS, "-t", "2"]),
    ));

    let ours = json(&common::run_ok(
        common::gguf_prune()
            .arg("eval")
            .arg(&model)
            .arg("--text")
            .arg(&text)
            .args(["-c", CTX, "--chunks", CHUNKS, "-t", "2", "--json"]),
    ));
    let ppl = ours["ppl"].as_f64().unwrap();
    assert_eq!(ours["chunks"].as_u64(), Some(2));
    assert_eq!(ours["n_tokens"].as_u64(), Some(2 * 127));
    assert!(ours["ppl_err"].as_f64().unwrap() > 0.0);
    assert!(
        (ppl / llama_ppl - 1.0).abs() < 0.02,
        "gguf-prune eval PPL {ppl} vs llama-perplexity {llama_ppl}"
    );
}

#[test]
fn kl_base_from_llama_and_ref_of_self() {
    let dir = common::workdir();
    let text = excerpt(dir.path());
    let model = common::smollm2();
    let base = dir.path().join("base.logits");
    common::llama_log(
        Command::new(common::llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(&model)
            .arg("-f")
            .arg(&text)
            .args([
                "-c",
                CTX,
                "-b",
                CTX,
                "--chunks",
                CHUNKS,
                "-t",
                "2",
                "--kl-divergence-base",
            ])
            .arg(&base),
    );
    // Our logits against llama.cpp's: close distributions, nearly always the same top token.
    let vs_llama = json(&common::run_ok(
        common::gguf_prune()
            .arg("eval")
            .arg(&model)
            .arg("--kl-base")
            .arg(&base)
            .args(["-t", "2", "--json"]),
    ));
    let kl = vs_llama["kl_mean"].as_f64().unwrap();
    let top1 = vs_llama["top1"].as_f64().unwrap();
    assert!(
        (0.0..0.02).contains(&kl),
        "KL(llama.cpp || gguf-prune) = {kl}"
    );
    assert!(top1 > 0.9, "top-1 agreement with llama.cpp {top1}");
    assert_eq!(vs_llama["n_tokens"].as_u64(), Some(2 * 127));

    // A model against itself: KL at the u16 quantization floor, full agreement.
    let vs_self = json(&common::run_ok(
        common::gguf_prune()
            .arg("eval")
            .arg(&model)
            .arg("--ref")
            .arg(&model)
            .arg("--text")
            .arg(&text)
            .args(["-c", CTX, "--chunks", CHUNKS, "-t", "2", "--json"]),
    ));
    assert!(
        vs_self["kl_mean"].as_f64().unwrap().abs() < 1e-4,
        "{vs_self}"
    );
    assert_eq!(vs_self["top1"].as_f64(), Some(1.0));
}
