//! Block Influence on a synthetic model whose answer is known, and on the real models.

pub mod common;
pub mod support;

use support::TinyModel;

use gguf_prune::forward::{Forward, LogitsSource, ModelLogits};
use gguf_prune::gguf::Model;
use gguf_prune::score::{score_layers, ScoreOptions};
use std::path::Path;

const VOCAB: usize = 40;
const LAYERS: usize = 4;

/// A tiny llama model (4 heads, 2 KV heads) whose block `silent` has zero attention-output and
/// FFN-down weights, so it adds nothing to the residual stream.
fn tiny_llama(path: &Path, silent: usize) {
    let model = TinyModel::llama(LAYERS).gguf(|w| match w.role {
        "attn_norm" | "ffn_norm" | "output_norm" => vec![1.0; w.len],
        "attn_output" | "ffn_down" if w.block == Some(silent) => vec![0.0; w.len],
        "token_embd" => w.noise(1.0),
        _ => w.noise(0.3),
    });
    std::fs::write(path, model.build().bytes).unwrap();
}

fn windows() -> Vec<Vec<u32>> {
    (0..3)
        .map(|w| (0..24).map(|i| ((i * 7 + w * 3) % VOCAB) as u32).collect())
        .collect()
}

#[test]
fn silent_block_has_zero_influence() {
    let dir = common::workdir();
    let path = dir.path().join("tiny.gguf");
    tiny_llama(&path, 2);
    let model = Model::open(&path).unwrap();
    let fw = Forward::new(&model).unwrap();
    let two = ScoreOptions {
        max_run: 2,
        ..Default::default()
    };
    let s = score_layers(&fw, &windows(), two, &mut |_| {}).unwrap();
    assert_eq!(s.n_tokens, 72);
    assert!(s.bi[2].abs() < 1e-6, "silent block BI {}", s.bi[2]);
    assert!(
        s.angular[0][2] < 1e-3,
        "silent block angular {}",
        s.angular[0][2]
    );
    for il in [0, 1, 3] {
        assert!(s.bi[il] > 1e-3, "block {il} BI {}", s.bi[il]);
    }
    // A run of two blocks across the silent one measures the other block alone.
    assert!((s.angular[1][1] - s.angular[0][1]).abs() < 1e-3);

    // Skipping the silent block changes nothing downstream.
    let skip2 = ScoreOptions {
        skip: &[2],
        ..Default::default()
    };
    let skipped = score_layers(&fw, &windows(), skip2, &mut |_| {}).unwrap();
    assert!(skipped.bi[2].is_nan());
    for il in [0, 1, 3] {
        assert!(
            (skipped.bi[il] - s.bi[il]).abs() < 1e-9,
            "block {il}: {} vs {}",
            skipped.bi[il],
            s.bi[il]
        );
    }
    let logits = |skip: Vec<usize>| {
        let mut src = ModelLogits::new(&model).unwrap().with_skip(skip);
        assert_eq!(src.n_vocab(), VOCAB);
        let mut all = Vec::new();
        src.logits(&windows(), 20, &mut |w, p, row| {
            assert!(p >= 20);
            all.push((w, p, row.to_vec()));
            Ok(())
        })
        .unwrap();
        all
    };
    let (full, without) = (logits(vec![]), logits(vec![2]));
    // One window per layer-major batch gives the same rows.
    let mut small = ModelLogits::new(&model).unwrap();
    small.batch_bytes = 1;
    let mut rows = Vec::new();
    small
        .logits(&windows(), 20, &mut |w, p, row| {
            rows.push((w, p, row.to_vec()));
            Ok(())
        })
        .unwrap();
    assert_eq!(rows.len(), full.len());
    for (a, b) in full.iter().zip(&rows) {
        assert_eq!((a.0, a.1), (b.0, b.1));
        assert!(a.2.iter().zip(&b.2).all(|(x, y)| (x - y).abs() < 1e-5));
    }
    assert_eq!(full.len(), 3 * 4);
    for (a, b) in full.iter().zip(&without) {
        assert_eq!((a.0, a.1), (b.0, b.1));
        assert!(a.2.iter().zip(&b.2).all(|(x, y)| (x - y).abs() < 1e-4));
    }
    // ...while skipping a working block does change the logits.
    let other = logits(vec![1]);
    assert!(full.iter().zip(&other).any(|(a, b)| a
        .2
        .iter()
        .zip(&b.2)
        .any(|(x, y)| (x - y).abs() > 1e-3)));
}

/// Token ids of the start of the calibration text from llama-tokenize, in windows of `ctx`.
fn real_windows(model: &Path, n: usize, ctx: usize) -> Vec<Vec<u32>> {
    let ids = common::llama_tokenize_prefix(model, &common::calibration_text(), 20_000);
    ids.chunks(ctx).take(n).map(<[u32]>::to_vec).collect()
}

fn check_real(path: &Path) -> Vec<f64> {
    let model = Model::open(path).unwrap();
    let fw = Forward::new(&model).unwrap();
    let w = real_windows(path, 2, 256);
    let a = score_layers(&fw, &w, ScoreOptions::default(), &mut |_| {}).unwrap();
    let b = score_layers(&fw, &w, ScoreOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(a.bi, b.bi, "scores are deterministic");
    assert!(a.bi.iter().all(|&v| v > 0.0 && v < 1.5), "{:?}", a.bi);
    let lowest = a.bi.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = a.bi.iter().copied().fold(0.0, f64::max);
    assert!(
        lowest < 0.1 && highest > 0.2,
        "some blocks matter, some barely: {:?}",
        a.bi
    );
    a.bi
}

#[test]
fn smollm2_scores_are_sane() {
    let bi = check_real(&common::smollm2());
    // Block 0 turns embeddings into a working stream (measured 0.99); middle blocks barely move it.
    assert!(bi[0] > 0.5, "{bi:?}");
    assert!(bi[10..20].iter().all(|&v| v < 0.1), "{bi:?}");
}

#[test]
fn gemma3_scores_are_sane() {
    let bi = check_real(&common::gemma3());
    assert_eq!(bi.len(), 18);
}
