//! The command line under bad requests and failing disks. Every case must end with a one-line
//! error, a non-zero exit and no panic, leave nothing at the target path (and no temporary file
//! beside it), and leave the input exactly as it was.

pub mod common;
pub mod support;

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

// === What llama.cpp's loader and the forward pass rely on ===

/// Runs `gguf-prune ARGS` and asserts a clean failure mentioning `needles` that leaves `model`
/// unchanged and writes nothing at `target` (or beside it).
#[track_caller]
fn assert_refused(args: &[&std::ffi::OsStr], model: &Path, target: &Path, needles: &[&str]) {
    let before = sha256(model);
    assert_clean_failure(&prune(args), target, needles);
    assert_eq!(sha256(model), before, "{} changed", model.display());
}

#[test]
fn verify_and_prune_refuse_what_llama_cpp_refuses() {
    let dir = common::workdir();
    let target = dir.path().join("out.gguf");
    // The control: the same model, unbroken, verifies.
    let good = tiny_model(dir.path());
    let out = prune(&[os("verify"), good.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let with_count = |v: Value| {
        let mut g = tiny_llama(3, 4);
        g.kvs.retain(|(k, _)| k != b"llama.block_count");
        g.kv("llama.block_count", v)
    };
    let mut unknown_type = tiny_llama(3, 4);
    unknown_type.tensors[1].type_id = u32::MAX;
    let mut q4_2 = tiny_llama(3, 4);
    q4_2.tensors[1].type_id = 4;
    let mut nested = gguf_prune::gguf::Array::U8(vec![1]);
    for _ in 0..6 {
        nested = gguf_prune::gguf::Array::Array(vec![nested]);
    }
    let mut missing_q = tiny_llama(3, 4);
    missing_q
        .tensors
        .retain(|t| t.name != b"blk.2.attn_q.weight".to_vec());
    let cases: Vec<(&str, support::Gguf, &[&str])> = vec![
        (
            "count-string.gguf",
            with_count(Value::String(b"4".to_vec())),
            &["\"llama.block_count\" is", "expected an unsigned integer"],
        ),
        (
            "count-float.gguf",
            with_count(Value::F32(4.0)),
            &["\"llama.block_count\" is 4", "expected an unsigned integer"],
        ),
        (
            "count-huge.gguf",
            with_count(Value::U32(u32::MAX)),
            &["\"llama.block_count\" is 4294967295", "at most 65536"],
        ),
        (
            "type-max.gguf",
            unknown_type,
            &["type id 4294967295", "ggml does not define"],
        ),
        (
            "type-q4_2.gguf",
            q4_2,
            &["type id 4,", "ggml does not define"],
        ),
        (
            "nested.gguf",
            tiny_llama(3, 4).kv("x.nested", Value::Array(nested)),
            &["\"x.nested\" is an array of arrays"],
        ),
        (
            "missing-q.gguf",
            missing_q,
            &["block 2 has no tensor \"blk.2.attn_q.weight\", which every llama block needs"],
        ),
    ];
    for (name, g, needles) in cases {
        let model = write_file(dir.path(), name, &g.build().bytes);
        assert_refused(&[os("verify"), model.as_os_str()], &model, &target, needles);
        let prune_args = [
            model.as_os_str(),
            os("--layers"),
            os("1"),
            os("-o"),
            target.as_os_str(),
        ];
        assert_refused(&prune_args, &model, &target, needles);
    }
}

#[test]
fn a_non_ascii_model_name_gets_the_default_output_name() {
    let dir = common::workdir();
    let model = write_file(
        dir.path(),
        "model-abéééééé.gguf",
        &tiny_llama(3, 4).build().bytes,
    );
    let out = prune(&[model.as_os_str(), os("--layers"), os("1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("model-abéééééé.pruned.gguf").exists());
    // Control: a shard suffix is still recognised after non-ASCII text.
    let shard = write_file(
        dir.path(),
        "modèle-00001-of-00001.gguf",
        &tiny_llama(3, 4).build().bytes,
    );
    let out = prune(&[shard.as_os_str(), os("--layers"), os("1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("modèle.pruned.gguf").exists());
}

/// A copy of SmolLM2 in `dir/name` with its metadata and tensors edited.
fn smol_variant(
    dir: &Path,
    name: &str,
    edit_metadata: impl FnOnce(&mut gguf_prune::gguf::Metadata),
    edit_tensors: impl FnOnce(&mut Vec<gguf_prune::gguf::OutTensor<'_>>),
) -> PathBuf {
    let source = gguf_prune::gguf::Model::open(common::smollm2()).unwrap();
    let mut metadata = source.metadata().clone();
    edit_metadata(&mut metadata);
    let mut tensors = common::copied_tensors(&source);
    edit_tensors(&mut tensors);
    let path = dir.join(name);
    common::write_gguf(&path, source.shards[0].content.version, &metadata, tensors);
    path
}

/// Replaces tensor `name` by F32 `values` of shape `dims`.
fn set_f32(
    tensors: &mut [gguf_prune::gguf::OutTensor<'_>],
    name: &str,
    dims: &[u64],
    values: &[f32],
) {
    let t = tensors.iter_mut().find(|t| t.name == name).unwrap();
    t.dims = dims.to_vec();
    t.ggml_type = gguf_prune::gguf::GgmlType::F32;
    t.data = gguf_prune::gguf::TensorData::Bytes(support::f32_bytes(values));
}

#[test]
fn score_eval_and_quantize_refuse_what_the_forward_pass_cannot_run() {
    let dir = common::workdir();
    let target = dir.path().join("out.gguf");
    let text = common::eval_text();
    let eval = |m: &Path| -> Vec<std::ffi::OsString> {
        [
            "eval".as_ref(),
            m.as_os_str(),
            "--text".as_ref(),
            text.as_os_str(),
            "-c".as_ref(),
            "128".as_ref(),
            "--chunks".as_ref(),
            "1".as_ref(),
        ]
        .iter()
        .map(|s: &&std::ffi::OsStr| s.to_os_string())
        .collect()
    };
    let refused = |args: Vec<std::ffi::OsString>, m: &Path, needles: &[&str]| {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        assert_refused(&args, m, &target, needles);
    };
    // The control: the unedited copy evaluates.
    let control = smol_variant(dir.path(), "control.gguf", |_| {}, |_| {});
    let args = eval(&control);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let out = prune(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&control).unwrap();

    let u32_key =
        |k: &'static str, v: u32| move |m: &mut gguf_prune::gguf::Metadata| m.set(k, Value::U32(v));
    let f32_key =
        |k: &'static str, v: f32| move |m: &mut gguf_prune::gguf::Metadata| m.set(k, Value::F32(v));
    // (file, metadata edit, tensor edit, needles, also run score)
    type MetaEdit = Box<dyn FnOnce(&mut gguf_prune::gguf::Metadata)>;
    type TensorEdit = Box<dyn FnOnce(&mut Vec<gguf_prune::gguf::OutTensor<'_>>)>;
    let none_t = || -> TensorEdit { Box::new(|_| {}) };
    let none_m = || -> MetaEdit { Box::new(|_| {}) };
    let cases: Vec<(&str, MetaEdit, TensorEdit, Vec<&str>, bool)> = vec![
        ("count-u32max.gguf", Box::new(u32_key("llama.block_count", u32::MAX)), none_t(), vec!["\"llama.block_count\" is 4294967295", "at most 65536"], true),
        ("count-2-24.gguf", Box::new(u32_key("llama.block_count", 1 << 24)), none_t(), vec!["at most 65536"], false),
        ("count-29.gguf", Box::new(u32_key("llama.block_count", 29)), none_t(), vec!["belongs to block 29, but block_count is 29"], false),
        ("embd-2-31.gguf", Box::new(u32_key("llama.embedding_length", 1 << 31)), none_t(), vec!["embd-2-31.gguf", "embedding_length 2147483648"], true),
        ("heads-max.gguf", Box::new(u32_key("llama.attention.head_count", u32::MAX)), none_t(), vec!["\"llama.attention.head_count\" is 4294967295: does not divide embedding_length 576"], false),
        ("rope-zero.gguf", Box::new(f32_key("llama.rope.freq_base", 0.0)), none_t(), vec!["\"llama.rope.freq_base\" is 0: expected a finite number above 0"], false),
        ("rope-nan.gguf", Box::new(f32_key("llama.rope.freq_base", f32::NAN)), none_t(), vec!["\"llama.rope.freq_base\" is NaN"], false),
        ("rope-inf.gguf", Box::new(f32_key("llama.rope.freq_base", f32::INFINITY)), none_t(), vec!["\"llama.rope.freq_base\" is inf"], false),
        ("eps-nan.gguf", Box::new(f32_key("llama.attention.layer_norm_rms_epsilon", f32::NAN)), none_t(), vec!["\"llama.attention.layer_norm_rms_epsilon\" is NaN"], false),
        ("eps-zero.gguf", Box::new(f32_key("llama.attention.layer_norm_rms_epsilon", 0.0)), none_t(), vec!["\"llama.attention.layer_norm_rms_epsilon\" is 0"], false),
        ("scale-nan.gguf", Box::new(f32_key("llama.rope.scaling.factor", f32::NAN)), none_t(), vec!["\"llama.rope.scaling.factor\" is NaN"], false),
        ("no-embd.gguf", none_m(), Box::new(|t: &mut Vec<_>| t.retain(|t: &gguf_prune::gguf::OutTensor| t.name != "token_embd.weight")), vec!["no tensor named \"token_embd.weight\""], false),
        ("norm-0.gguf", none_m(), Box::new(|t: &mut Vec<_>| set_f32(t, "blk.3.attn_norm.weight", &[0], &[])), vec!["\"blk.3.attn_norm.weight\" has dims [0], expected [576]"], false),
        ("norm-scalar.gguf", none_m(), Box::new(|t: &mut Vec<_>| set_f32(t, "blk.3.attn_norm.weight", &[], &[1.0])), vec!["\"blk.3.attn_norm.weight\" has dims [], expected [576]"], false),
        ("norm-288.gguf", none_m(), Box::new(|t: &mut Vec<_>| set_f32(t, "blk.3.attn_norm.weight", &[288], &[1.0; 288])), vec!["\"blk.3.attn_norm.weight\" has dims [288], expected [576]"], true),
        ("missing-q.gguf", none_m(), Box::new(|t: &mut Vec<_>| t.retain(|t: &gguf_prune::gguf::OutTensor| t.name != "blk.5.attn_q.weight")), vec!["block 5 has no tensor \"blk.5.attn_q.weight\""], false),
        ("nan-norm.gguf", none_m(), Box::new(|t: &mut Vec<_>| set_f32(t, "blk.3.attn_norm.weight", &[576], &[f32::NAN; 576])), vec!["residual stream after block 3 holds NaN or Inf"], true),
    ];
    for (name, edit_m, edit_t, needles, also_score) in cases {
        let model = smol_variant(dir.path(), name, edit_m, edit_t);
        if name == "nan-norm.gguf" {
            // Found during the pass, after the progress lines: the error is the last line.
            for args in [eval(&model), vec!["score".into(), model.as_os_str().into()]] {
                let before = sha256(&model);
                let out = common::gguf_prune()
                    .args(&args)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    !out.status.success() && !stderr.contains("panicked"),
                    "{stderr}"
                );
                let last = stderr.lines().last().unwrap_or("");
                assert!(
                    last.starts_with("error: ") && last.contains(needles[0]),
                    "{stderr}"
                );
                assert_eq!(sha256(&model), before);
                assert!(temp_files(dir.path()).is_empty() && !target.exists());
            }
            continue;
        }
        refused(eval(&model), &model, &needles);
        if also_score {
            refused(
                vec!["score".into(), model.as_os_str().into()],
                &model,
                &needles,
            );
        }
        if name == "count-u32max.gguf" {
            let args = vec![
                "quantize".into(),
                model.as_os_str().into(),
                target.as_os_str().into(),
                "Q8_0".into(),
            ];
            refused(args, &model, &needles);
        }
        if name == "missing-q.gguf" {
            let args = vec![
                model.as_os_str().into(),
                "--layers".into(),
                "1".into(),
                "-o".into(),
                target.as_os_str().into(),
            ];
            refused(args, &model, &needles);
        }
        std::fs::remove_file(&model).unwrap();
    }
}
