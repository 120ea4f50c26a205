//! The calibration pass healing runs on the pruned model: layer-major over the calibration
//! windows, the kept blocks only (with earlier runs' heals applied), and at each removed run what
//! the fit needs, from the forward pass's observer interface.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::forward::{Batch, BlockObserver, Forward};

use super::report::{HealReport, RunReport};
use crate::arch::names::FFN_DOWN;

/// Captures a block's `ffn_down` input and FFN output.
#[derive(Default)]
struct Capture {
    down_in: Vec<f32>,
    ffn_out: Vec<f32>,
}

impl BlockObserver for Capture {
    fn matmul_input(&mut self, _il: usize, weight: &str, x: &[f32], _n: usize) {
        if weight == FFN_DOWN {
            self.down_in = x.to_vec();
        }
    }
    fn ffn_output(&mut self, _il: usize, f: &[f32], _n: usize) {
        self.ffn_out = f.to_vec();
    }
}

/// What the fit needs from the pass at one run `l+1..=l+n` (module docs of [`super`]).
pub(super) struct RunSample {
    /// `A1`: block `l`'s FFN output `M`, n rows of `d`.
    pub m: Vec<f32>,
    /// The input of block `l`'s `ffn_down`, n rows of `ff`.
    pub g: Vec<f32>,
    pub d: usize,
    pub ff: usize,
    /// `A2 = h_{l+n} + M - h_l`.
    pub a2: Vec<f32>,
    /// `h_{l+n}`: the stream leaving the run's last block.
    pub y: Batch,
}

impl RunSample {
    /// From block `il`'s capture, the stream `x` leaving it and `y` leaving the run.
    fn new(il: usize, cap: Capture, x: &Batch, y: Batch) -> Result<RunSample> {
        let (d, n) = (x.n_embd, x.n_tokens());
        let (m, g) = (cap.ffn_out, cap.down_in);
        if m.len() != n * d || g.is_empty() || !g.len().is_multiple_of(n) {
            return Err(Error::Heal(format!(
                "block {il}: the forward pass did not show its FFN (got {} output values for {n} tokens)",
                m.len()
            )));
        }
        let ff = g.len() / n;
        let a2: Vec<f32> = y
            .data
            .iter()
            .zip(&x.data)
            .zip(&m)
            .map(|((y, h), m)| y - h + m)
            .collect();
        Ok(RunSample { m, g, d, ff, a2, y })
    }
}

/// Heals one run: given the absorbing block's index, the run, the stream leaving the block and
/// the sample, reports on the run and, if the block was healed, updates the stream to its new
/// output.
pub(super) type HealRun<'a> =
    dyn FnMut(usize, &[usize], &mut Batch, &RunSample) -> Result<RunReport> + 'a;

/// Runs `fw`'s kept blocks layer-major over `windows`, skipping each of `runs` (maximal runs of
/// removed blocks). At the block before a run it runs the run's blocks on a copy of the stream
/// and calls `heal`; a run at block 0 is reported unhealed. Adds to `report`'s runs and times.
pub(super) fn run(
    fw: &Forward,
    windows: &[Vec<u32>],
    runs: &[Vec<usize>],
    report: &mut HealReport,
    progress: &mut dyn FnMut(&str, usize, usize),
    heal: &mut HealRun,
) -> Result<()> {
    let n_layer = fw.n_layer();
    let mut x = fw.embed(windows)?;
    let mut il = 0;
    while il < n_layer {
        crate::interrupt::check()?;
        progress("healing pass", il, n_layer);
        if let Some(run) = runs.iter().find(|r| r[0] == il) {
            // A run at the very start has no block before it to absorb it.
            report.runs.push(RunReport::skipped(
                run,
                None,
                "the run starts at block 0: no block before it to fold into",
            ));
            il += run.len();
            continue;
        }
        let t0 = Instant::now();
        let Some(run) = runs.iter().find(|r| r[0] == il + 1) else {
            let w = fw.load_block(il)?;
            fw.block_forward(il, &w, &mut x, None)?;
            report.pass_seconds += t0.elapsed().as_secs_f64();
            il += 1;
            continue;
        };
        let sample = sample_run(fw, il, run, &mut x)?;
        report.pass_seconds += t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let run_report = heal(il, run, &mut x, &sample)?;
        report.fit_seconds += t1.elapsed().as_secs_f64();
        report.runs.push(run_report);
        il += 1 + run.len();
    }
    progress("healing pass", n_layer, n_layer);
    Ok(())
}

/// Runs block `il` on `x`, watching its FFN, then the blocks of `run` on a copy.
fn sample_run(fw: &Forward, il: usize, run: &[usize], x: &mut Batch) -> Result<RunSample> {
    let mut cap = Capture::default();
    let w = fw.load_block(il)?;
    fw.block_forward(il, &w, x, Some(&mut cap))?;
    drop(w);
    let mut y = x.clone();
    for &b in run {
        crate::interrupt::check()?;
        let wb = fw.load_block(b)?;
        fw.block_forward(b, &wb, &mut y, None)?;
    }
    RunSample::new(il, cap, x, y)
}

/// Continues the pass with the healed block: its FFN output `old` replaced by `new` in the stream.
pub(super) fn replace_ffn_output(x: &mut Batch, old: &[f32], new: &[f32]) {
    for ((xv, fnew), fold) in x.data.iter_mut().zip(new).zip(old) {
        *xv += fnew - fold;
    }
}
