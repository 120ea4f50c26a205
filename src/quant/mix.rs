//! Which type each tensor gets for a llama.cpp file type (Q4_K_M, Q8_0, ...): the rules of
//! llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp, commit 0c1e57098), as a table.
//!
//! The rules look at a tensor's role (attn_v, ffn_down, ...) and its position: llama.cpp walks
//! the tensors sorted by layer, then name, and counts attn_v and ffn_down tensors as it goes.
//! The depth used is the block count of the file being quantized, so a pruned model gets the
//! types a model that truly has that depth would get, not the ones of its unpruned ancestor.

use std::cmp::Ordering;

use crate::arch::names;
use crate::blocks::block_index;
use crate::error::{Error, Result};
use crate::gguf::{arch_key, GgmlType, Metadata, Value};

use crate::kernels::is_quantized;

/// A llama.cpp file type (`llama_ftype`): a default tensor type plus, for the K mixes, rules
/// that give some tensors more bits.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

/// (file type, name as llama-quantize spells it, `llama_ftype` number, default tensor type).
const FILE_TYPES: &[(FileType, &str, u32, GgmlType)] = &[
    (FileType::F32, "F32", 0, GgmlType::F32),
    (FileType::F16, "F16", 1, GgmlType::F16),
    (FileType::Q4_0, "Q4_0", 2, GgmlType::Q4_0),
    (FileType::Q4_1, "Q4_1", 3, GgmlType::Q4_1),
    (FileType::Q8_0, "Q8_0", 7, GgmlType::Q8_0),
    (FileType::Q5_0, "Q5_0", 8, GgmlType::Q5_0),
    (FileType::Q5_1, "Q5_1", 9, GgmlType::Q5_1),
    (FileType::Q2_K, "Q2_K", 10, GgmlType::Q2_K),
    (FileType::Q3_K_S, "Q3_K_S", 11, GgmlType::Q3_K),
    (FileType::Q3_K_M, "Q3_K_M", 12, GgmlType::Q3_K),
    (FileType::Q3_K_L, "Q3_K_L", 13, GgmlType::Q3_K),
    (FileType::Q4_K_S, "Q4_K_S", 14, GgmlType::Q4_K),
    (FileType::Q4_K_M, "Q4_K_M", 15, GgmlType::Q4_K),
    (FileType::Q5_K_S, "Q5_K_S", 16, GgmlType::Q5_K),
    (FileType::Q5_K_M, "Q5_K_M", 17, GgmlType::Q5_K),
    (FileType::Q6_K, "Q6_K", 18, GgmlType::Q6_K),
    (FileType::Q2_K_S, "Q2_K_S", 21, GgmlType::Q2_K),
    (FileType::BF16, "BF16", 32, GgmlType::BF16),
];

impl FileType {
    fn row(self) -> &'static (FileType, &'static str, u32, GgmlType) {
        FILE_TYPES
            .iter()
            .find(|r| r.0 == self)
            .expect("every file type is in FILE_TYPES")
    }

    /// All supported file types.
    pub fn all() -> impl Iterator<Item = FileType> {
        FILE_TYPES.iter().map(|r| r.0)
    }

    /// Parses a name as llama-quantize accepts it (`q4_k_m`, `Q8_0`, the alias `Q4_K`, or the
    /// number `15`); `None` for a name it accepts that this build cannot produce, or does not
    /// know. [`FileType::parse`] tells the two apart.
    pub fn from_name(name: &str) -> Option<FileType> {
        FileType::parse(name).ok()
    }

    /// Parses a file type the way llama-quantize's `try_parse_ftype` does: a name from its list,
    /// any case, else a leading decimal number (`std::stoi`) taken as a `llama_ftype`, the first
    /// name in the list with that number winning.
    pub fn parse(name: &str) -> Result<FileType, FileTypeError> {
        let row = LLAMA_QUANTIZE_NAMES
            .iter()
            .find(|r| r.0.eq_ignore_ascii_case(name))
            .or_else(|| {
                let n = stoi(name)?;
                LLAMA_QUANTIZE_NAMES.iter().find(|r| r.1 == Some(n))
            })
            .ok_or_else(|| FileTypeError::Unknown(name.to_string()))?;
        let number = row.1.ok_or(FileTypeError::NotBuilt(row.0))?;
        FILE_TYPES
            .iter()
            .find(|r| r.2 == number)
            .map(|r| r.0)
            .ok_or(FileTypeError::NotBuilt(row.0))
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The value llama-quantize writes to `general.file_type`.
    pub fn llama_ftype(self) -> u32 {
        self.row().2
    }

    /// The type most tensors get.
    pub fn default_type(self) -> GgmlType {
        self.row().3
    }
}

/// Why a file type name was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileTypeError {
    /// Occurs when llama-quantize would not accept the name either.
    #[error("unknown file type {0:?}; one of {names}", names = supported_names())]
    Unknown(String),
    /// Occurs for a type llama-quantize produces that this build has no kernel or mix for.
    #[error("file type {0} is one llama-quantize makes, but this build cannot (it makes {names}); use llama-quantize for {0}", names = supported_names())]
    NotBuilt(&'static str),
}

fn supported_names() -> String {
    let names: Vec<&str> = FileType::all().map(|f| f.name()).collect();
    names.join(", ")
}

/// `std::stoi` as llama-quantize calls it: optional leading white space and sign, then at least
/// one decimal digit; whatever follows the digits is ignored.
fn stoi(s: &str) -> Option<u32> {
    let t = s.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    let digits: &str = &t[..t.bytes().take_while(u8::is_ascii_digit).count()];
    digits.parse().ok()
}

/// Every name llama-quantize's `--help` lists (tools/quantize/quantize.cpp, `QUANT_OPTIONS`), in
/// its order, with the `llama_ftype` number it maps to: `Q3_K`, `Q4_K` and `Q5_K` are aliases
/// of the `_M` mixes, and `COPY` (copy every tensor unchanged) has no number of its own. The
/// order matters: a number resolves to the first name that has it.
const LLAMA_QUANTIZE_NAMES: &[(&str, Option<u32>)] = &[
    ("Q1_0", Some(40)),
    ("Q2_0", Some(41)),
    ("Q4_0", Some(2)),
    ("Q4_1", Some(3)),
    ("MXFP4_MOE", Some(38)),
    ("Q5_0", Some(8)),
    ("Q5_1", Some(9)),
    ("IQ2_XXS", Some(19)),
    ("IQ2_XS", Some(20)),
    ("IQ2_S", Some(28)),
    ("IQ2_M", Some(29)),
    ("IQ1_S", Some(24)),
    ("IQ1_M", Some(31)),
    ("TQ1_0", Some(36)),
    ("TQ2_0", Some(37)),
    ("Q2_K", Some(10)),
    ("Q2_K_S", Some(21)),
    ("IQ3_XXS", Some(23)),
    ("IQ3_S", Some(26)),
    ("IQ3_M", Some(27)),
    ("Q3_K", Some(12)),
    ("IQ3_XS", Some(22)),
    ("Q3_K_S", Some(11)),
    ("Q3_K_M", Some(12)),
    ("Q3_K_L", Some(13)),
    ("IQ4_NL", Some(25)),
    ("IQ4_XS", Some(30)),
    ("Q4_K", Some(15)),
    ("Q4_K_S", Some(14)),
    ("Q4_K_M", Some(15)),
    ("Q5_K", Some(17)),
    ("Q5_K_S", Some(16)),
    ("Q5_K_M", Some(17)),
    ("Q6_K", Some(18)),
    ("Q8_0", Some(7)),
    ("F16", Some(1)),
    ("BF16", Some(32)),
    ("F32", Some(0)),
    ("COPY", None),
];

/// The names llama-quantize accepts, in its `--help` order, with their `llama_ftype` numbers
/// (`None` for `COPY`), and whether this build makes that type.
pub fn llama_quantize_names() -> impl Iterator<Item = (&'static str, Option<u32>, bool)> {
    LLAMA_QUANTIZE_NAMES
        .iter()
        .map(|&(name, n)| (name, n, FileType::parse(name).is_ok()))
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's role, as llama.cpp's `tensor_get_category` sees it from the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

/// How llama.cpp's `tensor_get_category` matches a block name: followed by `.weight` (the
/// attention tensors), or anywhere (the FFN names, so that `ffn_up_exps` counts too).
#[derive(Debug, Clone, Copy)]
enum Pattern {
    Weight(&'static str),
    Anywhere(&'static str),
}

impl Pattern {
    fn matches(self, name: &str) -> bool {
        match self {
            Pattern::Weight(stem) => contains_weight(name, stem),
            Pattern::Anywhere(stem) => name.contains(stem),
        }
    }
}

/// Whether `name` contains `{stem}.weight` anywhere.
fn contains_weight(name: &str, stem: &str) -> bool {
    name.contains(&format!("{stem}{}", names::WEIGHT_SUFFIX))
}

impl Category {
    pub fn of(name: &str) -> Category {
        if name == names::OUTPUT {
            return Category::Output;
        }
        if name == names::TOKEN_EMBD || name == names::PER_LAYER_TOKEN_EMBD {
            return Category::TokenEmbd;
        }
        // Substring tests in llama.cpp's order: the first that matches wins.
        const BY_SUBSTRING: &[(Pattern, Category)] = &[
            (Pattern::Weight(names::ATTN_QKV), Category::AttnQkv),
            (Pattern::Weight(names::ATTN_KV_B), Category::AttnKvB),
            (Pattern::Weight(names::ATTN_V), Category::AttnV),
            (Pattern::Weight(names::ATTN_K), Category::AttnK),
            (Pattern::Weight(names::ATTN_Q), Category::AttnQ),
            (Pattern::Weight(names::ATTN_OUTPUT), Category::AttnOutput),
            (Pattern::Anywhere(names::FFN_UP), Category::FfnUp),
            (Pattern::Anywhere(names::FFN_GATE), Category::FfnGate),
            (Pattern::Anywhere(names::FFN_DOWN), Category::FfnDown),
        ];
        BY_SUBSTRING
            .iter()
            .find(|(p, _)| p.matches(name))
            .map_or(Category::Other, |&(_, c)| c)
    }

    /// attn_v and the fused tensors that contain it count together in llama.cpp.
    fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttnV | Category::AttnQkv | Category::AttnKvB
        )
    }
}

/// What the rules need to know about the model.
#[derive(Debug, Clone)]
pub struct MixContext {
    pub arch: String,
    /// `{arch}.block_count` of the file being quantized.
    pub n_layer: usize,
    /// Query heads per KV head of layer 0 (llama.cpp's `n_gqa()`), 0 if unknown.
    pub n_gqa: u32,
    pub n_expert: u32,
    /// llama.cpp's `LLM_TYPE_70B`, which gives attn_v more bits.
    pub is_70b: bool,
    pub has_imatrix: bool,
    /// `--pure`: no mix rules, every quantizable tensor gets the default type (or its fallback).
    pub pure: bool,
}

fn first_u32(meta: &Metadata, key: &str) -> Option<u32> {
    match meta.get(key)? {
        Value::Array(a) => a.int_at(0).map(|v| v as u32),
        v => v.to_u64().map(|v| v as u32),
    }
}

impl MixContext {
    /// Reads the model facts from GGUF metadata.
    pub fn from_metadata(meta: &Metadata, has_imatrix: bool, pure: bool) -> Result<MixContext> {
        let arch = meta.architecture()?.to_string();
        let n_layer = crate::blocks::block_count(meta)?;
        let n_head = first_u32(meta, &arch_key(&arch, "attention.head_count")).unwrap_or(0);
        let n_head_kv =
            first_u32(meta, &arch_key(&arch, "attention.head_count_kv")).unwrap_or(n_head);
        let n_gqa = n_head.checked_div(n_head_kv).unwrap_or(0);
        let n_expert = first_u32(meta, &arch_key(&arch, "expert_count")).unwrap_or(0);
        // llama.cpp's model-type detection for the architectures that have a 70B size.
        let is_70b = match arch.as_str() {
            "llama" => n_layer == 80 && n_head != n_head_kv,
            "deci" | "olmo" | "qwen2" => n_layer == 80,
            "jais2" => n_layer == 68,
            _ => false,
        };
        Ok(MixContext {
            arch,
            n_layer,
            n_gqa,
            n_expert,
            is_70b,
            has_imatrix,
            pure,
        })
    }
}

/// One tensor as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct TensorDesc<'a> {
    pub name: &'a str,
    /// ggml `ne`, innermost first.
    pub dims: &'a [u64],
    pub ggml_type: GgmlType,
}

/// The decision for one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub ty: GgmlType,
    /// The mix asked for a type whose blocks do not divide the rows, and this is its fallback.
    pub fallback_from: Option<GgmlType>,
}

/// Block weights llama.cpp never quantizes (`tensor_allows_quantization`): the MoE router and
/// T5's relative position bias, matched as `{name}.weight` anywhere.
const NEVER_QUANTIZED_WEIGHTS: &[&str] = &[
    names::FFN_GATE_INP,
    names::FFN_GATE_TID2EID,
    names::ATTN_REL_B,
];

/// The rest of that list: fragments matched anywhere (every norm, whole families such as
/// gemma3n's `altup`) and the names of architectures only this table meets (RWKV's
/// `time_mix_*`, vision and audio encoders), kept as llama.cpp spells them.
const NEVER_QUANTIZED: &[&str] = &[
    "_norm.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// ggml's `ggml_n_dims`: trailing dimensions of 1 do not count.
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether llama-quantize would change this tensor's type at all (2-D+ weights that are not
/// norms, routers, positional tables and the like).
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    n_dims(dims) >= 2
        && name.ends_with("weight")
        && name != names::POSITION_EMBD
        && name != names::TOKEN_TYPES
        && !NEVER_QUANTIZED_WEIGHTS
            .iter()
            .any(|stem| contains_weight(name, stem))
        && !NEVER_QUANTIZED.iter().any(|s| name.contains(s))
}

/// A condition on the tensor's position or the model; all of a rule's conditions must hold.
#[derive(Debug, Clone, Copy)]
enum When {
    /// `n_gqa >= 4`.
    Gqa4,
    /// llama.cpp's `use_more_bits(i, n)`: the first and last eighth, and every third between.
    MoreBits,
    /// `i < n / d` (integer division).
    Below(usize),
    /// `i < k`: the first k counted tensors.
    First(usize),
    Imatrix,
    Falcon,
    NotFalcon,
    Expert8,
    NotExpert8,
}

use Category as C;
use FileType as F;
use GgmlType as T;

/// The mix rules: for a (file type, category), the first row whose conditions hold gives the
/// type; if none does, the tensor keeps the default type. Rows are in llama.cpp's order.
/// For attn_v (and fused qkv) the position is the count of such tensors so far out of all of
/// them; for ffn_down it is the count so far out of the block count.
#[rustfmt::skip]
const RULES: &[(FileType, Category, &[When], GgmlType)] = &[
    (F::Q2_K,   C::AttnV, &[When::Gqa4], T::Q4_K),
    (F::Q2_K,   C::AttnV, &[], T::Q3_K),
    (F::Q2_K_S, C::AttnV, &[When::Gqa4], T::Q4_K),
    (F::Q3_K_M, C::AttnV, &[When::First(2)], T::Q5_K),
    (F::Q3_K_M, C::AttnV, &[], T::Q4_K),
    (F::Q3_K_L, C::AttnV, &[], T::Q5_K),
    (F::Q4_K_M, C::AttnV, &[When::MoreBits], T::Q6_K),
    (F::Q5_K_M, C::AttnV, &[When::MoreBits], T::Q6_K),
    (F::Q4_K_S, C::AttnV, &[When::First(4)], T::Q5_K),

    (F::Q2_K,   C::FfnDown, &[], T::Q3_K),
    (F::Q2_K_S, C::FfnDown, &[When::Below(8)], T::Q4_K),
    (F::Q3_K_M, C::FfnDown, &[When::Below(16)], T::Q5_K),
    (F::Q3_K_M, C::FfnDown, &[When::NotFalcon], T::Q4_K),
    (F::Q3_K_M, C::FfnDown, &[When::MoreBits], T::Q4_K),
    (F::Q3_K_M, C::FfnDown, &[], T::Q3_K),
    (F::Q3_K_L, C::FfnDown, &[When::Falcon], T::Q4_K),
    (F::Q3_K_L, C::FfnDown, &[], T::Q5_K),
    (F::Q4_K_M, C::FfnDown, &[When::Falcon, When::Below(16)], T::Q6_K),
    (F::Q4_K_M, C::FfnDown, &[When::Falcon, When::MoreBits], T::Q5_K),
    (F::Q4_K_M, C::FfnDown, &[When::Falcon], T::Q4_K),
    (F::Q4_K_M, C::FfnDown, &[When::MoreBits], T::Q6_K),
    (F::Q5_K_M, C::FfnDown, &[When::MoreBits], T::Q6_K),
    (F::Q4_K_S, C::FfnDown, &[When::NotFalcon, When::Below(8)], T::Q5_K),
    (F::Q4_0,   C::FfnDown, &[When::Imatrix, When::Below(8)], T::Q4_1),
    (F::Q5_0,   C::FfnDown, &[When::Imatrix, When::Below(8)], T::Q5_1),

    (F::Q2_K,   C::AttnOutput, &[When::NotFalcon, When::Expert8], T::Q5_K),
    (F::Q3_K_S, C::AttnOutput, &[When::NotFalcon, When::Expert8], T::Q5_K),
    (F::Q3_K_M, C::AttnOutput, &[When::NotFalcon, When::Expert8], T::Q5_K),
    (F::Q4_K_S, C::AttnOutput, &[When::NotFalcon, When::Expert8], T::Q5_K),
    (F::Q4_K_M, C::AttnOutput, &[When::NotFalcon, When::Expert8], T::Q5_K),
    (F::Q2_K,   C::AttnOutput, &[When::NotFalcon, When::NotExpert8], T::Q3_K),
    (F::Q3_K_M, C::AttnOutput, &[When::NotFalcon, When::NotExpert8], T::Q4_K),
    (F::Q3_K_L, C::AttnOutput, &[When::NotFalcon, When::NotExpert8], T::Q5_K),
    (F::Q3_K_L, C::AttnOutput, &[When::Falcon], T::Q4_K),
];

/// llama.cpp's `use_more_bits`.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

fn holds(w: When, ctx: &MixContext, i: usize, n: usize) -> bool {
    match w {
        When::Gqa4 => ctx.n_gqa >= 4,
        When::MoreBits => use_more_bits(i, n),
        When::Below(d) => i < n / d,
        When::First(k) => i < k,
        When::Imatrix => ctx.has_imatrix,
        When::Falcon => ctx.arch == "falcon",
        When::NotFalcon => ctx.arch != "falcon",
        When::Expert8 => ctx.n_expert == 8,
        When::NotExpert8 => ctx.n_expert != 8,
    }
}

/// llama.cpp's tensor order for quantization: non-layer tensors first, then by layer, then by
/// name (`weight_name_comparer`).
fn llama_order(a: &str, b: &str) -> Ordering {
    let la = block_index(a).map_or(-1, |l| l as i64);
    let lb = block_index(b).map_or(-1, |l| l as i64);
    la.cmp(&lb).then_with(|| a.cmp(b))
}

struct Counters {
    n_attn_v: usize,
    i_attn_v: usize,
    i_ffn_down: usize,
    tied_embeddings: bool,
}

/// The mix's type for one quantizable tensor, before the shape fallback
/// (`llama_tensor_get_type_impl`); advances the counters as llama.cpp does.
fn mix_type(
    ftype: FileType,
    ctx: &MixContext,
    t: &TensorDesc,
    cat: Category,
    cnt: &mut Counters,
) -> Result<GgmlType> {
    let mut new_type = ftype.default_type();
    if cat == Category::Output || (cnt.tied_embeddings && cat == Category::TokenEmbd) {
        let nx = t.dims.first().copied().unwrap_or(0);
        let qk = new_type.block_size().unwrap_or(1);
        if ctx.arch == "falcon" || nx % qk != 0 {
            return Ok(GgmlType::Q8_0);
        }
        if new_type != GgmlType::Q8_0 {
            return Ok(GgmlType::Q6_K);
        }
        return Ok(new_type);
    }
    if cat == Category::TokenEmbd {
        return Ok(new_type);
    }
    let (i, n) = if cat.is_attn_v() {
        (cnt.i_attn_v, cnt.n_attn_v)
    } else if cat == Category::FfnDown {
        let i = if ctx.n_expert > 1 {
            // MoE experts are not stored in layer order: llama.cpp reads the layer from the name.
            let l = block_index(t.name).ok_or_else(|| {
                Error::Invalid(format!("cannot tell the layer of tensor {:?}", t.name))
            })?;
            if l >= ctx.n_layer {
                return Err(Error::Invalid(format!(
                    "tensor {:?} is in layer {l}, but the model has {} layers",
                    t.name, ctx.n_layer
                )));
            }
            l
        } else {
            cnt.i_ffn_down
        };
        (i, ctx.n_layer)
    } else {
        (0, 0)
    };
    // Fused qkv and kv_b take the attn_v rules (llama.cpp tests `category_is_attn_v` first,
    // which makes its later attn_qkv branch unreachable).
    let rule_cat = if cat.is_attn_v() {
        Category::AttnV
    } else {
        cat
    };
    if let Some(row) = RULES
        .iter()
        .find(|r| r.0 == ftype && r.1 == rule_cat && r.2.iter().all(|&w| holds(w, ctx, i, n)))
    {
        new_type = row.3;
    }
    if cat.is_attn_v() {
        if ctx.is_70b && matches!(new_type, GgmlType::Q3_K | GgmlType::Q4_K) {
            new_type = GgmlType::Q5_K;
        }
        if ctx.n_expert == 8 {
            new_type = GgmlType::Q8_0;
        }
        cnt.i_attn_v += 1;
    } else if cat == Category::AttnK && ctx.n_expert == 8 {
        new_type = GgmlType::Q8_0;
    } else if cat == Category::FfnDown {
        cnt.i_ffn_down += 1;
    }
    Ok(new_type)
}

/// llama.cpp's `tensor_type_fallback`: a type whose blocks fit rows of `ncols` elements.
pub fn fallback(ty: GgmlType, ncols: u64) -> GgmlType {
    let qk = ty.block_size().unwrap_or(1);
    if ncols.is_multiple_of(qk) {
        return ty;
    }
    let alt = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if !ncols.is_multiple_of(alt.block_size().unwrap_or(1)) {
        GgmlType::F16
    } else {
        alt
    }
}

/// The type of every tensor for `ftype`, in the order given.
pub fn choose_types(
    ftype: FileType,
    ctx: &MixContext,
    tensors: &[TensorDesc],
) -> Result<Vec<Choice>> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| llama_order(tensors[a].name, tensors[b].name));
    let mut cnt = Counters {
        n_attn_v: tensors
            .iter()
            .filter(|t| Category::of(t.name).is_attn_v())
            .count(),
        i_attn_v: 0,
        i_ffn_down: 0,
        tied_embeddings: !tensors
            .iter()
            .any(|t| Category::of(t.name) == Category::Output),
    };
    let default = ftype.default_type();
    let mut out = vec![
        Choice {
            ty: GgmlType::F32,
            fallback_from: None
        };
        tensors.len()
    ];
    for idx in order {
        let t = &tensors[idx];
        if !allows_quantization(t.name, t.dims) {
            out[idx] = Choice {
                ty: t.ggml_type,
                fallback_from: None,
            };
            continue;
        }
        let mut ty = default;
        let mut fallback_from = None;
        if is_quantized(default) {
            if !ctx.pure {
                ty = mix_type(ftype, ctx, t, Category::of(t.name), &mut cnt)?;
            }
            let fb = fallback(ty, t.dims.first().copied().unwrap_or(0));
            if fb != ty {
                fallback_from = Some(ty);
                ty = fb;
            }
        }
        if ftype == FileType::Q2_K_S
            && ty == GgmlType::Q2_K
            && !ctx.has_imatrix
            && !matches!(Category::of(t.name), Category::TokenEmbd | Category::Output)
        {
            return Err(Error::NeedsImatrix {
                ftype: ftype.name(),
                tensor: t.name.to_string(),
            });
        }
        out[idx] = Choice { ty, fallback_from };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_padded_block_numbers_sort_with_the_non_layer_tensors() {
        // One strict parser (crate::blocks::block_index): `blk.01.x` is not layer 1.
        assert_eq!(llama_order("blk.01.x", "blk.0.y"), Ordering::Less);
        assert_eq!(llama_order("blk.1.x", "blk.0.y"), Ordering::Greater);
    }

    fn ctx(n_layer: usize, n_gqa: u32) -> MixContext {
        MixContext {
            arch: "llama".into(),
            n_layer,
            n_gqa,
            n_expert: 0,
            is_70b: false,
            has_imatrix: false,
            pure: false,
        }
    }

    /// A dense model: embeddings, then per layer attn_v, ffn_down, attn_q, a norm.
    fn names(n_layer: usize, tied: bool) -> Vec<(String, Vec<u64>)> {
        let mut v = vec![("token_embd.weight".to_string(), vec![512, 1000])];
        if !tied {
            v.push(("output.weight".into(), vec![512, 1000]));
        }
        for l in 0..n_layer {
            v.push((format!("blk.{l}.attn_v.weight"), vec![512, 128]));
            v.push((format!("blk.{l}.ffn_down.weight"), vec![1536, 512]));
            v.push((format!("blk.{l}.attn_q.weight"), vec![512, 512]));
            v.push((format!("blk.{l}.attn_norm.weight"), vec![512]));
        }
        v
    }

    fn pick(ftype: FileType, c: &MixContext, tied: bool) -> Vec<(String, GgmlType)> {
        let ts = names(c.n_layer, tied);
        let descs: Vec<TensorDesc> = ts
            .iter()
            .map(|(n, d)| TensorDesc {
                name: n,
                dims: d,
                ggml_type: GgmlType::F16,
            })
            .collect();
        let ch = choose_types(ftype, c, &descs).unwrap();
        ts.into_iter()
            .map(|t| t.0)
            .zip(ch.into_iter().map(|c| c.ty))
            .collect()
    }

    fn ty_of(v: &[(String, GgmlType)], name: &str) -> GgmlType {
        v.iter().find(|t| t.0 == name).unwrap().1
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_32_layers() {
        let got: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        // first 4, last 4, and (i - 4) % 3 == 2 between
        assert_eq!(
            got,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn q4_k_m_gives_more_bits_by_position_at_the_current_depth() {
        let v = pick(FileType::Q4_K_M, &ctx(24, 3), true);
        // 24 layers: use_more_bits = i < 3 || i >= 21 || (i-3)%3 == 2
        for l in 0..24 {
            let more = !(3..21).contains(&l) || (l as i64 - 3) % 3 == 2;
            let want = if more { GgmlType::Q6_K } else { GgmlType::Q4_K };
            assert_eq!(
                ty_of(&v, &format!("blk.{l}.attn_v.weight")),
                want,
                "attn_v {l}"
            );
            assert_eq!(
                ty_of(&v, &format!("blk.{l}.ffn_down.weight")),
                want,
                "ffn_down {l}"
            );
            assert_eq!(ty_of(&v, &format!("blk.{l}.attn_q.weight")), GgmlType::Q4_K);
            assert_eq!(
                ty_of(&v, &format!("blk.{l}.attn_norm.weight")),
                GgmlType::F16
            );
        }
        // tied embeddings are quantized like the output tensor
        assert_eq!(ty_of(&v, "token_embd.weight"), GgmlType::Q6_K);
        let untied = pick(FileType::Q4_K_M, &ctx(24, 3), false);
        assert_eq!(ty_of(&untied, "token_embd.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of(&untied, "output.weight"), GgmlType::Q6_K);
    }

    #[test]
    fn small_mixes_and_fallbacks() {
        let v = pick(FileType::Q2_K, &ctx(8, 4), true);
        assert_eq!(ty_of(&v, "blk.0.attn_v.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of(&v, "blk.0.ffn_down.weight"), GgmlType::Q3_K);
        let v = pick(FileType::Q2_K, &ctx(8, 3), true);
        assert_eq!(ty_of(&v, "blk.0.attn_v.weight"), GgmlType::Q3_K);
        let v = pick(FileType::Q3_K_M, &ctx(32, 3), true);
        assert_eq!(ty_of(&v, "blk.1.attn_v.weight"), GgmlType::Q5_K);
        assert_eq!(ty_of(&v, "blk.2.attn_v.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of(&v, "blk.1.ffn_down.weight"), GgmlType::Q5_K);
        assert_eq!(ty_of(&v, "blk.2.ffn_down.weight"), GgmlType::Q4_K);
        let v = pick(FileType::Q4_K_S, &ctx(32, 3), true);
        assert_eq!(ty_of(&v, "blk.3.attn_v.weight"), GgmlType::Q5_K);
        assert_eq!(ty_of(&v, "blk.4.attn_v.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of(&v, "blk.3.ffn_down.weight"), GgmlType::Q5_K);
        assert_eq!(ty_of(&v, "blk.4.ffn_down.weight"), GgmlType::Q4_K);
        // plain types: tied embeddings still go to Q6_K
        let v = pick(FileType::Q4_0, &ctx(4, 3), true);
        assert_eq!(ty_of(&v, "token_embd.weight"), GgmlType::Q6_K);
        assert_eq!(ty_of(&v, "blk.0.ffn_down.weight"), GgmlType::Q4_0);
        let mut pure = ctx(4, 3);
        pure.pure = true;
        let v = pick(FileType::Q4_K_M, &pure, true);
        assert_eq!(ty_of(&v, "token_embd.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of(&v, "blk.0.attn_v.weight"), GgmlType::Q4_K);
        // rows that are not whole 256-blocks
        assert_eq!(fallback(GgmlType::Q4_K, 576), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::Q5_K, 576), GgmlType::Q5_1);
        assert_eq!(fallback(GgmlType::Q6_K, 576), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::Q3_K, 576), GgmlType::Q4_0);
        assert_eq!(fallback(GgmlType::Q4_0, 100), GgmlType::F16);
        assert_eq!(fallback(GgmlType::Q4_K, 512), GgmlType::Q4_K);
    }

    #[test]
    fn file_type_names_and_numbers() {
        assert_eq!(FileType::from_name("q4_k_m"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::from_name("15"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::Q8_0.llama_ftype(), 7);
        assert_eq!(FileType::from_name("IQ2_XXS"), None);
        assert_eq!(
            FileType::parse("IQ2_XXS"),
            Err(FileTypeError::NotBuilt("IQ2_XXS"))
        );
        assert_eq!(
            FileType::parse("Q4_L"),
            Err(FileTypeError::Unknown("Q4_L".into()))
        );
        // llama-quantize's aliases and its std::stoi reading of numbers
        assert_eq!(FileType::parse("q4_k"), Ok(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q3_K"), Ok(FileType::Q3_K_M));
        assert_eq!(FileType::parse("Q5_K"), Ok(FileType::Q5_K_M));
        assert_eq!(FileType::parse(" 15x"), Ok(FileType::Q4_K_M));
        assert_eq!(FileType::parse("0"), Ok(FileType::F32));
        assert_eq!(
            FileType::parse("COPY"),
            Err(FileTypeError::NotBuilt("COPY"))
        );
        // every file type this build makes is in llama-quantize's list under its own name
        for f in FileType::all() {
            assert_eq!(FileType::parse(f.name()), Ok(f));
            assert_eq!(FileType::parse(&f.llama_ftype().to_string()), Ok(f));
        }
    }
}
