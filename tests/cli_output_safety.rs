//! One rule for every file the tool writes (`src/output.rs`): never an input (by device and
//! inode), never a folder, FIFO or device, an existing file only with `--force`, always through
//! a temporary file that a failure, Ctrl-C, SIGTERM or SIGHUP removes, renamed into place
//! without clobbering a file another run put there meanwhile; and every output path is checked
//! before the slow work starts. Each test runs the binary on a private copy of SmolLM2.

pub mod common;
pub mod support;

use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gguf_prune::output::TEMP_TAG;
use support::failure::{assert_one_line_error, sha256, temp_files};

/// A folder holding a copy of SmolLM2 (`m.gguf`) and a short text (`t.txt`).
struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    text: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = common::workdir();
        let model = dir.path().join("m.gguf");
        std::fs::copy(common::smollm2(), &model).unwrap();
        let excerpt = common::eval_excerpt(dir.path(), 3000);
        let text = dir.path().join("t.txt");
        std::fs::rename(excerpt, &text).unwrap();
        Fixture { dir, model, text }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The model is exactly SmolLM2 still, and no temporary file is left in the folder.
    #[track_caller]
    fn assert_intact(&self) {
        assert_eq!(sha256(&self.model), *smollm2_sha(), "the input changed");
        let temps = temp_files(self.dir.path());
        assert!(temps.is_empty(), "temporary files left: {temps:?}");
    }
}

fn smollm2_sha() -> &'static String {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| sha256(&common::smollm2()))
}

/// `gguf-prune ARGS...`, waited for.
fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    command(args).output().expect("gguf-prune runs")
}

fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = common::gguf_prune();
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gguf-prune starts")
}

fn os(p: &Path) -> &OsStr {
    p.as_os_str()
}

/// Small scoring and calibration settings: a pass of a few seconds.
const QUICK: [&str; 4] = ["--max-tokens", "128", "--ctx", "64"];

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn score_plot(f: &Fixture, plot: &Path, force: bool) -> Output {
    let mut args = vec![
        os(Path::new("score")),
        os(&f.model),
        "--plot".as_ref(),
        os(plot),
    ];
    args.extend(QUICK.iter().map(OsStr::new));
    if force {
        args.push("--force".as_ref());
    }
    run(&args)
}

fn save_logits(f: &Fixture, input: &Path, target: &Path, chunks: u32, force: bool) -> Command {
    let mut cmd = command(&["eval"]);
    cmd.arg(input)
        .arg("--text")
        .arg(&f.text)
        .args([
            "-c",
            "128",
            "--chunks",
            &chunks.to_string(),
            "--save-logits",
        ])
        .arg(target);
    if force {
        cmd.arg("--force");
    }
    cmd
}

#[test]
fn score_plot_never_replaces_an_input() {
    let f = Fixture::new();
    // The control: a plot to a new path is written.
    let plot = f.path("p.svg");
    assert_success(&score_plot(&f, &plot, false));
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    // The model itself, a symlink into it and a hard link to it: refused, even with --force.
    let link = f.path("link.svg");
    std::os::unix::fs::symlink(&f.model, &link).unwrap();
    let hard = f.path("hard.svg");
    std::fs::hard_link(&f.model, &hard).unwrap();
    for target in [&f.model, &link, &hard] {
        for force in [false, true] {
            let out = score_plot(&f, target, force);
            assert_one_line_error(&out, &["it is an input of this run"]);
            f.assert_intact();
        }
    }
    assert!(link.is_symlink());
}

#[test]
fn score_plot_replaces_an_existing_file_only_with_force() {
    let f = Fixture::new();
    let plot = f.path("p.svg");
    std::fs::write(&plot, b"precious").unwrap();
    let out = score_plot(&f, &plot, false);
    assert_one_line_error(&out, &["p.svg already exists (use --force to replace it)"]);
    assert_eq!(std::fs::read(&plot).unwrap(), b"precious");
    f.assert_intact();
    assert_success(&score_plot(&f, &plot, true));
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    f.assert_intact();
}

#[test]
fn save_logits_never_replaces_an_input() {
    let f = Fixture::new();
    let text_before = std::fs::read(&f.text).unwrap();
    for target in [&f.model, &f.text] {
        for force in [false, true] {
            let out = save_logits(&f, &f.model, target, 1, force)
                .output()
                .unwrap();
            assert_one_line_error(&out, &["it is an input of this run"]);
            f.assert_intact();
        }
    }
    assert_eq!(std::fs::read(&f.text).unwrap(), text_before);
}

#[test]
fn save_logits_refuses_devices_and_fifos() {
    let f = Fixture::new();
    let fifo = common::named_pipe(f.dir.path(), "pipe.logits");
    for target in [Path::new("/dev/null"), &fifo] {
        let out = save_logits(&f, &f.model, target, 1, true).output().unwrap();
        assert_one_line_error(&out, &["exists and is not a regular file"]);
        f.assert_intact();
    }
    let null = std::fs::metadata("/dev/null").unwrap().file_type();
    assert!(null.is_char_device(), "/dev/null is no longer a device");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

/// The old temporary name was `TARGET` with the extension `logits.tmp`: an input of that name
/// was truncated. Now the temporary file is created exclusively, so it can never be an input.
#[test]
fn an_input_named_like_a_temporary_file_is_left_alone() {
    let f = Fixture::new();
    let input = f.path("m.logits.tmp");
    std::fs::rename(&f.model, &input).unwrap();
    let target = f.path("m.gguf");
    std::fs::write(&target, b"old").unwrap();
    let out = save_logits(&f, &input, &target, 1, false).output().unwrap();
    assert_one_line_error(&out, &["m.gguf already exists"]);
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    assert_success(&save_logits(&f, &input, &target, 1, true).output().unwrap());
    assert_eq!(sha256(&input), *smollm2_sha(), "the input changed");
    // The saved logits are the ones a run to a fresh path writes.
    let control = f.path("control.logits");
    assert_success(
        &save_logits(&f, &input, &control, 1, false)
            .output()
            .unwrap(),
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&control).unwrap()
    );
    assert!(temp_files(f.dir.path()).is_empty());
}

/// Two runs that finish at about the same time, one exit status each, the winner's first.
fn race(mut a: Command, mut b: Command) -> [Output; 2] {
    let (ca, cb) = (a.spawn().unwrap(), b.spawn().unwrap());
    [
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    ]
}

/// Asserts exactly one of the two runs succeeded and the other failed with "already exists";
/// returns the index of the winner.
#[track_caller]
fn one_winner(outs: &[Output; 2], target: &Path) -> usize {
    let won: Vec<usize> = (0..2).filter(|&i| outs[i].status.success()).collect();
    let stderr = |i: usize| String::from_utf8_lossy(&outs[i].stderr).into_owned();
    assert_eq!(won.len(), 1, "{}\n---\n{}", stderr(0), stderr(1));
    let loser = stderr(1 - won[0]);
    let last = loser.lines().last().unwrap_or("");
    let name = target.file_name().unwrap().to_string_lossy();
    assert_eq!(
        last,
        format!(
            "error: {} already exists (use --force to replace it)",
            target.display()
        ),
        "{loser}"
    );
    assert!(!loser.contains("panicked"), "{loser}");
    assert!(last.contains(&*name));
    won[0]
}

#[test]
fn concurrent_save_logits_one_run_wins() {
    let f = Fixture::new();
    let target = f.path("out.logits");
    for round in 0..2 {
        let _ = std::fs::remove_file(&target);
        let chunks = [1, 2];
        let quiet = |mut c: Command| {
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c
        };
        let outs = race(
            quiet(save_logits(&f, &f.model, &target, chunks[0], false)),
            quiet(save_logits(&f, &f.model, &target, chunks[1], false)),
        );
        let winner = one_winner(&outs, &target);
        let saved = gguf_prune::eval::KlBase::open(&target).unwrap();
        assert_eq!(
            saved.n_chunks(),
            chunks[winner] as usize,
            "round {round}: the file holds the other run's logits"
        );
        f.assert_intact();
    }
}

#[test]
fn concurrent_prunes_one_run_wins() {
    let f = Fixture::new();
    let target = f.path("out.gguf");
    let layers = ["1", "1,2"];
    for round in 0..3 {
        let _ = std::fs::remove_file(&target);
        let prune = |list: &str| {
            let mut c = command(&[os(&f.model), "--layers".as_ref(), list.as_ref()]);
            c.arg("-o")
                .arg(&target)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c
        };
        let outs = race(prune(layers[0]), prune(layers[1]));
        let winner = one_winner(&outs, &target);
        let stdout = String::from_utf8_lossy(&outs[winner].stdout);
        assert!(stdout.contains(&format!("wrote {}", target.display())));
        let written = gguf_prune::gguf::Model::open(&target).unwrap();
        let blocks = gguf_prune::prune::block_count(written.metadata()).unwrap();
        assert_eq!(
            blocks,
            30 - layers[winner].split(',').count(),
            "round {round}: the file holds the other run's model"
        );
        drop(written);
        f.assert_intact();
    }
}

#[test]
fn imatrix_outputs_never_replace_an_input() {
    let f = Fixture::new();
    let out_path = f.path("out.gguf");
    let mut prune = vec![os(&f.model), "--layers".as_ref(), "1".as_ref()];
    prune.extend([os(Path::new("-o")), os(&out_path), "--imatrix-out".as_ref()]);
    prune.extend([os(&f.model), "--force".as_ref()]);
    prune.extend(QUICK.iter().map(OsStr::new));
    let out = run(&prune);
    assert_one_line_error(&out, &["--imatrix-out", "it is an input of this run"]);
    assert!(!out_path.exists());
    f.assert_intact();

    let text_before = std::fs::read(&f.text).unwrap();
    for (target, calib) in [(&f.model, None), (&f.text, Some(&f.text))] {
        let mut args = vec![os(Path::new("imatrix")), os(&f.model), "-o".as_ref()];
        args.extend([os(target), "--force".as_ref()]);
        if let Some(c) = calib {
            args.extend(["--calib".as_ref(), os(c)]);
        }
        args.extend(QUICK.iter().map(OsStr::new));
        assert_one_line_error(&run(&args), &["it is an input of this run"]);
        f.assert_intact();
    }
    assert_eq!(std::fs::read(&f.text).unwrap(), text_before);
}

#[test]
fn quantize_never_replaces_an_input() {
    let f = Fixture::new();
    let hard = f.path("hard.gguf");
    std::fs::hard_link(&f.model, &hard).unwrap();
    for target in [&f.model, &hard] {
        let args = [os(Path::new("quantize")), os(&f.model), os(target)];
        let out = command(&args).args(["Q8_0", "--force"]).output().unwrap();
        assert_one_line_error(&out, &["it is an input of this run"]);
        f.assert_intact();
    }
}

/// Waits until a temporary file of ours appears in `dir` (true), or `patience` passes or the
/// child exits (false).
fn wait_for_temp(child: &mut Child, dir: &Path, patience: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < patience {
        if !temp_files(dir).is_empty() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends `signal` to a long run once its temporary file exists (when `temp_expected`) or after
/// a second, and asserts it stops with an error, leaving neither `target` nor a temporary file.
#[track_caller]
fn stopped_by(
    f: &Fixture,
    signal: libc::c_int,
    args: &[&OsStr],
    target: &Path,
    temp_expected: bool,
) {
    let mut child = spawn(args);
    let patience = Duration::from_secs(if temp_expected { 120 } else { 1 });
    let saw_temp = wait_for_temp(&mut child, f.dir.path(), patience);
    assert_eq!(saw_temp, temp_expected, "{args:?}");
    // SAFETY: kill(2) on the id of a child that has not been waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was not stopped: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.ends_with("interrupted"),
        "{stderr}"
    );
    assert!(
        !target.exists(),
        "{} left after the signal",
        target.display()
    );
    f.assert_intact();
}

#[test]
fn sigterm_and_sighup_leave_no_temporary_file() {
    let f = Fixture::new();
    let long_text = common::eval_text();
    let logits = f.path("out.logits");
    let eval = [
        OsStr::new("eval"),
        os(&f.model),
        "--text".as_ref(),
        os(&long_text),
        "-c".as_ref(),
        "128".as_ref(),
        "--save-logits".as_ref(),
        os(&logits),
    ];
    // Mid-write: the logits' temporary file exists from the first chunk on.
    stopped_by(&f, libc::SIGTERM, &eval, &logits, true);
    stopped_by(&f, libc::SIGHUP, &eval, &logits, true);
    // Mid-scoring (scores, then three candidate sets compared): nothing written yet, and
    // nothing must be after.
    let plot = f.path("p.svg");
    let score = [
        OsStr::new("score"),
        os(&f.model),
        "--max-tokens".as_ref(),
        "100000".as_ref(),
        "--remove".as_ref(),
        "8".as_ref(),
        "--plot".as_ref(),
        os(&plot),
    ];
    stopped_by(&f, libc::SIGTERM, &score, &plot, false);
    let pruned = f.path("r.gguf");
    let imatrix = f.path("r.imatrix.gguf");
    let prune = [
        os(&f.model),
        "--remove".as_ref(),
        "8".as_ref(),
        "-o".as_ref(),
        os(&pruned),
        "--imatrix-out".as_ref(),
        os(&imatrix),
    ];
    stopped_by(&f, libc::SIGHUP, &prune, &pruned, false);
    assert!(!imatrix.exists());
}

#[test]
fn output_paths_are_checked_before_the_slow_work() {
    // One line on stderr each: the error came before the first progress line of scoring, the
    // calibration pass or the evaluation.
    let f = Fixture::new();
    let existing = f.path("existing");
    std::fs::write(&existing, b"precious").unwrap();
    let folder = f.path("folder.gguf");
    std::fs::create_dir(&folder).unwrap();
    let missing = f.path("no/such/dir/out.gguf");
    let fresh = f.path("fresh.gguf");
    let im = f.path("im.gguf");
    let m = || os(&f.model);
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (
            vec![
                m(),
                "--remove".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                os(&existing),
            ],
            "existing already exists",
        ),
        (
            vec![
                m(),
                "--remove".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                os(&folder),
                "--force".as_ref(),
            ],
            "folder.gguf exists and is not a regular file",
        ),
        (
            vec![
                m(),
                "--remove".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                os(&missing),
            ],
            "no/such/dir/out.gguf: No such file or directory",
        ),
        (
            vec![
                m(),
                "--remove".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                os(&existing),
                "--imatrix-out".as_ref(),
                os(&im),
            ],
            "existing already exists",
        ),
        (
            vec![
                m(),
                "--remove".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                os(&fresh),
                "--imatrix-out".as_ref(),
                os(&existing),
            ],
            "--imatrix-out: ",
        ),
        (
            vec![
                m(),
                "--remove".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                os(&fresh),
                "--imatrix-out".as_ref(),
                os(&fresh),
            ],
            "is the model's output path",
        ),
        (
            vec![
                m(),
                "--layers".as_ref(),
                "99".as_ref(),
                "-o".as_ref(),
                os(&fresh),
                "--imatrix-out".as_ref(),
                os(&im),
            ],
            "layer 99 is out of range",
        ),
        (
            vec!["score".as_ref(), m(), "--plot".as_ref(), os(&existing)],
            "existing already exists",
        ),
        (
            vec![
                "eval".as_ref(),
                m(),
                "--text".as_ref(),
                os(&f.text),
                "--save-logits".as_ref(),
                os(&existing),
            ],
            "existing already exists",
        ),
        (
            vec!["imatrix".as_ref(), m(), "-o".as_ref(), os(&existing)],
            "existing already exists",
        ),
        (
            vec!["quantize".as_ref(), m(), os(&existing), "Q8_0".as_ref()],
            "existing already exists",
        ),
    ];
    for (args, needle) in &cases {
        // Small settings, so that a check that regressed past the slow work fails quickly.
        let quick: &[&str] = match args[0].to_str() {
            Some("eval") => &["-c", "128", "--chunks", "1"],
            Some("quantize") => &[],
            _ => &QUICK,
        };
        let mut args = args.clone();
        args.extend(quick.iter().map(OsStr::new));
        let out = run(&args);
        assert_one_line_error(&out, &[needle]);
        assert_eq!(std::fs::read(&existing).unwrap(), b"precious", "{args:?}");
        for path in [&fresh, &im] {
            assert!(!path.exists(), "{args:?} left {}", path.display());
        }
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
        f.assert_intact();
    }
}

/// `ARGS` under a file size limit (RLIMIT_FSIZE) with SIGXFSZ ignored, so a write past it fails
/// with EFBIG instead of killing the process.
fn with_file_size_limit(limit: u64, args: &[&OsStr]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={limit} -- \"$@\""
        ))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_gguf-prune"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A prune that fails while writing the model leaves no `--imatrix-out` file either (it is put
/// in place with the model), and the error names the target, not the temporary file.
#[test]
fn a_failed_prune_leaves_no_imatrix_and_names_its_target() {
    let f = Fixture::new();
    let target = f.path("out.gguf");
    let im = f.path("im.gguf");
    let mut args = vec![
        os(&f.model),
        "--layers".as_ref(),
        "1".as_ref(),
        "-o".as_ref(),
    ];
    args.extend([os(&target), "--imatrix-out".as_ref(), os(&im)]);
    args.extend(QUICK.iter().map(OsStr::new));
    let out = with_file_size_limit(20_000_000, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    let expected = format!("error: {}: File too large", target.display());
    assert!(last.starts_with(&expected), "{stderr}");
    assert!(!stderr.contains(TEMP_TAG), "{stderr}");
    assert!(!target.exists() && !im.exists());
    f.assert_intact();
    // The control: without the limit both are written.
    assert_success(&run(&args));
    assert!(target.exists() && im.exists());
}

#[test]
fn save_logits_write_errors_name_the_target() {
    let f = Fixture::new();
    let target = f.path("out.logits");
    let args = [
        OsStr::new("eval"),
        os(&f.model),
        "--text".as_ref(),
        os(&f.text),
        "-c".as_ref(),
        "128".as_ref(),
        "--save-logits".as_ref(),
        os(&target),
    ];
    let out = with_file_size_limit(1_000_000, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ")
            && last.contains(&target.display().to_string())
            && last.contains("File too large"),
        "{stderr}"
    );
    assert!(!stderr.contains(TEMP_TAG), "{stderr}");
    assert!(!target.exists());
    f.assert_intact();
    // The control: the same run without the limit writes the file.
    assert_success(&run(&args));
    assert!(target.exists());
}

/// The checks run before the slow work, yet a file created at the target during that work is
/// still not replaced: the run fails at the end with "already exists" and leaves it alone.
#[test]
fn a_target_that_appears_during_the_run_is_not_replaced() {
    let f = Fixture::new();
    let target = f.path("out.logits");
    let long_text = common::eval_text();
    let mut child = command(&["eval"])
        .arg(&f.model)
        .arg("--text")
        .arg(&long_text)
        .args(["-c", "128", "--chunks", "8", "--save-logits"])
        .arg(&target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_temp(
        &mut child,
        f.dir.path(),
        Duration::from_secs(120)
    ));
    std::fs::write(&target, b"theirs").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.trim_end().ends_with(&format!(
            "error: {} already exists (use --force to replace it)",
            target.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
    f.assert_intact();
}
