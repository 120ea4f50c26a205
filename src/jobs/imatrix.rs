//! The imatrix job: an importance matrix collected by running the model over calibration text,
//! as llama-imatrix makes one, then written in its GGUF format.

use std::path::PathBuf;

use super::prune::{calibration_pass, SavedImatrix};
use super::{dataset_name, Progress};
use crate::error::Result;
use crate::gguf::Model;
use crate::output::OutputRule;
use crate::quant::collect::ImatrixCollector;
use crate::score::SelectOptions;

/// What to collect on, and where to write it.
#[derive(Clone, Debug)]
pub struct ImatrixOptions {
    /// The calibration text, window length and token budget (`remove` 0: nothing is scored).
    pub calibration: SelectOptions,
    pub output: PathBuf,
    /// Which files the output may replace.
    pub rule: OutputRule,
}

/// What an imatrix job did.
#[derive(Clone, Debug)]
pub struct ImatrixReport {
    pub saved: SavedImatrix,
    /// Calibration tokens the model ran over.
    pub tokens: usize,
}

/// Collects `model`'s importance matrix and writes it to `options.output`.
pub fn imatrix(
    model: &Model,
    options: &ImatrixOptions,
    progress: &mut dyn Progress,
) -> Result<ImatrixReport> {
    let mut collector = ImatrixCollector::new();
    let calibration = &options.calibration;
    let selection = calibration_pass(model, calibration, Some(&mut collector), progress, true)
        .map_err(|e| {
            e.in_step(format!(
                "running {} over the calibration text",
                model.path().display()
            ))
        })?;
    let dataset = dataset_name(calibration.calib.as_deref());
    let im = collector.finish(&dataset, calibration.ctx as u32)?;
    im.write_gguf(&options.output, &options.rule)?;
    Ok(ImatrixReport {
        saved: SavedImatrix::of(&im, options.output.clone()),
        tokens: selection.n_tokens,
    })
}
