//! The prune job, in the order data flows: select (or take a list) -> collect an importance
//! matrix -> plan -> rewrite -> heal -> quantize -> write (to temporary files) -> verify -> put in
//! place -> put the importance matrix in place.
//!
//! One calibration pass gives both the scores and the importance matrix; the saved importance
//! matrix is staged before the model is written and put in place only once the model is, so a
//! prune that fails leaves no importance matrix behind either.

use std::path::PathBuf;

use super::{dataset_name, raise, write_verified, Notice, Progress, PruneReport};
use crate::error::{Error, Result};
use crate::forward::BlockObserver;
use crate::gguf::{Model, WriteOptions};
use crate::heal::{heal_rewrite, HealOptions, HealReport};
use crate::output::Pending;
use crate::prune::{block_count, rewrite, PrunePlan, Rewrite};
use crate::quant::collect::ImatrixCollector;
use crate::quant::model::quantize_rewrite;
use crate::quant::{planned_types, FileType, ImatrixData, QuantizeParams, QuantizeReport};
use crate::score::{select_layers, SelectOptions, Selection};

/// Which layers a prune removes.
#[derive(Clone, Debug)]
pub enum Removal {
    /// These layers, by original index. `calibration` sets the pass that collects an
    /// importance matrix, when one is collected (its `remove` is 0: nothing is scored).
    Layers {
        layers: Vec<usize>,
        calibration: SelectOptions,
    },
    /// The `remove` most redundant blocks, chosen by scoring with these options.
    Scored(SelectOptions),
}

impl Removal {
    /// The options of the calibration pass (scoring, importance matrix).
    fn calibration(&self) -> &SelectOptions {
        match self {
            Removal::Layers { calibration, .. } => calibration,
            Removal::Scored(options) => options,
        }
    }
}

/// Which importance matrix quantizing the pruned model uses.
#[derive(Clone, Debug)]
pub enum ImatrixSource {
    /// One of the SOURCE model, read from `path` (recorded in the output's metadata).
    Given { data: ImatrixData, path: PathBuf },
    /// The one collected in the calibration pass.
    Collected,
    /// None (as plain llama-quantize).
    Without,
}

/// Quantizing the pruned model in the same write.
#[derive(Clone, Debug)]
pub struct PruneQuantize {
    pub ftype: FileType,
    /// The file type's default type for every quantizable tensor, no mix.
    pub pure: bool,
    pub imatrix: ImatrixSource,
}

/// Everything a prune does.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub removal: Removal,
    /// Heal the removed runs (ReplaceMe), or not.
    pub heal: Option<HealOptions>,
    pub quantize: Option<PruneQuantize>,
    /// Also save the importance matrix collected in the calibration pass here (names of the
    /// SOURCE model's layers).
    pub imatrix_out: Option<PathBuf>,
    pub output: PathBuf,
    /// The output rule (used for the importance matrix too), shards, byte comparison.
    pub write: WriteOptions,
}

impl PruneOptions {
    /// An importance matrix is collected when it is saved, or when quantizing uses it.
    fn collects_imatrix(&self) -> bool {
        self.imatrix_out.is_some()
            || matches!(
                self.quantize,
                Some(PruneQuantize {
                    imatrix: ImatrixSource::Collected,
                    ..
                })
            )
    }
}

/// The quantization a prune did.
#[derive(Debug)]
pub struct QuantizeSummary {
    pub ftype: FileType,
    /// An importance matrix was used.
    pub with_imatrix: bool,
    pub report: QuantizeReport,
}

/// An importance matrix a job saved.
#[derive(Clone, Debug)]
pub struct SavedImatrix {
    pub path: PathBuf,
    pub entries: usize,
    pub chunk_count: u32,
    pub chunk_size: u32,
}

impl SavedImatrix {
    pub(super) fn of(im: &ImatrixData, path: PathBuf) -> SavedImatrix {
        SavedImatrix {
            path,
            entries: im.len(),
            chunk_count: im.chunk_count,
            chunk_size: im.chunk_size,
        }
    }
}

/// What a prune did.
#[derive(Debug)]
pub struct PruneJobReport {
    pub prune: PruneReport,
    /// How the layers were chosen (with [`Removal::Scored`]).
    pub selection: Option<Selection>,
    pub heal: Option<HealReport>,
    pub quantize: Option<QuantizeSummary>,
    pub imatrix_out: Option<SavedImatrix>,
    /// In the order they were raised (each also went to [`Progress::notice`] then).
    pub notices: Vec<Notice>,
}

/// The model's block count, or the error a prune reports when it cannot be read.
pub fn layer_count(model: &Model) -> Result<usize> {
    block_count(model.metadata()).map_err(|e| {
        e.in_step(format!(
            "{}: cannot read the block count",
            model.path().display()
        ))
    })
}

/// Prunes `model` as `options` say. Arguments are expected to be checked already (layer list,
/// contexts, token budgets, output paths): this is the slow work.
pub fn prune(
    model: &Model,
    options: &PruneOptions,
    progress: &mut dyn Progress,
) -> Result<PruneJobReport> {
    let n_layers = layer_count(model)?;
    let collect = options.collects_imatrix();
    let mut collector = ImatrixCollector::new();
    let (removed, selection) = choose_layers(model, options, collect, &mut collector, progress)?;
    let plan = PrunePlan::new(n_layers, &removed)?;
    let collected = if collect {
        let calibration = options.removal.calibration();
        let dataset = dataset_name(calibration.calib.as_deref());
        Some(collector.finish(&dataset, calibration.ctx as u32)?)
    } else {
        None
    };
    let staged = match (&options.imatrix_out, &collected) {
        (Some(path), Some(im)) => Some(
            im.stage_gguf(path, &options.write.output)
                .map_err(imatrix_output)?,
        ),
        _ => None,
    };
    let mut rewritten = rewrite(model, &plan)?;
    let mut notices = Vec::new();
    let imatrix = imatrix_for_output(options, collected.as_ref(), &removed);
    let quant_params = options.quantize.as_ref().map(|q| QuantizeParams {
        ftype: q.ftype,
        pure: q.pure,
        imatrix: imatrix.as_ref(),
        imatrix_path: match &q.imatrix {
            ImatrixSource::Given { path, .. } => Some(path.clone()),
            _ => None,
        },
    });
    let heal = match &options.heal {
        Some(heal) => Some(heal_step(
            model,
            &mut rewritten,
            heal,
            quant_params.as_ref(),
            progress,
        )?),
        None => None,
    };
    let quantize = match &quant_params {
        Some(params) => Some(quantize_step(
            model,
            &mut rewritten,
            params,
            &mut notices,
            progress,
        )?),
        None => None,
    };
    let report = write_verified(
        model,
        rewritten,
        &options.output,
        &options.write,
        &mut |done, total| progress.bytes(done, total),
    )?;
    progress.bytes_end();
    Ok(PruneJobReport {
        prune: report,
        selection,
        heal,
        quantize,
        imatrix_out: commit_imatrix(staged, collected.as_ref())?,
        notices,
    })
}

/// The layers to remove: the given list (after an importance-matrix pass when one is
/// collected), or the scored choice.
fn choose_layers(
    model: &Model,
    options: &PruneOptions,
    collect: bool,
    collector: &mut ImatrixCollector,
    progress: &mut dyn Progress,
) -> Result<(Vec<usize>, Option<Selection>)> {
    match &options.removal {
        Removal::Layers {
            layers,
            calibration,
        } => {
            if collect {
                // No scoring needed: a pass over the calibration text for the importance matrix.
                calibration_pass(model, calibration, Some(collector), progress, true).map_err(
                    |e| {
                        e.in_step(format!(
                            "collecting an importance matrix on {}",
                            model.path().display()
                        ))
                    },
                )?;
            }
            Ok((layers.clone(), None))
        }
        Removal::Scored(select) => {
            let observer: Option<&mut dyn BlockObserver> =
                if collect { Some(collector) } else { None };
            let selection =
                calibration_pass(model, select, observer, progress, false).map_err(|e| {
                    e.in_step(format!(
                        "choosing {} layers to remove from {}",
                        select.remove,
                        model.path().display()
                    ))
                })?;
            Ok((selection.removed.clone(), Some(selection)))
        }
    }
}

/// The one calibration pass of every job: scores and, with `options.remove` > 0, the choice of
/// layers; `observer` sees every block (the importance-matrix collector). With `imatrix_only`
/// the progress shows one stage, "importance matrix", whatever the pass is doing.
pub(super) fn calibration_pass(
    model: &Model,
    options: &SelectOptions,
    observer: Option<&mut dyn BlockObserver>,
    progress: &mut dyn Progress,
    imatrix_only: bool,
) -> Result<Selection> {
    let selection = select_layers(model, options, observer, &mut |stage, done, total| {
        let stage = if imatrix_only {
            "importance matrix"
        } else {
            stage
        };
        progress.stage(stage, done, total)
    })?;
    progress.stage_end();
    Ok(selection)
}

/// The importance matrix quantizing uses, renamed for the pruned model: the given one, the
/// collected one, or none.
fn imatrix_for_output(
    options: &PruneOptions,
    collected: Option<&ImatrixData>,
    removed: &[usize],
) -> Option<ImatrixData> {
    let source = match &options.quantize.as_ref()?.imatrix {
        ImatrixSource::Given { data, .. } => Some(data),
        ImatrixSource::Collected => collected,
        ImatrixSource::Without => None,
    };
    source.map(|im| im.after_layer_removal(removed))
}

/// Heals the removed runs of `rewritten`. With a quantization to come, the healed tensors are
/// written in the types it will choose, so it keeps the healed bytes and the held-back check
/// sees the weights as they will be written.
fn heal_step(
    model: &Model,
    rewritten: &mut Rewrite,
    options: &HealOptions,
    quant: Option<&QuantizeParams>,
    progress: &mut dyn Progress,
) -> Result<HealReport> {
    let mut options = options.clone();
    if let Some(params) = quant {
        options.planned_types = planned_types(rewritten, params)?;
    }
    let report = heal_rewrite(model, rewritten, &options, &mut |stage, done, total| {
        progress.stage(stage, done, total)
    })
    .map_err(|e| e.in_step(format!("healing {}", model.path().display())))?;
    progress.stage_end();
    Ok(report)
}

/// Quantizes `rewritten` on its way out, raising a notice for requantized tensors and for
/// converted tensors the importance matrix has no entry for.
fn quantize_step<'a>(
    model: &'a Model,
    rewritten: &mut Rewrite<'a>,
    params: &QuantizeParams,
    notices: &mut Vec<Notice>,
    progress: &mut dyn Progress,
) -> Result<QuantizeSummary> {
    let report = quantize_rewrite(model, rewritten, params)?;
    if !report.requantized.is_empty() {
        let notice = Notice::Requantizing(report.requantized.clone());
        raise(notice, notices, progress);
    }
    let with_imatrix = params.imatrix.is_some();
    if !report.missing_imatrix.is_empty() && with_imatrix {
        let notice = Notice::NoImportanceData(report.missing_imatrix.clone());
        raise(notice, notices, progress);
    }
    Ok(QuantizeSummary {
        ftype: params.ftype,
        with_imatrix,
        report,
    })
}

/// Puts the staged importance matrix in place (after the model is).
fn commit_imatrix(
    staged: Option<Pending>,
    collected: Option<&ImatrixData>,
) -> Result<Option<SavedImatrix>> {
    let (Some(pending), Some(im)) = (staged, collected) else {
        return Ok(None);
    };
    let path = pending.targets()[0].clone();
    pending.commit().map_err(imatrix_output)?;
    Ok(Some(SavedImatrix::of(im, path)))
}

fn imatrix_output(e: Error) -> Error {
    Error::ImatrixOutput {
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(quantize: Option<ImatrixSource>, imatrix_out: bool) -> PruneOptions {
        PruneOptions {
            removal: Removal::Layers {
                layers: vec![1],
                calibration: SelectOptions::default(),
            },
            heal: None,
            quantize: quantize.map(|imatrix| PruneQuantize {
                ftype: FileType::Q4_K_M,
                pure: false,
                imatrix,
            }),
            imatrix_out: imatrix_out.then(|| PathBuf::from("im.gguf")),
            output: PathBuf::from("out.gguf"),
            write: WriteOptions::default(),
        }
    }

    #[test]
    fn collects_an_imatrix_only_to_save_or_use_it() {
        assert!(!options(None, false).collects_imatrix());
        assert!(options(None, true).collects_imatrix());
        assert!(options(Some(ImatrixSource::Collected), false).collects_imatrix());
        assert!(!options(Some(ImatrixSource::Without), false).collects_imatrix());
        let given = ImatrixSource::Given {
            data: ImatrixData::default(),
            path: PathBuf::from("given.gguf"),
        };
        assert!(!options(Some(given.clone()), false).collects_imatrix());
        assert!(options(Some(given), true).collects_imatrix());
    }

    #[test]
    fn quantizing_uses_the_given_then_the_collected_imatrix() {
        let collected = ImatrixData::new(Default::default(), vec!["c".into()], 1, 8);
        let given = ImatrixData::new(Default::default(), vec!["g".into()], 1, 8);
        let source = ImatrixSource::Given {
            data: given,
            path: PathBuf::from("g.gguf"),
        };
        let used = |o: &PruneOptions| imatrix_for_output(o, Some(&collected), &[1]);
        assert_eq!(used(&options(Some(source), false)).unwrap().datasets, ["g"]);
        let o = options(Some(ImatrixSource::Collected), true);
        assert_eq!(used(&o).unwrap().datasets, ["c"]);
        assert!(used(&options(Some(ImatrixSource::Without), true)).is_none());
        assert!(used(&options(None, true)).is_none());
    }
}
