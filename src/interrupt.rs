//! Ctrl-C, SIGTERM and SIGHUP: a flag that long work polls, and the temporary files (made by
//! [`crate::output`]) to remove if the process is stopped before the work notices.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static TEMP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Marks the process as interrupted; long loops return [`Error::Interrupted`] at their next check.
pub fn request_stop() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Returns `Err(Error::Interrupted)` once a stop was requested.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

pub(crate) fn register_temp(path: &Path) {
    if let Ok(mut list) = TEMP_FILES.lock() {
        list.push(path.to_path_buf());
    }
}

pub(crate) fn forget_temp(path: &Path) {
    if let Ok(mut list) = TEMP_FILES.lock() {
        list.retain(|p| p != path);
    }
}

/// Removes every temporary file still registered (for a second Ctrl-C, when the process exits
/// without unwinding).
pub fn remove_temp_files() {
    if let Ok(list) = TEMP_FILES.lock() {
        for p in list.iter() {
            let _ = std::fs::remove_file(p);
        }
    }
}
