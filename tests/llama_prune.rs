//! Layer removal on the real models, with llama.cpp as the oracle.

pub mod common;

use std::path::Path;

use common::*;
use gguf_prune::gguf::Model;

/// Every output tensor has the bytes of the source tensor it was renumbered from.
fn assert_tensors_copied(source: &Path, output: &Path, removed: &[usize]) {
    let src = Model::open(source).unwrap();
    let out = Model::open(output).unwrap();
    let dropped = src
        .tensors
        .iter()
        .filter(|t| {
            gguf_prune::prune::block_index(&t.info.name).is_some_and(|i| removed.contains(&i))
        })
        .count();
    assert!(dropped > 0, "some tensors must be gone");
    assert_eq!(out.tensors.len(), src.tensors.len() - dropped);
    let mut checked = 0;
    for t in &src.tensors {
        let new_name = match gguf_prune::prune::block_index(&t.info.name) {
            None => t.info.name.clone(),
            Some(i) if removed.contains(&i) => continue,
            Some(i) => {
                let shift = removed.iter().filter(|&&r| r < i).count();
                t.info
                    .name
                    .replacen(&format!("blk.{i}."), &format!("blk.{}.", i - shift), 1)
            }
        };
        let o = out
            .tensor(&new_name)
            .unwrap_or_else(|| panic!("{new_name} missing from the output"));
        assert_eq!(o.info.ggml_type, t.info.ggml_type, "{new_name}");
        assert_eq!(o.info.dims, t.info.dims, "{new_name}");
        assert!(
            out.data(o) == src.data(t),
            "{new_name} bytes differ from {}",
            t.info.name
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        out.tensors.len(),
        "every output tensor accounted for"
    );
}

#[test]
fn smollm2_without_20_23_matches_llama_quantize_perplexity() {
    let dir = workdir();
    let ours = dir.path().join("ours.gguf");
    let theirs = dir.path().join("theirs.gguf");
    run_ok(
        gguf_prune()
            .arg(smollm2())
            .args(["--layers", "20-23", "-o"])
            .arg(&ours),
    );
    run_ok(
        std::process::Command::new(llama_tool("llama-quantize"))
            .args(["--prune-layers", "20,21,22,23"])
            .arg(smollm2())
            .arg(&theirs)
            .arg("COPY"),
    );
    assert_tensors_copied(&smollm2(), &ours, &[20, 21, 22, 23]);

    let meta = Model::open(&ours).unwrap();
    assert_eq!(meta.metadata().get_u64("llama.block_count").unwrap(), 26);
    assert_eq!(
        meta.metadata()
            .get_u64("gguf_prune.source_block_count")
            .unwrap(),
        30
    );

    let ppl_ours = llama_perplexity(&ours, 512, 4);
    let ppl_theirs = llama_perplexity(&theirs, 512, 4);
    assert!(ppl_ours.is_finite() && ppl_ours > 1.0);
    assert_eq!(
        ppl_ours, ppl_theirs,
        "the same tensors must give exactly the same perplexity"
    );
}

#[test]
fn split_output_loads_in_llama_cpp() {
    let dir = workdir();
    let whole = dir.path().join("whole.gguf");
    let split = dir.path().join("split.gguf");
    run_ok(
        gguf_prune()
            .arg(smollm2())
            .args(["--layers", "20-23", "-o"])
            .arg(&whole),
    );
    run_ok(
        gguf_prune()
            .arg(smollm2())
            .args(["--layers", "20-23", "--split-max-size", "40M", "-o"])
            .arg(&split),
    );
    let first = dir.path().join("split-00001-of-00003.gguf");
    for i in 1..=3 {
        assert!(dir
            .path()
            .join(format!("split-0000{i}-of-00003.gguf"))
            .exists());
    }
    assert!(
        !split.exists(),
        "shards are named after the output, the output itself is not written"
    );
    // Our reader sees the shards as one model with the same tensors.
    let (a, b) = (Model::open(&whole).unwrap(), Model::open(&first).unwrap());
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.info.name, y.info.name);
        assert!(a.data(x) == b.data(y));
    }
    assert_eq!(
        llama_perplexity(&first, 512, 2),
        llama_perplexity(&whole, 512, 2)
    );
    // And a split model is accepted as input.
    let again = dir.path().join("again.gguf");
    run_ok(
        gguf_prune()
            .arg(&first)
            .args(["--layers", "0", "-o"])
            .arg(&again),
    );
    let m = Model::open(&again).unwrap();
    assert_eq!(m.metadata().get_u64("llama.block_count").unwrap(), 25);
    // Provenance refers to the original 30-layer model: 0 and 20-23.
    let removed = m.metadata().get_array("gguf_prune.removed_layers").unwrap();
    let removed: Vec<i128> = (0..removed.len())
        .map(|i| removed.int_at(i).unwrap())
        .collect();
    assert_eq!(removed, vec![0, 20, 21, 22, 23]);
}

#[test]
fn gemma3_removal_copies_every_tensor() {
    let dir = workdir();
    let out = dir.path().join("g.gguf");
    run_ok(
        gguf_prune()
            .arg(gemma3())
            .args(["--layers", "8,9", "-o"])
            .arg(&out),
    );
    assert_tensors_copied(&gemma3(), &out, &[8, 9]);
    let text = run_ok(gguf_prune().arg("verify").arg(&out));
    assert!(text.contains("OK"), "{text}");
}
