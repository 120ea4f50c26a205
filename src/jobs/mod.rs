//! Jobs: the library's whole commands, each a sequence of the edit layer's steps over one
//! options struct, returning one report.
//!
//! - [`prune`]: select (or take a list) -> collect an importance matrix -> plan -> rewrite ->
//!   heal -> quantize -> write -> verify -> put in place (then the importance matrix).
//! - [`quantize`]: a whole model quantized as llama-quantize does, written, checked, put in place.
//! - [`imatrix`]: an importance matrix collected on calibration text, written.
//!
//! A job never prints: it reports progress and notices through [`Progress`], and returns what it
//! did as data. The command line turns options into flags and reports into text.

use std::path::Path;

use crate::gguf::GgmlType;

pub mod imatrix;
pub mod prune;
pub mod quantize;
mod write;

pub use write::{prune_model, write_verified, PruneReport};

/// What a job reports while it runs. Every method has a default that ignores it, so a caller
/// implements only what it shows.
pub trait Progress {
    /// Staged work (a calibration pass, healing): `done` of `total` units of `stage`.
    fn stage(&mut self, _stage: &str, _done: usize, _total: usize) {}
    /// The staged work of one step has ended (a bar can be cleared).
    fn stage_end(&mut self) {}
    /// Bytes of the output written so far, of `total`.
    fn bytes(&mut self, _done: u64, _total: u64) {}
    /// The output is written (before it is verified and put in place).
    fn bytes_end(&mut self) {}
    /// Whole-model quantization: tensor `index` of `count` is about to be written, as `to`.
    fn tensor(
        &mut self,
        _index: usize,
        _count: usize,
        _name: &str,
        _from: GgmlType,
        _to: GgmlType,
    ) {
    }
    /// Something the user should know, at the moment it is known (also kept in the report).
    fn notice(&mut self, _notice: &Notice) {}
}

/// A [`Progress`] that shows nothing.
pub struct Silent;

impl Progress for Silent {}

/// A warning or note a job raises; the caller words it.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Tensors converted from an already quantized type: (name, from, to), in tensor order.
    /// The result is worse than quantizing from F16/F32.
    Requantizing(Vec<(String, GgmlType, GgmlType)>),
    /// Tensors whose mix type did not fit their rows, given a fallback type as llama-quantize
    /// does: (name, wanted, got).
    Fallbacks(Vec<(String, GgmlType, GgmlType)>),
    /// Converted tensors without an entry in the importance matrix that was used.
    NoImportanceData(Vec<String>),
}

/// Sends `notice` to `progress` and keeps it in `notices`.
fn raise(notice: Notice, notices: &mut Vec<Notice>, progress: &mut dyn Progress) {
    progress.notice(&notice);
    notices.push(notice);
}

/// The name an importance matrix records for its calibration text (`imatrix.datasets`).
fn dataset_name(calib: Option<&Path>) -> String {
    calib.map_or("built-in calibration text".to_string(), |p| {
        p.display().to_string()
    })
}
