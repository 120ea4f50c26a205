//! Pre-tokenizers: how byte-level BPE cuts text into words before merging, chosen by
//! `tokenizer.ggml.pre` the way llama.cpp chooses them.
//!
//! llama.cpp keeps, per pre-tokenizer type, a list of regexes applied in turn: each one cuts
//! every piece left by the previous one into matches and the gaps between them. Four common
//! regexes (GPT-2's, Llama 3's, Qwen2's, Qwen3.5's) and the newline split run as hand-written
//! scanners there, with small departures from the regexes (for example `\s+(?!\S)` never
//! looks past the end of a piece); [`Step::Gpt2`] and [`Step::Llama3`] reproduce those
//! scanners' behaviour (`scan.rs`). Every other regex runs as an ordinary regex (`fancy-regex`,
//! for the look-arounds) over a text where each non-ASCII code point stands in for its Unicode
//! class, which is how llama.cpp evaluates `\p{..}` with `std::regex`.
//!
//! This file is a little over 600 lines because of its table: [`KINDS`] (every kind's names,
//! regexes and flags) and the regex sources it names take half of it. The rest is the compiled
//! pre-tokenizer and the regex translation that the table's entries need.

use std::ops::Range;

use super::scan::{pieces, split_gpt2, split_llama3, split_newlines};
use super::unicode::{self, Flags};
use crate::error::{Error, Result};

/// One regex of a pre-tokenizer's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepSpec {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// Llama 3's regex with single digits (`\p{N}`).
    Qwen2,
    /// Qwen2's regex where letter runs also take combining marks (`[\p{L}\p{M}]+`).
    Qwen35,
    /// `[^\n]+|[\n]+`
    Newlines,
    /// Any other regex, in ECMAScript syntax as llama.cpp writes it.
    Re(&'static str),
}

use StepSpec::{Gpt2, Llama3, Newlines, Qwen2, Qwen35, Re};

/// What a `tokenizer.ggml.pre` value selects, besides its regexes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreFlags {
    /// A word that is itself a token is emitted whole, without merging.
    pub ignore_merges: bool,
    /// BOS is added by default (before `tokenizer.ggml.add_bos_token` is read).
    pub add_bos: bool,
    /// The model has no BOS token by default.
    pub no_bos: bool,
}

const DEFAULT_PUNCT: &str = r"[\p{P}\$\+<=>\^~\|]+";
const THREE_DIGITS: &str = r"[0-9][0-9][0-9]";
const CJK: &str = "[\u{4E00}-\u{9FA5}\u{0800}-\u{4E00}\u{AC00}-\u{D7FF}]+";
// From DeepSeek's tokenizer.json: letters of the scripts DeepSeek-LLM splits as words.
const DEEPSEEK_LETTERS: &str = "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
const DEEPSEEK_PUNCT: &str =
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+";
const PORO: &str = " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{0964}\u{06D4}\u{060C})]+";
const DEEPSEEK3_CJK: &str = "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+";
const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const BAILING: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const UFAKZEKA: &str =
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const MINICPM5: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const JAIS2: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"##;
const SPARK_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##;
// From Youtu's tokenizer.json: Hangul, CJK punctuation, Bopomofo and CJK runs.
const YOUTU_CJK: &str = r##"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+"##;
const YOUTU: &str = r##"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const EXAONE_MOE: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"##;
const GRANITE_MULTI: &str = r##"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const CHAMELEON_PUNCT: &str = r##"[\p{P}!-/:-@\[-`{-~]"##;

/// A pre-tokenizer's flags with none set.
const PLAIN: PreFlags = PreFlags {
    ignore_merges: false,
    add_bos: false,
    no_bos: false,
};
const IGNORE_MERGES: PreFlags = PreFlags {
    ignore_merges: true,
    ..PLAIN
};
const ADD_BOS: PreFlags = PreFlags {
    add_bos: true,
    ..PLAIN
};
const IGNORE_MERGES_ADD_BOS: PreFlags = PreFlags {
    ignore_merges: true,
    add_bos: true,
    ..PLAIN
};
const NO_BOS: PreFlags = PreFlags {
    no_bos: true,
    ..PLAIN
};
const IGNORE_MERGES_NO_BOS: PreFlags = PreFlags {
    ignore_merges: true,
    no_bos: true,
    ..PLAIN
};

/// One kind of pre-tokenizer: the `tokenizer.ggml.pre` values that select it, its regex list
/// and its flags.
struct Kind {
    /// The first is the one a test of the kind uses.
    names: &'static [&'static str],
    steps: &'static [StepSpec],
    flags: PreFlags,
}

const fn kind(names: &'static [&'static str], steps: &'static [StepSpec], flags: PreFlags) -> Kind {
    Kind {
        names,
        steps,
        flags,
    }
}

/// Every pre-tokenizer kind, as llama.cpp's vocabulary loader maps `tokenizer.ggml.pre` values
/// to regex lists and flags, in llama.cpp's order (the Llama 3 row names "llama-bpe" first, the
/// value `convert_hf_to_gguf.py` writes). The one place the names are listed: [`known`] and
/// [`one_of_each_kind`] read it. Long on purpose: a table, one row per kind.
const KINDS: &[Kind] = &[
    kind(
        &["default"],
        &[Re(DEFAULT_PUNCT), Gpt2, Re(r"\p{N}+"), Re(THREE_DIGITS)],
        PLAIN,
    ),
    kind(
        &[
            "llama-bpe",
            "llama3",
            "llama-v3",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        &[Llama3],
        IGNORE_MERGES_ADD_BOS,
    ),
    kind(&["dbrx", "smaug-bpe"], &[Llama3], PLAIN),
    kind(
        &["deepseek-llm"],
        &[
            Re("[\r\n]"),
            Re(DEEPSEEK_LETTERS),
            Re(DEEPSEEK_PUNCT),
            Re(r"\s+$"),
            Re(CJK),
            Re(r"\p{N}+"),
        ],
        PLAIN,
    ),
    kind(
        &["deepseek-coder"],
        &[
            Re("[\r\n]"),
            Re(r"\s?\p{L}+"),
            Re(r"\s?\p{P}+"),
            Re(CJK),
            Re(r"\p{N}"),
        ],
        PLAIN,
    ),
    kind(
        &["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
        &[Re(r"\p{N}{1,3}"), Re(DEEPSEEK3_CJK), Re(DEEPSEEK3_MAIN)],
        PLAIN,
    ),
    kind(
        &["falcon"],
        &[Re(r"[\p{P}\$\+<=>\^~\|`]+"), Gpt2, Re(THREE_DIGITS)],
        PLAIN,
    ),
    kind(
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        &[Re(r"\p{N}"), Gpt2],
        PLAIN,
    ),
    kind(
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "exaone4",
            "jina-v1-en",
            "jina-v2-code",
            "roberta-bpe",
        ],
        &[Gpt2],
        PLAIN,
    ),
    kind(
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "stablelm2",
            "hunyuan",
            "solar-open",
            "megrez",
            "grok-2",
        ],
        &[Qwen2],
        PLAIN,
    ),
    kind(&["qwen35"], &[Qwen35], PLAIN),
    kind(&["poro-chat", "bloom", "gpt3-finnish"], &[Re(PORO)], PLAIN),
    kind(&["viking"], &[Re(PORO), Re(r"\p{N}")], PLAIN),
    kind(&["chatglm-bpe"], &[Llama3], NO_BOS),
    kind(&["glm4", "glm5"], &[Llama3], IGNORE_MERGES_NO_BOS),
    kind(&["tekken"], &[Re(TEKKEN)], IGNORE_MERGES_ADD_BOS),
    kind(
        &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        &[Re(GPT4O)],
        PLAIN,
    ),
    kind(&["seed-coder"], &[Re(SEED_CODER)], PLAIN),
    kind(
        &["bailingmoe", "bailingmoe2", "llada-moe"],
        &[Re(BAILING)],
        PLAIN,
    ),
    kind(&["ufakzeka"], &[Re(UFAKZEKA)], PLAIN),
    kind(
        &["minicpm5"],
        &[Re(r"\p{N}{1,3}"), Re(MINICPM5)],
        IGNORE_MERGES,
    ),
    kind(&["laguna"], &[Newlines, Qwen2], PLAIN),
    kind(&["jais-2"], &[Re(JAIS2)], PLAIN),
    kind(
        &["spark2_5"],
        &[
            Re(r"\p{N}{1,3}"),
            Re(DEEPSEEK3_CJK),
            Re(SPARK_MAIN),
            Re(r"\p{N}"),
        ],
        PLAIN,
    ),
    kind(&["youtu"], &[Re(YOUTU_CJK), Re(YOUTU)], IGNORE_MERGES),
    kind(&["exaone-moe"], &[Re(EXAONE_MOE)], PLAIN),
    kind(
        &["granite-embed-multi-97m"],
        &[Re(GRANITE_MULTI)],
        IGNORE_MERGES,
    ),
    kind(
        &["chameleon"],
        &[
            Re(r"<sentinel:[0-9]+>"),
            Re(r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
            Re(r"([\t\n]|    |  )"),
            Re(r"\p{N}"),
            Re(CHAMELEON_PUNCT),
            Gpt2,
        ],
        ADD_BOS,
    ),
];

/// The kind a `tokenizer.ggml.pre` value selects (`None` = a type this tokenizer does not know).
fn find(pre: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.names.contains(&pre))
}

/// Every `tokenizer.ggml.pre` value this tokenizer accepts.
pub fn known() -> impl Iterator<Item = &'static str> {
    KINDS.iter().flat_map(|k| k.names.iter().copied())
}

/// One `tokenizer.ggml.pre` value of each kind llama.cpp distinguishes (a distinct regex list
/// or flags): what a test needs to cover every kind.
pub fn one_of_each_kind() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.names[0])
}

enum Step {
    Gpt2,
    /// Llama 3 family scanner: digits per number group (3 or 1), marks joining letters.
    Llama3 {
        max_digits: usize,
        marks: bool,
    },
    Newlines,
    Regex {
        re: fancy_regex::Regex,
        collapsed: bool,
        source: &'static str,
    },
}

/// A compiled pre-tokenizer.
pub struct PreTokenizer {
    steps: Vec<Step>,
    needs_flags: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value (`None`: the key is absent, which
    /// llama.cpp treats as "default").
    pub fn new(pre: Option<&str>) -> Result<(PreTokenizer, PreFlags)> {
        let name = pre.unwrap_or("default");
        let kind = find(name).ok_or_else(|| Error::UnknownPreTokenizer {
            pre: name.to_string(),
        })?;
        let mut steps = Vec::with_capacity(kind.steps.len());
        for &s in kind.steps {
            steps.push(match s {
                StepSpec::Gpt2 => Step::Gpt2,
                StepSpec::Llama3 => Step::Llama3 {
                    max_digits: 3,
                    marks: false,
                },
                StepSpec::Qwen2 => Step::Llama3 {
                    max_digits: 1,
                    marks: false,
                },
                StepSpec::Qwen35 => Step::Llama3 {
                    max_digits: 1,
                    marks: true,
                },
                StepSpec::Newlines => Step::Newlines,
                StepSpec::Re(source) => {
                    let (pattern, collapsed) = translate(source);
                    let re = fancy_regex::Regex::new(&pattern).map_err(|e| Error::Tokenize {
                        what: format!(
                            "pre-tokenizer {name:?}: regex {source:?} does not compile: {e}"
                        ),
                    })?;
                    Step::Regex {
                        re,
                        collapsed,
                        source,
                    }
                }
            });
        }
        let needs_flags = steps
            .iter()
            .any(|s| matches!(s, Step::Gpt2 | Step::Llama3 { .. }));
        Ok((PreTokenizer { steps, needs_flags }, kind.flags))
    }

    /// Cuts `text` into words; returns their byte ranges in order, covering all of `text`.
    pub fn split(&self, text: &str) -> Result<Vec<Range<usize>>> {
        let cpts: Vec<char> = text.chars().collect();
        let flags: Vec<Flags> = if self.needs_flags {
            cpts.iter().map(|&c| unicode::flags_of(c)).collect()
        } else {
            Vec::new()
        };
        let mut pieces = vec![cpts.len()];
        let mut collapsed: Option<Vec<char>> = None;
        let mut spaced: Option<Vec<char>> = None;
        for step in &self.steps {
            pieces = match step {
                Step::Gpt2 => split_gpt2(&cpts, &flags, &pieces),
                Step::Llama3 { max_digits, marks } => {
                    split_llama3(&cpts, &flags, &pieces, *max_digits, *marks)
                }
                Step::Newlines => split_newlines(&cpts, &pieces),
                Step::Regex {
                    re,
                    collapsed: true,
                    source,
                } => {
                    let view = collapsed.get_or_insert_with(|| {
                        cpts.iter().map(|&c| unicode::collapsed(c)).collect()
                    });
                    split_regex(re, source, view, &pieces)?
                }
                Step::Regex {
                    re,
                    collapsed: false,
                    source,
                } => {
                    let view = spaced.get_or_insert_with(|| {
                        cpts.iter()
                            .map(|&c| {
                                if !c.is_ascii() && c.is_whitespace() {
                                    '\u{0B}'
                                } else {
                                    c
                                }
                            })
                            .collect()
                    });
                    split_regex(re, source, view, &pieces)?
                }
            };
        }
        // Code point counts to byte ranges.
        let mut out = Vec::with_capacity(pieces.len());
        let mut chars = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()));
        let mut start_byte = chars.next().unwrap_or(0);
        for len in pieces {
            if len == 0 {
                continue;
            }
            let mut end_byte = start_byte;
            for _ in 0..len {
                end_byte = chars.next().unwrap_or(text.len());
            }
            out.push(start_byte..end_byte);
            start_byte = end_byte;
        }
        Ok(out)
    }
}

/// Turns an ECMAScript regex as llama.cpp writes it into one for `fancy-regex`, and says whether
/// it must run on the class stand-ins (it uses `\p{..}`). `\d` and `\w` keep their ASCII meaning
/// from `std::regex`. Long on purpose: one scanner over the regex syntax, one arm per construct
/// that differs between the two dialects.
fn translate(source: &str) -> (String, bool) {
    let class_body = |name: &str| -> Option<String> {
        Some(match name {
            "N" => format!("{}0-9", unicode::STAND_IN_NUMBER),
            "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => format!("{}A-Za-z", unicode::STAND_IN_LETTER),
            "P" => format!(r"{}!-#%-*,-/:-;?-@\[-\]_\{{\}}", unicode::STAND_IN_PUNCT),
            "M" => unicode::STAND_IN_MARK.to_string(),
            "S" => format!(r"{}\$\+<->\^`\|~", unicode::STAND_IN_SYMBOL),
            _ => return None,
        })
    };
    let chars: Vec<char> = source.chars().collect();
    let collapsed = source.contains(r"\p{");
    let mut out = String::with_capacity(source.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n == 'p' && chars.get(i + 2) == Some(&'{') {
                if let Some(close) = chars[i + 3..].iter().position(|&x| x == '}') {
                    let name: String = chars[i + 3..i + 3 + close].iter().collect();
                    if let Some(body) = class_body(&name) {
                        if inside {
                            out.push_str(&body);
                        } else {
                            out.push('[');
                            out.push_str(&body);
                            out.push(']');
                        }
                        i += 4 + close;
                        continue;
                    }
                }
            }
            let ascii = match n {
                'd' => Some(("0-9", "[0-9]")),
                'D' => Some(("", "[^0-9]")),
                'w' => Some(("0-9A-Za-z_", "[0-9A-Za-z_]")),
                'W' => Some(("", "[^0-9A-Za-z_]")),
                _ => None,
            };
            match ascii {
                Some((body, _)) if inside && !body.is_empty() => out.push_str(body),
                Some((_, class)) if !inside => out.push_str(class),
                _ => {
                    out.push(c);
                    out.push(n);
                }
            }
            i += 2;
            continue;
        }
        if c == '[' && !inside {
            inside = true;
        } else if c == ']' && inside {
            inside = false;
        }
        out.push(c);
        i += 1;
    }
    (out, collapsed)
}

/// Runs a general regex over each piece of `view` (the text as the regex sees it): matches and
/// the gaps between them become words.
fn split_regex(
    re: &fancy_regex::Regex,
    source: &str,
    view: &[char],
    lengths: &[usize],
) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut hay = String::new();
    for (ini, end) in pieces(lengths) {
        hay.clear();
        hay.extend(&view[ini..end]);
        // Byte offsets in `hay` to code point counts, walking forward.
        let mut byte_at = 0usize;
        let mut cpt_at = 0usize;
        let mut to_cpt = |byte: usize| -> usize {
            cpt_at += hay[byte_at..byte].chars().count();
            byte_at = byte;
            cpt_at
        };
        let mut done = 0usize;
        let mut matches = Vec::new();
        for m in re.find_iter(&hay) {
            let m = m.map_err(|e| Error::Tokenize {
                what: format!("pre-tokenizer regex {source:?} failed: {e}"),
            })?;
            matches.push((m.start(), m.end()));
        }
        for (start, stop) in matches {
            let s = to_cpt(start);
            let e = to_cpt(stop);
            if s > done {
                out.push(s - done);
            }
            if e > s {
                out.push(e - s);
            }
            done = e;
        }
        let len = end - ini;
        if done < len {
            out.push(len - done);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: &str, text: &str) -> Vec<String> {
        let (p, _) = PreTokenizer::new(Some(pre)).unwrap();
        p.split(text)
            .unwrap()
            .into_iter()
            .map(|r| text[r].to_string())
            .collect()
    }

    #[test]
    fn every_known_type_compiles() {
        let names: Vec<&str> = known().collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} is in two kinds");
            PreTokenizer::new(Some(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(matches!(
            PreTokenizer::new(Some("no-such-pre")),
            Err(Error::UnknownPreTokenizer { .. })
        ));
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            words("gpt-2", "Hello world's  end 123"),
            ["Hello", " world", "'s", " ", " end", " 123"]
        );
        // Trailing white space stays whole at the end of a piece.
        assert_eq!(words("gpt-2", "a  "), ["a", "  "]);
    }

    #[test]
    fn smollm_splits_digits_first() {
        assert_eq!(
            words("smollm", "in 2024 x"),
            ["in", " ", "2", "0", "2", "4", " x"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(
            words("llama-bpe", "12345 I'M ok\n\n x"),
            ["123", "45", " I", "'M", " ok", "\n\n", " x"]
        );
    }
}
