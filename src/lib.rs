//! gguf-prune: remove whole transformer layers from GGUF models, straight on the files that
//! llama.cpp users already have.
//!
//! Data flows one way: open ([`gguf::Model::open`]) -> plan (which layers) -> rewrite (metadata,
//! tensor names) -> write (streamed, atomic: [`output`]) -> verify.

pub mod arch;
pub mod blocks;
pub mod calibration;
pub mod error;
pub mod eval;
pub mod forward;
pub mod gguf;
pub mod heal;
pub mod inspect;
pub mod interrupt;
pub mod jobs;
pub mod kernels;
pub mod limits;
pub mod output;
pub mod prune;
pub mod quant;
pub mod score;
pub mod tokenizer;
pub mod verify;

pub use error::{Error, Result};
