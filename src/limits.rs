//! Bounds on what a caller may ask for and on the files it may hand in, checked before any work
//! starts: a request the model cannot justify fails at once with a clear error instead of
//! running out of memory, blocking forever or running for minutes to no purpose.
//!
//! - **Context** (tokens per window or chunk): at most the model's training context
//!   (`{arch}.context_length`) where the file gives one, and never above [`MAX_CTX`]: attention
//!   holds `n_head x ctx^2` scores of a window at once (SmolLM2 at 8192: 2.4 GB per copy).
//! - **Token budgets** (calibration and healing tokens): at most [`MAX_TOKENS`]: the
//!   layer-major pass holds every window's activations at once (about 32 KiB per token for the
//!   test models, so 4 GiB at the cap; the built-in text gives about 10k tokens).
//! - **Text files** (calibration and evaluation text): regular files of at most
//!   [`MAX_TEXT_BYTES`], read with the bound enforced. **Importance matrices**: at most what the
//!   model's weights justify ([`imatrix_bytes`]). A named pipe, device or folder is refused
//!   without blocking on it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::Model;

/// Largest text file read (calibration or evaluation text): 1 GiB, about 250 million tokens,
/// far more than any run here uses (wiki.test.raw is 1.3 MB).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// Largest context (tokens per window), whatever the model's training context.
pub const MAX_CTX: usize = 8192;

/// Largest token budget of a calibration or healing pass: 16 x the default 8192.
pub const MAX_TOKENS: usize = 1 << 17;

/// Opens `path` for reading if it is a regular file, and returns it with its length. The open
/// does not wait for a writer (a named pipe is refused, not read), and the check is made on the
/// opened file, so nothing can be swapped in between.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of the regular file `path`, refused if longer than `limit` bytes (`what` names the
/// kind of file in the error). Never reads more than `limit + 1` bytes, so a file that grows
/// while it is read is caught too.
pub fn read_bounded(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    let too_large = |len| Error::FileTooLarge {
        path: path.to_path_buf(),
        len,
        limit,
        what,
    };
    if len > limit {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A UTF-8 text file of at most [`MAX_TEXT_BYTES`].
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bounded(path, MAX_TEXT_BYTES, "a text file")?;
    String::from_utf8(bytes).map_err(|_| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ),
    })
}

/// The largest context `model` supports here, and why: its training context
/// (`{arch}.context_length`) where the file gives one, capped at [`MAX_CTX`].
pub fn max_context(model: &Model) -> (usize, String) {
    let meta = model.metadata();
    let key = meta
        .architecture()
        .map(|arch| format!("{arch}.context_length"))
        .ok();
    let trained = key
        .as_deref()
        .and_then(|k| meta.get(k))
        .and_then(|v| v.to_u64())
        .filter(|&n| n > 0);
    match (trained, key) {
        (Some(n), Some(key)) if n <= MAX_CTX as u64 => {
            (n as usize, format!("the model's training context ({key})"))
        }
        _ => (
            MAX_CTX,
            "the largest context supported here (attention holds n_head x context^2 scores at once)"
                .to_string(),
        ),
    }
}

/// Refuses a context (tokens per window) above [`max_context`].
pub fn check_context(model: &Model, n_ctx: usize) -> Result<()> {
    let (max, why) = max_context(model);
    if n_ctx > max {
        return Err(Error::OutOfRange {
            what: "tokens per window",
            value: n_ctx as u64,
            why: format!("at most {max}, {why}"),
        });
    }
    Ok(())
}

/// Refuses a token budget of a pass outside 2..=[`MAX_TOKENS`].
pub fn check_token_budget(n: usize) -> Result<()> {
    let why = if n < 2 {
        "at least 2 are needed to compare a position with the next".to_string()
    } else if n > MAX_TOKENS {
        format!("at most {MAX_TOKENS}: the pass holds every window's activations in memory at once")
    } else {
        return Ok(());
    };
    Err(Error::OutOfRange {
        what: "token budget",
        value: n as u64,
        why,
    })
}

/// The largest importance matrix `model` justifies, in bytes: per weight matrix one f32 sum per
/// input column (per expert) and one count, with its name twice (GGUF keeps sums and counts as
/// two tensors), plus 1 MiB for the header and dataset names. Larger files are not matrices of
/// this model.
pub fn imatrix_bytes(model: &Model) -> u64 {
    let per_tensor: u64 = model
        .tensors
        .iter()
        .filter(|t| t.info.dims.len() >= 2)
        .map(|t| {
            let experts = t.info.dims.get(2).copied().unwrap_or(1);
            let cols = t.info.dims[0].saturating_mul(experts);
            cols.saturating_add(experts)
                .saturating_mul(4)
                .saturating_add(2 * (t.info.name.len() as u64 + 128))
        })
        .fold(0u64, u64::saturating_add);
    per_tensor.saturating_add(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_outside_the_range_are_refused() {
        assert!(check_token_budget(2).is_ok());
        assert!(check_token_budget(MAX_TOKENS).is_ok());
        for n in [0, 1, MAX_TOKENS + 1, usize::MAX] {
            assert!(
                matches!(check_token_budget(n), Err(Error::OutOfRange { .. })),
                "{n}"
            );
        }
    }

    #[test]
    fn bounded_reads_refuse_large_files_and_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10, "x").unwrap().len(), 10);
        assert_eq!(read_bounded(&path, u64::MAX, "x").unwrap().len(), 10);
        assert!(matches!(
            read_bounded(&path, 9, "x"),
            Err(Error::FileTooLarge {
                len: 10,
                limit: 9,
                ..
            })
        ));
        assert!(matches!(
            open_regular(dir.path()),
            Err(Error::NotRegularFile { .. })
        ));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path and mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_text(&fifo),
            Err(Error::NotRegularFile { .. })
        ));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_text(&path)
            .unwrap_err()
            .to_string()
            .contains("valid UTF-8"));
    }
}
