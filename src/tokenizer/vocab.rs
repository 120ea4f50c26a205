//! The vocabulary as llama.cpp loads it from `tokenizer.ggml.*`: token texts, scores and
//! attributes, the typed readers of those keys, and the attribute corrections llama.cpp applies
//! after loading (which decide which tokens are cut out of the text as special).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gguf::{Array, Metadata, Value};

// Token attributes, llama.cpp's `llama_token_attr` bits.
pub(super) const ATTR_UNKNOWN: u32 = 1 << 0;
pub(super) const ATTR_UNUSED: u32 = 1 << 1;
pub(super) const ATTR_NORMAL: u32 = 1 << 2;
pub(super) const ATTR_CONTROL: u32 = 1 << 3;
pub(super) const ATTR_USER_DEFINED: u32 = 1 << 4;
pub(super) const ATTR_BYTE: u32 = 1 << 5;
pub(super) const ATTR_LSTRIP: u32 = 1 << 7;
pub(super) const ATTR_RSTRIP: u32 = 1 << 8;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`) to attributes.
pub(super) fn attr_of_type(t: i128) -> u32 {
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
    pub(super) fn id(&self, text: &[u8]) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Reads `tokenizer.ggml.tokens`, `scores` and `token_type` (the last two optional: score
    /// 0, normal tokens). Empty texts are renamed `[EMPTY_<id>]`, as llama.cpp does.
    pub(super) fn from_metadata(metadata: &Metadata) -> Result<Vocab> {
        let raw = tokens(metadata)?;
        let n = raw.len();
        let scores_arr = per_token(metadata, "scores", n)?;
        let types_arr = per_token(metadata, "token_type", n)?;
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
            scores.push(score_at(scores_arr, i)?);
            attrs.push(attr_at(types_arr, i)?);
        }
        Ok(Vocab {
            texts,
            scores,
            attrs,
            ids,
        })
    }
}

/// `tokenizer.ggml.tokens`: not empty, and no more entries than token ids can address.
fn tokens(metadata: &Metadata) -> Result<&[Vec<u8>]> {
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
    Ok(raw)
}

/// An optional array with an entry per token (at least `n` entries).
fn per_token<'a>(metadata: &'a Metadata, name: &str, n: usize) -> Result<Option<&'a Array>> {
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
}

/// Token `i`'s score (0 without a `scores` array).
fn score_at(scores: Option<&Array>, i: usize) -> Result<f32> {
    Ok(match scores {
        Some(a) => a.float_at(i).ok_or_else(|| Error::KeyType {
            key: key("scores"),
            expected: "an array of numbers",
            found: format!("an array of {:?}", a.elem_type()),
        })? as f32,
        None => 0.0,
    })
}

/// Token `i`'s attributes from its type (normal without a `token_type` array).
fn attr_at(types: Option<&Array>, i: usize) -> Result<u32> {
    Ok(match types {
        Some(a) => attr_of_type(a.int_at(i).ok_or_else(|| Error::KeyType {
            key: key("token_type"),
            expected: "an array of integers",
            found: format!("an array of {:?}", a.elem_type()),
        })?),
        None => ATTR_NORMAL,
    })
}

pub(super) fn key(suffix: &str) -> String {
    format!("tokenizer.ggml.{suffix}")
}

pub(super) fn string_array<'a>(metadata: &'a Metadata, name: &str) -> Result<&'a [Vec<u8>]> {
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

pub(super) fn opt_bool(metadata: &Metadata, name: &str) -> Result<Option<bool>> {
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

pub(super) fn opt_id(metadata: &Metadata, name: &str) -> Option<u64> {
    metadata.get(&key(name)).and_then(Value::to_u64)
}

/// The attribute corrections llama.cpp applies after loading a vocabulary, which decide which
/// tokens the partition cuts out: end-of-generation and fill-in-the-middle texts become control
/// tokens, a few gpt-oss tokens become user-defined, and some models strip spaces around
/// special tokens.
pub(super) fn fix_attributes(vocab: &mut Vocab, metadata: &Metadata, pre: Option<&str>) {
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
