//! A float forward pass over quantized GGUF models, one decoder block at a time.
//!
//! Weights are dequantized to f32 block by block and multiplied with candle's gemm (faster on a
//! CPU than candle's quantized matmul for Q4_1/Q5_0: 567 against 29 tokens/s on SmolLM2 Q4_1).
//! Work is layer-major: every window of a batch goes through block i before any goes through
//! block i+1, so each weight is dequantized once per batch and memory holds one block plus the
//! activations.
//!
//! What differs between architectures (norm placement, activation, RoPE pairing, sliding-window
//! layers, scales) comes from the `[forward]` table of `formats/<arch>.toml`; what a file holds
//! (biases, fused q/k/v, tied output head) is read from its tensors.
//!
//! Here: the model ([`Forward`], its tensor readers) and the dequantized [`Linear`] layer. Then
//! `block` (a block's weights, the shape checks of [`Forward::new`], [`Forward::block_forward`]
//! and its FFN half), `attention` (its attention half), `pass` (the embedding and
//! [`Forward::run`]), `state` ([`Batch`], [`StateCache`]), `head` (the output head,
//! [`ModelLogits`]), `config` (hyper-parameters) and `ops` (norms, RoPE, softmax, activations).
mod attention;
mod block;
pub mod config;
mod head;
pub mod moe;
pub mod ops;
mod pass;
mod state;

use crate::arch::names::*;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Model, ModelTensor};
use crate::kernels;
use attention::RopeFactors;
pub use block::{BlockObserver, BlockWeights, ExpertRoute};
use candle_core::{Device, Tensor};
pub use config::{ForwardSpec, Hparams};
pub use head::{ModelLogits, OutputHead, SlicedHead};
pub use pass::RunOptions;
pub use state::{Batch, StateCache};

/// Something that turns token windows into next-token logits, streamed row by row.
pub trait LogitsSource {
    fn n_vocab(&self) -> usize;
    /// Runs each window (token ids, already including BOS where wanted) through the model and calls
    /// `f(window_index, position, logits_row)` for every position >= `first` of every window, in order.
    #[allow(clippy::type_complexity)]
    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> crate::Result<()>,
    ) -> crate::Result<()>;
}

fn candle(what: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
    let what = what.into();
    move |source| Error::Candle { what, source }
}

/// Dequantizes ggml-typed bytes holding `rows` rows of `cols` values into a `(rows, cols)` tensor.
/// Through our kernels rather than candle's: the same bits, and faster (on every block weight of
/// SmolLM2 Q4_1 and gemma3 Q4_K_M, 2 cores under a load of about 10: candle 224 and 291 ms, ours
/// 87 and 162 ms; on one thread ours 109 and 185 ms; `benches/dequant.rs`).
fn dequantize(name: &str, ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Tensor> {
    if !kernels::can_dequantize(ty) {
        return Err(Error::Forward(format!(
            "tensor {name:?}: type {ty} cannot be dequantized"
        )));
    }
    let mut w = vec![0f32; rows * cols];
    kernels::dequantize(ty, bytes, &mut w)?;
    Tensor::from_vec(w, (rows, cols), &Device::Cpu).map_err(candle(format!("reading {name}")))
}

/// A dequantized linear layer: `y = x W^T (+ b)`, W stored `(out, in)` as in ggml.
pub struct Linear {
    w_t: Tensor,
    bias: Option<Vec<f32>>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Linear {
    /// `x` holds `n` rows of `n_in`; returns `n` rows of `n_out`.
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let xt =
            Tensor::from_slice(x, (n, self.n_in), &Device::Cpu).map_err(candle("linear input"))?;
        let y = xt.matmul(&self.w_t).map_err(candle("linear matmul"))?;
        let mut y: Vec<f32> = y
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(candle("linear output"))?;
        if let Some(b) = &self.bias {
            y.chunks_mut(self.n_out)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        Ok(y)
    }

    /// The layer of weight `name` (for messages), `n_out` rows of `n_in` values stored as
    /// `ty` in `bytes`, without a bias.
    fn dequantized(
        name: &str,
        ty: GgmlType,
        bytes: &[u8],
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear> {
        let w = dequantize(name, ty, bytes, n_out, n_in)?;
        let w_t = w.t().map_err(candle(format!("transposing {name}")))?;
        Ok(Linear {
            w_t,
            bias: None,
            n_in,
            n_out,
        })
    }

    /// Splits the output rows `[start, start + len)` into their own layer (fused q/k/v, gate/up).
    fn slice_rows(&self, start: usize, len: usize) -> Result<Linear> {
        let w_t = self
            .w_t
            .narrow(1, start, len)
            .and_then(|t| t.contiguous())
            .map_err(candle("splitting a fused weight"))?;
        Ok(Linear {
            w_t,
            bias: self.bias.as_ref().map(|b| b[start..start + len].to_vec()),
            n_in: self.n_in,
            n_out: len,
        })
    }
}

/// A model ready to run: its GGUF, the architecture recipe and hyper-parameters.
pub struct Forward<'m> {
    pub model: &'m Model,
    pub spec: ForwardSpec,
    pub hp: Hparams,
    rope_factors: RopeFactors,
}

impl<'m> Forward<'m> {
    /// Reads the recipe for the model's architecture; `Error::Unsupported` for architectures
    /// the forward pass cannot run.
    pub fn new(model: &'m Model) -> Result<Forward<'m>> {
        let meta = model.metadata();
        let arch = meta.architecture()?.to_string();
        let spec = ForwardSpec::for_arch(&arch)?;
        // Block count, tensor types and block weights first: the hyper-parameters size per-layer
        // tables by the block count, which must be justified by the tensors present.
        crate::verify::check_loadable(model)?;
        let in_file = |source: Error| Error::InFile {
            path: model.path().to_path_buf(),
            source: Box::new(source),
        };
        let hp = Hparams::read(&arch, meta, &spec).map_err(in_file)?;
        let mut fw = Forward {
            model,
            spec,
            hp,
            rope_factors: RopeFactors::default(),
        };
        fw.check_shapes().map_err(in_file)?;
        let factors = RopeFactors {
            freqs: fw.rope_factor_tensor(ROPE_FREQS)?,
            short: fw.rope_factor_tensor(ROPE_FACTORS_SHORT)?,
            long: fw.rope_factor_tensor(ROPE_FACTORS_LONG)?,
        };
        fw.rope_factors = factors;
        Ok(fw)
    }

    /// A RoPE frequency-factor tensor, which must hold one value per rotated pair.
    fn rope_factor_tensor(&self, name: &str) -> Result<Option<Vec<f32>>> {
        let v = self.opt_vector(name)?;
        if let Some(v) = &v {
            if v.len() != self.hp.n_rot / 2 {
                return Err(Error::Forward(format!(
                    "tensor {name:?} has {} values, expected n_rot / 2 = {}",
                    v.len(),
                    self.hp.n_rot / 2
                )));
            }
        }
        Ok(v)
    }

    pub fn n_layer(&self) -> usize {
        self.hp.n_layer
    }

    fn tensor(&self, name: &str) -> Result<&ModelTensor> {
        self.model.tensor(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
        })
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let n = t.info.n_elements() as usize;
        let v = dequantize(name, t.info.ggml_type, self.model.data(t), 1, n)?;
        v.flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(candle(format!("reading {name}")))
    }

    fn has(&self, name: &str) -> bool {
        self.model.tensor(name).is_some()
    }

    fn opt_vector(&self, name: &str) -> Result<Option<Vec<f32>>> {
        if self.model.tensor(name).is_some() {
            self.vector(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The 2-D weight `name`, its number of inputs (values per row) and outputs (rows). Its
    /// shape is the one [`Forward::new`] checked against the hyper-parameters, not checked again.
    fn matrix(&self, name: &str) -> Result<(&ModelTensor, usize, usize)> {
        let t = self.tensor(name)?;
        match t.info.dims[..] {
            [n_in, n_out] => Ok((t, n_in as usize, n_out as usize)),
            _ => Err(Error::TensorShape {
                name: name.to_string(),
                dims: t.info.dims.clone(),
                expected: "[*, *]".to_string(),
            }),
        }
    }

    /// The 2-D weight `name` as a linear layer (bias `*.bias` if present).
    fn linear(&self, name: &str) -> Result<Linear> {
        let (t, n_in, n_out) = self.matrix(name)?;
        let mut layer =
            Linear::dequantized(name, t.info.ggml_type, self.model.data(t), n_in, n_out)?;
        let bias = self.opt_vector(&name.replace(".weight", ".bias"))?;
        if let Some(b) = &bias {
            if b.len() != n_out {
                return Err(Error::Forward(format!(
                    "bias of {name:?} has {} values, expected {n_out}",
                    b.len()
                )));
            }
        }
        layer.bias = bias;
        Ok(layer)
    }
}
