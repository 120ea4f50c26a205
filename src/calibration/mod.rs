//! The calibration text embedded in the binary, used when `score` is given no `--calib` file.
//!
//! Block Influence is an average over the tokens a model is shown, so the text should look like
//! what language models meet in use, not like one genre. This one (about 40 KB, roughly 10k
//! tokens with SmolLM2's tokenizer) was written for this project and mixes narrative prose,
//! expository and technical explanation, news-style reports, step-by-step instructions, source
//! code with comments in Python, Rust, JavaScript, C, Go, SQL and shell, chat-style exchanges
//! and a short play scene.

/// The default calibration text (UTF-8, original to this project).
pub const DEFAULT_TEXT: &str = include_str!("calibration.txt");

#[cfg(test)]
mod tests {
    use super::DEFAULT_TEXT;

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
