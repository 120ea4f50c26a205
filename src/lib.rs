//! gguf-prune: remove whole transformer layers from GGUF models, straight on the files that
//! llama.cpp users already have.
//!
//! Data flows one way: open ([`gguf::Model::open`]) -> plan (which layers) -> rewrite (metadata,
//! tensor names) -> write (streamed, atomic) -> verify.

pub mod error;
pub mod forward;
pub mod gguf;
pub mod interrupt;
pub mod score;

pub use error::{Error, Result};
