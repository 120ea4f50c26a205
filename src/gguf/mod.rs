//! The GGUF format: value and tensor types, a reader over a memory map, a streaming writer.
//!
//! Compact on purpose, like llama.cpp's `gguf.cpp`: key order is kept, unchanged values and
//! tensor bytes are carried verbatim, v2 and v3 and `general.alignment` are honoured, and tensors
//! of types this build does not know are carried by their byte ranges.

pub mod file;
pub mod read;
pub mod types;
pub mod value;
pub mod write;

pub use crate::output::Pending;
pub use file::{GgufFile, Model, ModelTensor};
pub use read::{align_up, Content, TensorInfo};
pub use types::GgmlType;
pub use value::{arch_key, Array, Metadata, Value, ValueType};
pub use write::{write_model, OutTensor, TensorData, WriteOptions};
