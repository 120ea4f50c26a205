//! Writes the seed corpora: for the `parse` target, small valid GGUF files made by the tests'
//! builder (`tests/support`); for the `forward` target, tiny models the forward pass runs
//! (`TinyModel`, with counting values).
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-corpus -- fuzz/corpus/parse fuzz/corpus/forward fuzz/corpus/text`.

#[path = "../../../tests/support/mod.rs"]
pub mod support;

use gguf_prune::gguf::{Array, Value};
use support::{counting, every_value_type, tiny_gemma3, tiny_llama, Gguf, TinyModel};
use support::{F16, Q4_0, Q8_0, UNKNOWN_TYPE};

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
    for (arch, blocks) in [("llama", 1), ("llama", 2), ("qwen3", 1), ("gemma3", 1), ("phi3", 1)] {
        seeds.push((format!("{arch}-{blocks}"), tiny_forward(arch, blocks).build().bytes));
    }
    seeds
}

fn tiny_forward(arch: &'static str, blocks: usize) -> Gguf {
    let model = TinyModel {
        arch,
        blocks,
        width: 8,
        ff: 16,
        heads: 2,
        kv_heads: 1,
        vocab: 4,
        rms_eps: 1e-6,
        context: Some(64),
    };
    let g = model.gguf(|w| {
        let s = 0.1 * (w.block.unwrap_or(0) + 1) as f32;
        let start = match w.role {
            "token_embd" => 0.5,
            "attn_q" => s,
            "attn_k" => s + 0.01,
            "attn_v" => s + 0.02,
            "attn_output" => s + 0.03,
            "ffn_down" => s + 0.04,
            "ffn_up" => s + 0.05,
            "ffn_gate" => s + 0.06,
            _ => 1.0, // the norms
        };
        counting(start, w.len)
    });
    if arch == "gemma3" {
        return g.kv("gemma3.attention.sliding_window", Value::U32(2));
    }
    g
}
