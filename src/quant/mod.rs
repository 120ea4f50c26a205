//! Quantization as an edit: llama.cpp's per-tensor type mixes, whole-model quantization, and
//! its importance-matrix files and their collection. The kernels themselves are
//! [`crate::kernels`].
//!
//! - [`mix`]: which type each tensor gets for a file type such as Q4_K_M.
//! - [`model`]: quantize a whole GGUF model or a pruned rewrite, one tensor in memory at a time.
//! - [`imatrix`]: llama-imatrix's GGUF and legacy `.dat` files.
//! - [`collect`]: an importance matrix gathered from the forward pass.

pub mod collect;
pub mod imatrix;
pub mod mix;
pub mod model;

pub use imatrix::ImatrixData;
pub use mix::{llama_quantize_names, FileType, FileTypeError, MixContext};
pub use model::{planned_types, quantize_tensors, QuantizeParams, QuantizeReport, QuantizedModel};

/// The kernels' entry points under their former paths, for the edit and command-line code that
/// calls them as `quant::...`.
pub use crate::kernels::{can_dequantize, can_quantize, dequantize, is_quantized, quantize};
