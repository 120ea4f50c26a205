//! The output head and the full-model logits source built on the layer-major pass.

use super::{candle, dequantize, ops, Forward, Linear, LogitsSource, RunOptions, StateCache};
use crate::arch::names::*;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Model};
use candle_core::{Device, Tensor};

impl Forward<'_> {
    /// `output.weight`, or the tied `token_embd.weight`.
    fn output_head_name(&self) -> &'static str {
        if self.model.tensor(OUTPUT).is_some() {
            OUTPUT
        } else {
            TOKEN_EMBD
        }
    }

    /// The output head (`output.weight`, else the tied `token_embd.weight`), dequantized whole
    /// when it fits `budget_bytes` as f32, otherwise read slice by slice from the file for every
    /// group of positions.
    pub fn output_head_within(&self, budget_bytes: usize) -> Result<OutputHead> {
        let name = self.output_head_name();
        let (t, n_in, n_out) = self.matrix(name)?;
        let ty = t.info.ggml_type;
        let row_bytes = ty.bytes_for(n_in as u64).map(|b| b as usize);
        let has_bias = name == OUTPUT && self.model.tensor(OUTPUT_BIAS).is_some();
        match row_bytes {
            Some(row_bytes) if n_out * n_in * 4 > budget_bytes && !has_bias => {
                Ok(OutputHead::Sliced(SlicedHead {
                    name,
                    ty,
                    row_bytes,
                    n_in,
                    n_out,
                    slice_rows: (budget_bytes / 8 / (n_in * 4)).clamp(1, n_out),
                }))
            }
            _ => {
                let mut head = self.linear(name)?;
                if name == TOKEN_EMBD {
                    head.bias = None;
                }
                Ok(OutputHead::Whole(head))
            }
        }
    }
}

/// The output head as [`ModelLogits`] holds it. Dequantized to f32, gemma3's 262,144 x 640 head
/// alone is 640 MiB, more than the rest of a scoring run; sliced, it costs a dequantization of
/// the head per group of positions (about a tenth of the matmul's time) and a few MiB.
pub enum OutputHead {
    Whole(Linear),
    Sliced(SlicedHead),
}

/// An output head read from the file a slice of vocabulary rows at a time.
pub struct SlicedHead {
    name: &'static str,
    ty: GgmlType,
    row_bytes: usize,
    n_in: usize,
    n_out: usize,
    /// Vocabulary rows dequantized at a time.
    slice_rows: usize,
}

impl OutputHead {
    pub fn n_out(&self) -> usize {
        match self {
            OutputHead::Whole(l) => l.n_out,
            OutputHead::Sliced(s) => s.n_out,
        }
    }

    /// `n` rows of logits for the `n` normalised rows in `h`.
    fn forward(&self, model: &Model, h: &[f32], n: usize) -> Result<Vec<f32>> {
        match self {
            OutputHead::Whole(l) => l.forward(h, n),
            OutputHead::Sliced(s) => s.forward(model, h, n),
        }
    }
}

impl SlicedHead {
    fn forward(&self, model: &Model, h: &[f32], n: usize) -> Result<Vec<f32>> {
        let (name, n_in, n_out) = (self.name, self.n_in, self.n_out);
        let t = model
            .tensor(name)
            .ok_or_else(|| Error::Forward(format!("tensor {name:?} is missing")))?;
        let bytes = model.data(t);
        let x = Tensor::from_slice(h, (n, n_in), &Device::Cpu).map_err(candle("head input"))?;
        let mut out = vec![0f32; n * n_out];
        let mut r0 = 0;
        while r0 < n_out {
            crate::interrupt::check()?;
            let r1 = (r0 + self.slice_rows).min(n_out);
            let rows = &bytes[r0 * self.row_bytes..r1 * self.row_bytes];
            // The head is dequantized once per group of positions: most of the slicing's cost.
            let w = dequantize(name, self.ty, rows, r1 - r0, n_in)?;
            let y: Vec<f32> = x
                .matmul(&w.t().map_err(candle("head slice"))?)
                .and_then(|y| y.flatten_all())
                .and_then(|y| y.to_vec1())
                .map_err(candle("head matmul"))?;
            for (dst, src) in out.chunks_mut(n_out).zip(y.chunks(r1 - r0)) {
                dst[r0..r1].copy_from_slice(src);
            }
            r0 = r1;
        }
        Ok(out)
    }
}

/// A full-model [`LogitsSource`], optionally with some blocks skipped (what a pruned file with
/// the kept layers' true per-layer roles computes).
pub struct ModelLogits<'m> {
    pub forward: Forward<'m>,
    pub skip: Vec<usize>,
    /// Upper bound on the activations of one layer-major batch, in bytes.
    pub batch_bytes: usize,
    /// Largest output head held dequantized; larger ones are read in slices.
    pub head_bytes: usize,
    head: Option<(OutputHead, Vec<f32>)>,
}

impl<'m> ModelLogits<'m> {
    pub fn new(model: &'m Model) -> Result<ModelLogits<'m>> {
        Ok(ModelLogits {
            forward: Forward::new(model)?,
            skip: Vec::new(),
            batch_bytes: 256 << 20,
            head_bytes: 256 << 20,
            head: None,
        })
    }

    pub fn with_skip(mut self, skip: Vec<usize>) -> Self {
        self.skip = skip;
        self
    }
}

impl LogitsSource for ModelLogits<'_> {
    fn n_vocab(&self) -> usize {
        let t = self
            .forward
            .model
            .tensor(OUTPUT)
            .or_else(|| self.forward.model.tensor(TOKEN_EMBD));
        t.map(|t| t.info.dims.get(1).copied().unwrap_or(0) as usize)
            .unwrap_or(0)
    }

    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.logits_cached(windows, first, None, f)
    }
}

impl ModelLogits<'_> {
    /// [`LogitsSource::logits`] resuming from and recording into `cache` (which must belong to
    /// these windows) when all windows fit one batch.
    #[allow(clippy::type_complexity)]
    pub fn logits_cached(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        mut cache: Option<&mut StateCache>,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        if self.head.is_none() {
            self.head = Some((
                self.forward.output_head_within(self.head_bytes)?,
                self.forward.vector(OUTPUT_NORM)?,
            ));
        }
        let fw = &self.forward;
        let d = fw.hp.n_embd;
        // Activations of a block are a small multiple of n_embd per token (q, k, v, gate, up).
        let per_token = 4 * (4 * d + 3 * fw.hp.n_ff.max(d)) + 4 * fw.hp.n_head * 64;
        let mut i = 0;
        while i < windows.len() {
            let mut tokens = 0;
            let mut j = i;
            while j < windows.len()
                && (j == i || (tokens + windows[j].len()) * per_token <= self.batch_bytes)
            {
                tokens += windows[j].len();
                j += 1;
            }
            let c = if i == 0 && j == windows.len() {
                cache.as_deref_mut()
            } else {
                None
            };
            let options = RunOptions {
                skip: &self.skip,
                cache: c,
                observer: None,
            };
            let (x, _) = fw.run(&windows[i..j], options, &mut |_, _| Ok(()), &mut |_| {})?;
            let (head, norm) = self.head.as_ref().expect("head loaded above");
            // Positions per head pass; a sliced head is dequantized once per pass, so it gets
            // larger passes (gemma3: 256 positions, 256 MiB of logits).
            let group = match head {
                OutputHead::Whole(_) => 128,
                OutputHead::Sliced(_) => {
                    (self.head_bytes / (4 * head.n_out()).max(1)).clamp(128, 512)
                }
            };
            for (wi, (&start, &len)) in x.starts().iter().zip(&x.lens).enumerate() {
                let mut p = first;
                while p < len {
                    crate::interrupt::check()?;
                    let e = (p + group).min(len);
                    let mut h = x.data[(start + p) * d..(start + e) * d].to_vec();
                    ops::rms_norm(&mut h, d, Some(norm), fw.hp.eps);
                    let mut logits = head.forward(fw.model, &h, e - p)?;
                    if fw.hp.logit_multiplier != 1.0 {
                        let m = fw.hp.logit_multiplier;
                        logits.iter_mut().for_each(|v| *v *= m);
                    }
                    if let Some(cap) = fw.hp.final_softcap {
                        logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
                    }
                    for (r, row) in logits.chunks(head.n_out()).enumerate() {
                        f(i + wi, p + r, row)?;
                    }
                    p = e;
                }
            }
            i = j;
        }
        Ok(())
    }
}
