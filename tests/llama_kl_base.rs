//! The `--kl-divergence-base` reader against a real file written by llama-perplexity on SmolLM2.
//!
//! One base run (`-c 256 --chunks 2`, an excerpt of the evaluation text) and one `--kl-divergence` run of
//! the same model against it give llama.cpp's own figures; the checks:
//! - the token ids stored in the file are llama-tokenize's ids of the text;
//! - every stored row decodes to a distribution that sums to ~1;
//! - replaying the stored rows as a model through `kl_divergence_vs_base` reproduces llama.cpp's
//!   "Mean PPL(base)" (which depends only on the file and on the row/target alignment), and the
//!   comparison of the rows with themselves gives KL ~0 and 100% top-1 agreement.

pub mod common;

use std::process::Command;

use gguf_prune::eval::{self, KlBase, LogitsSource};
use gguf_prune::gguf::Model;

const N_CTX: usize = 256;
const CHUNKS: usize = 2;

/// Plays a base file's rows back as if a model had produced them (log-probabilities as logits).
struct Replay<'a> {
    base: &'a KlBase,
}

impl LogitsSource for Replay<'_> {
    fn n_vocab(&self) -> usize {
        self.base.n_vocab()
    }
    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> gguf_prune::Result<()>,
    ) -> gguf_prune::Result<()> {
        let mut row = vec![0f32; self.base.n_vocab()];
        for (w, win) in windows.iter().enumerate() {
            for p in first..win.len() {
                if p + 1 < win.len() {
                    for (dst, lp) in row.iter_mut().zip(self.base.row(w, p - first).log_probs()) {
                        *dst = lp;
                    }
                } else {
                    row.fill(0.0);
                }
                f(w, p, &row)?;
            }
        }
        Ok(())
    }
}

/// The first number after `label` on the line that contains it.
fn figure(output: &str, label: &str) -> f64 {
    let line = output
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{output}"));
    let rest = &line[line.find(label).unwrap() + label.len()..];
    rest.split(|c: char| c.is_whitespace() || c == ':')
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn reads_llama_perplexity_kl_base_file() {
    let model = common::smollm2();
    let dir = common::workdir();
    let text_path = common::eval_excerpt(dir.path(), 8000);
    let base_path = dir.path().join("base.logits");
    let ctx = N_CTX.to_string();
    let common_args = ["-c", &ctx, "-b", &ctx, "-t", "2"];

    let base_run = common::llama_log(
        Command::new(common::llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(&model)
            .arg("-f")
            .arg(&text_path)
            .args(common_args)
            .args(["--chunks", &CHUNKS.to_string(), "--kl-divergence-base"])
            .arg(&base_path),
    );
    let llama_ppl = figure(&base_run, "Final estimate: PPL =");

    let base = KlBase::open(&base_path).unwrap();
    assert_eq!((base.n_ctx(), base.n_chunks()), (N_CTX, CHUNKS));
    assert_eq!(base.n_vocab(), 49152, "SmolLM2's vocabulary");
    assert_eq!(base.rows_per_chunk(), N_CTX - 1 - N_CTX / 2);

    // Token ids: llama-perplexity tokenizes with add_special and without parsing special tokens.
    let ids = common::run_ok(
        Command::new(common::llama_tool("llama-tokenize"))
            .arg("-m")
            .arg(&model)
            .arg("-f")
            .arg(&text_path)
            .args(["--ids", "--no-parse-special", "--log-disable"]),
    );
    let ids: Vec<u32> = ids
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert!(ids.len() >= N_CTX * CHUNKS);
    assert_eq!(base.tokens(), ids[..N_CTX * CHUNKS]);

    // Each row is a distribution: the rows' floor entries (q = 0, clamped 16 nats below the top)
    // add at most n_vocab * e^-16 = 0.0055 beyond 1.
    for chunk in 0..CHUNKS {
        for r in 0..base.rows_per_chunk() {
            let row = base.row(chunk, r);
            let (mut total, mut above_floor) = (0f64, 0f64);
            for i in 0..row.n_vocab() {
                let p = (row.log_prob(i) as f64).exp();
                total += p;
                if row.q(i) > 0 {
                    above_floor += p;
                }
            }
            assert!(
                (0.999..1.006).contains(&total),
                "chunk {chunk} row {r}: probabilities sum to {total}"
            );
            assert!(above_floor < 1.0005, "chunk {chunk} row {r}: {above_floor}");
            assert!(
                row.min_log_prob < -16.0 && row.scale > 0.0,
                "chunk {chunk} row {r}: {row:?}"
            );
        }
    }

    // llama.cpp's own comparison of the model with its base file.
    let kl_run = common::llama_log(
        Command::new(common::llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(&model)
            .args(common_args)
            .arg("--kl-divergence-base")
            .arg(&base_path)
            .arg("--kl-divergence"),
    );
    let llama_ppl_base = figure(&kl_run, "Mean PPL(base)");
    let llama_top = figure(&kl_run, "Same top p:");

    let bos = gguf_prune::calibration::bos(&Model::open(&model).unwrap()).unwrap();
    let mut replay = Replay { base: &base };
    let mut seen = 0;
    let kl = eval::kl_divergence_vs_base(&mut replay, &base, bos, None, CHUNKS, &mut |_| seen += 1)
        .unwrap();
    assert_eq!(seen, CHUNKS);
    assert_eq!(kl.n_tokens, CHUNKS * base.rows_per_chunk());
    assert!(
        (kl.ppl_base - llama_ppl_base).abs() < 1e-5 * llama_ppl_base,
        "PPL(base) from the file: ours {} vs llama.cpp {llama_ppl_base}",
        kl.ppl_base
    );
    // The replayed rows are the file's rows renormalized (their sum S is up to 1.0055 because of
    // the floor entries), so KL = sum p ln S lies between 0 and ln 1.0055.
    assert!(
        (-1e-5..0.0055).contains(&kl.kl_mean),
        "KL of the rows with themselves: {}",
        kl.kl_mean
    );
    assert_eq!(kl.top1, 1.0);
    assert!(
        llama_top > 99.0,
        "llama.cpp's same-model top-1 agreement {llama_top}"
    );
    // Perplexity of the replayed rows is llama.cpp's perplexity of the model, up to the u16
    // quantization of the stored rows (PPL(base) sits below PPL by about 0.5% here).
    // The file's tokens are llama-perplexity's, BOS included: cut as it cuts them.
    let tokens = gguf_prune::calibration::Tokens {
        ids: base.tokens(),
        bos,
    };
    let layout = gguf_prune::calibration::Layout::Perplexity { max_chunks: None };
    let windows = gguf_prune::calibration::split(&tokens, N_CTX, layout).unwrap();
    let ppl = eval::perplexity(&mut Replay { base: &base }, &windows, CHUNKS, &mut |_| {}).unwrap();
    assert!(
        (ppl.ppl - llama_ppl).abs() < 0.02 * llama_ppl,
        "replayed PPL {} vs llama.cpp {llama_ppl}",
        ppl.ppl
    );
    assert_eq!(ppl.per_chunk.len(), CHUNKS);

    // Our writer, read by llama.cpp: save the replayed rows as a base file and let
    // llama-perplexity compare the model with them. It must take our header (its PPL(Q) is then
    // the model's perplexity on these very tokens) and find the same distributions.
    let ours_path = dir.path().join("ours.logits");
    let mut writer =
        eval::kl_base::KlBaseWriter::new(Vec::new(), N_CTX, base.n_vocab(), &base.tokens())
            .unwrap();
    eval::perplexity_saving(
        &mut Replay { base: &base },
        &windows,
        CHUNKS,
        &mut |_| {},
        &mut writer,
        &ours_path,
    )
    .unwrap();
    std::fs::write(&ours_path, writer.finish()).unwrap();
    let vs_ours = common::llama_log(
        Command::new(common::llama_tool("llama-perplexity"))
            .arg("-m")
            .arg(&model)
            .args(common_args)
            .arg("--kl-divergence-base")
            .arg(&ours_path)
            .arg("--kl-divergence"),
    );
    let ppl_q = figure(&vs_ours, "Mean PPL(Q)");
    assert!(
        (ppl_q - llama_ppl).abs() < 1e-4 * llama_ppl,
        "llama.cpp's PPL on our file {ppl_q} vs {llama_ppl}"
    );
    let kld = figure(&vs_ours, "Mean    KLD:");
    // The rewritten rows are llama.cpp's rows renormalized by their sum S (1 to 1.0055, see
    // above), so against the model's exact distribution KL ~ -ln S, within +-0.0055.
    assert!(
        (-0.0055..0.0055).contains(&kld),
        "llama.cpp's KLD against our rewritten rows: {kld}"
    );
    assert!(figure(&vs_ours, "Same top p:") > 99.0);
}

#[test]
fn cli_rejects_a_file_that_is_not_a_logits_file() {
    let dir = common::workdir();
    let bogus = dir.path().join("bogus.logits");
    std::fs::write(&bogus, b"not a logits file at all").unwrap();
    let out = common::gguf_prune()
        .arg("eval")
        .arg(common::smollm2())
        .arg("--kl-base")
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bogus.logits") && err.contains("_logits_"),
        "{err}"
    );
}
