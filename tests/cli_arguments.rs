//! Bounds on arguments and text inputs (`gguf_prune::limits`), and a prompt answer to Ctrl-C.
//! Every refusal must come before any work: one line on stderr (no progress line, so nothing
//! was scored), a non-zero exit, nothing written, the model unchanged. A refused pipe must not
//! block, so every run here has a hang guard (not a speed check: the bound is minutes).

pub mod common;
#[path = "support/failure.rs"]
pub mod failure;

use failure::sha256;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, killing it (and failing) if it has not ended after `limit`: a blocked read of a
/// pipe would otherwise hang the test suite.
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gguf-prune runs");
    wait_within(&mut child, limit);
    child.wait_with_output().expect("output")
}

fn wait_within(child: &mut Child, limit: Duration) {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: blocked?");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HANG: Duration = Duration::from_secs(120);

/// `gguf-prune ARGS...` must be refused at once: non-zero exit, a single `error:` line holding
/// every needle, no panic, nothing on stdout and nothing at any of `written`.
#[track_caller]
fn assert_refused(args: &[&std::ffi::OsStr], needles: &[&str], written: &[&Path]) -> String {
    let out = output_within(common::gguf_prune().args(args), HANG);
    let stderr = failure::assert_one_line_error(&out, needles);
    assert!(out.stdout.is_empty(), "{args:?} printed a result");
    for p in written {
        failure::assert_clean_failure(&out, p, needles);
    }
    stderr
}

/// Runs `check` with SmolLM2 and a work folder, then asserts the model is unchanged.
fn with_model(check: impl FnOnce(&Path, &Path)) {
    let model = common::smollm2();
    let before = sha256(&model);
    let dir = common::workdir();
    check(&model, dir.path());
    assert_eq!(sha256(&model), before, "the model changed");
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

const U64_MAX: &str = "18446744073709551615";

/// Every command that runs the model takes `-t`: the calibration commands, `eval` and
/// `quantize`, with their outputs in `dir`.
fn commands_with_threads<'a>(
    model: &'a Path,
    text: &'a Path,
    out: &'a Path,
) -> Vec<Vec<&'a std::ffi::OsStr>> {
    vec![
        vec![os("score"), os(model)],
        vec![os(model), os("--remove"), os("2"), os("-o"), os(out)],
        vec![os("imatrix"), os(model), os("-o"), os(out)],
        vec![os("eval"), os(model), os("--text"), os(text)],
        vec![os("quantize"), os(model), os(out), os("Q8_0")],
    ]
}

#[test]
fn threads_out_of_range_are_refused_before_any_work() {
    with_model(|model, dir| {
        let (text, out) = (common::eval_text(), dir.join("out.gguf"));
        for args in commands_with_threads(model, &text, &out) {
            let with = |t: &'static str| [args.clone(), vec![os("-t"), os(t)]].concat();
            assert_refused(&with("0"), &["-t/--threads must be at least 1"], &[&out]);
            for t in ["1000", U64_MAX] {
                assert_refused(&with(t), &["-t/--threads", t, "use at most"], &[&out]);
            }
            // Control: one thread passes the check (the run then stops at a bad context, or
            // for quantize at a missing imatrix, neither of which is about threads).
            let mut ok = with("1");
            let missing = dir.join("missing.dat");
            let needle = if args[0] == "quantize" {
                ok.extend([os("--imatrix"), os(&missing)]);
                "missing.dat"
            } else if args[0] == "eval" {
                ok.extend([os("-c"), os("100000")]);
                "-c/--ctx-size"
            } else {
                ok.extend([os("--ctx"), os("100000")]);
                "--ctx"
            };
            let err = assert_refused(&ok, &[needle], &[&out]);
            assert!(!err.contains("threads"), "{err}");
        }
    });
}

#[test]
fn contexts_beyond_the_model_are_refused() {
    with_model(|model, dir| {
        let out = dir.join("out.gguf");
        let text = common::eval_text();
        let context = ["out of range", "at most 8192", "llama.context_length"];
        for ctx in [U64_MAX, "100000", "8193"] {
            for args in [
                vec![os("score"), os(model), os("--ctx"), os(ctx)],
                vec![
                    os(model),
                    os("--remove"),
                    os("2"),
                    os("--ctx"),
                    os(ctx),
                    os("--max-tokens"),
                    os("100000"),
                    os("-o"),
                    os(&out),
                ],
                vec![
                    os(model),
                    os("--layers"),
                    os("3"),
                    os("--heal"),
                    os("--ctx"),
                    os(ctx),
                    os("-o"),
                    os(&out),
                ],
                vec![
                    os("imatrix"),
                    os(model),
                    os("--ctx"),
                    os(ctx),
                    os("-o"),
                    os(&out),
                ],
            ] {
                assert_refused(
                    &args,
                    &[&["--ctx", ctx][..], &context[..]].concat(),
                    &[&out],
                );
            }
            let args = [
                os("eval"),
                os(model),
                os("--text"),
                os(&text),
                os("-c"),
                os(ctx),
            ];
            assert_refused(
                &args,
                &[&["-c/--ctx-size", ctx][..], &context[..]].concat(),
                &[],
            );
        }
        // 2^63: doubled, it wrapped to 0 and the run evaluated 0 chunks.
        let args = [
            os("eval"),
            os(model),
            os("--text"),
            os(&text),
            os("-c"),
            os("9223372036854775808"),
        ];
        assert_refused(&args, &context, &[]);
        // Control: the model's own context passes (the run stops at the text, too short for it).
        let args = [
            os("eval"),
            os(model),
            os("--text"),
            os(&text),
            os("-c"),
            os("8192"),
        ];
        assert_refused(&args, &["needs at least 16384"], &[]);
    });
}

#[test]
fn token_budgets_are_bounded() {
    with_model(|model, dir| {
        let out = dir.join("out.gguf");
        for n in ["0", "1", "131073", U64_MAX] {
            for args in [
                vec![os("score"), os(model), os("--max-tokens"), os(n)],
                vec![
                    os(model),
                    os("--remove"),
                    os("2"),
                    os("--max-tokens"),
                    os(n),
                    os("-o"),
                    os(&out),
                ],
                vec![
                    os("imatrix"),
                    os(model),
                    os("--max-tokens"),
                    os(n),
                    os("-o"),
                    os(&out),
                ],
            ] {
                assert_refused(&args, &["--max-tokens", n], &[&out]);
            }
            let args = [
                os(model),
                os("--layers"),
                os("3"),
                os("--heal"),
                os("--heal-tokens"),
                os(n),
                os("-o"),
                os(&out),
            ];
            assert_refused(&args, &["--heal-tokens", n, "out of range"], &[&out]);
        }
    });
}

/// A sparse file of `len` bytes (no disk used).
fn sparse(dir: &Path, name: &str, len: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

#[test]
fn text_inputs_must_be_regular_files_of_bounded_size() {
    with_model(|model, dir| {
        let out = dir.join("out.gguf");
        let fifo = common::named_pipe(dir, "pipe.txt");
        let folder = dir.join("folder");
        std::fs::create_dir(&folder).unwrap();
        let huge_text = sparse(dir, "huge.txt", gguf_prune::limits::MAX_TEXT_BYTES + 1);
        let m = gguf_prune::gguf::Model::open(model).unwrap();
        let huge_imatrix = sparse(dir, "huge.dat", gguf_prune::limits::imatrix_bytes(&m) + 1);
        drop(m);
        let special = [Path::new("/dev/zero"), &fifo, &folder];
        for bad in special {
            let name = bad.to_str().unwrap();
            let needles = [name, "not a regular file"];
            for args in [
                vec![os("score"), os(model), os("--calib"), os(bad)],
                vec![
                    os(model),
                    os("--remove"),
                    os("2"),
                    os("--calib"),
                    os(bad),
                    os("-o"),
                    os(&out),
                ],
                vec![
                    os(model),
                    os("--layers"),
                    os("3"),
                    os("--heal"),
                    os("--calib"),
                    os(bad),
                    os("-o"),
                    os(&out),
                ],
                vec![
                    os("imatrix"),
                    os(model),
                    os("--calib"),
                    os(bad),
                    os("-o"),
                    os(&out),
                ],
                vec![os("eval"), os(model), os("--text"), os(bad)],
                vec![os("eval"), os(model), os("--kl-base"), os(bad)],
                vec![
                    os("quantize"),
                    os(model),
                    os(&out),
                    os("Q8_0"),
                    os("--imatrix"),
                    os(bad),
                ],
                vec![
                    os(model),
                    os("--layers"),
                    os("3"),
                    os("--quantize"),
                    os("Q8_0"),
                    os("--imatrix"),
                    os(bad),
                    os("-o"),
                    os(&out),
                ],
            ] {
                assert_refused(&args, &needles, &[&out]);
            }
        }
        let too_large = [
            huge_text.to_str().unwrap(),
            "1073741825 bytes",
            "more than the 1073741824 bytes a text file may have",
        ];
        for args in [
            vec![os("score"), os(model), os("--calib"), os(&huge_text)],
            vec![os("eval"), os(model), os("--text"), os(&huge_text)],
        ] {
            assert_refused(&args, &too_large, &[&out]);
        }
        for args in [
            vec![
                os("quantize"),
                os(model),
                os(&out),
                os("Q8_0"),
                os("--imatrix"),
                os(&huge_imatrix),
            ],
            vec![
                os(model),
                os("--layers"),
                os("3"),
                os("--quantize"),
                os("Q8_0"),
                os("--imatrix"),
                os(&huge_imatrix),
                os("-o"),
                os(&out),
            ],
        ] {
            assert_refused(
                &args,
                &["huge.dat", "an importance matrix for this model may have"],
                &[&out],
            );
        }
        // Control: a small regular text is read.
        let small = dir.join("small.txt");
        std::fs::copy(common::calibration_text(), &small).unwrap();
        let json = common::run_ok(common::gguf_prune().args([
            os("score"),
            os(model),
            os("--json"),
            os("--max-tokens"),
            os("64"),
            os("--calib"),
            os(&small),
        ]));
        assert!(json.contains("\"tokens\": 64"), "{json}");
    });
}

/// `score --json`'s token count.
fn scored_tokens(model: &Path, args: &[&str]) -> u64 {
    let json = common::run_ok(
        common::gguf_prune()
            .arg("score")
            .arg(model)
            .arg("--json")
            .args(args),
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    v["tokens"].as_u64().expect("tokens")
}

#[test]
fn max_tokens_is_a_true_cap() {
    let model = common::smollm2();
    // The first window used to be whole whatever the cap: 64 asked, 238 scored.
    assert_eq!(scored_tokens(&model, &["--max-tokens", "64"]), 64);
    // A cap between whole windows cuts the last one short.
    assert_eq!(
        scored_tokens(&model, &["--max-tokens", "700", "--ctx", "256"]),
        700
    );
    // Control: a multiple of the window gives whole windows, as before.
    assert_eq!(
        scored_tokens(&model, &["--max-tokens", "768", "--ctx", "256"]),
        768
    );
}

#[test]
fn imatrix_refuses_text_shorter_than_one_chunk() {
    with_model(|model, dir| {
        let out = dir.join("im.gguf");
        let args = [
            os("imatrix"),
            os(model),
            os("--max-tokens"),
            os("64"),
            os("-o"),
            os(&out),
        ];
        assert_refused(
            &args,
            &["--max-tokens 64 is less than one window of --ctx 512"],
            &[&out],
        );
        let short = dir.join("short.txt");
        let text = std::fs::read_to_string(common::calibration_text()).unwrap();
        std::fs::write(&short, &text[..text.char_indices().nth(600).unwrap().0]).unwrap();
        let args = [
            os("imatrix"),
            os(model),
            os("--calib"),
            os(&short),
            os("-o"),
            os(&out),
        ];
        let err = assert_refused(&args, &["the calibration text gives", "needs 512"], &[&out]);
        assert!(!err.contains("gives 0 tokens"), "{err}");
        // Control: one whole window is enough.
        let args = [
            os("imatrix"),
            os(model),
            os("--ctx"),
            os("64"),
            os("--max-tokens"),
            os("64"),
            os("--calib"),
            os(&short),
            os("-o"),
            os(&out),
        ];
        let report = common::run_ok(common::gguf_prune().args(args));
        assert!(report.contains("1 chunks of 64"), "{report}");
        assert!(out.exists());
    });
}

#[test]
fn impossible_removals_fail_before_scoring() {
    with_model(|model, dir| {
        let out = dir.join("out.gguf");
        let prune = |n: &'static str| vec![os(model), os("--remove"), os(n), os("-o"), os(&out)];
        assert_refused(&prune("0"), &["--remove 0 removes nothing"], &[&out]);
        // SmolLM2 has 30 blocks, 28 removable with the first and last kept.
        for n in ["29", "30", "1000", U64_MAX] {
            assert_refused(
                &prune(n),
                &["cannot remove", "the model has 30, 28 of them removable"],
                &[&out],
            );
        }
        let mut ends = prune("30");
        ends.push(os("--allow-ends"));
        assert_refused(
            &ends,
            &["cannot remove 30 blocks", "30 of them removable"],
            &[&out],
        );
        // Control: the same check lets 28 through to the scoring (stopped here by a bad text).
        let mut ok = prune("28");
        ok.extend([os("--calib"), os("/dev/zero")]);
        assert_refused(&ok, &["/dev/zero"], &[&out]);
    });
}

/// Sends Ctrl-C (SIGINT) to `child` once its stderr, written to `log`, holds `marker` and
/// `delay` more has passed; returns how long it took to end after the signal, its exit status
/// and its stderr.
fn interrupt_after(
    mut child: Child,
    log: &Path,
    marker: &str,
    delay: Duration,
) -> (Duration, std::process::ExitStatus, String) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(marker) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before {marker:?}:\n{text}"
        );
        assert!(start.elapsed() < HANG * 5, "no {marker:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(delay);
    // SAFETY: signalling our own child, not yet reaped (try_wait saw it running).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let sent = Instant::now();
    wait_within(&mut child, HANG);
    let waited = sent.elapsed();
    let status = child.wait().unwrap();
    (waited, status, std::fs::read_to_string(log).unwrap())
}

/// Starts `gguf-prune ARGS...` with stderr to `dir/stderr.txt`.
fn spawn_logged(args: &[&std::ffi::OsStr], dir: &Path) -> (Child, PathBuf) {
    let log = dir.join("stderr.txt");
    let child = common::gguf_prune()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// The one allowed timing check: the run must stop well within `BOUND` of Ctrl-C (before the
/// checks it took 73 s), exit 130 and end with an error saying "interrupted".
#[track_caller]
fn assert_stopped(waited: Duration, status: std::process::ExitStatus, log: &str) {
    const BOUND: Duration = Duration::from_secs(20);
    assert!(
        waited < BOUND,
        "took {waited:?} to stop after Ctrl-C:\n{log}"
    );
    assert_eq!(status.code(), Some(130), "{log}");
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.ends_with("interrupted"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Ctrl-C while `eval` computes gemma3's logits for a group of 4 chunks (the output head over
/// 262k tokens, one slice at a time): with the flag checked only between groups, the rest of
/// the group's head passes ran first (measured with 8 chunks: 41 s, and the run then ended
/// with exit 0, the signal lost; with the checks 0.08 s).
#[test]
fn ctrl_c_stops_the_output_head_promptly() {
    let model = common::gemma3();
    let dir = common::workdir();
    let text = common::eval_text();
    let args = [
        os("eval"),
        os(&model),
        os("--text"),
        os(&text),
        os("--chunks"),
        os("4"),
        os("--chunks-per-pass"),
        os("4"),
        os("-t"),
        os("2"),
    ];
    let (child, log) = spawn_logged(&args, dir.path());
    // "[1]" is printed once the first chunk's rows are scored: the head passes are under way.
    let (waited, status, log) = interrupt_after(child, &log, "[1]", Duration::from_millis(500));
    assert_stopped(waited, status, &log);
    assert!(!log.contains("[4]"), "the group ran to its end:\n{log}");
}

/// Ctrl-C 3 s into `score` on gemma3 with a budget of every calibration token (each block runs
/// over ~10k tokens at once; the flag is checked per window inside a block too).
#[test]
fn ctrl_c_stops_scoring_promptly() {
    let model = common::gemma3();
    let before = sha256(&model);
    let dir = common::workdir();
    let plot = dir.path().join("plot.svg");
    let args = [
        os("score"),
        os(&model),
        os("--max-tokens"),
        os("100000"),
        os("--plot"),
        os(&plot),
        os("-t"),
        os("2"),
    ];
    let (child, log) = spawn_logged(&args, dir.path());
    let (waited, status, log) = interrupt_after(child, &log, "scoring", Duration::from_secs(3));
    assert_stopped(waited, status, &log);
    assert!(!plot.exists());
    assert_eq!(sha256(&model), before, "the model changed");
}
