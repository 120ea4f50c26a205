//! Calibration and evaluation text as token windows, one path for every job that runs a model
//! over text: scoring, healing and importance matrices ([`Layout::Calibration`]) and perplexity
//! and KL evaluation ([`Layout::Perplexity`]). The text is read by [`text`], tokenized by
//! [`tokenize`] with the tokenizer's one BOS rule ([`crate::tokenizer::Tokenizer::bos_to_add`]),
//! and cut by [`split`].
//!
//! The built-in text ([`DEFAULT_TEXT`]) is used when no calibration file is given. Block
//! Influence is an average over the tokens a model is shown, so the text should look like what
//! language models meet in use, not like one genre. This one (about 40 KB, roughly 10k tokens
//! with SmolLM2's tokenizer) was written for this project and mixes narrative prose, expository
//! and technical explanation, news-style reports, step-by-step instructions, source code with
//! comments in Python, Rust, JavaScript, C, Go, SQL and shell, chat-style exchanges and a short
//! play scene.

use crate::error::{Error, Result};
use crate::gguf::Model;
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// The default calibration text (UTF-8, original to this project).
pub const DEFAULT_TEXT: &str = include_str!("calibration.txt");

/// The calibration text: a file's contents (a regular file of bounded size, see
/// [`crate::limits`]), or the built-in default.
pub fn text(path: Option<&Path>) -> Result<String> {
    match path {
        Some(p) => crate::limits::read_text(p),
        None => Ok(DEFAULT_TEXT.to_string()),
    }
}

/// How a text's tokens are cut into windows. The two layouts differ on purpose: evaluation
/// must cut exactly as llama-perplexity does so that its figures can be put beside llama.cpp's,
/// while calibration uses every token of the text and stops at a token budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Scoring, healing and importance matrices: non-overlapping windows of BOS (when the model
    /// adds one) then `ctx - 1` text tokens (`ctx` without BOS), at most `max_tokens` tokens in
    /// all, the last window cut short if need be; a short tail is kept only if it is at least
    /// half a window.
    Calibration { max_tokens: usize },
    /// llama-perplexity's chunks (`tools/perplexity/perplexity.cpp`): the text tokenized with
    /// BOS (and EOS) as the model adds them, cut into `min(max_chunks, n_tokens / ctx)` whole
    /// windows of `ctx` tokens, at least `2 ctx` tokens required, position 0 of every window
    /// replaced by BOS when the model adds one.
    Perplexity { max_chunks: Option<usize> },
}

/// A text's tokens as a layout wants them, with the BOS its windows start with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The text's ids. In the perplexity layout with the specials the model adds (BOS first, EOS
    /// last), as llama.cpp's `common_tokenize(ctx, text, add_special = true)` gives them; in the
    /// calibration layout without them (each window gets its own BOS).
    pub ids: Vec<u32>,
    /// The BOS the model adds ([`Tokenizer::bos_to_add`]).
    pub bos: Option<u32>,
}

/// No tokenizer spends more than this many bytes of text per token, so a calibration text need
/// be tokenized only up to `max_tokens` times this (wiki.valid.raw is 1.1 MB).
const MAX_BYTES_PER_TOKEN: usize = 16;

/// Tokenizes `text` for `layout` (parse_special off, as llama-perplexity and llama-imatrix
/// tokenize); a calibration layout tokenizes only the start that its token budget can use.
pub fn tokenize(model: &Model, text: &str, layout: Layout) -> Result<Tokens> {
    let tok = Tokenizer::from_metadata(model.metadata())?;
    let text = match layout {
        Layout::Calibration { max_tokens } => {
            let mut end = text
                .len()
                .min(max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN));
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        }
        Layout::Perplexity { .. } => text,
    };
    let add_special = matches!(layout, Layout::Perplexity { .. });
    Ok(Tokens {
        ids: tok.encode(text, add_special)?,
        bos: tok.bos_to_add()?,
    })
}

/// The BOS the model adds, for windows that come from elsewhere than a text (a llama.cpp
/// logits file stores its chunks' tokens).
pub fn bos(model: &Model) -> Result<Option<u32>> {
    Tokenizer::from_metadata(model.metadata())?.bos_to_add()
}

/// Cuts `tokens` into windows of `ctx` tokens as `layout` says: the one window function of
/// scoring, healing, importance matrices and evaluation.
pub fn split(tokens: &Tokens, ctx: usize, layout: Layout) -> Result<Vec<Vec<u32>>> {
    match layout {
        Layout::Calibration { max_tokens } => calibration_layout(tokens, ctx, max_tokens),
        Layout::Perplexity { max_chunks } => perplexity_layout(tokens, ctx, max_chunks),
    }
}

/// The calibration text (`path`, or the built-in text) in calibration windows of `ctx` tokens,
/// at most `max_tokens` in all: what scoring, healing and importance matrices run on.
pub fn calibration_windows(
    model: &Model,
    path: Option<&Path>,
    ctx: usize,
    max_tokens: usize,
) -> Result<Vec<Vec<u32>>> {
    let layout = Layout::Calibration { max_tokens };
    split(&tokenize(model, &text(path)?, layout)?, ctx, layout)
}

fn calibration_layout(tokens: &Tokens, ctx: usize, max_tokens: usize) -> Result<Vec<Vec<u32>>> {
    if ctx < 2 {
        return Err(Error::Calibration(format!(
            "windows of {ctx} tokens: a window needs at least 2"
        )));
    }
    let (ids, bos) = (&tokens.ids, tokens.bos);
    let body = ctx - usize::from(bos.is_some());
    let mut windows = Vec::new();
    let mut total = 0;
    for chunk in ids.chunks(body) {
        // A short tail window would weigh its few tokens like the others: keep it only if it is
        // at least half a window.
        if chunk.len() < body / 2 && !windows.is_empty() {
            break;
        }
        let mut w: Vec<u32> = bos.into_iter().collect();
        w.extend_from_slice(chunk);
        // `max_tokens` is a true cap: the last window is cut short to meet it (a multiple of
        // `ctx` gives whole windows only), unless that leaves it less than 2 tokens.
        w.truncate(max_tokens - total);
        if w.len() < 2 {
            break;
        }
        total += w.len();
        windows.push(w);
        if total == max_tokens {
            break;
        }
    }
    if windows.is_empty() || total < 2 {
        return Err(Error::Calibration(format!(
            "the calibration text gives only {} tokens",
            ids.len()
        )));
    }
    Ok(windows)
}

fn perplexity_layout(
    tokens: &Tokens,
    n_ctx: usize,
    max_chunks: Option<usize>,
) -> Result<Vec<Vec<u32>>> {
    if crate::eval::kl_base::rows_per_window(n_ctx) == 0 {
        return Err(Error::ContextSize {
            n_ctx,
            why:
                "the second half of each window must hold at least one scored token (use 4 or more)"
                    .into(),
        });
    }
    let stream = &tokens.ids;
    if stream.len() < n_ctx.saturating_mul(2) {
        return Err(Error::TooFewTokens {
            have: stream.len(),
            need: n_ctx.saturating_mul(2),
            n_ctx,
        });
    }
    if max_chunks == Some(0) {
        return Err(Error::NoChunks);
    }
    let fit = stream.len() / n_ctx;
    let n_chunk = max_chunks.map_or(fit, |c| c.min(fit));
    Ok(stream
        .chunks_exact(n_ctx)
        .take(n_chunk)
        .map(|w| {
            let mut w = w.to_vec();
            if let Some(bos) = tokens.bos {
                w[0] = bos;
            }
            w
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{split, Layout, Tokens, DEFAULT_TEXT};

    fn calibration(
        ids: std::ops::Range<u32>,
        bos: Option<u32>,
        ctx: usize,
        max: usize,
    ) -> Vec<Vec<u32>> {
        let tokens = Tokens {
            ids: ids.collect(),
            bos,
        };
        split(&tokens, ctx, Layout::Calibration { max_tokens: max }).unwrap()
    }

    #[test]
    fn calibration_windows_get_bos_a_budget_and_no_short_tail() {
        // BOS then ctx - 1 text tokens; the tail of 3 tokens is under half a window: dropped.
        let w = calibration(100..119, Some(1), 9, 1000);
        assert_eq!(
            w,
            [
                [1, 100, 101, 102, 103, 104, 105, 106, 107],
                [1, 108, 109, 110, 111, 112, 113, 114, 115],
            ]
        );
        // A tail of at least half a window is kept; without BOS windows hold ctx text tokens.
        let w = calibration(0..13, None, 8, 1000);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), [8, 5]);
        // The budget cuts the last window short.
        let w = calibration(0..100, Some(1), 8, 20);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), [8, 8, 4]);
        let tokens = Tokens {
            ids: vec![5],
            bos: None,
        };
        assert!(split(&tokens, 8, Layout::Calibration { max_tokens: 64 }).is_err());
        assert!(split(&tokens, 1, Layout::Calibration { max_tokens: 64 }).is_err());
    }

    #[test]
    fn default_text_is_large_and_varied() {
        assert!(
            DEFAULT_TEXT.len() > 35_000,
            "calibration text is {} bytes",
            DEFAULT_TEXT.len()
        );
        // One marker per genre, so an accidental truncation or a wrong include shows up here.
        for marker in [
            "Lighthouse",
            "```rust",
            "```python",
            "def ",
            "Assistant:",
            "DANNY:",
            "HARBOURTON",
        ] {
            assert!(
                DEFAULT_TEXT.contains(marker),
                "calibration text lacks {marker:?}"
            );
        }
    }
}
