//! Writes the seed corpora: for the `parse` target, small valid GGUF files made by the tests'
//! builder (`tests/support`); for the `forward` target, tiny models the forward pass runs.
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-corpus -- fuzz/corpus/parse fuzz/corpus/forward fuzz/corpus/text`.

#[path = "../../../tests/support/mod.rs"]
mod support;

use gguf_prune::gguf::{Array, Value};
use support::{every_value_type, tiny_gemma3, tiny_llama, Gguf, F16, Q4_0, Q8_0, UNKNOWN_TYPE};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/parse".to_string());
    std::fs::create_dir_all(&dir).expect("corpus folder");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for version in [2, 3] {
        let mut g = Gguf::new(version);
        for (k, v) in every_value_type() {
            g = g.kv(k, v);
        }
        seeds.push((
            format!("every-value-type-v{version}"),
            g.f32_tensor("w", &[2, 2], 1.0).build().bytes,
        ));
        seeds.push((
            format!("llama-v{version}"),
            tiny_llama(version, 2).build().bytes,
        ));
    }
    seeds.push(("gemma3".into(), tiny_gemma3(6).build().bytes));
    seeds.push(("empty".into(), Gguf::new(3).build().bytes));
    seeds.push((
        "metadata-only".into(),
        Gguf::new(3)
            .kv("general.architecture", Value::String(b"llama".to_vec()))
            .build()
            .bytes,
    ));
    for align in [1u32, 8, 64] {
        seeds.push((
            format!("align-{align}"),
            Gguf::new(3)
                .alignment(align)
                .f32_tensor("a", &[1], 1.0)
                .tensor("b", &[3], F16, vec![1, 2, 3, 4, 5, 6])
                .tensor("c", &[32], Q4_0, (0..18).collect())
                .build()
                .bytes,
        ));
    }
    seeds.push((
        "unknown-type".into(),
        Gguf::new(3)
            .f32_tensor("a", &[2], 1.0)
            .tensor("u", &[7], UNKNOWN_TYPE, vec![7; 20])
            .tensor("q", &[32], Q8_0, vec![3; 34])
            .build()
            .bytes,
    ));
    seeds.push((
        "nested-arrays".into(),
        Gguf::new(3)
            .kv(
                "deep",
                Value::Array(Array::Array(vec![Array::Array(vec![Array::Array(vec![
                    Array::Bool(vec![true, false]),
                    Array::String(vec![b"x".to_vec(), vec![0xff]]),
                ])])])),
            )
            .build()
            .bytes,
    ));
    write_seeds(&dir, &seeds);
    if let Some(dir) = std::env::args().nth(2) {
        write_seeds(&dir, &forward_seeds());
    }
    if let Some(dir) = std::env::args().nth(3) {
        write_seeds(&dir, &text_seeds());
    }
}

/// Seeds for the `text` target: the first byte picks the reader (0, 1: a text tokenized by
/// SmolLM2's or gemma3's vocabulary; 2: an importance matrix; 3: a logits file).
fn text_seeds() -> Vec<(String, Vec<u8>)> {
    let text = "= Alpha =\n The river\\'s mouth , 1 @,@ 200 km \\x41\\n <s> \u{e9}t\u{e9} \u{4e2d}\u{6587} \u{1f600}\n";
    let with = |which: u8, body: &[u8]| [&[which][..], body].concat();
    let mut seeds = vec![
        ("bpe-text".to_string(), with(0, text.as_bytes())),
        ("spm-text".to_string(), with(1, text.as_bytes())),
        ("imatrix-dat".to_string(), with(2, &legacy_imatrix())),
        ("logits".to_string(), with(3, &logits_file())),
    ];
    seeds.push(("imatrix-gguf".to_string(), with(2, &imatrix_gguf())));
    seeds
}

/// A legacy `.dat` importance matrix with one entry of 4 values from 2 calls.
fn legacy_imatrix() -> Vec<u8> {
    let mut b = Vec::new();
    let name = b"blk.0.ffn_down.weight";
    b.extend(1i32.to_le_bytes());
    b.extend((name.len() as i32).to_le_bytes());
    b.extend(name);
    b.extend(2i32.to_le_bytes());
    b.extend(4i32.to_le_bytes());
    for v in [0.5f32, 1.0, 1.5, 2.0] {
        b.extend(v.to_le_bytes());
    }
    b.extend(2i32.to_le_bytes());
    b.extend(4i32.to_le_bytes());
    b.extend(b"text");
    b
}

/// A GGUF importance matrix as llama-imatrix writes it: sums and counts per weight.
fn imatrix_gguf() -> Vec<u8> {
    Gguf::new(3)
        .kv("general.type", Value::String(b"imatrix".to_vec()))
        .kv("imatrix.chunk_count", Value::U32(2))
        .kv("imatrix.chunk_size", Value::U32(512))
        .kv(
            "imatrix.datasets",
            Value::Array(Array::String(vec![b"text".to_vec()])),
        )
        .f32_tensor("blk.0.ffn_down.weight.in_sum2", &[4, 1], 1.5)
        .f32_tensor("blk.0.ffn_down.weight.counts", &[1, 1], 2.0)
        .build()
        .bytes
}

/// A logits file of one chunk of 4 tokens over a vocabulary of 3 (one scored row).
fn logits_file() -> Vec<u8> {
    let (n_ctx, n_vocab, n_chunk) = (4i32, 3usize, 1i32);
    let mut b = b"_logits_".to_vec();
    b.extend(n_ctx.to_le_bytes());
    b.extend((n_vocab as i32).to_le_bytes());
    b.extend(n_chunk.to_le_bytes());
    for t in [1i32, 2, 0, 1] {
        b.extend(t.to_le_bytes());
    }
    let mut row = vec![0u8; gguf_prune::eval::kl_base::row_bytes(n_vocab)];
    gguf_prune::eval::kl_base::encode_row(&[0.5, 1.0, -2.0], 1, &mut row);
    b.extend(row);
    b
}

fn write_seeds(dir: &str, seeds: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).expect("corpus folder");
    let mut total = 0;
    for (name, bytes) in seeds {
        total += bytes.len();
        std::fs::write(format!("{dir}/{name}.gguf"), bytes).expect("write seed");
    }
    eprintln!("{} seeds, {total} bytes, in {dir}", seeds.len());
}

/// Models the forward pass runs, as small as the architectures allow (width 8, two heads of 4,
/// a 4-token vocabulary): every key and tensor `Forward::new` validates is there to mutate.
fn forward_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (arch, blocks) in [
        ("llama", 1),
        ("llama", 2),
        ("qwen3", 1),
        ("gemma3", 1),
        ("phi3", 1),
    ] {
        seeds.push((
            format!("{arch}-{blocks}"),
            tiny_forward(arch, blocks).build().bytes,
        ));
    }
    seeds
}

fn tiny_forward(arch: &str, blocks: u32) -> Gguf {
    let (d, ff, kv, hd) = (8u64, 16u64, 1u64, 4u64);
    let k = |s: &str| format!("{arch}.{s}");
    let mut g = Gguf::new(3)
        .kv(
            "general.architecture",
            Value::String(arch.as_bytes().to_vec()),
        )
        .kv(&k("block_count"), Value::U32(blocks))
        .kv(&k("embedding_length"), Value::U32(d as u32))
        .kv(&k("feed_forward_length"), Value::U32(ff as u32))
        .kv(&k("attention.head_count"), Value::U32(2))
        .kv(&k("attention.head_count_kv"), Value::U32(kv as u32))
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6))
        .kv(&k("rope.freq_base"), Value::F32(10000.0))
        .kv(&k("context_length"), Value::U32(64))
        .f32_tensor("token_embd.weight", &[d, 4], 0.5);
    if arch == "gemma3" {
        g = g.kv(&k("attention.sliding_window"), Value::U32(2));
    }
    for i in 0..blocks {
        let s = 0.1 * (i + 1) as f32;
        let w = |n: &str| format!("blk.{i}.{n}.weight");
        g = g
            .f32_tensor(&w("attn_norm"), &[d], 1.0)
            .f32_tensor(&w("attn_q"), &[d, 2 * hd], s)
            .f32_tensor(&w("attn_k"), &[d, kv * hd], s + 0.01)
            .f32_tensor(&w("attn_v"), &[d, kv * hd], s + 0.02)
            .f32_tensor(&w("attn_output"), &[2 * hd, d], s + 0.03)
            .f32_tensor(&w("ffn_norm"), &[d], 1.0)
            .f32_tensor(&w("ffn_down"), &[ff, d], s + 0.04);
        g = if arch == "phi3" {
            g.f32_tensor(&w("ffn_up"), &[d, 2 * ff], s + 0.05)
        } else {
            g.f32_tensor(&w("ffn_up"), &[d, ff], s + 0.05).f32_tensor(
                &w("ffn_gate"),
                &[d, ff],
                s + 0.06,
            )
        };
        if arch == "qwen3" {
            g = g.f32_tensor(&w("attn_q_norm"), &[hd], 1.0).f32_tensor(
                &w("attn_k_norm"),
                &[hd],
                1.0,
            );
        }
        if arch == "gemma3" {
            g = g
                .f32_tensor(&w("attn_q_norm"), &[hd], 1.0)
                .f32_tensor(&w("attn_k_norm"), &[hd], 1.0)
                .f32_tensor(&w("post_attention_norm"), &[d], 1.0)
                .f32_tensor(&w("post_ffw_norm"), &[d], 1.0);
        }
    }
    g.f32_tensor("output_norm.weight", &[d], 1.0)
}
