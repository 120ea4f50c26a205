//! The metadata rewrite checked against real llama.cpp: pruned files written by the library's
//! prune pipeline load in llama-perplexity, and keeping the kept layers' true roles beats llama-quantize's
//! `--prune-layers`, which only sets block_count.

pub mod common;

use std::path::Path;
use std::process::Command;

use gguf_prune::gguf::{Array, Metadata, Model, Value, WriteOptions};
use gguf_prune::jobs::prune_model;
use gguf_prune::prune::{block_count, PrunePlan};

/// Prunes `src` by removing `removed` through the library pipeline (arch rules, renumbering,
/// verification), writes `out` and returns its metadata.
fn prune(src: &Path, removed: &[usize], out: &Path) -> Metadata {
    let model = Model::open(src).unwrap();
    let n = block_count(model.metadata()).unwrap();
    let plan = PrunePlan::new(n, removed).unwrap();
    let options = WriteOptions {
        output: gguf_prune::output::OutputRule::new(true, []),
        ..WriteOptions::default()
    };
    prune_model(&model, &plan, out, &options, &mut |_, _| {}).unwrap();
    Model::open(out).unwrap().metadata().clone()
}

/// Writes every tensor of `model` unchanged under new metadata.
fn copy_with_metadata(model: &Model, metadata: &Metadata, out: &Path) {
    let version = model.shards[0].content.version;
    common::write_gguf(out, version, metadata, common::copied_tensors(model));
}

fn quantize_prune(src: &Path, layers: &str, out: &Path) {
    common::run_ok(
        Command::new(common::llama_tool("llama-quantize"))
            .arg("--prune-layers")
            .arg(layers)
            .arg(src)
            .arg(out)
            .arg("COPY"),
    );
}

#[test]
fn gemma3_true_sliding_pattern_beats_quantize_prune_layers() {
    let dir = common::workdir();
    let ours = dir.path().join("gemma3-ours.gguf");
    let theirs = dir.path().join("gemma3-quantize.gguf");
    let md = prune(&common::gemma3(), &[8, 9], &ours);
    assert!(matches!(
        md.get("gemma3.attention.sliding_window_pattern"),
        Some(Value::Array(Array::Bool(v))) if v.len() == 16
    ));
    quantize_prune(&common::gemma3(), "8,9", &theirs);
    let ppl_ours = common::llama_perplexity(&ours, 512, 4);
    let ppl_theirs = common::llama_perplexity(&theirs, 512, 4);
    eprintln!("gemma3 minus 8,9: PPL {ppl_ours:.4} (kept layers' pattern) vs {ppl_theirs:.4} (llama-quantize --prune-layers)");
    assert!(ppl_ours.is_finite() && ppl_theirs.is_finite());
    assert!(
        ppl_ours < ppl_theirs * 0.97,
        "the true pattern should clearly help: {ppl_ours} vs {ppl_theirs}"
    );
}

#[test]
fn smollm2_per_layer_head_count_kv_array_is_sliced_and_loads() {
    let dir = common::workdir();
    let src = Model::open(common::smollm2()).unwrap();
    // The scalar model pruned: the reference.
    let scalar_pruned = dir.path().join("scalar-pruned.gguf");
    prune(&common::smollm2(), &[20, 21, 22, 23], &scalar_pruned);
    let ppl_scalar = common::llama_perplexity(&scalar_pruned, 512, 4);
    for (label, array) in [
        ("u32", Array::U32(vec![3; 30])),
        ("i32", Array::I32(vec![3; 30])),
    ] {
        // A copy whose head_count_kv is a per-layer array of 30 entries (same model).
        let mut md = src.metadata().clone();
        md.set("llama.attention.head_count_kv", Value::Array(array));
        let copy = dir.path().join(format!("array-{label}.gguf"));
        copy_with_metadata(&src, &md, &copy);
        let pruned = dir.path().join(format!("array-{label}-pruned.gguf"));
        let new_md = prune(&copy, &[20, 21, 22, 23], &pruned);
        assert_eq!(
            new_md
                .get_array("llama.attention.head_count_kv")
                .unwrap()
                .len(),
            26
        );
        let ppl = common::llama_perplexity(&pruned, 512, 4);
        eprintln!("SmolLM2 {label} head_count_kv array, minus 20-23: PPL {ppl:.4} (scalar model pruned: {ppl_scalar:.4})");
        assert!(ppl.is_finite());
        assert!(
            (ppl - ppl_scalar).abs() < 1e-3 * ppl_scalar,
            "{ppl} vs {ppl_scalar}"
        );
    }
    // llama-quantize --prune-layers leaves the array at 30 entries and the file does not load
    // (llama.cpp issue 27976).
    let copy = dir.path().join("array-u32.gguf");
    let theirs = dir.path().join("array-quantize.gguf");
    quantize_prune(&copy, "20,21,22,23", &theirs);
    let out = Command::new(common::llama_tool("llama-perplexity"))
        .arg("-m")
        .arg(&theirs)
        .arg("-f")
        .arg(common::eval_text())
        .args(["-c", "512", "--chunks", "1", "-t", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "llama-quantize's output was expected not to load"
    );
    assert!(text.contains("wrong array length"), "{text}");
}
