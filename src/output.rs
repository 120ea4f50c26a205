//! The one rule for every file the tool writes (models and their shards, quantized models,
//! importance matrices, logits, plots):
//!
//! - the target is never an input of the run, compared by device and inode, so a symlink, a
//!   hard link or another spelling of an input is caught;
//! - the target is never anything but a regular file (a folder, a FIFO or a device node is
//!   refused even when replacing is allowed: a rename would replace the node itself);
//! - an existing file is replaced only when the run allows it ([`OutputRule::force`]);
//! - the bytes go to a temporary file beside the target, created exclusively (`O_EXCL`, so it
//!   can never be an existing file, least of all an input), registered for removal on Ctrl-C,
//!   SIGTERM and SIGHUP, synced to disk, and renamed into place only on success; without
//!   `force` the rename refuses to replace a file that appeared meanwhile, so of two runs
//!   writing one path, exactly one wins and the other fails with "already exists".
//!
//! [`check`] applies the rule without writing anything: commands call it before their slow work,
//! so a bad output path is reported at once, not after the calibration pass.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::interrupt;

/// What a run may write over, decided once from its arguments.
#[derive(Debug, Clone, Default)]
pub struct OutputRule {
    /// Replace an existing regular file.
    pub force: bool,
    /// Every file the run reads (each model shard, text, importance matrix, logits file): no
    /// output may be one of them.
    pub inputs: Vec<PathBuf>,
}

impl OutputRule {
    pub fn new(force: bool, inputs: impl IntoIterator<Item = PathBuf>) -> OutputRule {
        OutputRule {
            force,
            inputs: inputs.into_iter().collect(),
        }
    }

    /// The same rule with more inputs.
    pub fn with_inputs(&self, more: impl IntoIterator<Item = PathBuf>) -> OutputRule {
        let mut rule = self.clone();
        rule.inputs.extend(more);
        rule
    }
}

/// Marks our temporary files; a test (and a user) can find leftovers by it.
pub const TEMP_TAG: &str = ".tmp-gguf-prune";

/// Checks that `target` may be written under `rule`, without writing anything.
pub fn check(target: &Path, rule: &OutputRule) -> Result<()> {
    match std::fs::metadata(target) {
        Ok(meta) => {
            if is_input(&meta, rule) {
                return Err(Error::OutputIsInput {
                    path: target.to_path_buf(),
                });
            }
            if !meta.is_file() {
                return Err(Error::OutputNotRegular {
                    path: target.to_path_buf(),
                });
            }
            if !rule.force {
                return Err(exists(target));
            }
        }
        // A dangling symlink still occupies the name.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !rule.force && std::fs::symlink_metadata(target).is_ok() {
                return Err(exists(target));
            }
        }
        Err(e) => return Err(io_error(target, e)),
    }
    check_folder(target)
}

fn exists(target: &Path) -> Error {
    Error::OutputExists {
        path: target.to_path_buf(),
    }
}

fn io_error(target: &Path, source: io::Error) -> Error {
    Error::Io {
        path: target.to_path_buf(),
        source,
    }
}

/// Whether `meta` is the file of one of the rule's inputs (same device and inode).
fn is_input(meta: &std::fs::Metadata, rule: &OutputRule) -> bool {
    rule.inputs.iter().any(|input| {
        std::fs::metadata(input).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    })
}

/// Whether two output paths name the same file, or will once written.
pub fn same_target(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => resolved(a) == resolved(b),
    }
}

/// The path with its folder canonical (the file itself need not exist).
fn resolved(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default();
    match folder_of(path).canonicalize() {
        Ok(folder) => folder.join(name),
        Err(_) => path.to_path_buf(),
    }
}

/// The folder the temporary file goes into exists, is a folder, and can be written (a
/// read-only mount is caught here; root passes permission bits, as it will when writing).
/// Errors name `target`. Part of [`check`]; alone, for outputs whose exact names are known
/// only when writing (the shards of a split).
pub fn check_folder(target: &Path) -> Result<()> {
    let folder = folder_of(target);
    let meta = std::fs::metadata(folder).map_err(|e| io_error(target, e))?;
    if !meta.is_dir() {
        return Err(io_error(
            target,
            io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    let c = c_path(folder).map_err(|e| io_error(target, e))?;
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(io_error(target, io::Error::last_os_error()));
    }
    Ok(())
}

fn folder_of(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `{target}.tmp-gguf-prune-{tag}`: the default temporary name.
pub fn temp_beside(target: &Path, tag: &str) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(tag);
    PathBuf::from(name)
}

/// Files being written for one run, each to a temporary file beside its target, not yet in
/// place. Dropping it removes the temporary files; [`commit`](Pending::commit) puts them in
/// place together.
#[must_use = "the output is only put in place by commit()"]
pub struct Pending {
    temps: Vec<PathBuf>,
    targets: Vec<PathBuf>,
    files: Vec<File>,
    rule: OutputRule,
    committed: bool,
}

/// Distinguishes the temporary names of one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// How many taken names to step over before giving up.
const TEMP_ATTEMPTS: usize = 64;

impl Pending {
    /// One output file, written through `{target}.tmp-gguf-prune-{pid}-{n}`.
    pub fn create(target: &Path, rule: &OutputRule) -> Result<Pending> {
        Pending::create_all(vec![target.to_path_buf()], rule, |tag| {
            vec![temp_beside(target, tag)]
        })
    }

    /// Several files committed together (the shards of a split model). `temps(tag)` names one
    /// temporary file per target, beside it, each containing `tag` (so shard names can keep
    /// their `-0000i-of-0000N.gguf` suffix and the first temporary shard opens as a model).
    pub fn create_all(
        targets: Vec<PathBuf>,
        rule: &OutputRule,
        temps: impl Fn(&str) -> Vec<PathBuf>,
    ) -> Result<Pending> {
        for target in &targets {
            check(target, rule)?;
        }
        let mut last = None;
        for _ in 0..TEMP_ATTEMPTS {
            let tag = format!(
                "{TEMP_TAG}-{}-{}",
                std::process::id(),
                NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
            );
            let names = temps(&tag);
            debug_assert_eq!(names.len(), targets.len());
            match Pending::open_temps(&targets, names, rule) {
                Ok(p) => return Ok(p),
                Err((e, target)) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last = Some(io_error(&target, e))
                }
                Err((e, target)) => return Err(io_error(&target, e)),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Creates every temporary file exclusively; on an error the ones made are removed (by
    /// the drop of the partial `Pending`) and the error comes back with its target.
    fn open_temps(
        targets: &[PathBuf],
        names: Vec<PathBuf>,
        rule: &OutputRule,
    ) -> std::result::Result<Pending, (io::Error, PathBuf)> {
        let mut pending = Pending {
            temps: Vec::with_capacity(names.len()),
            targets: targets.to_vec(),
            files: Vec::with_capacity(names.len()),
            rule: rule.clone(),
            committed: false,
        };
        for (name, target) in names.into_iter().zip(targets) {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&name)
                .map_err(|e| (e, target.clone()))?;
            // Registered only once it is ours: the cleanup must never remove another's file.
            interrupt::register_temp(&name);
            pending.temps.push(name);
            pending.files.push(file);
        }
        Ok(pending)
    }

    /// The temporary paths, first first (open them to verify before committing).
    pub fn temp_paths(&self) -> &[PathBuf] {
        &self.temps
    }

    /// The final paths.
    pub fn targets(&self) -> &[PathBuf] {
        &self.targets
    }

    /// The open temporary file `i`, for writing.
    pub fn file(&self, i: usize) -> &File {
        &self.files[i]
    }

    /// Syncs every file to disk, then renames each onto its target: without `force`, never
    /// over a file that exists by then (another run's). If one rename fails, the targets
    /// already put in place by this call are removed again, so nothing of the run is left.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        for (file, target) in self.files.iter().zip(&self.targets) {
            file.sync_all().map_err(|e| io_error(target, e))?;
        }
        self.files.clear();
        let mut placed: Vec<&Path> = Vec::new();
        for (temp, target) in self.temps.iter().zip(&self.targets) {
            if let Err(e) = place(temp, target, &self.rule) {
                for p in placed {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            interrupt::forget_temp(temp);
            placed.push(target);
        }
        for target in &self.targets {
            sync_folder(folder_of(target));
        }
        self.committed = true;
        Ok(std::mem::take(&mut self.targets))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            self.files.clear();
            for p in &self.temps {
                let _ = std::fs::remove_file(p);
                interrupt::forget_temp(p);
            }
        }
    }
}

/// Renames `temp` onto `target` after checking the rule again (the path may have changed
/// since the run started).
fn place(temp: &Path, target: &Path, rule: &OutputRule) -> Result<()> {
    check(target, rule)?;
    let result = if rule.force {
        std::fs::rename(temp, target)
    } else {
        rename_no_replace(temp, target)
    };
    result.map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => exists(target),
        _ => io_error(target, e),
    })
}

/// Renames without replacing: `renameat2(RENAME_NOREPLACE)` on Linux, else (or where the file
/// system does not support it) `link` + `unlink`, which fails the same way on an existing name.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let (f, t) = (c_path(from)?, c_path(to)?);
        // SAFETY: both are NUL-terminated paths that live across the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        ) {
            return Err(e);
        }
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

/// Makes the renames durable (best effort: some file systems cannot sync a folder).
fn sync_folder(folder: &Path) {
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn leftovers(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(TEMP_TAG))
            .collect()
    }

    fn write(target: &Path, rule: &OutputRule, bytes: &[u8]) -> Result<Vec<PathBuf>> {
        use std::io::Write;
        let p = Pending::create(target, rule)?;
        p.file(0).write_all(bytes).unwrap();
        p.commit()
    }

    #[test]
    fn writes_and_refuses_to_clobber_without_force() {
        let d = dir();
        let t = d.path().join("out");
        write(&t, &OutputRule::default(), b"one").unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"one");
        let e = write(&t, &OutputRule::default(), b"two").unwrap_err();
        assert!(matches!(e, Error::OutputExists { .. }), "{e}");
        write(&t, &OutputRule::new(true, []), b"two").unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"two");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_file_appearing_before_the_commit_wins() {
        let d = dir();
        let t = d.path().join("out");
        let p = Pending::create(&t, &OutputRule::default()).unwrap();
        std::fs::write(&t, b"theirs").unwrap();
        let e = p.commit().unwrap_err();
        assert!(matches!(e, Error::OutputExists { .. }), "{e}");
        assert_eq!(std::fs::read(&t).unwrap(), b"theirs");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn no_replace_rename_refuses_an_existing_name() {
        let d = dir();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let e = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&b).unwrap();
        rename_no_replace(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        assert!(!a.exists());
    }

    #[test]
    fn inputs_are_caught_by_inode() {
        let d = dir();
        let input = d.path().join("in");
        std::fs::write(&input, b"input").unwrap();
        let hard = d.path().join("hard");
        std::fs::hard_link(&input, &hard).unwrap();
        let soft = d.path().join("soft");
        std::os::unix::fs::symlink(&input, &soft).unwrap();
        let rule = OutputRule::new(true, [input.clone()]);
        for t in [&input, &hard, &soft] {
            let e = check(t, &rule).unwrap_err();
            assert!(matches!(e, Error::OutputIsInput { .. }), "{e}");
        }
        // The control: another file is replaceable with force.
        let other = d.path().join("other");
        std::fs::write(&other, b"x").unwrap();
        check(&other, &rule).unwrap();
        assert_eq!(std::fs::read(&input).unwrap(), b"input");
    }

    #[test]
    fn a_temporary_name_that_is_taken_is_stepped_over() {
        let d = dir();
        let t = d.path().join("out");
        let taken = temp_beside(
            &t,
            &format!(
                "{TEMP_TAG}-{}-{}",
                std::process::id(),
                NEXT_TEMP.load(Ordering::Relaxed)
            ),
        );
        std::fs::write(&taken, b"someone's").unwrap();
        let rule = OutputRule::new(false, [taken.clone()]);
        let p = Pending::create(&t, &rule).unwrap();
        assert_ne!(p.temp_paths()[0], taken);
        drop(p);
        assert_eq!(std::fs::read(&taken).unwrap(), b"someone's");
        assert!(!t.exists());
    }
}
