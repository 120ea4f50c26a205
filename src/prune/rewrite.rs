//! The rewrite: renumbered tensors, layer-dependent metadata (via [`crate::arch`]) and provenance.

use crate::arch;
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Array, Metadata, Model, ModelTensor, OutTensor, Value};

use super::PrunePlan;

/// Original block count of the first source, kept across repeated pruning.
pub const PROVENANCE_SOURCE_COUNT_KEY: &str = "gguf_prune.source_block_count";
/// Original indices (in the first source) of every block removed so far.
pub const PROVENANCE_REMOVED_KEY: &str = "gguf_prune.removed_layers";

/// What becomes of one tensor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renamed {
    /// Not a block tensor: kept as it is.
    Unchanged,
    /// A kept block's tensor under its new name.
    Renumbered(String),
    /// A removed block's tensor.
    Dropped,
}

/// The block index of a `blk.N.*` tensor name.
pub fn block_index(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let (digits, _) = rest.split_once('.')?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Renames `blk.N.rest` to `blk.{new N}.rest`, or drops it if block N is removed.
pub fn renumber(name: &str, plan: &PrunePlan) -> Renamed {
    match block_index(name) {
        None => Renamed::Unchanged,
        Some(i) => match plan.new_index(i) {
            None => Renamed::Dropped,
            Some(j) => {
                let rest = &name["blk.".len() + i.to_string().len()..];
                Renamed::Renumbered(format!("blk.{j}{rest}"))
            }
        },
    }
}

/// A pruned model ready to write: its metadata, its tensors (data still in the source), and for
/// each output tensor the source tensor it came from.
///
/// Later stages may edit it before writing: requantizing or healing replaces a tensor's
/// `ggml_type` and `data`; tensors whose data is still [`crate::gguf::TensorData::Copy`] are verified byte
/// for byte after writing.
pub struct Rewrite<'a> {
    pub plan: PrunePlan,
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<OutTensor<'a>>,
    pub sources: Vec<&'a ModelTensor>,
}

/// The model's block count, `{arch}.block_count`.
///
/// Values above [`MAX_BLOCK_COUNT`] are refused: every per-layer table is sized by this number,
/// so a hostile file must not be able to ask for 2^40 entries.
pub fn block_count(metadata: &Metadata) -> Result<usize> {
    let arch = metadata.architecture()?;
    let key = arch_key(arch, "block_count");
    let n = metadata.get_u64(&key)?;
    if n > MAX_BLOCK_COUNT {
        return Err(Error::Invalid(format!(
            "{key} is {n}, more than any model has (at most {MAX_BLOCK_COUNT} accepted)"
        )));
    }
    Ok(n as usize)
}

/// The largest block count accepted (the deepest real models have a few hundred blocks).
pub const MAX_BLOCK_COUNT: u64 = 1 << 16;

/// Builds the pruned model described by `plan`.
pub fn rewrite<'a>(model: &'a Model, plan: &PrunePlan) -> Result<Rewrite<'a>> {
    let source = model.metadata();
    let n_layers = block_count(source)?;
    if n_layers != plan.n_layers {
        return Err(Error::Layers(format!(
            "the plan is for {} layers, the model has {n_layers}",
            plan.n_layers
        )));
    }
    check_blocks(model, n_layers)?;

    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let mut metadata = arch::rewrite_metadata(source, &names, &plan.kept)?;
    record_provenance(&mut metadata, source, plan)?;

    let mut tensors = Vec::with_capacity(model.tensors.len());
    let mut sources = Vec::with_capacity(model.tensors.len());
    for t in &model.tensors {
        let name = match renumber(&t.info.name, plan) {
            Renamed::Dropped => continue,
            Renamed::Unchanged => t.info.name.clone(),
            Renamed::Renumbered(n) => n,
        };
        tensors.push(OutTensor {
            name,
            dims: t.info.dims.clone(),
            ggml_type: t.info.ggml_type,
            data: model.copy_of(t),
        });
        sources.push(t);
    }
    Ok(Rewrite {
        plan: plan.clone(),
        version: model.shards[0].content.version,
        metadata,
        tensors,
        sources,
    })
}

/// Every `blk.N` tensor must name a block below block_count, and every block must have tensors.
pub fn check_blocks(model: &Model, n_layers: usize) -> Result<()> {
    let mut seen = vec![false; n_layers];
    for t in &model.tensors {
        if let Some(i) = block_index(&t.info.name) {
            match seen.get_mut(i) {
                Some(s) => *s = true,
                None => {
                    return Err(Error::Invalid(format!(
                        "tensor {:?} belongs to block {i}, but block_count is {n_layers}",
                        t.info.name
                    )))
                }
            }
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::Invalid(format!("block {missing} has no tensors (block_count is {n_layers}): the file is missing blocks")));
    }
    Ok(())
}

/// Records the first source's block count and the original indices of all removed blocks, so
/// that pruning a pruned model still reports indices of the original.
fn record_provenance(metadata: &mut Metadata, source: &Metadata, plan: &PrunePlan) -> Result<()> {
    // Original indices of the blocks the source still has.
    let (original_count, source_to_original, mut removed) =
        match source.get(PROVENANCE_SOURCE_COUNT_KEY) {
            None => (
                plan.n_layers,
                (0..plan.n_layers).collect::<Vec<_>>(),
                Vec::new(),
            ),
            Some(v) => {
                let count = v.to_u64().ok_or_else(|| Error::KeyType {
                    key: PROVENANCE_SOURCE_COUNT_KEY.into(),
                    expected: "an integer",
                    found: v.display(4),
                })? as usize;
                let before: Vec<usize> =
                    match source.get(PROVENANCE_REMOVED_KEY).and_then(Value::as_array) {
                        Some(a) => (0..a.len())
                            .filter_map(|i| a.int_at(i))
                            .map(|x| x as usize)
                            .collect(),
                        None => Vec::new(),
                    };
                let still: Vec<usize> = (0..count).filter(|i| !before.contains(i)).collect();
                if still.len() != plan.n_layers {
                    // Inconsistent provenance: start afresh from this file.
                    (plan.n_layers, (0..plan.n_layers).collect(), Vec::new())
                } else {
                    (count, still, before)
                }
            }
        };
    removed.extend(plan.removed.iter().map(|&i| source_to_original[i]));
    removed.sort_unstable();
    metadata.set(
        PROVENANCE_SOURCE_COUNT_KEY,
        Value::U32(original_count as u32),
    );
    metadata.set(
        PROVENANCE_REMOVED_KEY,
        Value::Array(Array::U32(removed.iter().map(|&i| i as u32).collect())),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbers_block_tensors_only() {
        let plan = PrunePlan::new(30, &[20, 21, 22, 23]).unwrap();
        let cases: &[(&str, Renamed)] = &[
            (
                "blk.0.attn_q.weight",
                Renamed::Renumbered("blk.0.attn_q.weight".into()),
            ),
            (
                "blk.19.ffn_up.weight",
                Renamed::Renumbered("blk.19.ffn_up.weight".into()),
            ),
            ("blk.20.ffn_up.weight", Renamed::Dropped),
            ("blk.23.attn_norm.weight", Renamed::Dropped),
            (
                "blk.24.attn_norm.weight",
                Renamed::Renumbered("blk.20.attn_norm.weight".into()),
            ),
            (
                "blk.29.ffn_down.weight",
                Renamed::Renumbered("blk.25.ffn_down.weight".into()),
            ),
            ("token_embd.weight", Renamed::Unchanged),
            ("output_norm.weight", Renamed::Unchanged),
            ("blk.x.weight", Renamed::Unchanged),
            ("blk.01.weight", Renamed::Unchanged),
            ("blkx.1.weight", Renamed::Unchanged),
        ];
        for (name, want) in cases {
            assert_eq!(&renumber(name, &plan), want, "{name}");
        }
    }
}
