//! The command line under bad requests and failing disks. Every case must end with a one-line
//! error, a non-zero exit and no panic, leave nothing at the target path (and no temporary file
//! beside it), and leave the input exactly as it was.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gguf_prune::gguf::Value;
use support::failure::{assert_clean_failure, sha256, temp_files};
use support::{tiny_llama, write_file, Gguf};

fn prune(args: &[&std::ffi::OsStr]) -> Output {
    common::gguf_prune()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("gguf-prune runs")
}

/// The tiny four-block llama model as a file in `dir`.
fn tiny_model(dir: &Path) -> PathBuf {
    write_file(dir, "tiny.gguf", &tiny_llama(3, 4).build().bytes)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// `gguf-prune MODEL --layers LAYERS -o TARGET`, with `--force` when `force`.
fn prune_layers(model: &Path, layers: &str, target: &Path, force: bool) -> Output {
    let mut args = vec![
        model.as_os_str(),
        os("--layers"),
        os(layers),
        os("-o"),
        target.as_os_str(),
    ];
    if force {
        args.push(os("--force"));
    }
    prune(&args)
}

#[test]
fn a_valid_prune_of_the_tiny_model_succeeds() {
    // The positive control for every case below: the same model and flags, minus the fault.
    let dir = common::workdir();
    let model = tiny_model(dir.path());
    let out_path = dir.path().join("out.gguf");
    let out = prune_layers(&model, "1,2", &out_path, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pruned = gguf_prune::gguf::Model::open(&out_path).unwrap();
    assert_eq!(pruned.metadata().get_u32("llama.block_count").unwrap(), 2);
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn bad_layer_lists() {
    let dir = common::workdir();
    let model = tiny_model(dir.path());
    let before = std::fs::read(&model).unwrap();
    let target = dir.path().join("out.gguf");
    let cases: &[(&str, &[&str])] = &[
        ("", &["invalid layer list", "empty entry in \"\""]),
        ("1,,2", &["invalid layer list", "empty entry in \"1,,2\""]),
        ("2,2", &["invalid layer list", "layer 2 is listed twice"]),
        ("1,0-1", &["layer 1 is listed twice"]),
        (
            "4",
            &["layer 4 is out of range: the model has 4 layers (0-3)"],
        ),
        ("0,99999999999", &["layer 99999999999 is out of range"]),
        ("0-3", &["removing all 4 layers would leave an empty model"]),
        ("3,2,1,0", &["removing all 4 layers"]),
        ("x", &["\"x\" in \"x\" is not a layer index"]),
        ("-1", &["is not a layer index"]),
        ("3-1", &["range \"3-1\" runs backwards"]),
        ("0-18446744073709551615", &["implausibly long"]),
        ("99999999999999999999999", &["is not a layer index"]),
    ];
    for (layers, needles) in cases {
        // `--layers=-1`: as two words clap would take `-1` for a flag.
        let flag = format!("--layers={layers}");
        let out = prune(&[model.as_os_str(), os(&flag), os("-o"), target.as_os_str()]);
        let stderr = assert_clean_failure(&out, &target, needles);
        assert_eq!(out.status.code(), Some(1), "--layers {layers:?}: {stderr}");
    }
    // No --layers at all.
    let out = prune(&[model.as_os_str(), os("-o"), target.as_os_str()]);
    assert_clean_failure(&out, &target, &["--layers"]);
    // Two options that both name the healed tensors' type.
    let out = prune(&[
        model.as_os_str(),
        os("--layers=1"),
        os("--heal"),
        os("--heal-type=F16"),
        os("--quantize=Q8_0"),
        os("-o"),
        target.as_os_str(),
    ]);
    assert_clean_failure(
        &out,
        &target,
        &["--heal-type and --quantize", "drop --heal-type"],
    );
    assert_eq!(std::fs::read(&model).unwrap(), before, "input changed");
}

#[test]
fn models_the_prune_cannot_take() {
    let dir = common::workdir();
    let target = dir.path().join("out.gguf");
    let run = |model: &Path, layers: &str| prune_layers(model, layers, &target, false);

    // block_count says 4, but block 2 has no tensors.
    let mut g = tiny_llama(3, 4);
    g.tensors.retain(|t| !t.name.starts_with(b"blk.2."));
    let model = write_file(dir.path(), "missing-block.gguf", &g.build().bytes);
    assert_clean_failure(&run(&model, "1"), &target, &["block 2 has no tensors"]);

    // A tensor of block 7 in a 4-block model.
    let g = tiny_llama(3, 4).f32_tensor("blk.7.attn_norm.weight", &[8], 0.0);
    let model = write_file(dir.path(), "stray-block.gguf", &g.build().bytes);
    assert_clean_failure(
        &run(&model, "1"),
        &target,
        &["\"blk.7.attn_norm.weight\" belongs to block 7, but block_count is 4"],
    );

    // No architecture, no block count.
    let g = Gguf::new(3).f32_tensor("blk.0.w", &[8], 0.0);
    let model = write_file(dir.path(), "no-arch.gguf", &g.build().bytes);
    assert_clean_failure(&run(&model, "0"), &target, &["general.architecture"]);
    let g = Gguf::new(3)
        .kv("general.architecture", Value::String(b"llama".to_vec()))
        .f32_tensor("blk.0.w", &[8], 0.0);
    let model = write_file(dir.path(), "no-count.gguf", &g.build().bytes);
    assert_clean_failure(&run(&model, "0"), &target, &["llama.block_count"]);

    // Not a GGUF file, an empty file, a missing file: the error names the path.
    let model = write_file(dir.path(), "text.gguf", b"hello, this is not a model\n");
    assert_clean_failure(
        &run(&model, "0"),
        &target,
        &["text.gguf", "at byte 0", "not a GGUF file"],
    );
    let model = write_file(dir.path(), "empty.gguf", b"");
    assert_clean_failure(&run(&model, "0"), &target, &["empty.gguf", "file is empty"]);
    let model = dir.path().join("absent.gguf");
    assert_clean_failure(&run(&model, "0"), &target, &["absent.gguf"]);
    // A folder or a named pipe given as the model (opening a pipe would block forever).
    let fifo = common::named_pipe(dir.path(), "pipe.gguf");
    for model in [dir.path(), fifo.as_path()] {
        assert_clean_failure(&run(model, "0"), &target, &["not a regular file"]);
    }
    // A truncated model.
    let bytes = tiny_llama(3, 4).build().bytes;
    let model = write_file(dir.path(), "cut.gguf", &bytes[..bytes.len() - 100]);
    assert_clean_failure(
        &run(&model, "1"),
        &target,
        &["cut.gguf", "runs past the end of the file"],
    );
}

#[test]
fn output_that_is_the_input_is_refused() {
    let dir = common::workdir();
    let model = tiny_model(dir.path());
    let before = std::fs::read(&model).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let link = dir.path().join("link.gguf");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let spellings = [
        model.clone(),
        dir.path().join("sub/../tiny.gguf"),
        dir.path().join("./tiny.gguf"),
        link.clone(),
    ];
    for target in &spellings {
        for force in [false, true] {
            let out = prune_layers(&model, "1", target, force);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                !out.status.success(),
                "{} {force}: {stderr}",
                target.display()
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains("it is an input of this run")
                    || (!force && stderr.contains("already exists")),
                "{} (force {force}): {stderr}",
                target.display()
            );
            assert!(temp_files(dir.path()).is_empty());
            assert_eq!(std::fs::read(&model).unwrap(), before, "input changed");
        }
    }
    // With --force, the refusal must be because it is the input, whatever the spelling.
    for target in &spellings {
        let out = prune_layers(&model, "1", target, true);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("it is an input of this run"),
            "{}",
            target.display()
        );
    }
    assert!(link.is_symlink());
}

#[test]
fn existing_output_needs_force() {
    let dir = common::workdir();
    let model = tiny_model(dir.path());
    let target = dir.path().join("out.gguf");
    std::fs::write(&target, b"precious").unwrap();
    let out = prune_layers(&model, "1", &target, false);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("out.gguf already exists (use --force to replace it)"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert!(temp_files(dir.path()).is_empty());
    // With --force it is replaced by a valid model.
    let out = prune_layers(&model, "1", &target, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gguf_prune::gguf::Model::open(&target).is_ok());
}

#[test]
fn unwritable_target_directories() {
    let dir = common::workdir();
    let model = tiny_model(dir.path());
    let before = std::fs::read(&model).unwrap();
    let run = |target: &Path| prune_layers(&model, "1", target, false);
    let missing = dir.path().join("no/such/dir/out.gguf");
    assert_clean_failure(
        &run(&missing),
        &missing,
        &["no/such/dir/out.gguf", "No such file or directory"],
    );
    let file = write_file(dir.path(), "plain-file", b"x");
    let under_file = file.join("out.gguf");
    assert_clean_failure(
        &run(&under_file),
        &under_file,
        &["plain-file/out.gguf", "Not a directory"],
    );
    // A folder or a device at the target path is never replaced, even with --force.
    let folder = dir.path().join("folder.gguf");
    std::fs::create_dir(&folder).unwrap();
    write_file(&folder, "keep", b"k");
    for force in [false, true] {
        let out = prune_layers(&model, "1", &folder, force);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(
            stderr.contains("folder.gguf exists and is not a regular file"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(folder.join("keep")).unwrap(), b"k");
        assert!(temp_files(dir.path()).is_empty());
    }
    // A read-only file system (root ignores permission bits, not a read-only mount).
    if let Some(mount) = Tmpfs::mount(&dir.path().join("ro"), "ro,size=1M") {
        let target = mount.path.join("out.gguf");
        assert_clean_failure(&run(&target), &target, &["Read-only file system"]);
    }
    assert_eq!(std::fs::read(&model).unwrap(), before, "input changed");
}

/// A tmpfs mounted for one test and unmounted when dropped. None where mounting is not
/// permitted (not root, or no CAP_SYS_ADMIN in a container).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Tmpfs {
                path: path.to_path_buf(),
            })
        } else {
            eprintln!("note: cannot mount a tmpfs here; skipping the tmpfs variant");
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// The disk fills up mid-write: a 20 MiB tmpfs, where the pruned SmolLM2 (about 88 MB) cannot
/// fit. Where mounting is not permitted, the same failure comes from RLIMIT_FSIZE below.
#[test]
fn disk_full_mid_write() {
    let dir = common::workdir();
    let model = common::smollm2();
    let before = sha256(&model);
    let Some(mount) = Tmpfs::mount(&dir.path().join("small"), "size=20M") else {
        return;
    };
    let target = mount.path.join("out.gguf");
    let out = prune_layers(&model, "20-23", &target, false);
    assert_clean_failure(&out, &target, &["out.gguf", "No space left on device"]);
    // The space is given back: nothing of ours is left in the mount.
    let left: Vec<_> = std::fs::read_dir(&mount.path).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    drop(mount);
    assert_eq!(sha256(&model), before, "input changed");
}

/// A file size limit (RLIMIT_FSIZE, as `ulimit -f` sets) with SIGXFSZ ignored, so the write
/// fails with EFBIG part-way through instead of killing the process.
#[test]
fn file_size_limit_mid_write() {
    let dir = common::workdir();
    let model = common::smollm2();
    let before = sha256(&model);
    let target = dir.path().join("out.gguf");
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec prlimit --fsize=20000000 -- \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_gguf-prune"))
        .arg(&model)
        .args(["--layers", "20-23", "-o"])
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_clean_failure(&out, &target, &["out.gguf", "File too large"]);
    assert_eq!(sha256(&model), before, "input changed");
}

/// Ctrl-C while the real gemma3 model is being written: exit 130, nothing at the target, no
/// temporary file, input unchanged. The signal is sent as soon as the temporary file appears;
/// should the write finish first on a fast disk (a lost race, not a failure), it is tried again.
#[test]
fn ctrl_c_mid_write() {
    let model = common::gemma3();
    let before = sha256(&model);
    let mut interrupted = 0;
    for attempt in 0..6 {
        let dir = common::workdir();
        let target = dir.path().join("out.gguf");
        let mut child = common::gguf_prune()
            .arg(&model)
            .args(["--layers", "8,9", "-o"])
            .arg(&target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the temporary output to exist and hold some bytes, so the signal lands
        // mid-write (or mid-verify), not before the handler is installed.
        let start = Instant::now();
        let min_bytes = (attempt as u64 % 3) * 20_000_000;
        loop {
            let temps = temp_files(dir.path());
            let written: u64 = temps
                .iter()
                .filter_map(|p| p.metadata().ok())
                .map(|m| m.len())
                .sum();
            if !temps.is_empty() && written >= min_bytes.max(1) {
                break;
            }
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // Odd attempts press Ctrl-C twice: the second press removes the temporary files and
        // exits at once, without waiting for the write loop to notice.
        let presses = 1 + attempt % 2;
        for _ in 0..presses {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        if out.status.success() {
            // Finished before the signal arrived: the output must then be complete.
            assert!(gguf_prune::gguf::Model::open(&target).is_ok());
            assert!(temp_files(dir.path()).is_empty());
            eprintln!("attempt {attempt}: the write finished before the signal; trying again");
            continue;
        }
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if presses == 1 {
            assert_eq!(lines, ["error: interrupted"], "{stderr}");
        } else {
            // The second press may exit before the first one's error is printed.
            assert!(lines.len() <= 1, "{stderr}");
        }
        assert!(!target.exists(), "target left after Ctrl-C");
        let temps = temp_files(dir.path());
        assert!(
            temps.is_empty(),
            "temporary files left after Ctrl-C: {temps:?}"
        );
        interrupted += 1;
        if interrupted >= 4 {
            break;
        }
    }
    assert!(interrupted > 0, "no attempt was interrupted mid-write");
    assert_eq!(sha256(&model), before, "input changed");
}

/// `inspect` and `verify` on broken files: the same one-line errors as the prune.
#[test]
fn inspect_and_verify_on_broken_files() {
    let dir = common::workdir();
    let good = tiny_llama(3, 4).build().bytes;
    let mut bad_version = good.clone();
    bad_version[4..8].copy_from_slice(&7u32.to_le_bytes());
    let mut missing_block = tiny_llama(3, 4);
    missing_block
        .tensors
        .retain(|t| !t.name.starts_with(b"blk.1."));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.gguf", Vec::new(), "file is empty"),
        (
            "text.gguf",
            b"not a model at all".to_vec(),
            "not a GGUF file",
        ),
        ("cut.gguf", good[..good.len() / 2].to_vec(), "at byte"),
        ("v7.gguf", bad_version, "unsupported GGUF version 7"),
        (
            "missing-block.gguf",
            missing_block.build().bytes,
            "block 1 has no tensors",
        ),
    ];
    for (name, bytes, needle) in &cases {
        let path = write_file(dir.path(), name, bytes);
        for cmd in ["inspect", "verify"] {
            if *name == "missing-block.gguf" && cmd == "inspect" {
                continue; // inspect shows what is there; verify judges it.
            }
            let out = common::gguf_prune()
                .arg(cmd)
                .arg(&path)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {name} succeeded");
            assert!(!stderr.contains("panicked"), "{cmd} {name}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{cmd} {name}: {stderr}");
            assert!(
                stderr.starts_with("error: ") && stderr.contains(needle),
                "{cmd} {name}: {stderr}"
            );
            // Format errors name the file; verify's block check is about the one file given.
            if *name != "missing-block.gguf" {
                assert!(stderr.contains(name), "{cmd} {name}: {stderr}");
            }
        }
    }
}
