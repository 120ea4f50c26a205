//! Writes the seed corpora: for the `parse` target, small valid GGUF files made by the tests'
//! builder (`tests/support`); for the `forward` target, tiny models the forward pass runs
//! (`TinyModel`, with counting values).
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-corpus -- fuzz/corpus/parse fuzz/corpus/forward`.

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
