//! The three calls scoring makes into modules other parts of the project own: the tokenizer
//! (`crate::tokenizer`), the default calibration text (`crate::calibration`) and the
//! architecture's removal rules (`crate::arch::check_removal`).
//!
//! STAND-INS until those modules are merged into this branch: each function below names the real
//! call it becomes. Meanwhile `tokenize` runs llama.cpp's `llama-tokenize` named by the
//! `GGUF_PRUNE_LLAMA_TOKENIZE` environment variable (development and benchmarks only), the
//! default text is read from `GGUF_PRUNE_CALIB_FILE`, and every removal is allowed.

use crate::error::{Error, Result};
use crate::gguf::{Metadata, Model};

/// Token ids of `text` without BOS/EOS.
/// Becomes: `crate::tokenizer::Tokenizer::from_metadata(model.metadata())?.encode(text, false)`.
pub fn tokenize(model: &Model, text: &str) -> Result<Vec<u32>> {
    let tool = std::env::var_os("GGUF_PRUNE_LLAMA_TOKENIZE").ok_or_else(|| Error::Calibration(
        "the tokenizer is not merged into this build yet (set GGUF_PRUNE_LLAMA_TOKENIZE to llama-tokenize)".into(),
    ))?;
    let dir = std::env::temp_dir().join(format!("gguf-prune-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let file = dir.join("text.txt");
    std::fs::write(&file, text).map_err(|source| Error::Io {
        path: file.clone(),
        source,
    })?;
    let out = std::process::Command::new(&tool)
        .arg("-m")
        .arg(model.path())
        .arg("-f")
        .arg(&file)
        .args(["--ids", "--log-disable", "--no-bos"])
        .output()
        .map_err(|source| Error::Io {
            path: tool.clone().into(),
            source,
        });
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let list = stdout.lines().find(|l| l.starts_with('[')).ok_or_else(|| {
        Error::Calibration(format!(
            "llama-tokenize printed no ids: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    list.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| Error::Calibration(format!("bad token id {s:?}")))
        })
        .collect()
}

/// Becomes: `Ok(crate::calibration::DEFAULT_TEXT.to_string())`.
pub fn default_text() -> Result<String> {
    let path = std::env::var_os("GGUF_PRUNE_CALIB_FILE").ok_or_else(|| {
        Error::Calibration(
            "no default calibration text in this build yet: pass --calib FILE".into(),
        )
    })?;
    std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Becomes: `crate::arch::check_removal(metadata, tensor_names, removed)`.
pub fn check_removal(
    _metadata: &Metadata,
    _tensor_names: &[&str],
    _removed: &[usize],
) -> Result<()> {
    Ok(())
}
