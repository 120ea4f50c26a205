//! The plan (which layers go) and the rewrite (new metadata, renumbered tensors, provenance);
//! expert pruning (`experts`: which experts each block keeps, slicing their tensors).
//!
//! Pure functions over the opened model: nothing here writes a file. The result is handed to
//! [`crate::gguf::write_model`].

mod experts;
mod rewrite;

pub use crate::blocks::{
    block_count, block_index, check_blocks, parse_layer_list, MAX_BLOCK_COUNT,
};
pub use experts::{slice_experts, ExpertPlan, PROVENANCE_KEPT_EXPERTS_KEY};
pub use rewrite::{
    renumber, rewrite, Renamed, Rewrite, PROVENANCE_REMOVED_KEY, PROVENANCE_SOURCE_COUNT_KEY,
};

/// The plan of a prune: which blocks it removes and which it keeps, checked against the model's
/// block count ([`crate::blocks::LayerSet`]).
pub type PrunePlan = crate::blocks::LayerSet;
