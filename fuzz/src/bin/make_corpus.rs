//! Writes the seed corpus for the `parse` target: small valid GGUF files made by the tests'
//! builder (`tests/support`). Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-corpus -- fuzz/corpus/parse`.

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
    let mut total = 0;
    for (name, bytes) in &seeds {
        total += bytes.len();
        std::fs::write(format!("{dir}/{name}.gguf"), bytes).expect("write seed");
    }
    eprintln!("{} seeds, {total} bytes, in {dir}", seeds.len());
}
