//! Pre-tokenizers: how byte-level BPE cuts text into words before merging, chosen by
//! `tokenizer.ggml.pre` the way llama.cpp chooses them.
//!
//! llama.cpp keeps, per pre-tokenizer type, a list of regexes applied in turn: each one cuts
//! every piece left by the previous one into matches and the gaps between them. Four common
//! regexes (GPT-2's, Llama 3's, Qwen2's, Qwen3.5's) and the newline split run as hand-written
//! scanners there, with small departures from the regexes (for example `\s+(?!\S)` never
//! looks past the end of a piece); [`Step::Gpt2`] and [`Step::Llama3`] reproduce those
//! scanners' behaviour. Every other regex runs as an ordinary regex (`fancy-regex`, for the
//! look-arounds) over a text where each non-ASCII code point stands in for its Unicode class,
//! which is how llama.cpp evaluates `\p{..}` with `std::regex`.

use std::ops::Range;

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

/// The regex list and flags for a `tokenizer.ggml.pre` value, as llama.cpp's vocabulary
/// loader maps them (`None` = a type this tokenizer does not know). Long on purpose: a table,
/// one arm per pre-tokenizer type, in llama.cpp's order.
fn spec(pre: &str) -> Option<(Vec<StepSpec>, PreFlags)> {
    let plain = PreFlags::default();
    let ignore = PreFlags {
        ignore_merges: true,
        ..plain
    };
    Some(match pre {
        "default" => (
            vec![Re(DEFAULT_PUNCT), Gpt2, Re(r"\p{N}+"), Re(THREE_DIGITS)],
            plain,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => (
            vec![Llama3],
            PreFlags {
                ignore_merges: true,
                add_bos: true,
                no_bos: false,
            },
        ),
        "dbrx" | "smaug-bpe" => (vec![Llama3], plain),
        "deepseek-llm" => (
            vec![
                Re("[\r\n]"),
                Re(DEEPSEEK_LETTERS),
                Re(DEEPSEEK_PUNCT),
                Re(r"\s+$"),
                Re(CJK),
                Re(r"\p{N}+"),
            ],
            plain,
        ),
        "deepseek-coder" => (
            vec![
                Re("[\r\n]"),
                Re(r"\s?\p{L}+"),
                Re(r"\s?\p{P}+"),
                Re(CJK),
                Re(r"\p{N}"),
            ],
            plain,
        ),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => (
            vec![Re(r"\p{N}{1,3}"), Re(DEEPSEEK3_CJK), Re(DEEPSEEK3_MAIN)],
            plain,
        ),
        "falcon" => (
            vec![Re(r"[\p{P}\$\+<=>\^~\|`]+"), Gpt2, Re(THREE_DIGITS)],
            plain,
        ),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => (vec![Re(r"\p{N}"), Gpt2], plain),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "trillion"
        | "granite-docling" | "exaone4" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => {
            (vec![Gpt2], plain)
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan"
        | "solar-open" | "megrez" | "grok-2" => (vec![Qwen2], plain),
        "qwen35" => (vec![Qwen35], plain),
        "poro-chat" | "bloom" | "gpt3-finnish" => (vec![Re(PORO)], plain),
        "viking" => (vec![Re(PORO), Re(r"\p{N}")], plain),
        "chatglm-bpe" => (
            vec![Llama3],
            PreFlags {
                no_bos: true,
                ..plain
            },
        ),
        "glm4" | "glm5" => (
            vec![Llama3],
            PreFlags {
                no_bos: true,
                ignore_merges: true,
                add_bos: false,
            },
        ),
        "tekken" => (
            vec![Re(TEKKEN)],
            PreFlags {
                ignore_merges: true,
                add_bos: true,
                no_bos: false,
            },
        ),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => (vec![Re(GPT4O)], plain),
        "seed-coder" => (vec![Re(SEED_CODER)], plain),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => (vec![Re(BAILING)], plain),
        "ufakzeka" => (vec![Re(UFAKZEKA)], plain),
        "minicpm5" => (vec![Re(r"\p{N}{1,3}"), Re(MINICPM5)], ignore),
        "laguna" => (vec![Newlines, Qwen2], plain),
        "jais-2" => (vec![Re(JAIS2)], plain),
        "spark2_5" => (
            vec![
                Re(r"\p{N}{1,3}"),
                Re(DEEPSEEK3_CJK),
                Re(SPARK_MAIN),
                Re(r"\p{N}"),
            ],
            plain,
        ),
        "youtu" => (vec![Re(YOUTU_CJK), Re(YOUTU)], ignore),
        "exaone-moe" => (vec![Re(EXAONE_MOE)], plain),
        "granite-embed-multi-97m" => (vec![Re(GRANITE_MULTI)], ignore),
        "chameleon" => (
            vec![
                Re(r"<sentinel:[0-9]+>"),
                Re(r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
                Re(r"([\t\n]|    |  )"),
                Re(r"\p{N}"),
                Re(CHAMELEON_PUNCT),
                Gpt2,
            ],
            PreFlags {
                add_bos: true,
                ..plain
            },
        ),
        _ => return None,
    })
}

/// Every `tokenizer.ggml.pre` value this tokenizer accepts.
pub const KNOWN: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "dbrx",
    "smaug-bpe",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "hunyuan-dense",
    "joyai-llm",
    "hy_v4",
    "falcon",
    "starcoder",
    "refact",
    "command-r",
    "smollm",
    "codeshell",
    "exaone",
    "minerva-7b",
    "mellum2",
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
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "stablelm2",
    "hunyuan",
    "solar-open",
    "megrez",
    "grok-2",
    "qwen35",
    "poro-chat",
    "bloom",
    "gpt3-finnish",
    "viking",
    "chatglm-bpe",
    "glm4",
    "glm5",
    "tekken",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "minimax-m2",
    "seed-coder",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "ufakzeka",
    "minicpm5",
    "laguna",
    "jais-2",
    "spark2_5",
    "youtu",
    "exaone-moe",
    "granite-embed-multi-97m",
    "chameleon",
];

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
        let (specs, flags) = spec(name).ok_or_else(|| Error::UnknownPreTokenizer {
            pre: name.to_string(),
        })?;
        let mut steps = Vec::with_capacity(specs.len());
        for s in specs {
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
        Ok((PreTokenizer { steps, needs_flags }, flags))
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

/// One piece of the text at a time: `ini..end` in code points.
fn pieces(lengths: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    lengths.iter().map(move |&len| {
        let r = (start, start + len);
        start += len;
        r
    })
}

/// Collects word lengths inside one piece.
struct Cutter<'a> {
    out: &'a mut Vec<usize>,
    prev_end: usize,
}

impl Cutter<'_> {
    /// Ends a word at `end`; returns its length (0 when empty, and nothing is recorded).
    fn cut(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

/// The length (2 or 3) of the contraction `'s|'t|'m|'d|'re|'ve|'ll` starting at `pos`, if one
/// ends by `end`; `fold_case` matches upper case letters too (Llama 3's `(?i:...)`).
fn contraction_at(cpts: &[char], pos: usize, end: usize, fold_case: bool) -> Option<usize> {
    if cpts[pos] != '\'' || pos + 1 >= end {
        return None;
    }
    let low = |c: char| if fold_case { unicode::to_lower(c) } else { c };
    let n = low(cpts[pos + 1]);
    if matches!(n, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    if pos + 2 < end
        && matches!(
            (n, low(cpts[pos + 2])),
            ('r', 'e') | ('v', 'e') | ('l', 'l')
        )
    {
        return Some(3);
    }
    None
}

/// Where the last rules of both scanners end the word at `pos`, given the `n_ws` spaces that
/// start there: `\s+(?!\S)` leaves the last space to the next word when text follows, `\s+`
/// takes them all at the end of the piece, and otherwise one code point stands alone.
fn after_spaces(pos: usize, n_ws: usize, end: usize) -> usize {
    if n_ws > 1 && pos + n_ws < end {
        pos + n_ws - 1
    } else if n_ws > 0 {
        pos + n_ws
    } else {
        pos + 1
    }
}

/// GPT-2's split as llama.cpp's scanner does it.
fn split_gpt2(cpts: &[char], flags: &[Flags], lengths: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    for (ini, end) in pieces(lengths) {
        let fl = |p: usize| if p < end { flags[p] } else { Flags::OUTSIDE };
        let mut w = Cutter {
            out: &mut out,
            prev_end: ini,
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags[pos];
            if let Some(n) = contraction_at(cpts, pos, end, false) {
                pos += w.cut(pos + n);
                continue;
            }
            let space = usize::from(c == ' ');
            let mut f2 = if c == ' ' { fl(pos + 1) } else { f };
            if f2.letter() {
                pos += space;
                while f2.letter() {
                    pos += 1;
                    f2 = fl(pos);
                }
                w.cut(pos);
                continue;
            }
            if f2.number() {
                pos += space;
                while f2.number() {
                    pos += 1;
                    f2 = fl(pos);
                }
                w.cut(pos);
                continue;
            }
            let other = |f: Flags| f.valid && !(f.whitespace || f.letter() || f.number());
            if other(f2) {
                pos += space;
                while other(f2) {
                    pos += 1;
                    f2 = fl(pos);
                }
                w.cut(pos);
                continue;
            }
            let mut n_ws = 0;
            while fl(pos + n_ws).space() {
                n_ws += 1;
            }
            pos = after_spaces(pos, n_ws, end);
            w.cut(pos);
        }
    }
    out
}

/// Llama 3's split (and Qwen2's with `max_digits` 1, Qwen3.5's with `marks`) as llama.cpp's
/// scanner does it.
fn split_llama3(
    cpts: &[char],
    flags: &[Flags],
    lengths: &[usize],
    max_digits: usize,
    marks: bool,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    for (ini, end) in pieces(lengths) {
        let get = |p: usize| if p < end { Some(cpts[p]) } else { None };
        let fl = |p: usize| if p < end { flags[p] } else { Flags::OUTSIDE };
        let wordy = |f: Flags| f.letter() || (marks && f.mark());
        let mut w = Cutter {
            out: &mut out,
            prev_end: ini,
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags[pos];
            if let Some(n) = contraction_at(cpts, pos, end, true) {
                pos += w.cut(pos + n);
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == '\r' || c == '\n' || f.number()) && (wordy(f) || wordy(fl(pos + 1))) {
                pos += 1;
                while wordy(fl(pos)) {
                    pos += 1;
                }
                w.cut(pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if f.number() {
                let mut group = pos;
                while fl(pos).number() {
                    pos += 1;
                    if pos - group >= max_digits {
                        w.cut(pos);
                        group = pos;
                    }
                }
                w.cut(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let mut f2 = if c == ' ' { fl(pos + 1) } else { f };
            let other =
                |f: Flags| !(f.whitespace || f.letter() || f.number() || (marks && f.mark()));
            if other(f2) && f.valid {
                pos += usize::from(c == ' ');
                while other(f2) && f2.valid {
                    pos += 1;
                    f2 = fl(pos);
                }
                while matches!(get(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
                w.cut(pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_newline_end = 0;
            while fl(pos + n_ws).space() {
                if matches!(get(pos + n_ws), Some('\r' | '\n')) {
                    last_newline_end = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            // \s*[\r\n]+
            if last_newline_end > 0 {
                pos = last_newline_end;
                w.cut(pos);
                continue;
            }
            pos = after_spaces(pos, n_ws, end);
            w.cut(pos);
        }
    }
    out
}

/// `[^\n]+|[\n]+`: runs of newlines and runs of everything else.
fn split_newlines(cpts: &[char], lengths: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    for (ini, end) in pieces(lengths) {
        let mut pos = ini;
        while pos < end {
            let newline = cpts[pos] == '\n';
            let start = pos;
            while pos < end && (cpts[pos] == '\n') == newline {
                pos += 1;
            }
            out.push(pos - start);
        }
    }
    out
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
        for name in KNOWN {
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
