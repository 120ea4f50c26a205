//! gguf-prune: remove whole transformer layers from GGUF models, straight on the files that
//! llama.cpp users already have.
//!
//! Data flows one way: open ([`gguf::Model::open`]) -> plan (which layers) -> rewrite (metadata,
//! tensor names) -> write (streamed, atomic: [`output`]) -> verify.
//!
//! # Example: remove two layers
//!
//! A four-block model is written first (zero-filled F32 weights, just enough for the structural
//! checks llama.cpp's loader would make), then blocks 1 and 2 are removed: blocks 0 and 3 become
//! 0 and 1, the metadata says two blocks, and every copied tensor is compared with its source.
//!
//! ```
//! use gguf_prune::gguf::{write_model, GgmlType, Metadata, Model, OutTensor, TensorData, Value};
//! use gguf_prune::gguf::WriteOptions;
//! use gguf_prune::jobs::prune_model;
//! use gguf_prune::prune::{block_count, PrunePlan};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("tiny.gguf");
//! let mut metadata = Metadata::new();
//! metadata.set("general.architecture", Value::String(b"llama".to_vec()));
//! metadata.set("llama.block_count", Value::U32(4));
//! let tensor = |name: String| OutTensor {
//!     name,
//!     dims: vec![4],
//!     ggml_type: GgmlType::F32,
//!     data: TensorData::Bytes(vec![0; 16]),
//! };
//! let mut tensors = vec![tensor("token_embd.weight".into()), tensor("output_norm.weight".into())];
//! for i in 0..4 {
//!     let block = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output"]
//!         .into_iter()
//!         .chain(["ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]);
//!     tensors.extend(block.map(|w| tensor(format!("blk.{i}.{w}.weight"))));
//! }
//! let options = WriteOptions::default();
//! write_model(&input, 3, &metadata, tensors, &options, &mut |_, _| {})?.commit()?;
//!
//! let model = Model::open(&input)?;
//! let plan = PrunePlan::new(block_count(model.metadata())?, &[1, 2])?;
//! let output = dir.path().join("pruned.gguf");
//! let report = prune_model(&model, &plan, &output, &options, &mut |_, _| {})?;
//! assert_eq!((report.layers_before, report.layers_after), (4, 2));
//! assert!(report.verified);
//! assert_eq!(block_count(Model::open(&output)?.metadata())?, 2);
//! # Ok::<(), gguf_prune::Error>(())
//! ```

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
pub mod tasks;
pub mod tokenizer;
pub mod verify;

pub use error::{Error, Result};
