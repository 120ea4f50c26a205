//! The rewrite: renumbered tensors, layer-dependent metadata (via [`crate::arch`]) and provenance.

use crate::arch;
use crate::blocks::{block_count, block_index, with_block_index};
use crate::error::{Error, Result};
use crate::gguf::{Array, Metadata, Model, ModelTensor, OutTensor, Value};

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

/// Renames `blk.N.rest` to `blk.{new N}.rest`, or drops it if block N is removed.
pub fn renumber(name: &str, plan: &PrunePlan) -> Renamed {
    match block_index(name) {
        None => Renamed::Unchanged,
        Some(i) => match plan.new_index(i) {
            None => Renamed::Dropped,
            Some(j) => Renamed::Renumbered(
                with_block_index(name, j).expect("block_index found a block number"),
            ),
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

/// Builds the pruned model described by `plan`.
pub fn rewrite<'a>(model: &'a Model, plan: &PrunePlan) -> Result<Rewrite<'a>> {
    let source = model.metadata();
    plan.check_block_count(block_count(source)?)?;
    crate::verify::check_loadable(model)?;

    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let mut metadata = arch::rewrite_metadata(source, &names, plan)?;
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
