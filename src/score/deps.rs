//! The three calls scoring makes into modules other parts of the project own: the tokenizer
//! (`crate::tokenizer`), the default calibration text (`crate::calibration`) and the
//! architecture's removal rules (`crate::arch::check_removal`).
//!

use crate::error::Result;
use crate::gguf::{Metadata, Model};

/// Token ids of `text` without BOS/EOS.
pub fn tokenize(model: &Model, text: &str) -> Result<Vec<u32>> {
    crate::tokenizer::Tokenizer::from_metadata(model.metadata())?.encode(text, false)
}

/// The built-in calibration text.
pub fn default_text() -> Result<String> {
    Ok(crate::calibration::DEFAULT_TEXT.to_string())
}

/// The architecture's removal rules.
pub fn check_removal(metadata: &Metadata, tensor_names: &[&str], removed: &[usize]) -> Result<()> {
    crate::arch::check_removal(metadata, tensor_names, removed)
}
