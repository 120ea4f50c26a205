//! GGUF files built in memory, parsed, and written back: every value type, v2 and v3, odd
//! alignments, unknown tensor types, per-layer arrays, split files. A file opened and written
//! again with every tensor copied must come out byte for byte the same.

pub mod common;
pub mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_prune::gguf::{
    Array, Content, GgmlType, GgufFile, Metadata, Model, OutTensor, Value, WriteOptions,
};
use support::{every_value_type, tiny_gemma3, tiny_llama, write_file, Gguf, F16, F32, Q4_0, Q8_0};

/// Opens `input` (one file or the first shard of several) and writes it to `out` with every
/// tensor copied by byte range and the same version and metadata.
fn rewrite(input: &Path, out: &Path, options: &WriteOptions) -> Vec<PathBuf> {
    let model = Model::open(input).unwrap_or_else(|e| panic!("opening {}: {e}", input.display()));
    let tensors = common::copied_tensors(&model);
    let version = model.shards[0].content.version;
    gguf_prune::gguf::write_model(
        out,
        version,
        model.metadata(),
        tensors,
        options,
        &mut |_, _| {},
    )
    .and_then(|pending| pending.commit())
    .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()))
}

/// Writes `bytes` to a file, rewrites it, and asserts the output is identical.
#[track_caller]
fn assert_round_trip(bytes: &[u8], label: &str) {
    let dir = common::workdir();
    let input = write_file(dir.path(), "in.gguf", bytes);
    let out = dir.path().join("out.gguf");
    rewrite(&input, &out, &WriteOptions::default());
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written.len(), bytes.len(), "{label}: length differs");
    if let Some(i) = written.iter().zip(bytes).position(|(a, b)| a != b) {
        panic!("{label}: first differing byte at {i}");
    }
}

fn keys(m: &Metadata) -> Vec<String> {
    m.iter().map(|(k, _)| k.to_string()).collect()
}

#[test]
fn every_value_type_parses_back_in_order_v2_and_v3() {
    for version in [2, 3] {
        let mut g = Gguf::new(version).kv("general.architecture", Value::String(b"x".to_vec()));
        for (k, v) in every_value_type() {
            g = g.kv(k, v);
        }
        let built = g.f32_tensor("w", &[4, 2], 1.0).build();
        let c = Content::parse(&built.bytes).unwrap();
        assert_eq!(c.version, version);
        let expected: Vec<(String, Value)> = std::iter::once((
            "general.architecture".to_string(),
            Value::String(b"x".to_vec()),
        ))
        .chain(
            every_value_type()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        )
        .collect();
        let got: Vec<(String, Value)> = c
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, expected, "v{version}");
        // Non-UTF-8 strings are kept as bytes, not replaced.
        assert_eq!(
            c.metadata.get("t.string.latin1"),
            Some(&Value::String(vec![b'c', 0xe9, b'd', 0x80, 0xff]))
        );
        assert!(c.metadata.get_str("t.string.latin1").is_err());
        assert_eq!(c.metadata.get_str("t.string").unwrap(), "héllo wörld");
        assert_eq!(c.data_offset as usize, built.data_offset);
        assert_eq!(c.tensors[0].dims, vec![4, 2]);
        assert_eq!(c.tensors[0].size, 32);
        assert_round_trip(&built.bytes, &format!("every value type, v{version}"));
    }
}

#[test]
fn odd_alignments_are_honoured_and_round_trip() {
    for align in [1u32, 2, 8, 16, 32, 64, 256, 4096] {
        for version in [2, 3] {
            // Tensor sizes 4, 6, 18, 12 bytes: none a multiple of the larger alignments.
            let built = Gguf::new(version)
                .kv("general.architecture", Value::String(b"x".to_vec()))
                .alignment(align)
                .kv("general.name", Value::String(b"odd".to_vec()))
                .f32_tensor("a", &[1], 1.0)
                .tensor("b", &[3], F16, vec![1, 2, 3, 4, 5, 6])
                .tensor("c", &[32], Q4_0, (0..18).collect())
                .f32_tensor("d", &[3], 9.0)
                .build();
            let c = Content::parse(&built.bytes).unwrap();
            assert_eq!(c.alignment, align as u64);
            assert_eq!(c.data_offset % align as u64, 0);
            let offsets: Vec<u64> = c.tensors.iter().map(|t| t.offset).collect();
            assert_eq!(offsets, built.tensor_offsets, "align {align}");
            for t in &c.tensors {
                assert_eq!(t.offset % align as u64, 0);
            }
            let sizes: Vec<u64> = c.tensors.iter().map(|t| t.size).collect();
            assert_eq!(sizes, vec![4, 6, 18, 12]);
            assert_round_trip(&built.bytes, &format!("alignment {align}, v{version}"));
        }
    }
}

#[test]
fn tensor_bytes_are_read_from_the_right_place() {
    let dir = common::workdir();
    let built = Gguf::new(3)
        .alignment(64)
        .f32_tensor("a", &[3], 1.0)
        .tensor("b", &[32], Q8_0, (0..34).collect())
        .f32_tensor("c", &[2, 2], -5.0)
        .build();
    let path = write_file(dir.path(), "x.gguf", &built.bytes);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.data(f.content.tensor("a").unwrap()),
        support::f32_bytes(&[1.0, 1.25, 1.5])
    );
    assert_eq!(
        f.data(f.content.tensor("b").unwrap()),
        (0..34).collect::<Vec<u8>>()
    );
    assert_eq!(
        f.data(f.content.tensor("c").unwrap()),
        support::f32_bytes(&[-5.0, -4.75, -4.5, -4.25])
    );
}

#[test]
fn unknown_tensor_types_are_carried_by_byte_range() {
    // An unknown type between two known ones, and one at the end of the file.
    let built = Gguf::new(3)
        .f32_tensor("before", &[2], 1.0)
        .tensor(
            "mystery",
            &[7, 3],
            support::UNKNOWN_TYPE,
            (100..140).collect(),
        )
        .f32_tensor("after", &[2], 2.0)
        .tensor("tail", &[5], 77, vec![9; 10])
        .build();
    let c = Content::parse(&built.bytes).unwrap();
    let mystery = c.tensor("mystery").unwrap();
    assert_eq!(mystery.ggml_type, GgmlType::Unknown(support::UNKNOWN_TYPE));
    assert_eq!(mystery.dims, vec![7, 3]);
    // Its size runs to the next tensor: the 40 bytes and their padding.
    assert_eq!(mystery.size, 64);
    let tail = c.tensor("tail").unwrap();
    assert_eq!(tail.ggml_type, GgmlType::Unknown(77));
    assert_eq!(
        tail.offset + tail.size,
        built.bytes.len() as u64 - c.data_offset
    );
    assert_round_trip(&built.bytes, "unknown types");
}

#[test]
fn per_layer_arrays_and_gemma3_pattern_parse_as_typed_arrays() {
    let c = Content::parse(&tiny_llama(3, 6).build().bytes).unwrap();
    assert_eq!(c.metadata.architecture().unwrap(), "llama");
    assert_eq!(c.metadata.get_u32("llama.block_count").unwrap(), 6);
    let kv = c
        .metadata
        .get_array("llama.attention.head_count_kv")
        .unwrap();
    assert_eq!(kv, &Array::I32(vec![1, 2, 1, 2, 1, 2]));
    assert_eq!(kv.select(&[0, 3, 5]), Array::I32(vec![1, 2, 2]));
    let ff = c.metadata.get_array("llama.feed_forward_length").unwrap();
    assert_eq!(ff.int_at(5), Some(56));
    assert_eq!(c.tensors.len(), 2 + (3 + support::LLAMA_REST.len()) * 6);

    let g = tiny_gemma3(12).build();
    let c = Content::parse(&g.bytes).unwrap();
    let pattern = c
        .metadata
        .get_array("gemma3.attention.sliding_window_pattern")
        .unwrap();
    let expected: Vec<bool> = (0..12).map(|i| i % 6 < 5).collect();
    assert_eq!(pattern, &Array::Bool(expected));
    assert_eq!(c.tensors[0].ggml_type, GgmlType::Q8_0);
    assert_eq!(c.tensors[0].size, 34);
    assert_round_trip(&g.bytes, "gemma3 pattern");
    assert_round_trip(&tiny_llama(2, 5).build().bytes, "llama v2");
    assert_round_trip(&tiny_llama(3, 30).build().bytes, "llama v3");
}

#[test]
fn layer_removal_through_the_writer_keeps_order_and_bytes() {
    // What a prune does at the library level: drop blocks 2 and 3 of 6, renumber the rest,
    // slice the per-layer arrays, and keep everything else where it stood.
    let dir = common::workdir();
    let input = write_file(dir.path(), "in.gguf", &tiny_gemma3(6).build().bytes);
    let src = GgufFile::open(&input).unwrap();
    let kept = [0usize, 1, 4, 5];
    let mut meta = src.content.metadata.clone();
    meta.set("gemma3.block_count", Value::U32(4));
    let key = "gemma3.attention.sliding_window_pattern";
    let pattern = meta.get_array(key).unwrap().select(&kept);
    meta.set(key, Value::Array(pattern));
    meta.set("general.pruned", Value::Bool(true));
    let tensors = kept
        .iter()
        .enumerate()
        .map(|(new, &old)| {
            let info = src
                .content
                .tensor(&format!("blk.{old}.attn_k.weight"))
                .unwrap();
            OutTensor {
                name: format!("blk.{new}.attn_k.weight"),
                dims: info.dims.clone(),
                ggml_type: info.ggml_type,
                data: src.copy_of(info),
            }
        })
        .collect();
    let out = dir.path().join("out.gguf");
    common::write_gguf(&out, 3, &meta, tensors);
    let got = GgufFile::open(&out).unwrap();
    assert_eq!(
        keys(&got.content.metadata),
        [
            "general.architecture",
            "gemma3.block_count",
            "gemma3.attention.sliding_window",
            key,
            "general.pruned"
        ]
    );
    assert_eq!(
        got.content.metadata.get_array(key).unwrap(),
        &Array::Bool(vec![true, true, true, false])
    );
    for (new, &old) in kept.iter().enumerate() {
        let a = got.data(
            got.content
                .tensor(&format!("blk.{new}.attn_k.weight"))
                .unwrap(),
        );
        let b = src.data(
            src.content
                .tensor(&format!("blk.{old}.attn_k.weight"))
                .unwrap(),
        );
        assert_eq!(a, b, "blk.{new} should hold old blk.{old}");
    }
}

#[test]
fn key_order_is_kept_when_values_change() {
    let dir = common::workdir();
    let built = tiny_llama(3, 4).build();
    let input = write_file(dir.path(), "in.gguf", &built.bytes);
    let src = GgufFile::open(&input).unwrap();
    let before = keys(&src.content.metadata);
    let mut meta = src.content.metadata.clone();
    meta.set("llama.block_count", Value::U32(3));
    meta.set(
        "llama.attention.head_count_kv",
        Value::Array(Array::I32(vec![1, 1, 1])),
    );
    meta.set("zzz.appended", Value::U8(1));
    let out = dir.path().join("out.gguf");
    common::write_gguf(&out, 3, &meta, Vec::new());
    let got = GgufFile::open(&out).unwrap();
    let mut expected = before.clone();
    expected.push("zzz.appended".into());
    assert_eq!(keys(&got.content.metadata), expected);
    assert_eq!(
        got.content.metadata.get_u32("llama.block_count").unwrap(),
        3
    );
}

#[test]
fn split_files_read_back_as_one_model() {
    for align in [32u32, 64] {
        let dir = common::workdir();
        let built = tiny_llama(3, 6).alignment(align).build();
        let input = write_file(dir.path(), "in.gguf", &built.bytes);
        let original = GgufFile::open(&input).unwrap();
        // Block tensors are 32, 256 and 160 bytes: about two blocks per shard.
        let options = WriteOptions {
            split_max_bytes: Some(1000),
            ..WriteOptions::default()
        };
        let paths = rewrite(&input, &dir.path().join("out.gguf"), &options);
        let n = paths.len();
        assert!(n >= 3, "expected several shards, got {n}");
        for (i, p) in paths.iter().enumerate() {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert_eq!(name, format!("out-{:05}-of-{n:05}.gguf", i + 1));
            let shard = GgufFile::open(p).unwrap();
            let m = &shard.content.metadata;
            assert_eq!(m.get_u64("split.no").unwrap(), i as u64);
            assert_eq!(m.get_u64("split.count").unwrap(), n as u64);
            assert_eq!(shard.content.alignment, align as u64);
            let data: u64 = shard
                .content
                .tensors
                .iter()
                .map(|t| support::align_up(t.size, align as u64))
                .sum();
            assert!(data <= 1000, "shard {i} holds {data} bytes");
            assert!(!shard.content.tensors.is_empty(), "shard {i} is empty");
        }
        let model = Model::open(&paths[0]).unwrap();
        assert_eq!(model.shards.len(), n);
        // Metadata: the original's, in order, then the split keys in llama-gguf-split's order.
        let mut expected = keys(&original.content.metadata);
        expected.extend(["split.no", "split.tensors.count", "split.count"].map(String::from));
        assert_eq!(keys(model.metadata()), expected);
        assert_eq!(
            model.metadata().get_u64("split.tensors.count").unwrap(),
            original.content.tensors.len() as u64
        );
        let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
        let original_names: Vec<&str> = original
            .content
            .tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, original_names);
        for t in &model.tensors {
            let o = original.content.tensor(&t.info.name).unwrap();
            assert_eq!(model.data(t), original.data(o), "{}", t.info.name);
            assert_eq!(t.info.dims, o.dims);
        }
        // Writing the split model back as one file drops the split keys and gives the original.
        let merged = dir.path().join("merged.gguf");
        rewrite(&paths[0], &merged, &WriteOptions::default());
        assert!(
            files_equal(&merged, &input),
            "merged shards differ from the original"
        );
    }
}

#[test]
fn a_tensor_larger_than_the_split_size_gets_a_shard_of_its_own() {
    let dir = common::workdir();
    let built = Gguf::new(3)
        .f32_tensor("small.0", &[4], 0.0)
        .f32_tensor("big", &[64], 1.0)
        .f32_tensor("small.1", &[4], 2.0)
        .build();
    let input = write_file(dir.path(), "in.gguf", &built.bytes);
    let options = WriteOptions {
        split_max_bytes: Some(100),
        ..WriteOptions::default()
    };
    let paths = rewrite(&input, &dir.path().join("o.gguf"), &options);
    let per_shard: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            GgufFile::open(p)
                .unwrap()
                .content
                .tensors
                .iter()
                .map(|t| t.name.clone())
                .collect()
        })
        .collect();
    assert_eq!(per_shard, [vec!["small.0"], vec!["big"], vec!["small.1"]]);
}

/// The real models: a rewrite with every tensor copied is byte-identical to the file
/// llama.cpp's tools wrote.
#[test]
fn real_models_round_trip_byte_identical() {
    for model in [common::smollm2(), common::gemma3()] {
        let dir = common::workdir();
        let out = dir.path().join("copy.gguf");
        rewrite(&model, &out, &WriteOptions::default());
        assert!(
            files_equal(&model, &out),
            "{} did not round-trip byte for byte",
            model.display()
        );
    }
}

/// Our split of a real model matches `llama-gguf-split --split-max-size` byte for byte, and a
/// model split by llama-gguf-split opens as one model with the original's tensor bytes.
#[test]
fn split_matches_llama_gguf_split() {
    let dir = common::workdir();
    let model = common::smollm2();
    let theirs = dir.path().join("theirs");
    common::run_ok(
        Command::new(common::llama_tool("llama-gguf-split"))
            .args(["--split", "--split-max-size", "40M"])
            .arg(&model)
            .arg(&theirs),
    );
    let ours = rewrite(
        &model,
        &dir.path().join("ours.gguf"),
        &WriteOptions {
            split_max_bytes: Some(40_000_000),
            ..WriteOptions::default()
        },
    );
    assert_eq!(ours.len(), 3, "98 MB at 40 MB per shard");
    for (i, ours) in ours.iter().enumerate() {
        let theirs = PathBuf::from(format!("{}-{:05}-of-00003.gguf", theirs.display(), i + 1));
        assert!(
            files_equal(ours, &theirs),
            "shard {} differs from llama-gguf-split's",
            i + 1
        );
    }
    let split = Model::open(format!("{}-00001-of-00003.gguf", theirs.display())).unwrap();
    let whole = Model::open(&model).unwrap();
    assert_eq!(split.tensors.len(), whole.tensors.len());
    for t in &whole.tensors {
        let s = split.tensor(&t.info.name).unwrap();
        assert_eq!(split.data(s), whole.data(t), "{}", t.info.name);
    }
}

fn files_equal(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[test]
fn f32_helper_layout_is_what_the_reader_sizes() {
    // Guards the builder itself: an F32 [5, 8] tensor is 160 bytes.
    let c = Content::parse(&Gguf::new(3).f32_tensor("x", &[5, 8], 0.0).build().bytes).unwrap();
    assert_eq!(c.tensors[0].size, 160);
    assert_eq!(c.tensors[0].ggml_type, GgmlType::from_u32(F32));
}
