//! The layer-removal metadata rules (src/arch, formats/*.toml) on synthetic metadata built per
//! case, and on the two real models' metadata.

pub mod common;

use gguf_prune::arch::{check_removal, format, rewrite_metadata, ForwardSpec};
use gguf_prune::blocks::{format_layers, LayerSet};
use gguf_prune::gguf::{Array, Metadata, Model, Value};
use gguf_prune::Error;

/// Metadata for `arch` with `n` blocks plus `extra` keys (`{arch}` expanded).
fn md(arch: &str, n: u32, extra: &[(&str, Value)]) -> Metadata {
    let mut m = Metadata::new();
    m.set(
        "general.architecture",
        Value::String(arch.as_bytes().to_vec()),
    );
    m.set(&format!("{arch}.block_count"), Value::U32(n));
    m.set(&format!("{arch}.embedding_length"), Value::U32(64));
    for (k, v) in extra {
        m.set(&k.replace("{arch}", arch), v.clone());
    }
    m
}

/// Ordinary block tensor names for `n` layers.
fn tensors(n: usize) -> Vec<String> {
    let mut t = vec![
        "token_embd.weight".to_string(),
        "output_norm.weight".to_string(),
    ];
    for i in 0..n {
        t.push(format!("blk.{i}.attn_q.weight"));
        t.push(format!("blk.{i}.ffn_down.weight"));
    }
    t
}

fn rewrite(m: &Metadata, removed: &[usize]) -> gguf_prune::Result<Metadata> {
    let n = m
        .get_u64(&format!("{}.block_count", m.architecture().unwrap()))
        .unwrap() as usize;
    let names = tensors(n);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let set = LayerSet::new(n, removed)?;
    let out = rewrite_metadata(m, &names, &set);
    // check_removal must agree with rewrite_metadata.
    assert_eq!(
        check_removal(m, &names, removed).is_ok(),
        out.is_ok(),
        "check_removal and rewrite_metadata disagree on {removed:?}: {:?}",
        out.as_ref().err()
    );
    out
}

fn conflict(r: gguf_prune::Result<Metadata>) -> String {
    match r {
        Err(Error::ArchConflict { why, .. }) => why,
        other => panic!("expected ArchConflict, got {other:?}"),
    }
}

fn bools(s: &str) -> Vec<bool> {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c == 'T')
        .collect()
}

#[test]
fn every_formats_file_parses_and_is_embedded() {
    let dir = common::repo().join("formats");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = format::FILES.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "formats/ and format::FILES differ");
    for name in &on_disk {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let f = format::parse(name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&f.file, name);
    }
    let all = format::formats().unwrap();
    // No architecture is described twice.
    let mut names: Vec<&str> = all
        .archs
        .iter()
        .flat_map(|f| f.layers.architectures.iter().map(String::as_str))
        .collect();
    let len = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), len, "an architecture appears in two files");
    for arch in [
        "llama", "gemma3", "gemma2", "qwen2", "qwen3", "phi3", "cohere2", "olmo2", "exaone4",
        "llama4", "gemma3n", "smollm3",
    ] {
        assert!(all.find(arch).is_some(), "no formats file for {arch}");
    }
}

#[test]
fn unknown_tables_and_fields_are_errors() {
    let ok = "[layers]\narchitectures = [\"x\"]\n";
    let f = format::parse("t.toml", ok).unwrap();
    assert_eq!(f.layers.architectures, ["x"]);
    assert!(f.forward.is_none());
    for bad in [
        "[layers]\narchitectures = [\"x\"]\nper_layr = []\n",
        "[forward]\nanything = 1\n[layers]\narchitectures = [\"x\"]\n",
        "[other]\na = 1\n[layers]\narchitectures = [\"x\"]\n",
        "[forward]\na = 1\n",
    ] {
        assert!(format::parse("t.toml", bad).is_err(), "{bad}");
    }
}

#[test]
fn forward_reads_the_layer_rules_of_its_file() {
    // The sliding-window period and the 27B depth are stated once, under [layers].
    for (arch, period, depth) in [("gemma3", 6, 62), ("gemma2", 2, 46)] {
        let spec = ForwardSpec::for_arch(arch).unwrap();
        let role = spec.sliding_window.as_ref().unwrap();
        assert_eq!(role.default, Some(period), "{arch}");
        assert_eq!(role.formula, format::Formula::NotLastOfPeriod, "{arch}");
        assert_eq!(spec.depth_changes, [depth], "{arch}");
    }
    let spec = ForwardSpec::for_arch("phi3").unwrap();
    assert!(spec.sliding_window.is_none() && spec.depth_changes.is_empty());
    let no_depth = "[layers]\narchitectures = [\"x\"]\n[forward]\nactivation = \"silu\"\n\
        rope = \"neox\"\nembedding_scale = \"none\"\nqk_norm = \"none\"\nattention_scale = \"gemma\"\n";
    let e = format::parse("t.toml", no_depth).unwrap_err().to_string();
    assert!(e.contains("[[layers.depth]]"), "{e}");
}

#[test]
fn smollm2_like_per_layer_head_count_kv_is_sliced() {
    let kv: Vec<i32> = (0..30).map(|i| 1 + i % 3).collect();
    let m = md(
        "llama",
        30,
        &[
            ("{arch}.attention.head_count", Value::U32(9)),
            (
                "{arch}.attention.head_count_kv",
                Value::Array(Array::I32(kv.clone())),
            ),
            (
                "{arch}.feed_forward_length",
                Value::Array(Array::U32((0..30).map(|i| 1000 + i).collect())),
            ),
        ],
    );
    let out = rewrite(&m, &[20, 21, 22, 23]).unwrap();
    let want: Vec<i32> = (0..30)
        .filter(|i| !(20..=23).contains(i))
        .map(|i| kv[i])
        .collect();
    assert_eq!(
        out.get("llama.attention.head_count_kv"),
        Some(&Value::Array(Array::I32(want)))
    );
    let ff: Vec<u32> = (0..30)
        .filter(|i| !(20..=23).contains(i))
        .map(|i| 1000 + i as u32)
        .collect();
    assert_eq!(
        out.get("llama.feed_forward_length"),
        Some(&Value::Array(Array::U32(ff)))
    );
    // A scalar applies to every layer and stays a scalar.
    assert_eq!(out.get("llama.attention.head_count"), Some(&Value::U32(9)));
    assert_eq!(out.get("llama.block_count"), Some(&Value::U32(26)));
    // Key order is kept: block_count stays where it was.
    assert_eq!(out.iter().nth(1).unwrap().0, "llama.block_count");
}

#[test]
fn wrong_length_per_layer_array_is_an_error_naming_the_key() {
    let m = md(
        "llama",
        30,
        &[(
            "{arch}.attention.head_count_kv",
            Value::Array(Array::U32(vec![3; 29])),
        )],
    );
    match rewrite(&m, &[5]) {
        Err(Error::PerLayerLength { key, expected, got }) => {
            assert_eq!(
                (key.as_str(), expected, got),
                ("llama.attention.head_count_kv", 30, 29)
            );
        }
        other => panic!("expected PerLayerLength, got {other:?}"),
    }
}

#[test]
fn gemma3_removing_8_9_writes_the_kept_layers_true_sliding_pattern() {
    let m = md(
        "gemma3",
        18,
        &[("{arch}.attention.sliding_window", Value::U32(512))],
    );
    let out = rewrite(&m, &[8, 9]).unwrap();
    // Original roles: il % 6 < 5 is sliding, so 5, 11, 17 are global. Kept layers
    // 0 1 2 3 4 5 6 7 | 10 11 12 13 14 15 16 17 -> T T T T T F T T | T F T T T T T F.
    let want = bools("TTTTTFTT TFTTTTTF");
    assert_eq!(
        out.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(want)))
    );
    assert_eq!(out.get("gemma3.block_count"), Some(&Value::U32(16)));
}

#[test]
fn gemma3_removing_a_whole_period_needs_no_pattern_key() {
    let m = md(
        "gemma3",
        18,
        &[("{arch}.attention.sliding_window", Value::U32(512))],
    );
    let out = rewrite(&m, &[6, 7, 8, 9, 10, 11]).unwrap();
    assert!(!out.contains("gemma3.attention.sliding_window_pattern"));
    assert_eq!(out.get("gemma3.block_count"), Some(&Value::U32(12)));
    // Without a sliding window there is no pattern at all.
    let m = md(
        "gemma3",
        18,
        &[("{arch}.attention.sliding_window", Value::U32(0))],
    );
    assert!(!rewrite(&m, &[8])
        .unwrap()
        .contains("gemma3.attention.sliding_window_pattern"));
}

#[test]
fn existing_pattern_arrays_are_sliced_and_scalar_periods_honoured() {
    let pattern: Vec<bool> = (0..18).map(|i| i % 3 != 0).collect();
    let m = md(
        "gemma3",
        18,
        &[
            ("{arch}.attention.sliding_window", Value::U32(512)),
            (
                "{arch}.attention.sliding_window_pattern",
                Value::Array(Array::Bool(pattern.clone())),
            ),
        ],
    );
    let out = rewrite(&m, &[0, 1]).unwrap();
    assert_eq!(
        out.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(pattern[2..].to_vec())))
    );
    // A scalar period 3 (global layers 2, 5, 8, ...) replaces the default 6.
    let m = md(
        "gemma3",
        9,
        &[
            ("{arch}.attention.sliding_window", Value::U32(512)),
            ("{arch}.attention.sliding_window_pattern", Value::U32(3)),
        ],
    );
    let out = rewrite(&m, &[0]).unwrap();
    assert_eq!(
        out.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(bools("TFTTFTTF"))))
    );
    // Removing a whole period of 3 keeps the scalar.
    let out = rewrite(&m, &[3, 4, 5]).unwrap();
    assert_eq!(
        out.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::U32(3))
    );
}

#[test]
fn gemma2_reads_the_pattern_array_so_odd_removals_are_expressed() {
    // gemma2.cpp calls load_swa_pattern(ml, 2), which reads a per-layer array: removing a single
    // layer is expressible, unlike smollm3's RoPE pattern below.
    let m = md("gemma2", 26, &[]);
    let out = rewrite(&m, &[5]).unwrap();
    let mut want: Vec<bool> = (0..26).map(|i| i % 2 == 0).collect();
    want.remove(5);
    assert_eq!(
        out.get("gemma2.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(want)))
    );
    assert!(!rewrite(&m, &[4, 5])
        .unwrap()
        .contains("gemma2.attention.sliding_window_pattern"));
}

#[test]
fn smollm3_rope_pattern_refuses_one_layer_and_suggests_whole_periods() {
    // smollm3.cpp: no RoPE where (il + 1) % 4 == 0, step fixed, no key.
    let m = md("smollm3", 36, &[]);
    let why = conflict(rewrite(&m, &[5]));
    assert!(why.contains("RoPE"), "{why}");
    assert!(
        why.contains("layer 7"),
        "names the first layer whose role would change: {why}"
    );
    assert!(
        why.contains("5-8") && why.contains("2-5"),
        "suggests whole periods: {why}"
    );
    let out = rewrite(&m, &[4, 5, 6, 7]).unwrap();
    assert_eq!(out.get("smollm3.block_count"), Some(&Value::U32(32)));
    // Any run of 4 works, not only aligned ones.
    assert!(rewrite(&m, &[5, 6, 7, 8]).is_ok());
    // Removing the last layers changes no kept layer's position.
    assert!(rewrite(&m, &[34, 35]).is_ok());
}

#[test]
fn llama4_rope_and_moe_interleave() {
    let m = md(
        "llama4",
        48,
        &[("{arch}.interleave_moe_layer_step", Value::U32(2))],
    );
    let why = conflict(rewrite(&m, &[1]));
    assert!(why.contains("RoPE") || why.contains("MoE"), "{why}");
    let out = rewrite(&m, &[8, 9, 10, 11]).unwrap();
    assert_eq!(
        out.get("llama4.interleave_moe_layer_step"),
        Some(&Value::U32(2))
    );
    assert!(!out.contains("llama4.attention.sliding_window_pattern"));
    // With the sliding window switched off there is no chunked/RoPE pattern; the MoE step can
    // still refuse a single-layer removal in the middle.
    let m = md(
        "llama4",
        48,
        &[
            ("{arch}.interleave_moe_layer_step", Value::U32(2)),
            ("{arch}.attention.sliding_window", Value::U32(0)),
        ],
    );
    assert!(conflict(rewrite(&m, &[10])).contains("MoE"));
    assert!(rewrite(&m, &[10, 11]).is_ok());
}

#[test]
fn leading_dense_block_count_is_adjusted() {
    let m = md(
        "deepseek2",
        60,
        &[("{arch}.leading_dense_block_count", Value::U32(3))],
    );
    let out = rewrite(&m, &[1]).unwrap();
    assert_eq!(
        out.get("deepseek2.leading_dense_block_count"),
        Some(&Value::U32(2))
    );
    let out = rewrite(&m, &[0, 1, 2]).unwrap();
    assert_eq!(
        out.get("deepseek2.leading_dense_block_count"),
        Some(&Value::U32(0))
    );
    let out = rewrite(&m, &[30]).unwrap();
    assert_eq!(
        out.get("deepseek2.leading_dense_block_count"),
        Some(&Value::U32(3))
    );
    // deepseek2's loader detects lite models by depth: pruning 60 -> 27 is refused.
    let removed: Vec<usize> = (10..43).collect();
    assert!(conflict(rewrite(&m, &removed)).contains("lite"));
}

#[test]
fn mtp_heads_cannot_be_removed_but_main_layers_can() {
    let m = md(
        "glm4moe",
        47,
        &[
            ("{arch}.nextn_predict_layers", Value::U32(1)),
            ("{arch}.leading_dense_block_count", Value::U32(1)),
        ],
    );
    let why = conflict(rewrite(&m, &[46]));
    assert!(why.contains("multi-token-prediction"), "{why}");
    let out = rewrite(&m, &[20]).unwrap();
    assert_eq!(
        out.get("glm4moe.nextn_predict_layers"),
        Some(&Value::U32(1))
    );
    assert_eq!(out.get("glm4moe.block_count"), Some(&Value::U32(46)));
    // A per-main-layer array has block_count - nextn entries.
    let m = md(
        "glm4moe",
        5,
        &[
            ("{arch}.nextn_predict_layers", Value::U32(1)),
            (
                "{arch}.attention.indexer.types",
                Value::Array(Array::U32(vec![1, 0, 1, 0])),
            ),
        ],
    );
    let out = rewrite(&m, &[1]).unwrap();
    assert_eq!(
        out.get("glm4moe.attention.indexer.types"),
        Some(&Value::Array(Array::U32(vec![1, 1, 0])))
    );
    // Layer 3 (shared) reuses the top-k of layer 2 (full): layer 2 must stay.
    assert!(conflict(rewrite(&m, &[2])).contains("keep layer 2"));
}

#[test]
fn deepstack_mapping_is_sliced_and_its_layers_kept() {
    let map: Vec<i32> = (0..10).map(|i| if i < 3 { i } else { -1 }).collect();
    let m = md(
        "granite",
        10,
        &[("{arch}.deepstack_mapping", Value::Array(Array::I32(map)))],
    );
    let out = rewrite(&m, &[5]).unwrap();
    assert_eq!(
        out.get("granite.deepstack_mapping"),
        Some(&Value::Array(Array::I32(vec![
            0, 1, 2, -1, -1, -1, -1, -1, -1
        ])))
    );
    assert!(conflict(rewrite(&m, &[1])).contains("keep layer 1"));
}

#[test]
fn layer_index_lists_are_renumbered() {
    let m = md(
        "qwen4exp",
        12,
        &[("{arch}.ple.layers", Value::Array(Array::U32(vec![5])))],
    );
    let out = rewrite(&m, &[0, 1, 2, 3]).unwrap();
    assert_eq!(
        out.get("qwen4exp.ple.layers"),
        Some(&Value::Array(Array::U32(vec![1])))
    );
    assert!(conflict(rewrite(&m, &[5])).contains("keep layer 5"));
}

#[test]
fn recurrent_layers_are_written_for_qwen3next() {
    let m = md("qwen3next", 12, &[]);
    let out = rewrite(&m, &[1]).unwrap();
    // Interval 4: layers 3, 7, 11 are full attention; the rest recurrent.
    let want: Vec<bool> = (0..12)
        .filter(|&i| i != 1)
        .map(|i| (i + 1) % 4 != 0)
        .collect();
    assert_eq!(
        out.get("qwen3next.attention.recurrent_layers"),
        Some(&Value::Array(Array::Bool(want)))
    );
}

#[test]
fn rescale_interval_and_deepstack_refuse_what_no_key_expresses() {
    let m = md(
        "rwkv6",
        24,
        &[("{arch}.rescale_every_n_layers", Value::U32(6))],
    );
    assert!(conflict(rewrite(&m, &[0])).contains("rescale"));
    assert!(rewrite(&m, &[0, 1, 2, 3, 4, 5]).is_ok());
    let m = md(
        "qwen3vl",
        36,
        &[("{arch}.n_deepstack_layers", Value::U32(3))],
    );
    let why = conflict(rewrite(&m, &[1]));
    assert!(why.contains("remove only layers 3 or later"), "{why}");
    assert_eq!(
        rewrite(&m, &[10])
            .unwrap()
            .get("qwen3vl.n_deepstack_layers"),
        Some(&Value::U32(3))
    );
}

#[test]
fn gemma4_shared_kv_and_packed_tensors() {
    let pattern: Vec<bool> = (0..30).map(|i| i % 5 != 4).collect();
    let m = md(
        "gemma4",
        30,
        &[
            (
                "{arch}.attention.sliding_window_pattern",
                Value::Array(Array::Bool(pattern.clone())),
            ),
            ("{arch}.attention.shared_kv_layers", Value::U32(10)),
        ],
    );
    // Layers 18, 19 hold the KV that 20..29 reuse.
    assert!(conflict(rewrite(&m, &[19])).contains("keep layers 18..19"));
    let out = rewrite(&m, &[25]).unwrap();
    assert_eq!(
        out.get("gemma4.attention.shared_kv_layers"),
        Some(&Value::U32(9))
    );
    let out = rewrite(&m, &[3]).unwrap();
    assert_eq!(
        out.get("gemma4.attention.shared_kv_layers"),
        Some(&Value::U32(10))
    );
    let mut want = pattern.clone();
    want.remove(3);
    assert_eq!(
        out.get("gemma4.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(want)))
    );
    // per_layer_token_embd packs every layer's slice: nothing can be removed.
    let mut names = tensors(30);
    names.push("per_layer_token_embd.weight".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let err = check_removal(&m, &names, &[25]).unwrap_err();
    assert!(
        err.to_string().contains("per_layer_token_embd.weight"),
        "{err}"
    );
}

#[test]
fn depth_detected_models_and_pinned_defaults() {
    let m = md(
        "gemma3",
        62,
        &[("{arch}.attention.sliding_window", Value::U32(1024))],
    );
    assert!(conflict(rewrite(&m, &[30])).contains("27B"));
    let m = md("exaone4", 64, &[]);
    assert!(conflict(rewrite(&m, &[30])).contains("64"));
    assert!(rewrite(&md("exaone4", 30, &[]), &[3]).is_ok());
    // baichuan: 32 layers use RoPE, 40 ALiBi, other depths neither.
    assert!(conflict(rewrite(&md("baichuan", 40, &[]), &[3])).contains("ALiBi"));
    let m = md("minicpm", 40, &[]);
    let out = rewrite(&m, &[20]).unwrap();
    let v = out
        .get("minicpm.residual_scale")
        .and_then(Value::to_f64)
        .unwrap();
    assert!((v - 1.4 / 40f64.sqrt()).abs() < 1e-6, "{v}");
}

#[test]
fn unknown_architecture_gets_the_generic_rules() {
    let m = md(
        "mystery",
        10,
        &[
            (
                "{arch}.attention.head_count_kv",
                Value::Array(Array::U32((0..10).collect())),
            ),
            (
                "{arch}.rope.dimension_sections",
                Value::Array(Array::I32(vec![1; 10])),
            ),
        ],
    );
    let out = rewrite(&m, &[2, 3]).unwrap();
    assert_eq!(
        out.get("mystery.attention.head_count_kv"),
        Some(&Value::Array(Array::U32(vec![0, 1, 4, 5, 6, 7, 8, 9])))
    );
    // Known not to be per-layer: left alone although its length equals block_count.
    assert_eq!(
        out.get("mystery.rope.dimension_sections"),
        Some(&Value::Array(Array::I32(vec![1; 10])))
    );
    // An unlisted array of block_count entries is refused rather than guessed.
    let mut m2 = m.clone();
    m2.set(
        "mystery.layer_scales",
        Value::Array(Array::F32(vec![1.0; 10])),
    );
    assert!(conflict(rewrite(&m2, &[2])).contains("mystery.layer_scales"));
    // A scalar that encodes positions, with no rule to read it.
    let mut m3 = m.clone();
    m3.set("mystery.leading_dense_block_count", Value::U32(2));
    assert!(conflict(rewrite(&m3, &[5])).contains("leading_dense_block_count"));
}

#[test]
fn bad_layer_lists_are_rejected() {
    let m = md("llama", 8, &[]);
    for kept in [
        &[][..],
        &[0, 1, 2, 3, 4, 5, 6, 7][..],
        &[3, 1][..],
        &[1, 1][..],
        &[0, 9][..],
    ] {
        let r = LayerSet::from_kept(8, kept).and_then(|set| rewrite_metadata(&m, &[], &set));
        assert!(matches!(r, Err(Error::Layers(_))), "{kept:?}");
    }
    // A set built for another depth.
    let nine = LayerSet::new(9, &[1]).unwrap();
    assert!(matches!(
        rewrite_metadata(&m, &[], &nine),
        Err(Error::Layers(_))
    ));
    assert!(matches!(
        check_removal(&m, &[], &[8]),
        Err(Error::Layers(_))
    ));
    assert_eq!(format_layers(&[1, 2, 3, 7]), "1-3,7");
}

fn real(path: &std::path::Path, removed: &[usize]) -> gguf_prune::Result<Metadata> {
    let model = Model::open(path).unwrap();
    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let n = model
        .metadata()
        .get_u64(&format!(
            "{}.block_count",
            model.metadata().architecture().unwrap()
        ))
        .unwrap();
    let set = LayerSet::new(n as usize, removed).unwrap();
    check_removal(model.metadata(), &names, removed)?;
    rewrite_metadata(model.metadata(), &names, &set)
}

#[test]
fn real_smollm2_metadata() {
    let out = real(&common::smollm2(), &[20, 21, 22, 23]).unwrap();
    assert_eq!(out.get("llama.block_count"), Some(&Value::U32(26)));
    assert_eq!(
        out.get("llama.attention.head_count_kv"),
        Some(&Value::U32(3))
    );
    assert_eq!(out.get_u64("llama.feed_forward_length").unwrap(), 1536);
}

#[test]
fn real_gemma3_metadata() {
    let out = real(&common::gemma3(), &[8, 9]).unwrap();
    assert_eq!(out.get("gemma3.block_count"), Some(&Value::U32(16)));
    assert_eq!(
        out.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(bools("TTTTTFTT TFTTTTTF"))))
    );
    // The final block can go without any pattern change to earlier layers, but 17 is global
    // and 16 takes its index: a pattern array is needed.
    let out = real(&common::gemma3(), &[16]).unwrap();
    assert_eq!(
        out.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(bools("TTTTTFTTTTTFTTTTF"))))
    );
}
