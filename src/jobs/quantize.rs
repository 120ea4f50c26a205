//! The quantize job: a whole model quantized as llama-quantize does, written beside its target,
//! checked, then put in place.

use std::path::PathBuf;

use super::{raise, Notice, Progress};
use crate::error::Result;
use crate::gguf::{self, Model, WriteOptions};
use crate::output::OutputRule;
use crate::quant::{self, quantize_tensors, MixContext, QuantizeParams, QuantizeReport};

/// What to quantize to, and where.
pub struct QuantizeOptions<'a> {
    pub params: QuantizeParams<'a>,
    pub output: PathBuf,
    /// Which files the output may replace (the model's shards are added as inputs).
    pub rule: OutputRule,
}

/// What a quantize job did.
#[derive(Debug)]
pub struct QuantizeJobReport {
    pub quantize: QuantizeReport,
    /// In the order they were raised: requantized and fallback tensors before the work, tensors
    /// without importance data after it.
    pub notices: Vec<Notice>,
}

/// Quantizes `model` to `options.output`. Before any tensor is converted, [`Notice`]s say what
/// happens to the precision (requantized tensors, fallback types); `progress.tensor` is called
/// before each tensor is written.
pub fn quantize(
    model: &Model,
    options: &QuantizeOptions,
    progress: &mut dyn Progress,
) -> Result<QuantizeJobReport> {
    let mut notices = Vec::new();
    for notice in precision_notices(model, &options.params)? {
        raise(notice, &mut notices, progress);
    }
    let edit = quantize_tensors(model, &options.params)?;
    // Progress per tensor: the writer reports bytes; map them back to tensor starts.
    let align = gguf::write::alignment_of(&edit.metadata);
    let mut starts = Vec::with_capacity(edit.tensors.len());
    let mut at = 0u64;
    for (i, (t, src)) in edit.tensors.iter().zip(&model.tensors).enumerate() {
        starts.push((at, i, t.name.clone(), src.info.ggml_type, t.ggml_type));
        at += gguf::align_up(t.data.len(), align);
    }
    let write = WriteOptions {
        output: options
            .rule
            .with_inputs(model.shards.iter().map(|s| s.path().to_path_buf())),
        ..Default::default()
    };
    let n = starts.len();
    let mut next = 0usize;
    let pending = gguf::write_model(
        &options.output,
        edit.version,
        &edit.metadata,
        edit.tensors,
        &write,
        &mut |done, _total| {
            while next < n && starts[next].0 <= done {
                let (_, i, name, from, to) = &starts[next];
                progress.tensor(*i, n, name, *from, *to);
                next += 1;
            }
        },
    )?;
    // Structure checked before the output is put in place.
    let written = Model::open(&pending.temp_paths()[0])?;
    crate::verify::check_structure(&written)?;
    drop(written);
    pending.commit()?;
    let report = edit.report;
    if !report.missing_imatrix.is_empty() {
        let missing = report.missing_imatrix.clone();
        raise(Notice::NoImportanceData(missing), &mut notices, progress);
    }
    Ok(QuantizeJobReport {
        quantize: report,
        notices,
    })
}

/// What the mix will do to the precision, known before any work: tensors requantized from a
/// quantized type, and tensors given a fallback type.
fn precision_notices(model: &Model, params: &QuantizeParams) -> Result<Vec<Notice>> {
    let ctx = MixContext::from_metadata(model.metadata(), params.imatrix.is_some(), params.pure)?;
    let choices = quant::model::plan(model, params.ftype, &ctx)?;
    let mut requantized = Vec::new();
    let mut fallbacks = Vec::new();
    for (t, c) in model.tensors.iter().zip(&choices) {
        let (name, from) = (&t.info.name, t.info.ggml_type);
        if c.ty != from && quant::is_quantized(from) {
            requantized.push((name.clone(), from, c.ty));
        }
        if let Some(wanted) = c.fallback_from {
            fallbacks.push((name.clone(), wanted, c.ty));
        }
    }
    let mut notices = Vec::new();
    if !requantized.is_empty() {
        notices.push(Notice::Requantizing(requantized));
    }
    if !fallbacks.is_empty() {
        notices.push(Notice::Fallbacks(fallbacks));
    }
    Ok(notices)
}
