//! Expert pruning: keeping K experts in every mixture-of-experts block by slicing the raw bytes
//! of every per-expert tensor (no requantization).
//!
//! A per-expert tensor holds one slab per expert along its outermost dimension (ggml dims are
//! innermost first, so the last dim is the expert count): the 3-D `ffn_{gate,up,down}_exps`
//! weights (an expert's `n_out` rows of `n_in`, whole quantization blocks), their biases and
//! scales (`*_exps.*`), the router `ffn_gate_inp` (one row per expert) and its bias, and the
//! selection bias `exp_probs_b`. Keeping experts is concatenating their slabs, in increasing
//! expert order so that the router's row j still belongs to the expert at slab j. Shared experts
//! (`*_shexp`) are not per-expert and stay whole.

use crate::arch::forward::{EXPERT_COUNT, EXPERT_USED_COUNT};
use crate::arch::names::{block_tensor, FFN_GATE_INP};
use crate::blocks::block_index;
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Array, Metadata, Model, ModelTensor, OutTensor, TensorData, Value};

/// Provenance: the original ids of the experts each block kept, `block_count` runs of K ids.
pub const PROVENANCE_KEPT_EXPERTS_KEY: &str = "gguf_prune.kept_experts";

/// The selection bias some routers add before top-k (DeepSeek-V3's `exp_probs_b`).
const EXP_PROBS_B: &str = "exp_probs_b";

/// Which experts each block keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpertPlan {
    pub n_expert: usize,
    /// Per source block, the kept expert ids, increasing.
    pub kept: Vec<Vec<usize>>,
}

impl ExpertPlan {
    /// Keeps in every block the `keep` experts with the highest score (`scores[block][expert]`;
    /// ties to the lower id). Refuses keeping none or all of them.
    pub fn keep_highest(scores: &[Vec<f64>], n_expert: usize, keep: usize) -> Result<ExpertPlan> {
        if keep == 0 || keep >= n_expert {
            return Err(Error::ExpertKeep { keep, n_expert });
        }
        let kept = scores
            .iter()
            .enumerate()
            .map(|(block, s)| {
                if s.len() != n_expert {
                    return Err(Error::Invalid(format!(
                        "block {block} has {} expert scores, expected {n_expert}",
                        s.len()
                    )));
                }
                let mut order: Vec<usize> = (0..n_expert).collect();
                order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
                order.truncate(keep);
                order.sort_unstable();
                Ok(order)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ExpertPlan { n_expert, kept })
    }

    fn keep(&self) -> usize {
        self.kept.first().map_or(0, Vec::len)
    }
}

/// Whether `name` (a block tensor) holds one slab per expert.
fn is_per_expert(name: &str) -> bool {
    let Some(block) = block_index(name) else {
        return false;
    };
    let rest = &name[block_tensor(block, "").len()..];
    let base = rest.split('.').next().unwrap_or("");
    base.ends_with("_exps") || base == FFN_GATE_INP || base == EXP_PROBS_B
}

/// The bytes of `t` for the experts `kept` of `n_expert` slabs, copied from the model's map
/// when the tensor is written.
fn sliced<'a>(
    model: &'a Model,
    t: &'a ModelTensor,
    kept: &[usize],
    n_expert: usize,
) -> Result<TensorData<'a>> {
    let name = &t.info.name;
    let dims = &t.info.dims;
    let bytes = t.info.size as usize;
    let slab_elems = t.info.n_elements() / n_expert as u64;
    let slab = t.info.ggml_type.bytes_for(slab_elems).map(|b| b as usize);
    if dims.last() != Some(&(n_expert as u64)) || slab.is_none_or(|s| s * n_expert != bytes) {
        return Err(Error::TensorShape {
            name: name.clone(),
            dims: dims.clone(),
            expected: format!("[..., {n_expert}] in whole {} slabs", t.info.ggml_type),
        });
    }
    let slab = slab.unwrap_or(0);
    let kept = kept.to_vec();
    Ok(TensorData::Lazy {
        len: (slab * kept.len()) as u64,
        make: Box::new(move || {
            let data = model.data(t);
            Ok(kept
                .iter()
                .flat_map(|&e| &data[e * slab..(e + 1) * slab])
                .copied()
                .collect())
        }),
    })
}

/// Slices every per-expert tensor among `tensors` (output tensors, `sources[i]` the source of
/// `tensors[i]`, block names possibly renumbered) to the experts `plan` keeps in its source
/// block, and sets `expert_count`, `expert_used_count` where it would exceed K, and the
/// provenance of the kept experts.
pub fn slice_experts<'a>(
    model: &'a Model,
    metadata: &mut Metadata,
    tensors: &mut [OutTensor<'a>],
    sources: &[&'a ModelTensor],
    plan: &ExpertPlan,
) -> Result<()> {
    let arch = model.metadata().architecture()?.to_string();
    let n_expert = plan.n_expert;
    let keep = plan.keep();
    let count_key = arch_key(&arch, EXPERT_COUNT);
    let source_count = model.metadata().get(&count_key).and_then(Value::to_u64);
    if source_count.unwrap_or(0) == 0 {
        return Err(Error::NoExperts { arch });
    }
    if source_count != Some(n_expert as u64) || keep == 0 || keep >= n_expert {
        return Err(Error::ExpertKeep {
            keep,
            n_expert: source_count.unwrap_or(0) as usize,
        });
    }
    let mut blocks_kept = Vec::new();
    for (out, src) in tensors.iter_mut().zip(sources) {
        if !is_per_expert(&src.info.name) {
            continue;
        }
        let block = block_index(&src.info.name).unwrap_or(0);
        let kept = plan
            .kept
            .get(block)
            .ok_or_else(|| Error::Invalid(format!("no experts planned for block {block}")))?;
        out.data = sliced(model, src, kept, n_expert)?;
        *out.dims.last_mut().expect("checked by sliced") = keep as u64;
        if src.info.name.ends_with(&format!("{FFN_GATE_INP}.weight")) {
            blocks_kept.push(kept.clone());
        }
    }
    metadata.set(&count_key, Value::U32(keep as u32));
    let used_key = arch_key(&arch, EXPERT_USED_COUNT);
    let used = metadata.get(&used_key).and_then(Value::to_u64).unwrap_or(0);
    if used > keep as u64 {
        metadata.set(&used_key, Value::U32(keep as u32));
    }
    let ids = blocks_kept.iter().flatten().map(|&e| e as u32).collect();
    metadata.set(PROVENANCE_KEPT_EXPERTS_KEY, Value::Array(Array::U32(ids)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_scores_in_expert_order() {
        let scores = vec![vec![0.5, 0.1, 0.9, 0.3], vec![0.0, 0.0, 1.0, 2.0]];
        let plan = ExpertPlan::keep_highest(&scores, 4, 2).unwrap();
        assert_eq!(plan.kept, vec![vec![0, 2], vec![2, 3]]);
        for keep in [0, 4, 5] {
            assert!(matches!(
                ExpertPlan::keep_highest(&scores, 4, keep),
                Err(Error::ExpertKeep { .. })
            ));
        }
    }

    #[test]
    fn per_expert_names() {
        for (name, want) in [
            ("blk.3.ffn_up_exps.weight", true),
            ("blk.3.ffn_down_exps.bias", true),
            ("blk.0.ffn_gate_inp.weight", true),
            ("blk.0.exp_probs_b.bias", true),
            ("blk.0.ffn_up_shexp.weight", false),
            ("blk.0.ffn_gate_inp_shexp.weight", false),
            ("blk.0.ffn_up.weight", false),
            ("token_embd.weight", false),
        ] {
            assert_eq!(is_per_expert(name), want, "{name}");
        }
    }
}
