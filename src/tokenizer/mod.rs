//! Text to token ids exactly as llama.cpp tokenizes it, built from a GGUF's `tokenizer.ggml.*`
//! metadata: byte-level BPE (`tokenizer.ggml.model` "gpt2") with the pre-tokenizer named by
//! `tokenizer.ggml.pre`, and SentencePiece (`"llama"`, used by Llama 2, Gemma 3 and others).
//!
//! The ids must be llama.cpp's own, because perplexity and calibration results are compared
//! with llama.cpp's. So this follows `llama_vocab::impl::tokenize` step by step rather than
//! Hugging Face's `tokenizers`: special and user-defined tokens are cut out of the text first
//! (`tokenizer_st_partition`), then each remaining piece is pre-tokenized and merged.
//! Everything is written natively: the `tokenizers` crate implements Hugging Face's regexes, not
//! llama.cpp's hand-written split scanners (which differ at piece ends, for example), has no
//! SentencePiece-by-score merging with llama.cpp's tie rules, and would add a large dependency
//! for a few hundred lines.
//!
//! Checked against `llama-tokenize` (llama.cpp 0c1e57098) in `tests/llama_tokenizer.rs`: the whole of
//! wiki.test.raw gives identical ids for SmolLM2 (gpt2/smollm, 303,415 tokens) and Gemma 3
//! (SentencePiece with user-defined white-space tokens, 295,216 tokens), as do awkward strings
//! (digits, contractions, scripts, emoji, white-space runs, special-token texts) and 28 kinds of
//! pre-tokenizer run on SmolLM2's vocabulary. Known gaps: pre-tokenizer types with custom
//! scanners not written here (kimi-k2, afmoe, tiny_aya, superbpe, gemma4-style BPE) are refused
//! by name; equal-length special tokens that overlap in the text may be cut in a different order
//! than llama.cpp's unstable sort picks.
//!
//! ```no_run
//! use gguf_prune::gguf::Model;
//! use gguf_prune::tokenizer::Tokenizer;
//! let model = Model::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tok = Tokenizer::from_metadata(model.metadata())?;
//! assert_eq!(tok.encode("Hello world", false)?, [19556, 905]);
//! # Ok::<(), gguf_prune::Error>(())
//! ```

mod bpe;
mod pre;
mod spm;
mod unicode;

use std::collections::HashMap;

use aho_corasick::AhoCorasick;

use crate::error::{Error, Result};
use crate::gguf::{Array, Metadata, Value};

pub use pre::KNOWN as KNOWN_PRE_TOKENIZERS;

// Token attributes, llama.cpp's `llama_token_attr` bits.
const ATTR_UNKNOWN: u32 = 1 << 0;
const ATTR_UNUSED: u32 = 1 << 1;
const ATTR_NORMAL: u32 = 1 << 2;
const ATTR_CONTROL: u32 = 1 << 3;
const ATTR_USER_DEFINED: u32 = 1 << 4;
const ATTR_BYTE: u32 = 1 << 5;
const ATTR_LSTRIP: u32 = 1 << 7;
const ATTR_RSTRIP: u32 = 1 << 8;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`) to attributes.
fn attr_of_type(t: i128) -> u32 {
    match t {
        1 => ATTR_NORMAL,
        2 => ATTR_UNKNOWN,
        3 => ATTR_CONTROL,
        4 => ATTR_USER_DEFINED,
        5 => ATTR_UNUSED,
        6 => ATTR_BYTE,
        _ => 0,
    }
}

/// Token texts that llama.cpp treats as end-of-generation and forces to control tokens
/// whatever their stored type (`llama_vocab::impl::load`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{FF5C}end\u{2581}of\u{2581}sentence\u{FF5C}>",
    "[e~[",
];

/// Fill-in-the-middle token texts, forced to control when the model names no such token
/// (metadata key suffix, candidate texts).
const FIM_TEXTS: &[(&[&str], &[&str])] = &[
    (
        &["fim_pre_token_id", "prefix_token_id"],
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<\u{FF5C}fim\u{2581}begin\u{FF5C}>",
            "<PRE>",
            "\u{2581}<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        &["fim_suf_token_id", "suffix_token_id"],
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<\u{FF5C}fim\u{2581}hole\u{FF5C}>",
            "<SUF>",
            "\u{2581}<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        &["fim_mid_token_id", "middle_token_id"],
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<\u{FF5C}fim\u{2581}end\u{FF5C}>",
            "<MID>",
            "\u{2581}<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        &["fim_pad_token_id"],
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        &["fim_rep_token_id"],
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    (&["fim_sep_token_id"], &["<|file_sep|>"]),
];

/// The vocabulary as llama.cpp holds it.
pub(crate) struct Vocab {
    /// Token texts by id (empty ones renamed `[EMPTY_<id>]`, as llama.cpp does).
    pub texts: Vec<Vec<u8>>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    /// Text to id; for duplicate texts the last id wins, as in llama.cpp's map.
    pub ids: HashMap<Vec<u8>, u32>,
}

impl Vocab {
    fn id(&self, text: &[u8]) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

enum Model {
    Bpe(Box<bpe::Bpe>),
    Spm {
        /// `<0xXX>` (or the bare byte) token for each byte: SentencePiece's byte fallback.
        byte_tokens: Box<[Option<u32>; 256]>,
    },
}

/// A piece of the input after special tokens are cut out: raw text (byte range) or a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// A tokenizer built from GGUF metadata that reproduces llama.cpp's token ids.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    /// Control, user-defined and unknown tokens, longest first: the order in which llama.cpp
    /// cuts them out of the text.
    specials: Vec<u32>,
    /// Finds which of `specials` occur in a text at all (a text that lacks a token can skip
    /// its pass; the cutting itself follows llama.cpp's order exactly).
    special_finder: Option<AhoCorasick>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

fn key(suffix: &str) -> String {
    format!("tokenizer.ggml.{suffix}")
}

fn string_array<'a>(metadata: &'a Metadata, name: &str) -> Result<&'a [Vec<u8>]> {
    let k = key(name);
    match metadata.get_array(&k)? {
        Array::String(v) => Ok(v),
        other => Err(Error::KeyType {
            key: k,
            expected: "an array of strings",
            found: format!("an array of {:?}", other.elem_type()),
        }),
    }
}

fn opt_bool(metadata: &Metadata, name: &str) -> Result<Option<bool>> {
    let k = key(name);
    match metadata.get(&k) {
        None => Ok(None),
        Some(v) => v.to_bool().map(Some).ok_or_else(|| Error::KeyType {
            key: k,
            expected: "a bool",
            found: format!("{:?}", v.value_type()),
        }),
    }
}

fn opt_id(metadata: &Metadata, name: &str) -> Option<u64> {
    metadata.get(&key(name)).and_then(Value::to_u64)
}

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata (model "gpt2" BPE or "llama"
    /// SentencePiece), with llama.cpp's defaults for whatever the metadata leaves out.
    pub fn from_metadata(metadata: &Metadata) -> Result<Tokenizer> {
        let model_name = metadata.get_str(&key("model"))?.to_string();
        let is_bpe = match model_name.as_str() {
            "gpt2" => true,
            "llama" => false,
            _ => return Err(Error::UnsupportedTokenizer { model: model_name }),
        };
        let pre_name = match metadata.get(&key("pre")) {
            None => None,
            Some(_) => Some(metadata.get_str(&key("pre"))?.to_string()),
        };

        // Token texts, scores and types.
        let raw = string_array(metadata, "tokens")?;
        let n = raw.len();
        if n == 0 {
            return Err(Error::Tokenize {
                what: format!("{} is empty", key("tokens")),
            });
        }
        if u32::try_from(n).is_err() {
            return Err(Error::Tokenize {
                what: format!(
                    "{} has {n} entries, more than token ids can address",
                    key("tokens")
                ),
            });
        }
        let per_token = |name: &str| -> Result<Option<&Array>> {
            let k = key(name);
            match metadata.get(&k) {
                None => Ok(None),
                Some(Value::Array(a)) if a.len() >= n => Ok(Some(a)),
                Some(Value::Array(a)) => Err(Error::Tokenize {
                    what: format!("{k} has {} entries for {n} tokens", a.len()),
                }),
                Some(v) => Err(Error::KeyType {
                    key: k,
                    expected: "an array",
                    found: format!("{:?}", v.value_type()),
                }),
            }
        };
        let scores_arr = per_token("scores")?;
        let types_arr = per_token("token_type")?;
        let mut texts = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(n);
        let mut attrs = Vec::with_capacity(n);
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in raw.iter().enumerate() {
            let text = if t.is_empty() {
                format!("[EMPTY_{i}]").into_bytes()
            } else {
                t.clone()
            };
            ids.insert(text.clone(), i as u32);
            texts.push(text);
            let score = match scores_arr {
                Some(a) => a.float_at(i).ok_or_else(|| Error::KeyType {
                    key: key("scores"),
                    expected: "an array of numbers",
                    found: format!("an array of {:?}", a.elem_type()),
                })? as f32,
                None => 0.0,
            };
            scores.push(score);
            let attr = match types_arr {
                Some(a) => attr_of_type(a.int_at(i).ok_or_else(|| Error::KeyType {
                    key: key("token_type"),
                    expected: "an array of integers",
                    found: format!("an array of {:?}", a.elem_type()),
                })?),
                None => ATTR_NORMAL,
            };
            attrs.push(attr);
        }
        let mut vocab = Vocab {
            texts,
            scores,
            attrs,
            ids,
        };

        // Vocabulary-type defaults, then the pre-tokenizer's, then the metadata's.
        let (model, mut bos, mut eos, mut add_bos, mut add_space_prefix) = if is_bpe {
            let (pre, flags) = pre::PreTokenizer::new(pre_name.as_deref())?;
            let merges = string_array(metadata, "merges")?;
            let bpe = bpe::Bpe::new(&vocab, pre, flags.ignore_merges, merges);
            let bos = if flags.no_bos { None } else { Some(11u64) };
            (
                Model::Bpe(Box::new(bpe)),
                bos,
                Some(11u64),
                flags.add_bos,
                false,
            )
        } else {
            let mut byte_tokens = Box::new([None; 256]);
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                *slot = vocab
                    .id(format!("<0x{b:02X}>").as_bytes())
                    .or_else(|| vocab.id(&[b as u8]));
            }
            (
                Model::Spm { byte_tokens },
                Some(1u64),
                Some(2u64),
                true,
                true,
            )
        };
        let in_range = |id: Option<u64>| id.filter(|&i| i < n as u64);
        bos = in_range(bos);
        eos = in_range(eos);
        if let Some(id) = in_range(opt_id(metadata, "bos_token_id")) {
            bos = Some(id);
        }
        if let Some(id) = in_range(opt_id(metadata, "eos_token_id")) {
            eos = Some(id);
        }
        if let Some(b) = opt_bool(metadata, "add_bos_token")? {
            add_bos = b;
        }
        let add_eos = opt_bool(metadata, "add_eos_token")?.unwrap_or(false);
        if let Some(b) = opt_bool(metadata, "add_space_prefix")? {
            add_space_prefix = b;
        }

        fix_attributes(&mut vocab, metadata, pre_name.as_deref());

        // Special tokens longest first (stable: equal lengths keep id order).
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                vocab.attrs[i as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0
            })
            .filter(|&i| std::str::from_utf8(&vocab.texts[i as usize]).is_ok())
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(vocab.texts[i as usize].len()));
        let special_finder = if specials.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::new(specials.iter().map(|&i| &vocab.texts[i as usize])).map_err(
                    |e| Error::Tokenize {
                        what: format!("cannot index {} special tokens: {e}", specials.len()),
                    },
                )?,
            )
        };

        Ok(Tokenizer {
            vocab,
            model,
            specials,
            special_finder,
            bos: bos.map(|i| i as u32),
            eos: eos.map(|i| i as u32),
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }

    /// Text to token ids, as llama.cpp tokenizes it with `parse_special = false` (the way
    /// llama-perplexity and llama-imatrix tokenize their input); `add_special` adds BOS (and
    /// EOS) when the model's metadata says so, exactly like `llama_tokenize`'s `add_special`.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.encode_with(text, add_special, false)
    }

    /// Like [`Tokenizer::encode`], choosing whether control tokens written in the text
    /// (`<|im_start|>`, `<start_of_turn>`, ...) become those tokens (`parse_special`, the
    /// default of the `llama-tokenize` tool) or are tokenized as plain text.
    pub fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let fragments = self.partition(text, parse_special);
        if add_special {
            out.extend(self.bos_to_add()?);
        }
        match &self.model {
            Model::Bpe(bpe) => {
                for f in &fragments {
                    crate::interrupt::check()?;
                    match *f {
                        Fragment::Text(a, b) => bpe.encode(&self.vocab, &text[a..b], &mut out)?,
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::Spm { byte_tokens } => {
                let mut prev_special = true;
                let mut piece = String::new();
                for f in &fragments {
                    crate::interrupt::check()?;
                    match *f {
                        Fragment::Text(a, b) => {
                            piece.clear();
                            if self.add_space_prefix && prev_special {
                                piece.push('\u{2581}');
                            }
                            for c in text[a..b].chars() {
                                piece.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::encode(&self.vocab, byte_tokens, &piece, &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(self.eos.ok_or_else(|| Error::Tokenize {
                what: "the model asks for an EOS token but names none in its vocabulary".into(),
            })?);
        }
        Ok(out)
    }

    /// Cuts special tokens out of `text` the way llama.cpp's `tokenizer_st_partition` does:
    /// token by token, longest first, every occurrence in every remaining text piece, leftmost
    /// first. Control and unknown tokens take part only with `parse_special`; user-defined
    /// tokens always do.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let bytes = text.as_bytes();
        let mut frags = if text.is_empty() {
            Vec::new()
        } else {
            vec![Fragment::Text(0, bytes.len())]
        };
        let Some(finder) = &self.special_finder else {
            return frags;
        };
        let mut present = vec![false; self.specials.len()];
        for m in finder.find_overlapping_iter(bytes) {
            present[m.pattern().as_usize()] = true;
        }
        for (k, &id) in self.specials.iter().enumerate() {
            let attr = self.vocab.attrs[id as usize];
            if !present[k] || (!parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0) {
                continue;
            }
            let needle = &self.vocab.texts[id as usize];
            let find = memchr::memmem::Finder::new(needle);
            let mut next = Vec::with_capacity(frags.len() + 4);
            for f in frags {
                let Fragment::Text(mut start, end) = f else {
                    next.push(f);
                    continue;
                };
                loop {
                    let Some(rel) = find.find(&bytes[start..end]) else {
                        next.push(Fragment::Text(start, end));
                        break;
                    };
                    let at = start + rel;
                    let mut left_end = at;
                    if attr & ATTR_LSTRIP != 0 {
                        while left_end > start && c_isspace(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text(start, left_end));
                    }
                    next.push(Fragment::Token(id));
                    start = at + needle.len();
                    if attr & ATTR_RSTRIP != 0 {
                        while start < end && c_isspace(bytes[start]) {
                            start += 1;
                        }
                    }
                    if start >= end {
                        break;
                    }
                }
            }
            frags = next;
        }
        frags
    }

    /// Token ids back to text, lossily: control tokens are left out, byte tokens and
    /// byte-level BPE characters are reassembled into bytes, invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(text) = self.vocab.texts.get(id as usize) else {
                continue;
            };
            let attr = self.vocab.attrs[id as usize];
            if attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            if attr & ATTR_USER_DEFINED != 0 {
                bytes.extend_from_slice(text);
                continue;
            }
            match &self.model {
                Model::Bpe(bpe) if attr & ATTR_NORMAL != 0 => bpe.decode_piece(text, &mut bytes),
                Model::Spm { .. } if attr & ATTR_NORMAL != 0 => {
                    let s = String::from_utf8_lossy(text).replace('\u{2581}', " ");
                    bytes.extend_from_slice(s.as_bytes());
                }
                _ if attr & ATTR_BYTE != 0 => {
                    let hex = std::str::from_utf8(text)
                        .ok()
                        .and_then(|s| s.strip_prefix("<0x"))
                        .and_then(|s| s.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => bytes.push(b),
                        None => bytes.extend_from_slice(text),
                    }
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The BOS token, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The EOS token, if the vocabulary has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether llama.cpp adds BOS when asked to add special tokens.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The BOS that starts every tokenized text and every window, or `None` when the model adds
    /// none: the one BOS rule of the project. As in llama.cpp (`llama_vocab::impl::load`), the
    /// tokenizer type sets the default (SentencePiece adds BOS; BPE does not, except for the
    /// pre-tokenizers that say so, such as "llama-bpe"), and `tokenizer.ggml.add_bos_token`
    /// overrides it when present. A model that adds BOS but names none is an error, where
    /// llama.cpp's tokenizer aborts.
    pub fn bos_to_add(&self) -> Result<Option<u32>> {
        if !self.add_bos {
            return Ok(None);
        }
        self.bos.map(Some).ok_or_else(|| Error::Tokenize {
            what: "the model asks for a BOS token but names none in its vocabulary".into(),
        })
    }

    /// Whether llama.cpp adds EOS when asked to add special tokens.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.texts.len()
    }

    /// The stored text of a token (byte-level BPE tokens are in GPT-2's byte alphabet).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.vocab.texts.get(id as usize).map(Vec::as_slice)
    }
}

/// The text llama.cpp's tools (llama-perplexity, llama-imatrix, llama-completion) tokenize when
/// given `-f FILE`: the file with one trailing newline removed, then escape sequences processed
/// (their `--escape` is on by default). llama-perplexity tokenizes it with `add_special` true and
/// `parse_special` false, that is [`Tokenizer::encode`]`(&prompt_from_file(..), true)`.
/// (`llama-tokenize -f` differs: it keeps the trailing newline.)
pub fn prompt_from_file(contents: &str) -> String {
    process_escapes(contents.strip_suffix('\n').unwrap_or(contents))
}

/// llama.cpp's `string_process_escapes`: `\n`, `\r`, `\t`, `\'`, `\"`, `\\` and `\xHH` are
/// replaced; any other backslash pair is kept as it is. A `\x` byte that is not valid UTF-8
/// becomes U+FFFD here (llama.cpp would pass the raw byte on).
pub fn process_escapes(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = b[i];
        let simple = match c {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'\'' | b'"' | b'\\' => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
        } else if let Some(v) = (c == b'x' && i + 2 < b.len())
            .then(|| hex_pair(b[i + 1], b[i + 2]))
            .flatten()
        {
            out.push(v);
            i += 2;
        } else {
            out.push(b'\\');
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Two characters as C's `strtol(.., 16)` reads them when it must consume both: two hex
/// digits, or a leading space or sign and one hex digit.
fn hex_pair(a: u8, b: u8) -> Option<u8> {
    let digit = |x: u8| (x as char).to_digit(16).map(|d| d as u8);
    match (a, digit(a), digit(b)) {
        (_, Some(h), Some(l)) => Some(h * 16 + l),
        (b'+', _, Some(l)) => Some(l),
        (b'-', _, Some(l)) => Some(l.wrapping_neg()),
        (a, _, Some(l)) if c_isspace(a) => Some(l),
        _ => None,
    }
}

/// C's `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The attribute corrections llama.cpp applies after loading a vocabulary, which decide which
/// tokens the partition cuts out: end-of-generation and fill-in-the-middle texts become control
/// tokens, a few gpt-oss tokens become user-defined, and some models strip spaces around
/// special tokens.
fn fix_attributes(vocab: &mut Vocab, metadata: &Metadata, pre: Option<&str>) {
    let set = |vocab: &mut Vocab, text: &str, f: &dyn Fn(u32) -> u32| {
        if let Some(id) = vocab.id(text.as_bytes()) {
            let a = &mut vocab.attrs[id as usize];
            *a = f(*a);
        }
    };
    for t in EOG_TEXTS {
        set(vocab, t, &|a| a | ATTR_CONTROL);
    }
    for (keys, texts) in FIM_TEXTS {
        if keys
            .iter()
            .any(|k| opt_id(metadata, k).is_some_and(|id| id < vocab.texts.len() as u64))
        {
            continue;
        }
        for t in *texts {
            set(vocab, t, &|a| a | ATTR_CONTROL);
        }
    }
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        set(vocab, t, &|_| ATTR_USER_DEFINED);
    }
    let has = |vocab: &Vocab, t: &str| vocab.ids.contains_key(t.as_bytes());
    let has_call = has(vocab, "<|call|>") || has(vocab, "<|calls|>");
    if has_call && has(vocab, "<|end|>") && (has(vocab, "<|return|>") || has(vocab, "<|flush|>")) {
        set(vocab, "<|end|>", &|_| ATTR_USER_DEFINED);
    }
    let eos_is_plamo = opt_id(metadata, "eos_token_id")
        .and_then(|id| vocab.texts.get(id as usize))
        .is_some_and(|t| t == b"<|plamo:eos|>");
    if has(vocab, "</s>") && (has(vocab, "<|tool_response>") || eos_is_plamo) {
        set(vocab, "</s>", &|_| ATTR_NORMAL);
    }

    let name = metadata
        .get_str("general.name")
        .unwrap_or("")
        .to_lowercase();
    let arch = metadata.get_str("general.architecture").unwrap_or("");
    let pre = pre.unwrap_or("");
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
        .iter()
        .any(|p| pre.contains(p))
        || ["nomic-bert-moe", "jina-bert-v3"]
            .iter()
            .any(|a| arch.contains(a))
    {
        set(vocab, "<mask>", &|a| a | ATTR_LSTRIP);
    } else if name.contains("phi-3") || name.contains("phi3") {
        for i in 0..vocab.attrs.len() {
            if vocab.attrs[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0 {
                vocab.attrs[i] |= ATTR_RSTRIP;
            }
        }
        set(vocab, "</s>", &|a| a | ATTR_RSTRIP);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set(vocab, t, &|a| a & !ATTR_RSTRIP);
        }
    } else if name.contains("modern-bert") {
        set(vocab, "[MASK]", &|a| a | ATTR_LSTRIP);
    }
}
