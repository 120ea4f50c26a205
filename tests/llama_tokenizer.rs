//! The tokenizer against llama.cpp's own: every id must equal `llama-tokenize`'s, on the whole
//! of both project-written texts (tests/data/eval.txt, the calibration text) for both real models, on awkward strings, and for each pre-tokenizer type
//! (run on SmolLM2's vocabulary with `tokenizer.ggml.pre` swapped in a vocabulary-only GGUF).
//!
//! Over 600 lines on purpose: one test target, in three sections (ids against llama-tokenize,
//! the BOS rule, malformed vocabularies), that share the llama-tokenize runner, the comparison
//! that names the first differing token, and the vocabulary-only GGUF builders; as separate
//! files each would be another test binary linking the whole library.

pub mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use gguf_prune::gguf::{Array, Metadata, Model, Value};
use gguf_prune::tokenizer::{self, process_escapes, prompt_from_file, Tokenizer};

/// Strings that exercise the split rules: digits, contractions, Unicode classes, white space
/// runs, newlines, emoji, byte fallback, special-token texts.
const TRICKY: &[&str] = &[
    "Hello world",
    " Hello  world ",
    "It's 2024; we'll see. I'M sure they'RE fine, don't you think?",
    "1 12 123 1234 12345 3.14159 1,000,000 ½ ² ٣٤٥ 十二",
    "naïve café résumé Ångström ß ΑΒΓ αβγ Привет мир שלום مرحبا",
    "日本語のテキスト、中文文本。한국어 텍스트",
    "emoji 🙂👍🏽 👨‍👩‍👧 flags 🇫🇷 ⚡",
    "tabs\tand\ttabs\t\tdouble\n\nnewlines\r\nwindows\n   \n    indented\n",
    "   leading and trailing   ",
    "\n\n\n",
    "a\u{a0}b\u{2003}c\u{3000}d\u{200b}e\u{feff}f",
    "combining e\u{301} a\u{308}\u{304} ok",
    "symbols: $100 + €5 = <html> {json: [1, 2]} @user #tag ~/path\\to|pipe `code` ^_^",
    "<|im_start|>user\nhi<|im_end|>\n<start_of_turn>model\n<end_of_turn><bos><eos>",
    "private \u{e000}\u{f8ff} unassigned \u{0378} control \u{1}\u{7f}",
    "",
    " ",
    "x",
];

/// `llama-tokenize` ids for `text` (passed verbatim on stdin).
fn llama_ids(model: &Path, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
    llama_ids_escaped(model, text, add_special, parse_special, false)
}

/// `llama-tokenize` ids for `text` on stdin, with its escape processing on or off.
fn llama_ids_escaped(
    model: &Path,
    text: &str,
    add_special: bool,
    parse_special: bool,
    escape: bool,
) -> Vec<u32> {
    let mut cmd = Command::new(common::llama_tool("llama-tokenize"));
    cmd.arg("-m")
        .arg(model)
        .args(["--stdin", "--ids", "--log-disable"]);
    if !escape {
        cmd.arg("--no-escape");
    }
    if !add_special {
        cmd.arg("--no-bos");
    }
    if !parse_special {
        cmd.arg("--no-parse-special");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("llama-tokenize runs");
    let mut stdin = child.stdin.take().unwrap();
    let bytes = text.as_bytes().to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("llama-tokenize finishes");
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "llama-tokenize failed on {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_ids(&String::from_utf8_lossy(&out.stdout))
}

/// Parses the `[1, 2, 3]` line that `--ids` prints.
fn parse_ids(stdout: &str) -> Vec<u32> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .unwrap_or_else(|| panic!("no id list in llama-tokenize output: {stdout:.400}"));
    let inner = line.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or_else(|_| panic!("bad id {s:?}")))
        .collect()
}

/// Asserts equal id lists, showing the first difference with decoded context.
fn assert_same(tok: &Tokenizer, what: &str, ours: &[u32], theirs: &[u32]) {
    if ours == theirs {
        return;
    }
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    let lo = at.saturating_sub(8);
    let show = |ids: &[u32]| {
        let hi = (at + 8).min(ids.len());
        let window = &ids[lo.min(ids.len())..hi];
        format!("{window:?} = {:?}", tok.decode(window))
    };
    panic!(
        "{what}: ids differ at position {at} (ours {} tokens, llama.cpp {})\n  ours:      {}\n  llama.cpp: {}\n  text before: {:?}",
        ours.len(),
        theirs.len(),
        show(ours),
        show(theirs),
        tok.decode(&ours[lo.min(ours.len())..at.min(ours.len())])
    );
}

fn tokenizer(model: &Path) -> Tokenizer {
    let m = Model::open(model).expect("model opens");
    Tokenizer::from_metadata(m.metadata()).expect("tokenizer builds")
}

/// The awkward strings joined into one text (one llama-tokenize run per mode: loading gemma3's
/// 262k-token vocabulary takes seconds), plus the empty text on its own.
fn check_strings(model: &Path, tok: &Tokenizer, label: &str) {
    let joined = TRICKY.join("\n");
    for (add_special, parse_special) in [(false, false), (true, false), (true, true)] {
        let ours = tok
            .encode_with(&joined, add_special, parse_special)
            .unwrap();
        let theirs = llama_ids(model, &joined, add_special, parse_special);
        assert_same(
            tok,
            &format!("{label} awkward strings (add_special {add_special}, parse_special {parse_special})"),
            &ours,
            &theirs,
        );
    }
    let ours = tok.encode("", true).unwrap();
    assert_same(
        tok,
        &format!("{label} empty text"),
        &ours,
        &llama_ids(model, "", true, false),
    );
}

#[test]
fn smollm2_hello_world() {
    let tok = tokenizer(&common::smollm2());
    assert_eq!(tok.encode("Hello world", false).unwrap(), [19556, 905]);
    assert_eq!(tok.vocab_size(), 49152);
    assert!(!tok.add_bos());
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.decode(&[19556, 905]), "Hello world");
}

/// What llama-perplexity tokenizes: escapes processed as llama.cpp's tools do, one trailing
/// newline dropped.
#[test]
fn escapes_and_prompt_files_follow_llama_cpp() {
    let model = common::smollm2();
    let tok = tokenizer(&model);
    let raw = r#"a\nb\tc\\d\'e\"f\x41\x4g\x 7\q\"#;
    let ours = tok.encode(&process_escapes(raw), true).unwrap();
    let theirs = llama_ids_escaped(&model, raw, true, false, true);
    assert_same(&tok, "escapes", &ours, &theirs);
    assert_eq!(process_escapes(r"x\n\x41\zy\"), "x\nA\\zy\\");
    assert_eq!(prompt_from_file("line\n\n"), "line\n");
    assert_eq!(prompt_from_file("no newline"), "no newline");
}

#[test]
fn smollm2_tricky_strings() {
    let model = common::smollm2();
    check_strings(&model, &tokenizer(&model), "SmolLM2");
}

#[test]
fn gemma3_tricky_strings() {
    let model = common::gemma3();
    let tok = tokenizer(&model);
    assert!(tok.add_bos());
    assert_eq!(tok.bos_id(), Some(2));
    check_strings(&model, &tok, "gemma3");
}

/// `llama-tokenize -f FILE` ids (file read verbatim, BOS as the model asks, specials as text).
fn llama_file_ids(model: &Path, file: &Path) -> Vec<u32> {
    let out = common::run_ok(
        Command::new(common::llama_tool("llama-tokenize"))
            .arg("-m")
            .arg(model)
            .arg("-f")
            .arg(file)
            .args([
                "--ids",
                "--log-disable",
                "--no-escape",
                "--no-parse-special",
            ]),
    );
    parse_ids(&out)
}

/// Both project-written texts, each whole: the evaluation text (wikitext-2's layout) and the
/// built-in calibration text (prose, code, dialogue).
fn check_texts(model: &Path, label: &str) {
    let tok = tokenizer(model);
    for file in [common::eval_text(), common::calibration_text()] {
        let text = std::fs::read_to_string(&file).unwrap();
        let t0 = std::time::Instant::now();
        let ours = tok.encode(&text, true).unwrap();
        let took = t0.elapsed();
        let theirs = llama_file_ids(model, &file);
        let name = file.file_name().unwrap().to_string_lossy();
        eprintln!(
            "{label}: {name} ({} bytes) -> {} tokens in {:.2} s (llama.cpp: {} tokens)",
            text.len(),
            ours.len(),
            took.as_secs_f64(),
            theirs.len()
        );
        assert_same(&tok, &format!("{label} {name}"), &ours, &theirs);
    }
}

#[test]
fn smollm2_project_texts_match_llama_tokenize() {
    check_texts(&common::smollm2(), "SmolLM2");
}

#[test]
fn gemma3_project_texts_match_llama_tokenize() {
    check_texts(&common::gemma3(), "gemma3");
}

/// Writes a GGUF holding `source`'s metadata (no tensors) with `tokenizer.ggml.pre` set to `pre`:
/// enough for llama-tokenize, which loads only the vocabulary.
fn vocab_only(source: &Metadata, pre: &str, dir: &Path) -> std::path::PathBuf {
    let mut md = source.clone();
    md.set("tokenizer.ggml.pre", Value::String(pre.as_bytes().to_vec()));
    let path = dir.join(format!("vocab-{pre}.gguf"));
    common::write_gguf(&path, 3, &md, Vec::new());
    path
}

/// Gives SmolLM2's vocabulary tokens and merges for every 2- and 3-digit string (it has none,
/// as SmolLM2 splits digits), so that how a pre-tokenizer groups digits changes the ids.
fn add_digit_merges(md: &mut Metadata) {
    let Some(Value::Array(Array::String(tokens))) = md.get("tokenizer.ggml.tokens").cloned() else {
        panic!("no token list");
    };
    let Some(Value::Array(Array::I32(types))) = md.get("tokenizer.ggml.token_type").cloned() else {
        panic!("no token types");
    };
    let Some(Value::Array(Array::String(merges))) = md.get("tokenizer.ggml.merges").cloned() else {
        panic!("no merges");
    };
    let (mut tokens, mut types, mut merges) = (tokens, types, merges);
    for a in 0..10 {
        for b in 0..10 {
            tokens.push(format!("{a}{b}").into_bytes());
            types.push(1);
            merges.push(format!("{a} {b}").into_bytes());
        }
    }
    for a in 0..100 {
        for b in 0..10 {
            tokens.push(format!("{a:02}{b}").into_bytes());
            types.push(1);
            merges.push(format!("{a:02} {b}").into_bytes());
        }
    }
    md.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    md.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    md.set("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
}

/// Every kind of pre-tokenizer against llama-tokenize, on SmolLM2's vocabulary and merges with
/// `tokenizer.ggml.pre` swapped (and `add_bos_token` removed, so each type's own BOS default
/// shows): the awkward strings and the first 30 kB of the evaluation text.
#[test]
fn pre_tokenizer_types_match_llama_tokenize() {
    let dir = common::workdir();
    let source = Model::open(common::smollm2()).unwrap();
    let mut md = source.metadata().clone();
    md.remove("tokenizer.ggml.add_bos_token");
    add_digit_merges(&mut md);
    let eval = std::fs::read_to_string(common::eval_text()).unwrap();
    let mut cut = 30_000;
    while !eval.is_char_boundary(cut) {
        cut += 1;
    }
    let text = format!(
        "{}\n{}\n{}",
        TRICKY.join("\n"),
        random_text(7, 3000),
        &eval[..cut]
    );
    // One `tokenizer.ggml.pre` value of each kind llama.cpp distinguishes, from the library's
    // table (so a kind added there is checked here).
    for pre in tokenizer::pre_tokenizer_kinds() {
        let path = vocab_only(&md, pre, dir.path());
        let m = Model::open(&path).unwrap();
        let tok = Tokenizer::from_metadata(m.metadata()).unwrap_or_else(|e| panic!("{pre}: {e}"));
        let ours = tok.encode(&text, true).unwrap();
        let theirs = llama_ids(&path, &text, true, false);
        assert_same(&tok, &format!("pre {pre:?}"), &ours, &theirs);
    }
}

// === The BOS rule ===

/// Vocabulary-only GGUFs without `tokenizer.ggml.add_bos_token`, so that each tokenizer type's
/// own default decides: gemma3's SentencePiece vocabulary (llama.cpp adds BOS), SmolLM2's BPE
/// vocabulary with its "smollm" pre-tokenizer (no BOS) and with "llama-bpe" (BOS).
fn keyless_vocabularies(dir: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let cases = [
        ("SentencePiece", common::gemma3(), None),
        ("BPE smollm", common::smollm2(), None),
        ("BPE llama-bpe", common::smollm2(), Some("llama-bpe")),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (label, source, pre))| {
            let mut md = Model::open(&source).unwrap().metadata().clone();
            assert!(md.remove("tokenizer.ggml.add_bos_token").is_some());
            if let Some(pre) = pre {
                md.set("tokenizer.ggml.pre", text(pre));
            }
            let path = dir.join(format!("keyless-{i}.gguf"));
            common::write_gguf(&path, 3, &md, Vec::new());
            (label, path)
        })
        .collect()
}

/// Checks `rule` (the BOS a model's windows start with) against llama-tokenize on every
/// key-less vocabulary: llama.cpp adds BOS when its ids with specials are one longer than
/// without. For the project's rule also checks that both window layouts start with it.
fn check_bos_rule(rule: &dyn Fn(&Model) -> Option<u32>, windows_too: bool) {
    use gguf_prune::calibration::{self, Layout};
    let dir = common::workdir();
    let sample = "Hello world. It's a test, with digits 12345 and more words to fill the windows.";
    for (label, path) in keyless_vocabularies(dir.path()) {
        let with = llama_ids(&path, sample, true, false);
        let without = llama_ids(&path, sample, false, false);
        let llama_bos = (with.len() == without.len() + 1).then(|| with[0]);
        assert_eq!(with[with.len() - without.len()..], without[..], "{label}");
        let model = Model::open(&path).unwrap();
        assert_eq!(
            rule(&model),
            llama_bos,
            "{label}: BOS differs from llama-tokenize's"
        );
        if windows_too {
            let text = sample.repeat(20);
            let windows = |layout| {
                let tokens = calibration::tokenize(&model, &text, layout).unwrap();
                calibration::split(&tokens, 8, layout).unwrap()
            };
            let scoring = windows(Layout::Calibration { max_tokens: 64 });
            let eval = windows(Layout::Perplexity { max_chunks: None });
            for (layout, ws) in [("calibration", &scoring), ("perplexity", &eval)] {
                // The first window starts with BOS, or else with the text's first token.
                assert_eq!(
                    ws[0][0],
                    llama_bos.unwrap_or(without[0]),
                    "{label}, {layout}"
                );
                if let Some(bos) = llama_bos {
                    assert!(ws.iter().all(|w| w[0] == bos), "{label}, {layout}");
                }
            }
        }
    }
}

/// The project's one BOS rule ([`Tokenizer::bos_to_add`]), which every window uses, agrees with
/// llama-tokenize for both tokenizer types when the model leaves the key out.
#[test]
fn bos_rule_follows_llama_tokenize_without_the_key() {
    check_bos_rule(
        &|m| {
            Tokenizer::from_metadata(m.metadata())
                .unwrap()
                .bos_to_add()
                .unwrap()
        },
        true,
    );
}

/// Control: the rule scoring had before (a missing key means no BOS) must be caught by the same
/// check, on the SentencePiece vocabulary.
#[test]
#[should_panic(expected = "SentencePiece: BOS differs from llama-tokenize's")]
fn control_key_only_bos_rule_is_caught() {
    check_bos_rule(
        &|m| {
            let md = m.metadata();
            md.get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool())
                .unwrap_or(false)
                .then(|| md.get_u32("tokenizer.ggml.bos_token_id").ok())
                .flatten()
        },
        false,
    );
}

// === Malformed vocabularies: clean errors, never panics ===

fn strings(items: &[&str]) -> Value {
    Value::Array(Array::String(
        items.iter().map(|s| s.as_bytes().to_vec()).collect(),
    ))
}

fn text(s: &str) -> Value {
    Value::String(s.as_bytes().to_vec())
}

/// A tiny byte-level BPE vocabulary: "a", "b", "ab", "Ġ" (space), "Ġab", and junk merges.
fn tiny_bpe() -> Metadata {
    let mut md = Metadata::new();
    md.set("tokenizer.ggml.model", text("gpt2"));
    md.set("tokenizer.ggml.pre", text("gpt-2"));
    md.set(
        "tokenizer.ggml.tokens",
        strings(&["a", "b", "ab", "\u{120}", "\u{120}ab", "<|end|>", ""]),
    );
    md.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1, 1, 1, 1, 1, 3, 1])),
    );
    md.set(
        "tokenizer.ggml.merges",
        strings(&[
            "a b",
            "\u{120} ab",
            "nospace",
            " lead",
            "trail ",
            "zz yy",
            "a b",
        ]),
    );
    md
}

fn err(md: &Metadata) -> String {
    match Tokenizer::from_metadata(md) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tiny_bpe_merges_by_rank_and_ignores_junk() {
    let tok = Tokenizer::from_metadata(&tiny_bpe()).unwrap();
    assert_eq!(tok.encode("ab ab", false).unwrap(), [2, 4]);
    // "c" has neither a token nor a single-byte token: llama.cpp drops it silently.
    assert_eq!(tok.encode("abc", false).unwrap(), [2]);
    // Control text is plain text unless parsed as special.
    assert_eq!(tok.encode_with("<|end|>", false, true).unwrap(), [5]);
    assert_eq!(tok.decode(&[2, 4, 5]), "ab ab");
    // BPE default BOS id 11 is outside this vocabulary: no BOS, and none is added.
    assert_eq!(tok.bos_id(), None);
    assert_eq!(tok.encode("a", true).unwrap(), [0]);
}

#[test]
fn malformed_metadata_gives_clean_errors() {
    let mut md = tiny_bpe();
    md.remove("tokenizer.ggml.model");
    assert!(err(&md).contains("tokenizer.ggml.model"), "{}", err(&md));

    let mut md = tiny_bpe();
    md.set("tokenizer.ggml.model", text("bert"));
    assert!(err(&md).contains("\"bert\""), "{}", err(&md));

    let mut md = tiny_bpe();
    md.remove("tokenizer.ggml.tokens");
    assert!(err(&md).contains("tokenizer.ggml.tokens"), "{}", err(&md));

    let mut md = tiny_bpe();
    md.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::I32(vec![1, 2])),
    );
    assert!(err(&md).contains("tokenizer.ggml.tokens"), "{}", err(&md));

    let mut md = tiny_bpe();
    md.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(Vec::new())),
    );
    assert!(err(&md).contains("empty"), "{}", err(&md));

    let mut md = tiny_bpe();
    md.set("tokenizer.ggml.pre", text("brand-new-pre"));
    assert!(err(&md).contains("\"brand-new-pre\""), "{}", err(&md));

    let mut md = tiny_bpe();
    md.remove("tokenizer.ggml.merges");
    assert!(err(&md).contains("tokenizer.ggml.merges"), "{}", err(&md));

    let mut md = tiny_bpe();
    md.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1, 1])),
    );
    assert!(
        err(&md).contains("token_type has 2 entries for 7 tokens"),
        "{}",
        err(&md)
    );

    let mut md = tiny_bpe();
    md.set(
        "tokenizer.ggml.token_type",
        strings(&["1", "1", "1", "1", "1", "1", "1"]),
    );
    assert!(
        err(&md).contains("tokenizer.ggml.token_type"),
        "{}",
        err(&md)
    );

    let mut md = tiny_bpe();
    md.set("tokenizer.ggml.add_bos_token", text("yes"));
    assert!(err(&md).contains("add_bos_token"), "{}", err(&md));
}

#[test]
fn spm_without_byte_tokens_errors_on_unknown_text() {
    let mut md = Metadata::new();
    md.set("tokenizer.ggml.model", text("llama"));
    md.set(
        "tokenizer.ggml.tokens",
        strings(&["<unk>", "<s>", "</s>", "\u{2581}", "a", "\u{2581}a"]),
    );
    md.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0, 0.0, 0.0, -1.0, -2.0, -0.5])),
    );
    md.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![2, 3, 3, 1, 1, 1])),
    );
    // Out-of-range BOS in the metadata: llama.cpp keeps its default (1).
    md.set("tokenizer.ggml.bos_token_id", Value::U32(99));
    let tok = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(tok.bos_id(), Some(1));
    assert!(tok.add_bos());
    assert_eq!(tok.encode("a a", true).unwrap(), [1, 5, 5]);
    let e = tok.encode("aZ", false).unwrap_err().to_string();
    assert!(e.contains("0x5A"), "{e}");

    md.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0; 3])),
    );
    assert!(
        err(&md).contains("scores has 3 entries for 6 tokens"),
        "{}",
        err(&md)
    );
}

/// SentencePiece's space prefix (Llama 2 style: on by default, gemma3 turns it off), including
/// after special tokens: gemma3's vocabulary with `add_space_prefix` removed.
#[test]
fn spm_space_prefix_matches_llama_tokenize() {
    let dir = common::workdir();
    let source = Model::open(common::gemma3()).unwrap();
    let mut md = source.metadata().clone();
    md.remove("tokenizer.ggml.add_space_prefix");
    let path = dir.path().join("gemma3-space-prefix.gguf");
    common::write_gguf(&path, 3, &md, Vec::new());
    let tok = Tokenizer::from_metadata(&md).unwrap();
    let joined = TRICKY.join("\n");
    for parse_special in [false, true] {
        let ours = tok.encode_with(&joined, true, parse_special).unwrap();
        let theirs = llama_ids(&path, &joined, true, parse_special);
        assert_same(
            &tok,
            &format!("space prefix, parse_special {parse_special}"),
            &ours,
            &theirs,
        );
    }
}

/// Pseudo-random text from pieces that stress the split rules and the special-token cut
/// (a fixed seed, so a failure reproduces).
fn random_text(seed: u64, pieces: usize) -> String {
    const POOL: &[&str] = &[
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\r\n",
        "\t",
        "\u{a0}",
        "\u{3000}",
        "a",
        "the",
        "The",
        "ing",
        "Hello",
        " world",
        "'s",
        "'S",
        "'ll",
        "'",
        "0",
        "12",
        "345",
        "6789",
        ".",
        ",",
        "...",
        "!?",
        "(",
        ")",
        "-",
        "--",
        "\"",
        "<",
        ">",
        "/",
        "\\",
        "_",
        "é",
        "e\u{301}",
        "ß",
        "Ω",
        "д",
        "日本",
        "語",
        "한",
        "🙂",
        "👍🏽",
        "\u{200d}",
        "\u{fe0f}",
        "²",
        "½",
        "٣",
        "<|im_start|>",
        "<|endoftext|>",
        "<start_of_turn>",
        "<eos>",
        "<unused1>",
        "[multimodal]",
        "\u{2581}",
        "\u{fffd}",
        "\u{1}",
    ];
    let mut state = seed;
    let mut out = String::new();
    for _ in 0..pieces {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(POOL[(state >> 33) as usize % POOL.len()]);
    }
    out
}

#[test]
fn random_text_matches_llama_tokenize() {
    for (model, label) in [(common::smollm2(), "SmolLM2"), (common::gemma3(), "gemma3")] {
        let tok = tokenizer(&model);
        let seed: u64 = std::env::var("SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed);
        let text = random_text(seed, 6000);
        for parse_special in [false, true] {
            let ours = tok.encode_with(&text, true, parse_special).unwrap();
            let theirs = llama_ids(&model, &text, true, parse_special);
            assert_same(
                &tok,
                &format!("{label} random text, parse_special {parse_special}"),
                &ours,
                &theirs,
            );
        }
    }
}
