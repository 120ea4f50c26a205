//! Fuzzes the paths that read a text or data file the user names beside the model: any bytes
//! must give `Ok` or `Err`, never a panic, a hang or an allocation beyond what the file justifies.
//!
//! The first byte chooses the path, the rest is the file:
//! - 0, 1: a calibration or evaluation text (`--calib`, `--text`): read as llama.cpp's tools read
//!   `-f FILE` (UTF-8 check, trailing newline, escapes), then tokenized with a real model's
//!   vocabulary (0: SmolLM2's BPE, 1: gemma3's SentencePiece), with and without special tokens,
//!   and decoded back;
//! - 2: an importance matrix (`--imatrix`, GGUF or legacy `.dat`);
//! - 3: a logits file from `eval --save-logits` (`--ref`), with its token list and every row.
//!
//! The tokenizers come from the two real test models in the cache (`GGUF_PRUNE_CACHE`, default
//! `~/.cache/gguf-prune`, filled by `scripts/fetch-models.sh`); without them paths 0 and 1 only
//! read the text.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use gguf_prune::eval::kl_base::KlBase;
use gguf_prune::gguf::Model;
use gguf_prune::limits::read_text;
use gguf_prune::quant::imatrix::ImatrixData;
use gguf_prune::tokenizer::{prompt_from_file, Tokenizer};
use libfuzzer_sys::fuzz_target;

const MODELS: [&str; 2] = [
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma-3-270m-q4_k_m.gguf",
];

/// Each real model's tokenizer, loaded once per fuzzing process.
fn tokenizers() -> &'static [Option<Tokenizer>; 2] {
    static CELL: OnceLock<[Option<Tokenizer>; 2]> = OnceLock::new();
    CELL.get_or_init(|| {
        let cache = std::env::var_os("GGUF_PRUNE_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gguf-prune"))
            })
            .unwrap_or_default();
        MODELS.map(|name| {
            let model = Model::open(cache.join("models").join(name)).ok()?;
            Tokenizer::from_metadata(model.metadata()).ok()
        })
    })
}

fn tokenize(which: usize, text: &str) {
    let Some(tok) = &tokenizers()[which] else {
        return;
    };
    let prompt = prompt_from_file(text);
    for special in [true, false] {
        if let Ok(ids) = tok.encode(&prompt, special) {
            let _ = tok.decode(&ids);
        }
    }
}

fn logits(path: &std::path::Path) {
    let Ok(base) = KlBase::open(path) else { return };
    let _ = base.tokens();
    for chunk in 0..base.n_chunks() {
        let _ = base.chunk_tokens(chunk);
        for row in 0..base.rows_per_chunk() {
            let _ = base.row(chunk, row).log_probs().sum::<f32>();
        }
    }
}

fuzz_target!(
    // Loading gemma3's 262k-token vocabulary takes seconds under the sanitizer: done once before
    // the first input, so it does not count against the per-input timeout.
    init: {
        tokenizers();
    },
    |data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    // One file per fuzzing process, rewritten for every input (these readers open paths).
    let path = std::env::temp_dir().join(format!("gguf-prune-fuzz-text-{}", std::process::id()));
    std::fs::write(&path, body).expect("writing the fuzz input");
    match which % 4 {
        w @ (0 | 1) => {
            if let Ok(text) = read_text(&path) {
                tokenize(w as usize, &text);
            }
        }
        2 => {
            if let Ok(m) = ImatrixData::read(&path) {
                let _ = m.len();
            }
        }
        _ => logits(&path),
    }
});
