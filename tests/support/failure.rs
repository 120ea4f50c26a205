//! What a failed run must leave behind: nothing at the target, no temporary file beside it, the
//! input unchanged, and one line on stderr (shared by the command-line error tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// sha256 of a file, by coreutils' `sha256sum`.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Files in `dir` whose name marks them as our temporary output.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().contains(gguf_prune::output::TEMP_TAG))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the run failed cleanly: non-zero exit, one line on stderr starting `error:` and
/// containing every needle, no panic, nothing at `target`, no temporary file beside it.
#[track_caller]
pub fn assert_clean_failure(out: &Output, target: &Path, needles: &[&str]) -> String {
    let stderr = assert_one_line_error(out, needles);
    assert!(
        !target.exists(),
        "{} was left behind ({stderr})",
        target.display()
    );
    if let Some(dir) = target.parent() {
        let temps = temp_files(dir);
        assert!(temps.is_empty(), "temporary files left: {temps:?}");
    }
    stderr
}

/// Asserts the run failed with one line on stderr (so before any progress line of slow work)
/// starting `error:` and containing every needle, without a panic; returns stderr.
#[track_caller]
pub fn assert_one_line_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(
            stderr.contains(n),
            "error {stderr:?} does not mention {n:?}"
        );
    }
    // Each cause once: an error whose message embeds its source must not print it again.
    for cause in ["(os error", "at byte"] {
        assert!(
            stderr.matches(cause).count() <= 1,
            "repeated cause: {stderr}"
        );
    }
    stderr
}
