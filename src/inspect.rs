//! A model summary: architecture, blocks with their parameters and bytes, tensor types, metadata.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gguf::{Model, Value};
use crate::prune::{block_count, block_index};

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub path: String,
    pub version: u32,
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub shards: usize,
    pub file_bytes: u64,
    pub alignment: u64,
    pub block_count: Option<usize>,
    pub tensor_count: usize,
    pub parameters: u64,
    pub tensor_bytes: u64,
    /// One entry per block, in order.
    pub blocks: Vec<BlockSummary>,
    /// Tensors outside the blocks (embeddings, output head, final norm, ...).
    pub other: GroupSummary,
    /// Tensor count and bytes per type, by type name.
    pub types: BTreeMap<String, GroupSummary>,
    /// Every metadata key with a short rendering of its value (long arrays summarised).
    pub metadata: Vec<MetadataEntry>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupSummary {
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockSummary {
    pub index: usize,
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
    /// Tensor types used in the block, e.g. `Q4_K x5, Q6_K x1, F32 x3`.
    pub types: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetadataEntry {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: String,
    pub value: String,
}

impl GroupSummary {
    fn add(&mut self, parameters: u64, bytes: u64) {
        self.tensors += 1;
        self.parameters += parameters;
        self.bytes += bytes;
    }
}

/// Summarises `model`; arrays longer than `max_items` are shown by their first items and length.
pub fn summarize(model: &Model, max_items: usize) -> Summary {
    let meta = model.metadata();
    let n_blocks = block_count(meta).ok();
    let highest_block = model
        .tensors
        .iter()
        .filter_map(|t| block_index(&t.info.name))
        .max();
    let n_slots = n_blocks
        .unwrap_or(0)
        .max(highest_block.map_or(0, |b| b + 1));
    let mut blocks: Vec<(GroupSummary, BTreeMap<String, usize>)> =
        vec![Default::default(); n_slots];
    let mut other = GroupSummary::default();
    let mut types: BTreeMap<String, GroupSummary> = BTreeMap::new();
    let (mut parameters, mut tensor_bytes) = (0, 0);
    for t in &model.tensors {
        let (p, b) = (t.info.n_elements(), t.info.size);
        parameters += p;
        tensor_bytes += b;
        types
            .entry(t.info.ggml_type.to_string())
            .or_default()
            .add(p, b);
        match block_index(&t.info.name) {
            Some(i) => {
                blocks[i].0.add(p, b);
                *blocks[i].1.entry(t.info.ggml_type.to_string()).or_default() += 1;
            }
            None => other.add(p, b),
        }
    }
    let blocks = blocks
        .into_iter()
        .enumerate()
        .map(|(index, (g, ts))| BlockSummary {
            index,
            tensors: g.tensors,
            parameters: g.parameters,
            bytes: g.bytes,
            types: ts
                .iter()
                .map(|(t, n)| format!("{t} x{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let metadata = meta
        .iter()
        .map(|(k, v)| MetadataEntry {
            key: k.to_string(),
            value_type: match v {
                Value::Array(a) => format!("[{:?}]", a.elem_type()),
                other => format!("{:?}", other.value_type()),
            },
            value: v.display(max_items),
        })
        .collect();
    Summary {
        path: model.path().display().to_string(),
        version: model.shards[0].content.version,
        architecture: meta.architecture().ok().map(str::to_string),
        name: meta.get_str("general.name").ok().map(str::to_string),
        shards: model.shards.len(),
        file_bytes: model.file_size(),
        alignment: model.shards[0].content.alignment,
        block_count: n_blocks,
        tensor_count: model.tensors.len(),
        parameters,
        tensor_bytes,
        blocks,
        other,
        types,
        metadata,
    }
}
