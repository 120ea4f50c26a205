//! Synthetic sources whose perplexity and divergence are known in closed form.

use super::metrics::{kl_vs_base, sum_exp_shifted, PAR_CHUNK};
use super::*;

/// Calls `row(window, position)` for every requested row, in the trait's order.
struct FnSource<F: FnMut(&[u32], usize) -> Vec<f32>> {
    n_vocab: usize,
    row: F,
    calls: usize,
}

impl<F: FnMut(&[u32], usize) -> Vec<f32>> LogitsSource for FnSource<F> {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }
    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.calls += 1;
        for (w, win) in windows.iter().enumerate() {
            for p in first..win.len() {
                let r = (self.row)(win, p);
                f(w, p, &r)?;
            }
        }
        Ok(())
    }
}

fn source<F: FnMut(&[u32], usize) -> Vec<f32>>(n_vocab: usize, row: F) -> FnSource<F> {
    FnSource {
        n_vocab,
        row,
        calls: 0,
    }
}

/// Hidden "text": a deterministic token sequence over `n_vocab`.
fn text(n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + i * i * 31) % n_vocab) as u32)
        .collect()
}

/// A deterministic but irregular row depending on the window's tokens up to `p`.
fn noisy_row(win: &[u32], p: usize, n_vocab: usize) -> Vec<f32> {
    let h = win[..=p].iter().fold(17u64, |h, &t| {
        h.wrapping_mul(6364136223846793005)
            .wrapping_add(t as u64 + 1)
    });
    (0..n_vocab)
        .map(|i| {
            let x = h.wrapping_add(i as u64).wrapping_mul(0x9E3779B97F4A7C15) >> 40;
            (x as f32 / (1u64 << 24) as f32) * 6.0 - 3.0
        })
        .collect()
}

/// llama-perplexity's windows of `tokens` (the text's ids as tokenized with the model's
/// specials), through the calibration module's one window function.
fn make_windows(
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: Option<usize>,
    bos: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    let tokens = crate::calibration::Tokens {
        ids: tokens.to_vec(),
        bos,
    };
    crate::calibration::split(
        &tokens,
        n_ctx,
        crate::calibration::Layout::Perplexity { max_chunks },
    )
}

#[test]
fn windows_follow_llama_perplexity() {
    let tokens = text(100, 50);
    let w = make_windows(&tokens, 16, None, Some(1)).unwrap();
    assert_eq!(w.len(), 6); // 100 / 16
    assert_eq!(w[2][0], 1);
    assert_eq!(&w[2][1..], &tokens[33..48]);
    assert_eq!(make_windows(&tokens, 16, Some(2), None).unwrap().len(), 2);
    assert_eq!(
        make_windows(&tokens, 16, Some(99), None).unwrap()[5][0],
        tokens[80]
    );
    let err = make_windows(&tokens, 64, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("only 100 tokens") && err.contains("128"),
        "{err}"
    );
    assert!(make_windows(&tokens, 2, None, None).is_err());
    assert!(make_windows(&tokens, 16, Some(0), None).is_err());
}

#[test]
fn uniform_logits_give_ppl_n_vocab() {
    let n_vocab = 37;
    let windows = make_windows(&text(200, n_vocab), 32, None, Some(0)).unwrap();
    let mut s = source(n_vocab, |_, _| vec![0.25; n_vocab]);
    let mut seen = Vec::new();
    let r = perplexity(&mut s, &windows, 2, &mut |d| seen.push((d.chunk, d.ppl))).unwrap();
    assert!((r.ppl - n_vocab as f64).abs() < 1e-9, "{}", r.ppl);
    assert!(r.ppl_err < 1e-6);
    assert_eq!(r.chunks, 6);
    assert_eq!(r.n_tokens, 6 * (32 - 1 - 16));
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(s.calls, 3, "two windows per call");
}

#[test]
fn certain_source_gives_ppl_one() {
    let n_vocab = 50;
    let windows = make_windows(&text(300, n_vocab), 20, None, None).unwrap();
    // Knows the next token: puts all mass on it (the window is the whole context it needs).
    let mut s = source(n_vocab, |win, p| {
        let mut r = vec![-60.0; n_vocab];
        if p + 1 < win.len() {
            r[win[p + 1] as usize] = 60.0;
        }
        r
    });
    let r = perplexity(&mut s, &windows, 1, &mut |_| {}).unwrap();
    assert!((r.ppl - 1.0).abs() < 1e-12, "{}", r.ppl);
}

#[test]
fn two_level_source_matches_closed_form_and_error_formula() {
    // The right token gets logit a, every other one 0: p = e^a / (e^a + V - 1) at every position,
    // except where the next token is not 1 mod 3, where the source is uniform instead. The
    // estimate and its error then follow from two known nll values.
    let (n_vocab, a) = (40usize, 2.5f64);
    let windows = make_windows(&text(400, n_vocab), 16, None, None).unwrap();
    let mut s = source(n_vocab, |win, p| {
        let mut r = vec![0.0; n_vocab];
        let t = win[p + 1 - (p + 1 == win.len()) as usize] as usize;
        if t % 3 == 1 {
            r[t] = a as f32;
        }
        r
    });
    let r = perplexity(&mut s, &windows, 3, &mut |_| {}).unwrap();
    let nll_hit = -(a - (a.exp() + n_vocab as f64 - 1.0).ln());
    let nll_flat = (n_vocab as f64).ln();
    let nlls: Vec<f64> = windows
        .iter()
        .flat_map(|w| (8..15).map(move |p| w[p + 1]))
        .map(|t| if t % 3 == 1 { nll_hit } else { nll_flat })
        .collect();
    let n = nlls.len() as f64;
    let mean = nlls.iter().sum::<f64>() / n;
    let var = nlls.iter().map(|x| x * x).sum::<f64>() / n - mean * mean;
    assert!(
        (r.ppl - mean.exp()).abs() < 1e-5 * r.ppl,
        "{} vs {}",
        r.ppl,
        mean.exp()
    );
    let err = (var / (n - 1.0)).sqrt() * mean.exp();
    assert!(
        err > 0.01 && (r.ppl_err - err).abs() < 1e-4 * err,
        "{} vs {err}",
        r.ppl_err
    );
}

#[test]
fn kl_of_a_source_against_itself_is_zero_with_full_top1() {
    let n_vocab = 300;
    let windows = make_windows(&text(500, n_vocab), 64, None, Some(3)).unwrap();
    let mut a = source(n_vocab, |w, p| noisy_row(w, p, n_vocab));
    let mut b = source(n_vocab, |w, p| noisy_row(w, p, n_vocab));
    let ppl = perplexity(
        &mut source(n_vocab, |w, p| noisy_row(w, p, n_vocab)),
        &windows,
        1,
        &mut |_| {},
    )
    .unwrap();
    let kl = kl_divergence_vs_model(&mut a, &mut b, &windows, 2, &mut |_| {}).unwrap();
    assert_eq!(kl.top1, 1.0);
    // Only the reference's u16 quantization separates the two (steps of 6/65535 nats, so
    // per-token errors of order 1e-5 either way, as llama.cpp shows for identical models).
    assert!(kl.kl_mean.abs() < 2e-5, "{}", kl.kl_mean);
    assert!(kl.kl_max < 1e-4, "{}", kl.kl_max);
    assert!(
        (kl.ppl - ppl.ppl).abs() < 1e-4 * ppl.ppl,
        "{} vs {}",
        kl.ppl,
        ppl.ppl
    );
    assert!(
        (kl.ppl_base - ppl.ppl).abs() < 1e-3 * ppl.ppl,
        "{} vs {}",
        kl.ppl_base,
        ppl.ppl
    );
    assert_eq!(kl.n_tokens, ppl.n_tokens);
}

#[test]
fn kl_of_peaked_model_against_uniform_reference_matches_closed_form() {
    // KL(U || Q) = -ln V - mean_i ln q_i, with Q putting logit a on token 0.
    let (n_vocab, a) = (64usize, 3.0f64);
    let windows = make_windows(&text(300, n_vocab), 32, Some(4), None).unwrap();
    let mut reference = source(n_vocab, |_, _| vec![1.0; n_vocab]);
    let mut model = source(n_vocab, |_, _| {
        let mut r = vec![0.0; n_vocab];
        r[0] = a as f32;
        r
    });
    let kl = kl_divergence_vs_model(&mut model, &mut reference, &windows, 4, &mut |_| {}).unwrap();
    let z = (a.exp() + n_vocab as f64 - 1.0).ln();
    let mean_ln_q = (a - z + (n_vocab as f64 - 1.0) * -z) / n_vocab as f64;
    let want = -(n_vocab as f64).ln() - mean_ln_q;
    assert!((kl.kl_mean - want).abs() < 1e-5, "{} vs {want}", kl.kl_mean);
    assert!((kl.kl_median - want).abs() < 1e-5);
    // Reference ties everywhere: its top token is the first, as is the model's.
    assert_eq!(kl.top1, 1.0);
    assert!((kl.ppl_base - n_vocab as f64).abs() < 1e-3);
}

#[test]
fn kl_against_a_written_base_file_equals_kl_against_the_model() {
    let n_vocab = 101;
    let n_ctx = 24;
    let tokens = text(24 * 5, n_vocab);
    let windows = make_windows(&tokens, n_ctx, None, Some(7)).unwrap();
    // Write the reference's rows the way llama-perplexity --kl-divergence-base does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.logits");
    let mut w = kl_base::KlBaseWriter::new(Vec::new(), n_ctx, n_vocab, &tokens).unwrap();
    let mut row = vec![0u8; kl_base::row_bytes(n_vocab)];
    for win in &windows {
        for p in n_ctx / 2..n_ctx - 1 {
            let logits = noisy_row(win, p, n_vocab);
            kl_base::encode_row(&logits, win[p + 1] as usize, &mut row);
            w.write_row(&row).unwrap();
        }
    }
    std::fs::write(&path, w.finish()).unwrap();
    let base = KlBase::open(&path).unwrap();
    assert_eq!(
        (base.n_ctx(), base.n_vocab(), base.n_chunks()),
        (n_ctx, n_vocab, 5)
    );
    assert_eq!(base.tokens(), tokens);

    let model_row = |w: &[u32], p: usize| {
        let mut r = noisy_row(w, p, n_vocab);
        r[5] += 1.0;
        r
    };
    let via_file = kl_divergence_vs_base(
        &mut source(n_vocab, model_row),
        &base,
        Some(7),
        None,
        2,
        &mut |_| {},
    )
    .unwrap();
    let via_model = kl_divergence_vs_model(
        &mut source(n_vocab, model_row),
        &mut source(n_vocab, |w, p| noisy_row(w, p, n_vocab)),
        &windows,
        3,
        &mut |_| {},
    )
    .unwrap();
    assert!(
        via_file.kl_mean > 1e-3,
        "the model differs from the reference"
    );
    assert_eq!(via_file.kl_mean, via_model.kl_mean);
    assert_eq!(via_file.top1, via_model.top1);
    assert_eq!(via_file.ppl_base, via_model.ppl_base);

    // Without the BOS substitution the windows differ from what was written: KL must notice.
    let no_bos = kl_divergence_vs_base(
        &mut source(n_vocab, model_row),
        &base,
        None,
        None,
        1,
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(no_bos.kl_mean, via_file.kl_mean);
    let short = kl_divergence_vs_base(
        &mut source(n_vocab, model_row),
        &base,
        Some(7),
        Some(2),
        1,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((short.chunks, short.n_tokens), (2, 2 * 11));
}

#[test]
fn sources_that_break_the_contract_are_errors() {
    let n_vocab = 10;
    let windows = make_windows(&text(64, n_vocab), 16, None, None).unwrap();
    struct Skipper;
    impl LogitsSource for Skipper {
        fn n_vocab(&self) -> usize {
            10
        }
        fn logits(
            &mut self,
            windows: &[Vec<u32>],
            first: usize,
            f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
        ) -> Result<()> {
            for (w, win) in windows.iter().enumerate() {
                for p in (first..win.len()).step_by(2) {
                    f(w, p, &[0.0; 10])?;
                }
            }
            Ok(())
        }
    }
    let err = perplexity(&mut Skipper, &windows, 1, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected window 0 position 9"), "{err}");
    let mut short_rows = source(n_vocab, |_, _| vec![0.0; 9]);
    let err = perplexity(&mut short_rows, &windows, 1, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("row of 9 logits"), "{err}");
    let mut small_vocab = source(5, |_, _| vec![0.0; 5]);
    let err = perplexity(&mut small_vocab, &windows, 1, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("not below the model's n_vocab 5"), "{err}");
}

#[test]
fn long_rows_split_across_threads_give_the_sequential_results() {
    let n = 5 * PAR_CHUNK + 123;
    let mut logits: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0)
        .collect();
    // Two equal maxima in different thread chunks: the first one is the top token.
    logits[PAR_CHUNK + 5] = 9.0;
    logits[3 * PAR_CHUNK + 1] = 9.0;
    let max = 9.0f32;
    let seq: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    assert!((sum_exp_shifted(&logits, max) - seq).abs() < 1e-12 * seq);
    let nll = row_nll(&logits, 77);
    assert!((nll - (-((logits[77] - max) as f64 - seq.ln()))).abs() < 1e-12);

    let mut row = vec![0u8; kl_base::row_bytes(n)];
    kl_base::encode_row(&logits, 77, &mut row);
    let base = BaseRow::from_bytes(&row, n);
    let log_norm = max + seq.ln() as f32;
    let (kld, max_base, imax_base) = kl_vs_base(&logits, &base, log_norm);
    assert_eq!(imax_base, PAR_CHUNK + 5);
    assert_eq!(max_base, base.log_prob(PAR_CHUNK + 5));
    let mut want = 0f64;
    for (i, &l) in logits.iter().enumerate() {
        let lp = base.log_prob(i);
        if lp > -16.0 {
            want += (lp.exp() * (lp - l + log_norm)) as f64;
        }
    }
    assert!((kld - want).abs() < 1e-9, "{kld} vs {want}");
    let mut acc = KlAccumulator::default();
    acc.add(&logits, &base, 77);
    assert_eq!(acc.n_same_top, 1);
}

#[test]
fn saved_rows_form_a_base_file_that_reproduces_the_run() {
    let n_vocab = 77;
    let n_ctx = 20;
    let tokens = text(n_ctx * 4 + 9, n_vocab);
    let windows = make_windows(&tokens, n_ctx, Some(3), Some(2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.logits");
    let mut w =
        kl_base::KlBaseWriter::new(Vec::new(), n_ctx, n_vocab, &tokens[..3 * n_ctx]).unwrap();
    let mut s = source(n_vocab, |w, p| noisy_row(w, p, n_vocab));
    let saved = perplexity_saving(&mut s, &windows, 2, &mut |_| {}, &mut w, &path).unwrap();
    std::fs::write(&path, w.finish()).unwrap();
    let plain = perplexity(
        &mut source(n_vocab, |w, p| noisy_row(w, p, n_vocab)),
        &windows,
        1,
        &mut |_| {},
    )
    .unwrap();
    assert!(
        (saved.ppl - plain.ppl).abs() < 1e-5 * plain.ppl,
        "{} vs {}",
        saved.ppl,
        plain.ppl
    );

    let base = KlBase::open(&path).unwrap();
    assert_eq!(base.tokens(), tokens[..3 * n_ctx]);
    let kl = kl_divergence_vs_base(
        &mut source(n_vocab, |w, p| noisy_row(w, p, n_vocab)),
        &base,
        Some(2),
        None,
        1,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(kl.top1, 1.0);
    assert!(kl.kl_mean.abs() < 2e-5, "{}", kl.kl_mean);
    assert_eq!(kl.n_tokens, saved.n_tokens);
}
