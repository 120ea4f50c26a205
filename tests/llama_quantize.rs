//! Our quantizer against llama-quantize on the real models: for every file type, the same type
//! for every tensor and the same bytes; where bytes differ, our error against the F16 source
//! must not be larger than llama-quantize's.
//!
//! Run with `--nocapture` to see the per-type table. `GGUF_PRUNE_QUANT_TYPES=Q4_K_M,Q8_0`
//! restricts the file types (for development).

pub mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_prune::gguf::Model;
use gguf_prune::kernels;
use gguf_prune::quant::{self, ImatrixData};

/// (file type, extra flag). SmolLM2 and gemma3 rows are 576 and 640 wide, so their attention
/// and FFN-input tensors fall back to 32-blocks; `--pure` cases put the low-bit K kernels on
/// every tensor whose rows allow them (ffn_down, and gemma3's attn_output).
const SMOLLM2_CASES: &[(&str, &str)] = &[
    ("Q8_0", ""),
    ("Q4_0", ""),
    ("Q4_1", ""),
    ("Q5_0", ""),
    ("Q5_1", ""),
    ("Q2_K", ""),
    ("Q3_K_S", ""),
    ("Q3_K_M", ""),
    ("Q3_K_L", ""),
    ("Q4_K_S", ""),
    ("Q4_K_M", ""),
    ("Q5_K_S", ""),
    ("Q5_K_M", ""),
    ("Q6_K", ""),
    ("Q2_K", "--pure"),
    ("Q3_K_S", "--pure"),
];

/// gemma3 is twice SmolLM2's size: a subset that still runs every kernel and every fallback.
const GEMMA3_CASES: &[(&str, &str)] = &[
    ("Q8_0", ""),
    ("Q4_0", ""),
    ("Q2_K", ""),
    ("Q3_K_S", ""),
    ("Q3_K_M", ""),
    ("Q4_K_M", ""),
    ("Q5_K_S", ""),
    ("Q5_K_M", ""),
    ("Q6_K", ""),
    ("Q2_K", "--pure"),
];

fn cases(default: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    match std::env::var("GGUF_PRUNE_QUANT_TYPES") {
        Ok(s) => s
            .split(',')
            .map(|t| (t.to_string(), String::new()))
            .collect(),
        Err(_) => default
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    }
}

fn llama_quantize(args: &[&str], input: &Path, output: &Path, ftype: &str) {
    let mut cmd = Command::new(common::llama_tool("llama-quantize"));
    cmd.args(args).arg(input).arg(output).arg(ftype).arg("2");
    common::run_ok(&mut cmd);
}

fn ours(args: &[&str], input: &Path, output: &Path, ftype: &str) {
    let mut cmd = common::gguf_prune();
    cmd.arg("quantize")
        .arg(input)
        .arg(output)
        .arg(ftype)
        .args(["-t", "2"])
        .args(args);
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
    kernels::dequantize(t.info.ggml_type, model.data(t), &mut v).unwrap();
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
        let ta = a
            .tensor(name)
            .unwrap_or_else(|| panic!("{name} missing from ours"));
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

fn check_model(model: &Path, label: &str, default_cases: &[(&'static str, &'static str)]) {
    let dir = common::workdir();
    let f16 = f16_copy(model, dir.path());
    let source = Model::open(&f16).unwrap();
    let mut table = Vec::new();
    for (ft, flag) in cases(default_cases) {
        let extra: Vec<&str> = if flag.is_empty() {
            vec![]
        } else {
            vec![flag.as_str()]
        };
        let tag = format!("{ft}{flag}");
        let d = both(dir.path(), &source, &f16, &ft, &extra, &tag);
        for f in ["ours", "ref"] {
            std::fs::remove_file(dir.path().join(format!("{f}.{tag}.gguf"))).unwrap();
        }
        table.push((format!("{ft} {flag}"), d));
    }
    eprintln!("\n{label}: ours vs llama-quantize (from an F16 copy)");
    eprintln!(
        "{:<14} {:>8} {:>8} {:>18} {:>12} {:>12}",
        "type", "tensors", "differ", "blocks differ", "our err", "their err"
    );
    for (ft, d) in &table {
        eprintln!(
            "{ft:<14} {:>8} {:>8} {:>8}/{:<9} {:>12.4e} {:>12.4e}",
            d.tensors, d.differing_tensors, d.differing_blocks, d.blocks, d.our_err, d.their_err
        );
    }
    for (ft, d) in &table {
        assert_no_worse(d, &format!("{label} {ft}"));
    }
}

/// Quantizes with both tools and compares, asserting the same metadata the mix depends on.
fn both(dir: &Path, source: &Model, input: &Path, ft: &str, extra: &[&str], tag: &str) -> Diff {
    let (o, t) = (
        dir.join(format!("ours.{tag}.gguf")),
        dir.join(format!("ref.{tag}.gguf")),
    );
    llama_quantize(extra, input, &t, ft);
    ours(extra, input, &o, ft);
    let d = compare(source, &o, &t);
    let (mo, mt) = (Model::open(&o).unwrap(), Model::open(&t).unwrap());
    for key in [
        "general.file_type",
        "general.quantization_version",
        "quantize.imatrix.file",
        "quantize.imatrix.dataset",
        "quantize.imatrix.entries_count",
        "quantize.imatrix.chunks_count",
    ] {
        assert_eq!(
            mo.metadata().get(key),
            mt.metadata().get(key),
            "{tag}: {key}"
        );
    }
    d
}

fn assert_no_worse(d: &Diff, what: &str) {
    eprintln!(
        "{what}: {} of {} tensors differ, {} of {} blocks; squared error ours {:.4e}, llama-quantize {:.4e}",
        d.differing_tensors, d.tensors, d.differing_blocks, d.blocks, d.our_err, d.their_err
    );
    assert!(
        d.our_err <= d.their_err,
        "{what}: our error {} > llama-quantize's {}",
        d.our_err,
        d.their_err
    );
}

/// Bytes of every tensor of a file, by name.
fn tensor_bytes(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let m = Model::open(path).unwrap();
    m.tensors
        .iter()
        .map(|t| (t.info.name.clone(), m.data(t).to_vec()))
        .collect()
}

fn n_differing(a: &Path, b: &Path) -> usize {
    let (a, b) = (tensor_bytes(a), tensor_bytes(b));
    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
}

/// llama-imatrix's file is read by us and steers our kernels exactly as it steers
/// llama-quantize's; the files we write (GGUF and legacy .dat) are accepted by llama-quantize
/// and steer it the same way as the original.
#[test]
fn imatrix_files_steer_both_quantizers_identically() {
    let dir = common::workdir();
    let d = dir.path();
    let f16 = f16_copy(&common::smollm2(), d);
    let source = Model::open(&f16).unwrap();
    // two 512-token chunks need only the start of the calibration text
    let text = std::fs::read(common::calibration_text()).unwrap();
    let calib = d.join("calib.txt");
    std::fs::write(&calib, &text[..text.len().min(60_000)]).unwrap();
    let im_path = d.join("llama.imatrix.gguf");
    let mut cmd = Command::new(common::llama_tool("llama-imatrix"));
    cmd.arg("-m")
        .arg(&f16)
        .arg("-f")
        .arg(&calib)
        .args(["-c", "512", "--chunks", "2", "-t", "2"]);
    cmd.arg("-o").arg(&im_path);
    common::run_ok(&mut cmd);

    let im = ImatrixData::read(&im_path).unwrap();
    assert!(!im.legacy);
    assert_eq!(im.chunk_size, 512);
    let down = im.get("blk.0.ffn_down.weight").expect("ffn_down entry");
    assert_eq!(down.len(), 1536);
    assert!(down.iter().all(|v| v.is_finite() && *v >= 0.0) && down.iter().any(|v| *v > 0.0));

    let im_arg = im_path.to_str().unwrap();
    // Every importance-matrix kernel: Q4_K_M has Q4_K, Q6_K, and Q5_0 as the fallback of
    // 576-wide rows; Q4_0 gives the first ffn_down eighth Q4_1 when an imatrix is present.
    for (ft, flag) in [
        ("Q4_K_M", ""),
        ("Q4_0", ""),
        ("Q5_1", ""),
        ("Q5_K_M", ""),
        ("Q2_K", "--pure"),
        ("Q3_K_S", "--pure"),
    ] {
        let mut extra = vec!["--imatrix", im_arg];
        if !flag.is_empty() {
            extra.push(flag);
        }
        let diff = both(d, &source, &f16, ft, &extra, &format!("im.{ft}{flag}"));
        assert_no_worse(
            &diff,
            &format!("SmolLM2 {ft} {flag} with llama-imatrix's file"),
        );
    }
    // the imatrix changes our Q4_K_M output
    ours(&[], &f16, &d.join("plain.gguf"), "Q4_K_M");
    let changed = n_differing(&d.join("plain.gguf"), &d.join("ours.im.Q4_K_M.gguf"));
    assert!(changed > 100, "imatrix changed only {changed} tensors");

    // our GGUF writer: llama-quantize reads it and gives the same bytes as with the original
    let ours_gguf = d.join("ours.imatrix.gguf");
    im.write_gguf(&ours_gguf, &Default::default()).unwrap();
    let t = d.join("ref.ours-im.gguf");
    llama_quantize(
        &["--imatrix", ours_gguf.to_str().unwrap()],
        &f16,
        &t,
        "Q4_K_M",
    );
    assert_eq!(
        tensor_bytes(&t),
        tensor_bytes(&d.join("ref.im.Q4_K_M.gguf"))
    );

    // our legacy writer: llama-quantize reads it, and it steers both tools alike
    let dat = d.join("ours.imatrix.dat");
    im.write_dat(&dat, &Default::default()).unwrap();
    let diff = both(
        d,
        &source,
        &f16,
        "Q4_K_M",
        &["--imatrix", dat.to_str().unwrap()],
        "dat.Q4_K_M",
    );
    assert_no_worse(&diff, "SmolLM2 Q4_K_M with our .dat");
    let changed = n_differing(&d.join("plain.gguf"), &d.join("ref.dat.Q4_K_M.gguf"));
    assert!(
        changed > 100,
        "our .dat changed only {changed} tensors in llama-quantize's output"
    );
}

/// The mix at a pruned depth: a model pruned from 30 to 22 layers gets, from us, exactly the
/// types (and bytes) llama-quantize gives a file that truly has 22 layers, which is the same
/// file here, made by `llama-quantize --prune-layers ... COPY`. The check has teeth: quantizing
/// in the same pass as pruning (`--prune-layers` with Q4_K_M) makes llama-quantize decide by the
/// original 30-layer depth, and its types differ.
#[test]
fn mix_at_pruned_depth_matches_a_truly_shallower_model() {
    let dir = common::workdir();
    let d = dir.path();
    let f16 = f16_copy(&common::smollm2(), d);
    let removed = "10,11,12,13,14,15,16,17";
    let pruned = d.join("pruned.F16.gguf");
    llama_quantize(&["--prune-layers", removed], &f16, &pruned, "COPY");
    let pm = Model::open(&pruned).unwrap();
    assert_eq!(pm.metadata().get_u64("llama.block_count").unwrap(), 22);
    for ft in ["Q4_K_M", "Q3_K_M", "Q5_K_M"] {
        let diff = both(d, &pm, &pruned, ft, &[], &format!("pruned.{ft}"));
        assert_no_worse(&diff, &format!("SmolLM2 pruned to 22 layers, {ft}"));
        assert_eq!(diff.differing_blocks, 0, "{ft}: bytes differ");
    }
    let one_pass = d.join("onepass.Q4_K_M.gguf");
    llama_quantize(&["--prune-layers", removed], &f16, &one_pass, "Q4_K_M");
    let (a, b) = (
        Model::open(&one_pass).unwrap(),
        Model::open(d.join("ours.pruned.Q4_K_M.gguf")).unwrap(),
    );
    let differ: Vec<&str> = b
        .tensors
        .iter()
        .filter(|t| a.tensor(&t.info.name).unwrap().info.ggml_type != t.info.ggml_type)
        .map(|t| t.info.name.as_str())
        .collect();
    eprintln!("types that depend on the depth used (30 vs 22): {differ:?}");
    assert!(!differ.is_empty());
}

#[test]
fn smollm2_matches_llama_quantize_for_every_file_type() {
    check_model(&common::smollm2(), "SmolLM2-135M", SMOLLM2_CASES);
}

#[test]
fn gemma3_matches_llama_quantize_for_every_file_type() {
    check_model(&common::gemma3(), "gemma-3-270m", GEMMA3_CASES);
}

/// Our dequantization equals ggml's bit for bit: llama-quantize converts our quantized files
/// to F32 (ggml's `dequantize_row_*`), and every tensor must equal ours exactly. The five files
/// hold all ten block types. Also our F16 and BF16 conversions of the Q4_1/Q8_0 download equal
/// llama-quantize's.
#[test]
fn dequantization_matches_ggml_bit_for_bit() {
    let dir = common::workdir();
    let d = dir.path();
    let original = common::smollm2();
    for ft in ["F16", "BF16"] {
        let (o, t) = (
            d.join(format!("ours.{ft}.gguf")),
            d.join(format!("ref.{ft}.gguf")),
        );
        llama_quantize(&["--allow-requantize"], &original, &t, ft);
        ours(&[], &original, &o, ft);
        assert_eq!(tensor_bytes(&o), tensor_bytes(&t), "{ft} from Q4_1/Q8_0");
        if ft == "BF16" {
            std::fs::remove_file(&o).unwrap();
            std::fs::remove_file(&t).unwrap();
        }
    }
    let f16 = d.join("ours.F16.gguf");
    let mut seen = std::collections::BTreeSet::new();
    for (ft, flag) in [
        ("Q2_K", "--pure"),
        ("Q3_K_S", "--pure"),
        ("Q4_K_M", ""),
        ("Q5_K_S", ""),
        ("Q4_1", ""),
    ] {
        let q = d.join(format!("q.{ft}.gguf"));
        let extra: Vec<&str> = if flag.is_empty() { vec![] } else { vec![flag] };
        ours(&extra, &f16, &q, ft);
        let f32_path = d.join("q.F32.gguf");
        llama_quantize(&["--allow-requantize"], &q, &f32_path, "F32");
        let (qm, fm) = (Model::open(&q).unwrap(), Model::open(&f32_path).unwrap());
        for t in &qm.tensors {
            let ty = t.info.ggml_type;
            let theirs = fm.data(fm.tensor(&t.info.name).unwrap());
            let mut mine = vec![0f32; t.info.n_elements() as usize];
            kernels::dequantize(ty, qm.data(t), &mut mine).unwrap();
            let mine: Vec<u8> = mine.iter().flat_map(|v| v.to_le_bytes()).collect();
            assert!(
                mine == theirs,
                "{} ({ty}) dequantizes differently from ggml",
                t.info.name
            );
            seen.insert(ty.to_string());
        }
        std::fs::remove_file(&q).unwrap();
        std::fs::remove_file(&f32_path).unwrap();
    }
    let seen: Vec<String> = seen.into_iter().collect();
    eprintln!("dequantized bit-exactly: {seen:?}");
    for ty in [
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    ] {
        assert!(seen.iter().any(|s| s == ty), "no {ty} tensor was checked");
    }
}

/// Every file type name in llama-quantize's `--help`, with its number, is in our list, in the
/// same order and with the same number; every one we make parses to the type its number names
/// (aliases included), and the alias `Q4_K` quantizes to the same bytes as `Q4_K_M`.
#[test]
fn file_type_names_match_llama_quantize_help() {
    let out = Command::new(common::llama_tool("llama-quantize"))
        .arg("--help")
        .output()
        .expect("running llama-quantize --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let theirs: Vec<(String, Option<u32>)> = help
        .lines()
        .skip_while(|l| !l.contains("allowed quantization types"))
        .filter_map(|l| {
            let (head, _) = l.split_once(" : ")?;
            match head.trim().split_once("  or  ") {
                Some((n, name)) => Some((name.trim().to_string(), Some(n.trim().parse().ok()?))),
                None => Some((head.trim().to_string(), None)),
            }
        })
        .collect();
    assert!(theirs.len() > 30, "parsed only {theirs:?} from:\n{help}");
    let our_list: Vec<(String, Option<u32>)> = quant::llama_quantize_names()
        .map(|(n, id, _)| (n.to_string(), id))
        .collect();
    assert_eq!(our_list, theirs, "our list vs llama-quantize --help");
    for (name, id, made) in quant::llama_quantize_names() {
        if !made {
            continue;
        }
        let by_name = quant::FileType::parse(name).unwrap();
        assert_eq!(Some(by_name.llama_ftype()), id, "{name}");
        assert_eq!(quant::FileType::parse(&name.to_lowercase()), Ok(by_name));
    }

    let dir = common::workdir();
    let (alias, full) = (dir.path().join("alias.gguf"), dir.path().join("full.gguf"));
    ours(&[], &common::smollm2(), &alias, "q4_k");
    ours(&[], &common::smollm2(), &full, "Q4_K_M");
    assert!(
        std::fs::read(&alias).unwrap() == std::fs::read(&full).unwrap(),
        "Q4_K must quantize exactly as Q4_K_M"
    );
    // control: a name llama-quantize does not list is refused, nothing written
    let bad = dir.path().join("bad.gguf");
    let out = common::gguf_prune()
        .arg("quantize")
        .arg(common::smollm2())
        .arg(&bad)
        .arg("Q4_L")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown file type \"Q4_L\""));
    assert!(!bad.exists());
}
