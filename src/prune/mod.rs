//! The plan (which layers go) and the rewrite (new metadata, renumbered tensors, provenance).
//!
//! Pure functions over the opened model: nothing here writes a file. The result is handed to
//! [`crate::gguf::write_model`].

mod layers;
mod rewrite;

pub use crate::blocks::{block_count, block_index, check_blocks, MAX_BLOCK_COUNT};
pub use layers::{parse_layer_list, PrunePlan};
pub use rewrite::{
    renumber, rewrite, Renamed, Rewrite, PROVENANCE_REMOVED_KEY, PROVENANCE_SOURCE_COUNT_KEY,
};
