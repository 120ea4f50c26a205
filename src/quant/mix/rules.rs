//! The mix rules of llama.cpp's `llama_tensor_get_type_impl` (src/llama-quant.cpp) as a table,
//! [`RULES`], and the one function that applies them to a tensor, [`mix_type`]. The table is
//! long because llama.cpp's chain of conditions is: one row per branch, in its order.

use super::category::Category;
use super::file_type::FileType;
use super::MixContext;
use super::TensorDesc;
use crate::blocks::block_index;
use crate::error::{Error, Result};
use crate::gguf::GgmlType;

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

/// What llama.cpp counts as it walks the tensors: the attn_v (and fused) tensors in all and so
/// far, the ffn_down tensors so far, and whether the output head is the token embedding.
pub(super) struct Counters {
    n_attn_v: usize,
    i_attn_v: usize,
    i_ffn_down: usize,
    tied_embeddings: bool,
}

impl Counters {
    /// The counts before the first tensor of `tensors`.
    pub(super) fn new(tensors: &[TensorDesc]) -> Counters {
        Counters {
            n_attn_v: tensors
                .iter()
                .filter(|t| Category::of(t.name).is_attn_v())
                .count(),
            i_attn_v: 0,
            i_ffn_down: 0,
            tied_embeddings: !tensors
                .iter()
                .any(|t| Category::of(t.name) == Category::Output),
        }
    }
}

/// The mix's type for one quantizable tensor, before the shape fallback
/// (`llama_tensor_get_type_impl`); advances the counters as llama.cpp does.
pub(super) fn mix_type(
    ftype: FileType,
    ctx: &MixContext,
    t: &TensorDesc,
    cat: Category,
    cnt: &mut Counters,
) -> Result<GgmlType> {
    if cat == Category::Output || (cnt.tied_embeddings && cat == Category::TokenEmbd) {
        return Ok(output_type(ftype, ctx, t));
    }
    if cat == Category::TokenEmbd {
        return Ok(ftype.default_type());
    }
    let (i, n) = position(ctx, t, cat, cnt)?;
    // Fused qkv and kv_b take the attn_v rules (llama.cpp tests `category_is_attn_v` first,
    // which makes its later attn_qkv branch unreachable).
    let rule_cat = if cat.is_attn_v() {
        Category::AttnV
    } else {
        cat
    };
    let new_type = RULES
        .iter()
        .find(|r| r.0 == ftype && r.1 == rule_cat && r.2.iter().all(|&w| holds(w, ctx, i, n)))
        .map_or(ftype.default_type(), |row| row.3);
    Ok(after_rules(ctx, cat, new_type, cnt))
}

/// The output head's type (and the token embedding's when it is also the head): Q8_0 for
/// falcon or rows the default type does not divide, else Q6_K unless the default is Q8_0.
fn output_type(ftype: FileType, ctx: &MixContext, t: &TensorDesc) -> GgmlType {
    let new_type = ftype.default_type();
    let nx = t.dims.first().copied().unwrap_or(0);
    let qk = new_type.block_size().unwrap_or(1);
    if ctx.arch == "falcon" || nx % qk != 0 {
        GgmlType::Q8_0
    } else if new_type != GgmlType::Q8_0 {
        GgmlType::Q6_K
    } else {
        new_type
    }
}

/// The `(i, n)` the rules' position conditions read: for attn_v the count so far out of all of
/// them, for ffn_down its layer out of the block count, else `(0, 0)`.
fn position(
    ctx: &MixContext,
    t: &TensorDesc,
    cat: Category,
    cnt: &Counters,
) -> Result<(usize, usize)> {
    if cat.is_attn_v() {
        return Ok((cnt.i_attn_v, cnt.n_attn_v));
    }
    if cat != Category::FfnDown {
        return Ok((0, 0));
    }
    if ctx.n_expert <= 1 {
        return Ok((cnt.i_ffn_down, ctx.n_layer));
    }
    // MoE experts are not stored in layer order: llama.cpp reads the layer from the name.
    let l = block_index(t.name).ok_or_else(|| Error::NoLayer {
        name: t.name.to_string(),
    })?;
    if l >= ctx.n_layer {
        return Err(Error::LayerBeyondCount {
            name: t.name.to_string(),
            layer: l,
            n_layer: ctx.n_layer,
        });
    }
    Ok((l, ctx.n_layer))
}

/// What llama.cpp does after the table: more bits for a 70B model's attn_v, Q8_0 for the
/// attention of 8-expert models; and the counters advance.
fn after_rules(
    ctx: &MixContext,
    cat: Category,
    mut new_type: GgmlType,
    cnt: &mut Counters,
) -> GgmlType {
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
    new_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp_for_32_layers() {
        let got: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        // first 4, last 4, and (i - 4) % 3 == 2 between
        assert_eq!(
            got,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }
}
