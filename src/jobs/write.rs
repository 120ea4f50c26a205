//! The last steps of every job that writes a model: write (to temporary files) -> verify -> put
//! in place.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::gguf::{Model, ModelTensor, TensorData, WriteOptions};
use crate::prune::{rewrite, PrunePlan, Rewrite};
use crate::verify;

/// What a prune did, for the report (and `--json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub input: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub layers_before: usize,
    pub layers_after: usize,
    /// Original indices of the removed blocks.
    pub removed: Vec<usize>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub tensors_before: usize,
    pub tensors_after: usize,
    /// Every output tensor is a verbatim copy and was compared byte for byte with its source
    /// (false when some were requantized or healed: those are checked for structure only).
    pub verified: bool,
    /// The copied tensors were compared with their sources (not skipped by `--no-verify`).
    pub bytes_compared: bool,
}

/// Writes `model` without the blocks `plan` removes to `output`, verifies the result against
/// the source, then puts it in place. On any error nothing is left at the output path.
pub fn prune_model(
    model: &Model,
    plan: &PrunePlan,
    output: &Path,
    options: &WriteOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PruneReport> {
    write_verified(model, rewrite(model, plan)?, output, options, progress)
}

/// Writes a (possibly edited) rewrite to temporary files, checks their structure, compares every
/// tensor that is still a verbatim copy with its source, then puts the files in place.
pub fn write_verified(
    model: &Model,
    rewritten: Rewrite,
    output: &Path,
    options: &WriteOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PruneReport> {
    let copied: Vec<Option<&ModelTensor>> = rewritten
        .tensors
        .iter()
        .zip(&rewritten.sources)
        .map(|(t, &src)| matches!(t.data, TensorData::Copy { .. }).then_some(src))
        .collect();
    let verified_all = copied.iter().all(Option::is_some);
    let tensors_after = rewritten.tensors.len();
    let plan = rewritten.plan;
    let mut options = options.clone();
    options
        .output
        .inputs
        .extend(model.shards.iter().map(|s| s.path().to_path_buf()));
    let pending = crate::gguf::write_model(
        output,
        rewritten.version,
        &rewritten.metadata,
        rewritten.tensors,
        &options,
        progress,
    )?;
    // Metadata can be megabytes (vocabularies); free it before reading the output back.
    drop(rewritten.metadata);

    let written = Model::open(&pending.temp_paths()[0])?;
    verify::check_structure(&written)?;
    let compared = !options.skip_byte_comparison;
    if compared {
        verify::compare_with_sources(&written, model, &copied)?;
    }
    let bytes_after = written.file_size();
    drop(written);

    let outputs = pending.commit()?;
    Ok(PruneReport {
        input: model.path().to_path_buf(),
        outputs,
        layers_before: plan.n_layers,
        layers_after: plan.kept.len(),
        removed: plan.removed.clone(),
        bytes_before: model.file_size(),
        bytes_after,
        tensors_before: model.tensors.len(),
        tensors_after,
        verified: verified_all && compared,
        bytes_compared: compared,
    })
}
