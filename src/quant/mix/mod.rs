//! Which type each tensor gets for a llama.cpp file type (Q4_K_M, Q8_0, ...): the rules of
//! llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp, commit 0c1e57098), as a table.
//!
//! The rules look at a tensor's role (attn_v, ffn_down, ...) and its position: llama.cpp walks
//! the tensors sorted by layer, then name, and counts attn_v and ffn_down tensors as it goes.
//! The depth used is the block count of the file being quantized, so a pruned model gets the
//! types a model that truly has that depth would get, not the ones of its unpruned ancestor.
//!
//! - [`file_type`]: the file types and their names;
//! - [`category`]: a tensor's role from its name, and whether it is quantized at all;
//! - [`rules`]: the table of llama.cpp's rules and the type they give one tensor;
//! - here: the model facts the rules read, and the walk over every tensor in llama.cpp's order.

mod category;
mod file_type;
mod rules;

use std::cmp::Ordering;

use crate::blocks::block_index;
use crate::error::{Error, Result};
use crate::gguf::{arch_key, GgmlType, Metadata, Value};
use crate::kernels::is_quantized;

pub use category::{allows_quantization, Category};
pub use file_type::{llama_quantize_names, FileType, FileTypeError};
pub use rules::use_more_bits;
use rules::{mix_type, Counters};

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

/// llama.cpp's tensor order for quantization: non-layer tensors first, then by layer, then by
/// name (`weight_name_comparer`).
fn llama_order(a: &str, b: &str) -> Ordering {
    let la = block_index(a).map_or(-1, |l| l as i64);
    let lb = block_index(b).map_or(-1, |l| l as i64);
    la.cmp(&lb).then_with(|| a.cmp(b))
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
    let mut cnt = Counters::new(tensors);
    let mut out = vec![
        Choice {
            ty: GgmlType::F32,
            fallback_from: None
        };
        tensors.len()
    ];
    for idx in order {
        out[idx] = choose_one(ftype, ctx, &tensors[idx], &mut cnt)?;
    }
    Ok(out)
}

/// One tensor's type, taken in llama.cpp's order: its own type if it is never quantized, else
/// the default type or the mix's, then the shape fallback.
fn choose_one(
    ftype: FileType,
    ctx: &MixContext,
    t: &TensorDesc,
    cnt: &mut Counters,
) -> Result<Choice> {
    if !allows_quantization(t.name, t.dims) {
        return Ok(Choice {
            ty: t.ggml_type,
            fallback_from: None,
        });
    }
    let default = ftype.default_type();
    let mut ty = default;
    let mut fallback_from = None;
    if is_quantized(default) {
        if !ctx.pure {
            ty = mix_type(ftype, ctx, t, Category::of(t.name), cnt)?;
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
    Ok(Choice { ty, fallback_from })
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
}
