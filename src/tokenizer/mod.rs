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
mod escapes;
mod pre;
mod scan;
mod spm;
mod unicode;
mod vocab;

use aho_corasick::AhoCorasick;

use crate::error::{Error, Result};
use crate::gguf::Metadata;
use vocab::{
    fix_attributes, key, opt_bool, opt_id, string_array, Vocab, ATTR_BYTE, ATTR_CONTROL,
    ATTR_LSTRIP, ATTR_NORMAL, ATTR_RSTRIP, ATTR_UNKNOWN, ATTR_USER_DEFINED,
};

use escapes::c_isspace;
pub use escapes::{process_escapes, prompt_from_file};
pub use pre::{known as known_pre_tokenizers, one_of_each_kind as pre_tokenizer_kinds};

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

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata (model "gpt2" BPE or "llama"
    /// SentencePiece), with llama.cpp's defaults for whatever the metadata leaves out.
    pub fn from_metadata(metadata: &Metadata) -> Result<Tokenizer> {
        let is_bpe = is_bpe(metadata)?;
        let pre_name = match metadata.get(&key("pre")) {
            None => None,
            Some(_) => Some(metadata.get_str(&key("pre"))?.to_string()),
        };
        let mut vocab = Vocab::from_metadata(metadata)?;
        let (model, defaults) = if is_bpe {
            bpe_model(&vocab, metadata, pre_name.as_deref())?
        } else {
            spm_model(&vocab)
        };
        let rules = defaults.with_metadata(metadata, vocab.texts.len())?;
        fix_attributes(&mut vocab, metadata, pre_name.as_deref());
        let (specials, special_finder) = special_tokens(&vocab)?;
        Ok(Tokenizer {
            vocab,
            model,
            specials,
            special_finder,
            bos: rules.bos.map(|i| i as u32),
            eos: rules.eos.map(|i| i as u32),
            add_bos: rules.add_bos,
            add_eos: rules.add_eos,
            add_space_prefix: rules.add_space_prefix,
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

/// Whether `tokenizer.ggml.model` names byte-level BPE ("gpt2") rather than SentencePiece
/// ("llama"); any other model is refused.
fn is_bpe(metadata: &Metadata) -> Result<bool> {
    let model_name = metadata.get_str(&key("model"))?.to_string();
    match model_name.as_str() {
        "gpt2" => Ok(true),
        "llama" => Ok(false),
        _ => Err(Error::UnsupportedTokenizer { model: model_name }),
    }
}

/// BOS, EOS and the flags around them: the vocabulary type's defaults, then the
/// pre-tokenizer's, then the metadata's.
struct SpecialRules {
    bos: Option<u64>,
    eos: Option<u64>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

impl SpecialRules {
    /// The metadata's BOS and EOS ids (when in range) and flags over these defaults; a default
    /// id out of the vocabulary's `n` tokens is none.
    fn with_metadata(self, metadata: &Metadata, n: usize) -> Result<SpecialRules> {
        let in_range = |id: Option<u64>| id.filter(|&i| i < n as u64);
        let id = |name: &str, default: Option<u64>| {
            in_range(opt_id(metadata, name)).or(in_range(default))
        };
        Ok(SpecialRules {
            bos: id("bos_token_id", self.bos),
            eos: id("eos_token_id", self.eos),
            add_bos: opt_bool(metadata, "add_bos_token")?.unwrap_or(self.add_bos),
            add_eos: opt_bool(metadata, "add_eos_token")?.unwrap_or(self.add_eos),
            add_space_prefix: opt_bool(metadata, "add_space_prefix")?
                .unwrap_or(self.add_space_prefix),
        })
    }
}

/// Byte-level BPE with the pre-tokenizer `pre` names and the metadata's merges; BOS and EOS
/// default to id 11 (unless the pre-tokenizer has no BOS).
fn bpe_model(
    vocab: &Vocab,
    metadata: &Metadata,
    pre: Option<&str>,
) -> Result<(Model, SpecialRules)> {
    let (pre, flags) = pre::PreTokenizer::new(pre)?;
    let merges = string_array(metadata, "merges")?;
    let bpe = bpe::Bpe::new(vocab, pre, flags.ignore_merges, merges);
    let rules = SpecialRules {
        bos: if flags.no_bos { None } else { Some(11) },
        eos: Some(11),
        add_bos: flags.add_bos,
        add_eos: false,
        add_space_prefix: false,
    };
    Ok((Model::Bpe(Box::new(bpe)), rules))
}

/// SentencePiece with byte fallback to `<0xXX>` tokens (or the bare byte's token); BOS 1, EOS 2,
/// BOS added and a space prefixed by default.
fn spm_model(vocab: &Vocab) -> (Model, SpecialRules) {
    let mut byte_tokens = Box::new([None; 256]);
    for (b, slot) in byte_tokens.iter_mut().enumerate() {
        *slot = vocab
            .id(format!("<0x{b:02X}>").as_bytes())
            .or_else(|| vocab.id(&[b as u8]));
    }
    let rules = SpecialRules {
        bos: Some(1),
        eos: Some(2),
        add_bos: true,
        add_eos: false,
        add_space_prefix: true,
    };
    (Model::Spm { byte_tokens }, rules)
}

/// Control, user-defined and unknown tokens with UTF-8 texts, longest first (stable: equal
/// lengths keep id order), and a finder over their texts (none when there are none).
fn special_tokens(vocab: &Vocab) -> Result<(Vec<u32>, Option<AhoCorasick>)> {
    let mut specials: Vec<u32> = (0..vocab.texts.len() as u32)
        .filter(|&i| {
            vocab.attrs[i as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0
        })
        .filter(|&i| std::str::from_utf8(&vocab.texts[i as usize]).is_ok())
        .collect();
    specials.sort_by_key(|&i| std::cmp::Reverse(vocab.texts[i as usize].len()));
    if specials.is_empty() {
        return Ok((specials, None));
    }
    let finder =
        AhoCorasick::new(specials.iter().map(|&i| &vocab.texts[i as usize])).map_err(|e| {
            Error::Tokenize {
                what: format!("cannot index {} special tokens: {e}", specials.len()),
            }
        })?;
    Ok((specials, Some(finder)))
}
