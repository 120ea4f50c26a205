//! The one loader of `formats/*.toml`: each file is parsed once into a [`Format`], its
//! `[layers]` table (what each architecture's layer index means to llama.cpp) and its optional
//! `[forward]` table (how the forward pass computes a block, [`ForwardSpec`]). The schema is
//! explained in `formats/README.md`; this file parses it.
//!
//! Unknown tables and unknown fields are errors, so a typo cannot silently disable a rule.

use std::sync::OnceLock;

use serde::Deserialize;

use super::forward::{AttentionScale, ForwardSpec};
use crate::error::{Error, Result};

/// Every file in `formats/`, embedded at build time. A test
/// (`tests/known_arch_rules.rs`, `every_formats_file_parses_and_is_embedded`) fails when a file is
/// added to the folder but not here.
pub const FILES: &[(&str, &str)] = &[
    ("generic.toml", include_str!("../../formats/generic.toml")),
    ("afmoe.toml", include_str!("../../formats/afmoe.toml")),
    ("baichuan.toml", include_str!("../../formats/baichuan.toml")),
    ("cohere2.toml", include_str!("../../formats/cohere2.toml")),
    (
        "cohere2moe.toml",
        include_str!("../../formats/cohere2moe.toml"),
    ),
    (
        "deepseek2.toml",
        include_str!("../../formats/deepseek2.toml"),
    ),
    (
        "dense-lead-moe.toml",
        include_str!("../../formats/dense-lead-moe.toml"),
    ),
    (
        "ernie4_5-moe.toml",
        include_str!("../../formats/ernie4_5-moe.toml"),
    ),
    (
        "exaone-moe.toml",
        include_str!("../../formats/exaone-moe.toml"),
    ),
    ("exaone4.toml", include_str!("../../formats/exaone4.toml")),
    (
        "gemma-embedding.toml",
        include_str!("../../formats/gemma-embedding.toml"),
    ),
    ("gemma2.toml", include_str!("../../formats/gemma2.toml")),
    ("gemma3.toml", include_str!("../../formats/gemma3.toml")),
    ("gemma3n.toml", include_str!("../../formats/gemma3n.toml")),
    ("gemma4.toml", include_str!("../../formats/gemma4.toml")),
    ("glm4moe.toml", include_str!("../../formats/glm4moe.toml")),
    ("gpt-oss.toml", include_str!("../../formats/gpt-oss.toml")),
    (
        "granite_swa.toml",
        include_str!("../../formats/granite_swa.toml"),
    ),
    ("laguna.toml", include_str!("../../formats/laguna.toml")),
    ("llama.toml", include_str!("../../formats/llama.toml")),
    ("llama4.toml", include_str!("../../formats/llama4.toml")),
    ("mellum.toml", include_str!("../../formats/mellum.toml")),
    ("minicpm.toml", include_str!("../../formats/minicpm.toml")),
    (
        "minimax-01.toml",
        include_str!("../../formats/minimax-01.toml"),
    ),
    (
        "modern-bert.toml",
        include_str!("../../formats/modern-bert.toml"),
    ),
    (
        "muse-glimmer.toml",
        include_str!("../../formats/muse-glimmer.toml"),
    ),
    (
        "nomic-bert-moe.toml",
        include_str!("../../formats/nomic-bert-moe.toml"),
    ),
    ("olmo2.toml", include_str!("../../formats/olmo2.toml")),
    ("phi3.toml", include_str!("../../formats/phi3.toml")),
    ("plamo3.toml", include_str!("../../formats/plamo3.toml")),
    ("qwen2.toml", include_str!("../../formats/qwen2.toml")),
    ("qwen3.toml", include_str!("../../formats/qwen3.toml")),
    ("qwen3moe.toml", include_str!("../../formats/qwen3moe.toml")),
    (
        "qwen3next.toml",
        include_str!("../../formats/qwen3next.toml"),
    ),
    ("qwen3vl.toml", include_str!("../../formats/qwen3vl.toml")),
    ("rwkv6.toml", include_str!("../../formats/rwkv6.toml")),
    (
        "smallthinker.toml",
        include_str!("../../formats/smallthinker.toml"),
    ),
    ("smollm3.toml", include_str!("../../formats/smollm3.toml")),
];

/// The file whose `[layers]` table applies to every architecture, known or not.
pub const GENERIC: &str = "generic.toml";

/// The key llama.cpp's `load_swa_pattern` reads the sliding-window layers from; the role that
/// names it as its `array_key` is the architecture's sliding-window role.
pub const SLIDING_WINDOW_PATTERN: &str = "{arch}.attention.sliding_window_pattern";

/// One file of `formats/`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatFile {
    layers: Layers,
    forward: Option<ForwardSpec>,
}

/// One file's description of an architecture (or, for `generic.toml`, of every model).
#[derive(Debug)]
pub struct Format {
    /// The file's name in `formats/`.
    pub file: String,
    pub layers: Layers,
    /// How the forward pass runs the architecture; None when it cannot.
    pub forward: Option<ForwardSpec>,
}

/// The `[layers]` table of one file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layers {
    /// `general.architecture` values this table describes (empty for `generic.toml`).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Keys llama.cpp reads as one value per block (`get_key_or_arr` with `block_count`): an
    /// array must have `block_count` entries and is sliced to the kept layers; a scalar applies
    /// to every layer and stays as it is.
    #[serde(default)]
    pub per_layer: Vec<String>,
    /// Like `per_layer`, but llama.cpp expects one entry per main layer, `block_count -
    /// nextn_predict_layers` (keys read with `n_layer()`).
    #[serde(default)]
    pub per_main_layer: Vec<String>,
    /// Arrays that are not per-layer even when their length happens to equal `block_count`.
    #[serde(default)]
    pub not_per_layer: Vec<String>,
    /// Scalars that encode layer positions. Only meaningful in `generic.toml`: when one is
    /// present and the architecture has no rule that reads it, removal is refused.
    #[serde(default)]
    pub position_keys: Vec<String>,
    /// Per-main-layer arrays where 0 means "reuse what the nearest earlier layer marked 1
    /// computed" (DSA `attention.indexer.types`): removing a 1 that a kept 0 relies on is refused.
    #[serde(default)]
    pub reuse_previous: Vec<String>,
    /// Per-layer arrays where an entry >= 0 connects the layer to an extra input (granite's
    /// `deepstack_mapping`, -1 = none): sliced; removing a connected layer is refused, since the
    /// number of inputs also sizes the input embedding.
    #[serde(default)]
    pub per_layer_inputs: Vec<String>,
    /// Arrays whose values are layer indices (renumbered; removing a listed layer is refused).
    #[serde(default)]
    pub layer_lists: Vec<String>,
    /// Global tensors that pack data for every layer: removal is refused when one is present.
    #[serde(default)]
    pub global_tensors: Vec<String>,
    /// Per-layer roles llama.cpp derives from the layer index.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Behaviour llama.cpp derives from the depth itself.
    #[serde(default)]
    pub depth: Vec<Depth>,
    /// Values llama.cpp computes from the depth when a key is absent; the key is then written
    /// with the original model's value.
    #[serde(default)]
    pub pins: Vec<Pin>,
}

/// How a role follows from a layer index `il` and a parameter `p` (llama.cpp's formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Formula {
    /// `p == 0 || il % p != p - 1`: every layer but the last of each period
    /// (`set_swa_pattern(p)`, `(il + 1) % p != 0`).
    NotLastOfPeriod,
    /// `p == 0 || il % p != 0`: every layer but the first of each period
    /// (`set_swa_pattern(p, dense_first = true)`).
    NotFirstOfPeriod,
    /// `p > 0 && (il + 1) % p == 0`: the last layer of each period.
    LastOfPeriod,
    /// `p > 0 && il % p == 1`: the second layer of each period.
    SecondOfPeriod,
    /// `il < p`: the first `p` layers.
    Leading,
    /// `il >= n_layer - p`: the last `p` main layers.
    Trailing,
}

impl Formula {
    /// The role of main layer `il` of `n_layer` under parameter `p`.
    pub fn eval(self, il: u64, p: u64, n_layer: u64) -> bool {
        match self {
            Formula::NotLastOfPeriod => p == 0 || il % p != p - 1,
            Formula::NotFirstOfPeriod => p == 0 || !il.is_multiple_of(p),
            Formula::LastOfPeriod => p > 0 && (il + 1).is_multiple_of(p),
            Formula::SecondOfPeriod => p > 0 && il % p == 1,
            Formula::Leading => il < p,
            Formula::Trailing => il + p >= n_layer,
        }
    }

    /// True for the formulas whose parameter is a period.
    pub fn is_periodic(self) -> bool {
        !matches!(self, Formula::Leading | Formula::Trailing)
    }
}

/// A per-layer role llama.cpp derives from the layer index.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// What the role is, for messages ("sliding-window attention").
    pub name: String,
    pub formula: Formula,
    /// The parameter when `param_key` is absent. With neither, the role does not apply.
    pub default: Option<u64>,
    /// A scalar key that sets the parameter.
    pub param_key: Option<String>,
    /// Whether this tool may write a new value under `param_key` (false when the value also
    /// sizes something else, e.g. an input width).
    #[serde(default = "yes")]
    pub adjustable: bool,
    /// A key under which llama.cpp reads the role as a per-layer array (bool or integer,
    /// non-zero = has the role), in preference to the formula.
    pub array_key: Option<String>,
    /// The role exists only when this key is present and positive.
    pub requires_positive: Option<String>,
    /// The role does not exist when this key is present and zero.
    pub unless_zero: Option<String>,
    /// For `trailing` roles: this many layers just before the region must be kept (they hold
    /// state the region reuses).
    #[serde(default)]
    pub keep_before: u64,
    /// Where in llama.cpp this comes from, shown in refusals.
    pub source: Option<String>,
}

fn yes() -> bool {
    true
}

impl Layers {
    /// The sliding-window role: the one llama.cpp reads as the [`SLIDING_WINDOW_PATTERN`] array.
    pub fn sliding_window(&self) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.array_key.as_deref() == Some(SLIDING_WINDOW_PATTERN))
    }
}

/// Depths at which llama.cpp changes behaviour (model-size detection by `n_layer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Depth {
    pub block_counts: Vec<u64>,
    pub why: String,
}

/// A value llama.cpp computes from the depth when `key` is absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub key: String,
    pub formula: PinFormula,
    pub coefficient: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinFormula {
    /// `coefficient / sqrt(n_layer)`.
    CoefficientOverSqrtLayers,
}

impl PinFormula {
    pub fn eval(self, coefficient: f64, n_layer: u64) -> f64 {
        match self {
            PinFormula::CoefficientOverSqrtLayers => coefficient / (n_layer as f64).sqrt(),
        }
    }
}

/// Every parsed file: the generic table and one description per architecture file.
#[derive(Debug)]
pub struct Formats {
    pub generic: Layers,
    pub archs: Vec<Format>,
}

impl Formats {
    /// The description of `arch`, if a file names it.
    pub fn find(&self, arch: &str) -> Option<&Format> {
        self.archs
            .iter()
            .find(|f| f.layers.architectures.iter().any(|a| a == arch))
    }
}

/// Parses one file. The `[forward]` table gets the facts it shares with `[layers]` from there:
/// the sliding-window role and the depths where llama.cpp changes behaviour.
pub fn parse(name: &str, text: &str) -> Result<Format> {
    let invalid = |e: String| Error::Invalid(format!("formats/{name}: {e}"));
    let file: FormatFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let layers = file.layers;
    let mut forward = file.forward;
    if let Some(f) = &mut forward {
        f.sliding_window = layers.sliding_window().cloned();
        f.depth_changes = layers
            .depth
            .iter()
            .flat_map(|d| d.block_counts.iter().copied())
            .collect();
        if f.attention_scale == AttentionScale::Gemma && f.depth_changes.is_empty() {
            return Err(invalid(
                "attention_scale = \"gemma\" needs the 27B depth under [[layers.depth]]".into(),
            ));
        }
    }
    Ok(Format {
        file: name.to_string(),
        layers,
        forward,
    })
}

/// Parses every embedded file once.
pub fn formats() -> Result<&'static Formats> {
    static FORMATS: OnceLock<std::result::Result<Formats, String>> = OnceLock::new();
    FORMATS
        .get_or_init(|| {
            let mut generic = None;
            let mut archs = Vec::new();
            for (name, text) in FILES {
                let format = parse(name, text).map_err(|e| e.to_string())?;
                if *name == GENERIC {
                    generic = Some(format.layers);
                } else if format.layers.architectures.is_empty() {
                    return Err(format!("formats/{name}: [layers] names no architectures"));
                } else {
                    archs.push(format);
                }
            }
            let generic = generic.ok_or_else(|| format!("formats/{GENERIC} is not embedded"))?;
            Ok(Formats { generic, archs })
        })
        .as_ref()
        .map_err(|e| Error::Invalid(e.clone()))
}

/// Expands a `{arch}` key template.
pub fn key(template: &str, arch: &str) -> String {
    template.replace("{arch}", arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_llama_cpp_set_swa_pattern() {
        // set_swa_pattern(6): layers 5, 11, 17 are dense.
        let swa: Vec<bool> = (0..18)
            .map(|il| Formula::NotLastOfPeriod.eval(il, 6, 18))
            .collect();
        let dense: Vec<u64> = (0..18).filter(|&il| !swa[il as usize]).collect();
        assert_eq!(dense, [5, 11, 17]);
        // dense_first: layers 0, 4, 8 are dense.
        let dense: Vec<u64> = (0..10)
            .filter(|&il| !Formula::NotFirstOfPeriod.eval(il, 4, 10))
            .collect();
        assert_eq!(dense, [0, 4, 8]);
        // n_pattern 0 means every layer is SWA; 1 means none.
        assert!((0..8).all(|il| Formula::NotLastOfPeriod.eval(il, 0, 8)));
        assert!((0..8).all(|il| !Formula::NotLastOfPeriod.eval(il, 1, 8)));
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::LastOfPeriod.eval(il, 2, 8))
                .collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::SecondOfPeriod.eval(il, 2, 8))
                .collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::Leading.eval(il, 3, 8))
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::Trailing.eval(il, 3, 8))
                .collect::<Vec<_>>(),
            [5, 6, 7]
        );
    }
}
