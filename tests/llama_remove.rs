//! `gguf-prune MODEL --remove N`: the layers are chosen by scoring, and the output loads in
//! llama.cpp and generates text.

pub mod common;

use common::*;
use gguf_prune::gguf::Model;

#[test]
fn remove_chooses_allowed_layers_and_llama_cpp_generates() {
    let dir = workdir();
    let out = dir.path().join("smol-removed.gguf");
    let report = run_ok(
        gguf_prune()
            .arg(smollm2())
            .args([
                "--remove",
                "2",
                "--ctx",
                "256",
                "--max-tokens",
                "1024",
                "-t",
                "2",
                "--json",
                "-o",
            ])
            .arg(&out),
    );
    let v: serde_json::Value = serde_json::from_str(&report).expect("one JSON object");
    let removed: Vec<u64> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(removed.len(), 2, "{report}");
    // First and last blocks are kept by default.
    assert!(removed.iter().all(|&i| i != 0 && i != 29), "{removed:?}");
    assert_eq!(v["layers_after"].as_u64(), Some(28));
    assert!(v["selection"]["method"].as_str().is_some(), "{report}");
    assert_eq!(v["selection"]["bi"].as_array().unwrap().len(), 30);

    let m = Model::open(&out).unwrap();
    assert_eq!(m.metadata().get_u64("llama.block_count").unwrap(), 28);

    let text = run_ok(
        std::process::Command::new(llama_tool("llama-completion"))
            .arg("-m")
            .arg(&out)
            .args([
                "-p",
                "The capital of France is",
                "-n",
                "16",
                "-t",
                "2",
                "--temp",
                "0",
                "-no-cnv",
                "--no-warmup",
            ]),
    );
    let generated = text
        .split("The capital of France is")
        .nth(1)
        .unwrap_or("")
        .trim();
    assert!(
        generated.split_whitespace().count() >= 3,
        "llama.cpp generated too little: {text:?}"
    );
}
