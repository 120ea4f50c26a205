//! Our quantizer against llama-quantize on the real models: for every file type, the same type
//! for every tensor and the same bytes; where bytes differ, our error against the F16 source
//! must not be larger than llama-quantize's.
//!
//! Run with `--nocapture` to see the per-type table. `GGUF_PRUNE_QUANT_TYPES=Q4_K_M,Q8_0`
//! restricts the file types (for development).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_prune::gguf::{GgmlType, Model};
use gguf_prune::quant::{self, ImatrixData};

const FILE_TYPES: &[&str] = &[
    "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
    "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
];

fn file_types() -> Vec<String> {
    match std::env::var("GGUF_PRUNE_QUANT_TYPES") {
        Ok(s) => s.split(',').map(str::to_string).collect(),
        Err(_) => FILE_TYPES.iter().map(|s| s.to_string()).collect(),
    }
}

fn llama_quantize(args: &[&str], input: &Path, output: &Path, ftype: &str) {
    let mut cmd = Command::new(common::llama_tool("llama-quantize"));
    cmd.args(args).arg(input).arg(output).arg(ftype).arg("2");
    common::run_ok(&mut cmd);
}

fn ours(args: &[&str], input: &Path, output: &Path, ftype: &str) {
    let mut cmd = common::gguf_prune();
    cmd.arg("quantize").arg(input).arg(output).arg(ftype).args(["-t", "2"]).args(args);
    common::run_ok(&mut cmd);
}

/// An F16 copy of a real model, made by llama-quantize (the closest thing to the original
/// weights that these quantized downloads allow).
fn f16_copy(model: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("source.F16.gguf");
    llama_quantize(&["--allow-requantize"], model, &out, "F16");
    out
}

fn f32_of(model: &Model, name: &str) -> Vec<f32> {
    let t = model.tensor(name).unwrap();
    let mut v = vec![0f32; t.info.n_elements() as usize];
    quant::dequantize(t.info.ggml_type, model.data(t), &mut v).unwrap();
    v
}

fn sq_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

/// Per file type: tensors compared, tensors differing, blocks differing, our and their error
/// over the differing tensors.
#[derive(Default, Debug)]
struct Diff {
    tensors: usize,
    differing_tensors: usize,
    blocks: usize,
    differing_blocks: usize,
    our_err: f64,
    their_err: f64,
}

/// Compares two quantized files tensor by tensor. Panics on a type, shape or name mismatch.
fn compare(source: &Model, ours: &Path, theirs: &Path) -> Diff {
    let (a, b) = (Model::open(ours).unwrap(), Model::open(theirs).unwrap());
    assert_eq!(a.tensors.len(), b.tensors.len(), "tensor count");
    let mut d = Diff::default();
    for tb in &b.tensors {
        let name = &tb.info.name;
        let ta = a.tensor(name).unwrap_or_else(|| panic!("{name} missing from ours"));
        assert_eq!(ta.info.ggml_type, tb.info.ggml_type, "type of {name}");
        assert_eq!(ta.info.dims, tb.info.dims, "dims of {name}");
        d.tensors += 1;
        let ty = tb.info.ggml_type;
        let bs = ty.type_size().unwrap() as usize;
        let (ba, bb) = (a.data(ta), b.data(tb));
        d.blocks += bb.len() / bs;
        if ba == bb {
            continue;
        }
        d.differing_tensors += 1;
        d.differing_blocks += ba
            .chunks(bs)
            .zip(bb.chunks(bs))
            .filter(|(x, y)| x != y)
            .count();
        let src = f32_of(source, name);
        d.our_err += sq_err(&src, &f32_of(&a, name));
        d.their_err += sq_err(&src, &f32_of(&b, name));
    }
    d
}

fn check_model(model: &Path, label: &str) {
    let dir = common::workdir();
    let f16 = f16_copy(model, dir.path());
    let source = Model::open(&f16).unwrap();
    let mut table = BTreeMap::new();
    for ft in file_types() {
        let (o, t) = (dir.path().join(format!("ours.{ft}.gguf")), dir.path().join(format!("ref.{ft}.gguf")));
        llama_quantize(&[], &f16, &t, &ft);
        ours(&[], &f16, &o, &ft);
        let d = compare(&source, &o, &t);
        // general.file_type is set as llama-quantize sets it
        let (mo, mt) = (Model::open(&o).unwrap(), Model::open(&t).unwrap());
        for key in ["general.file_type", "general.quantization_version"] {
            assert_eq!(mo.metadata().get(key), mt.metadata().get(key), "{ft}: {key}");
        }
        std::fs::remove_file(&o).unwrap();
        std::fs::remove_file(&t).unwrap();
        table.insert(ft, d);
    }
    eprintln!("\n{label}: ours vs llama-quantize (from an F16 copy)");
    eprintln!("{:<8} {:>8} {:>10} {:>14} {:>12} {:>12}", "type", "tensors", "differ", "blocks differ", "our err", "their err");
    for (ft, d) in &table {
        eprintln!(
            "{ft:<8} {:>8} {:>10} {:>7}/{:<7} {:>12.4e} {:>12.4e}",
            d.tensors, d.differing_tensors, d.differing_blocks, d.blocks, d.our_err, d.their_err
        );
    }
    for (ft, d) in &table {
        assert!(
            d.our_err <= d.their_err,
            "{label} {ft}: {} of {} blocks differ and our squared error {} exceeds llama-quantize's {}",
            d.differing_blocks,
            d.blocks,
            d.our_err,
            d.their_err
        );
    }
}

#[test]
fn smollm2_matches_llama_quantize_for_every_file_type() {
    check_model(&common::smollm2(), "SmolLM2-135M");
}

#[test]
fn gemma3_matches_llama_quantize_for_every_file_type() {
    check_model(&common::gemma3(), "gemma-3-270m");
}
