//! The forward pass against llama.cpp: perplexity on the evaluation text (c 512, a few chunks) within
//! 1% of llama-perplexity, token ids from llama-tokenize.

pub mod common;

use gguf_prune::calibration;
use gguf_prune::eval::metrics;
use gguf_prune::forward::{LogitsSource, ModelLogits};
use gguf_prune::gguf::Model;
use std::path::Path;

const CTX: usize = 512;

/// Token ids of the start of the evaluation text, as llama-perplexity tokenizes it (BOS included when
/// the model adds one).
fn llama_tokens(model: &Path) -> Vec<u32> {
    common::llama_tokenize_prefix(model, &common::eval_text(), 60_000)
}

/// Perplexity the way llama-perplexity computes it: chunks of CTX tokens, BOS written over the
/// first token of each chunk when the model adds one, the second half of each chunk scored.
fn our_perplexity(model_path: &Path, chunks: usize) -> f64 {
    let model = Model::open(model_path).unwrap();
    // llama-tokenize's ids (BOS included when the model adds one), cut by the one window
    // function as llama-perplexity cuts them.
    let tokens = calibration::Tokens {
        ids: llama_tokens(model_path),
        bos: calibration::bos(&model).unwrap(),
    };
    let layout = calibration::Layout::Perplexity {
        max_chunks: Some(chunks),
    };
    let windows = calibration::split(&tokens, CTX, layout).unwrap();
    assert_eq!(windows.len(), chunks);
    let first = CTX / 2;
    let mut source = ModelLogits::new(&model).unwrap();
    let (mut nll, mut count) = (0.0f64, 0usize);
    source
        .logits(&windows, first, &mut |w, p, row| {
            if p + 1 < CTX {
                let target = windows[w][p + 1] as usize;
                nll += metrics::log_norm_f64(row) - row[target] as f64;
                count += 1;
            }
            Ok(())
        })
        .unwrap();
    (nll / count as f64).exp()
}

fn check(model: &Path, chunks: usize) {
    let ours = our_perplexity(model, chunks);
    let theirs = common::llama_perplexity(model, CTX as u32, chunks as u32);
    eprintln!(
        "{}: ours {ours:.4}, llama-perplexity {theirs:.4}",
        model.display()
    );
    assert!(
        (ours / theirs - 1.0).abs() < 0.01,
        "perplexity {ours} vs llama.cpp {theirs}"
    );
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check(&common::smollm2(), 3);
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check(&common::gemma3(), 3);
}

/// The output head read slice by slice (how gemma3's 640 MiB head is used) gives the same
/// logits as the head dequantized whole.
#[test]
fn sliced_output_head_matches_whole_head() {
    let model = Model::open(common::smollm2()).unwrap();
    let windows = vec![vec![1u32, 504, 3303, 282, 1462, 30, 1018, 2119]];
    let rows = |head_bytes: usize| {
        let mut source = ModelLogits::new(&model).unwrap();
        source.head_bytes = head_bytes;
        let mut rows: Vec<Vec<f32>> = Vec::new();
        source
            .logits(&windows, 0, &mut |_, _, row| {
                rows.push(row.to_vec());
                Ok(())
            })
            .unwrap();
        rows
    };
    let whole = rows(usize::MAX);
    // 1 MiB: slices of 56 vocabulary rows, the last one short (49,152 = 877 x 56 + 40).
    let sliced = rows(1 << 20);
    assert_eq!(whole.len(), 8);
    assert_eq!(whole[0].len(), 49_152);
    // Not bit for bit: the matmul blocks its sums by the output width.
    let worst = whole
        .iter()
        .flatten()
        .zip(sliced.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "sliced head differs by up to {worst}");
    let argmax = |r: &Vec<f32>| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    let whole_top: Vec<usize> = whole.iter().map(argmax).collect();
    assert_eq!(whole_top, sliced.iter().map(argmax).collect::<Vec<_>>());
}
