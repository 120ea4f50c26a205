//! Mixture-of-experts test models built from a real dense llama model (SmolLM2's weights): no
//! real MoE GGUF is reachable from here, so each dense FFN of width `n_ff` is cut into
//! `n_expert` experts of `n_ff / n_expert` consecutive rows of `ffn_gate` / `ffn_up` (and the
//! matching columns of `ffn_down`, times `n_expert`). With every expert selected and a zero router
//! (each weight 1/n_expert after normalization) a block computes exactly the dense block; with
//! a random router and top-k below the expert count it is a real, sharply predicting MoE model
//! of the layout llama.cpp reads (`ffn_gate_inp`, 3-D `ffn_{gate,up,down}_exps`, llama.cpp
//! `llama-model.cpp`).
//!
//! Two layouts: qwen3moe (q/k rows reordered from llama's interleaved RoPE pairs to NEOX halves,
//! random `attn_q_norm` / `attn_k_norm` weights around 1) and llama with experts (Mixtral's).

use std::collections::HashMap;

use gguf_prune::gguf::{self, GgmlType, Metadata, Model, OutTensor, TensorData, Value};

use super::noise;

/// Which MoE layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Qwen3Moe,
    /// llama with `expert_count` > 0 (Mixtral).
    Mixtral,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct MoeBuild {
    pub layout: Layout,
    /// The source model's blocks kept, in order.
    pub blocks: Vec<usize>,
    pub n_expert: usize,
    /// `expert_used_count` (top-k).
    pub n_used: usize,
    /// Router weights: uniform noise of this amplitude (seeded per block); 0 gives a zero router.
    pub router_scale: f32,
    /// Type of the 3-D expert tensors (F32, F16 or Q8_0); everything else is F32.
    pub expert_type: GgmlType,
    /// An expert whose `ffn_down` is scaled by 0.01 in every block: routed as often as before,
    /// but its output barely matters (what REAP saliency should find).
    pub quiet_expert: Option<usize>,
}

impl Layout {
    pub fn arch(self) -> &'static str {
        match self {
            Layout::Qwen3Moe => "qwen3moe",
            Layout::Mixtral => "llama",
        }
    }
}

/// A tensor dequantized to f32: ggml dims (innermost first) and values.
struct F32Tensor {
    dims: Vec<u64>,
    data: Vec<f32>,
}

/// The source model's tensors outside blocks and in `blocks`, dequantized.
fn source_tensors(src: &Model, blocks: &[usize]) -> HashMap<String, F32Tensor> {
    let mut out = HashMap::new();
    for t in &src.tensors {
        let block = gguf_prune::blocks::block_index(&t.info.name);
        if block.is_some_and(|b| !blocks.contains(&b)) {
            continue;
        }
        let mut data = vec![0f32; t.info.n_elements() as usize];
        gguf_prune::quant::dequantize(t.info.ggml_type, src.data(t), &mut data).unwrap();
        let dims = t.info.dims.clone();
        out.insert(t.info.name.clone(), F32Tensor { dims, data });
    }
    out
}

fn tensor(name: String, dims: &[u64], ty: GgmlType, data: &[f32]) -> OutTensor<'static> {
    let bytes = match ty {
        GgmlType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => gguf_prune::quant::quantize(ty, data, dims[0] as usize, None).unwrap(),
    };
    OutTensor {
        name,
        dims: dims.to_vec(),
        ggml_type: ty,
        data: TensorData::Bytes(bytes),
    }
}

/// The rows of a q or k weight of `n_heads` heads of `head_dim` rows in NEOX order: llama's
/// GGUF interleaves each head's RoPE pairs (2i, 2i+1), NEOX pairs (i, i + head_dim/2).
fn neox_order(w: &[f32], n_in: usize, n_heads: usize, head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_heads {
        for r in 0..head_dim {
            let src = h * head_dim + 2 * (r % half) + r / half;
            out.extend_from_slice(&w[src * n_in..(src + 1) * n_in]);
        }
    }
    out
}

/// `ffn_down` (`n_embd` rows of `n_ff`) as `n_expert` experts of `n_embd` rows of
/// `n_ff / n_expert`: expert j takes columns `j*w..(j+1)*w`, times `scale(j)`.
fn split_down(
    down: &[f32],
    n_ff: usize,
    n_expert: usize,
    scale: impl Fn(usize) -> f32,
) -> Vec<f32> {
    let w = n_ff / n_expert;
    let mut out = Vec::with_capacity(down.len());
    for j in 0..n_expert {
        let scale = scale(j);
        for row in down.chunks_exact(n_ff) {
            out.extend(row[j * w..(j + 1) * w].iter().map(|v| v * scale));
        }
    }
    out
}

impl MoeBuild {
    /// The metadata and tensors of the MoE model built from `src` (a dense llama model).
    pub fn build(&self, src: &Model) -> (Metadata, Vec<OutTensor<'static>>) {
        let t = source_tensors(src, &self.blocks);
        let meta = self.metadata(src.metadata());
        let mut out = vec![
            f32_of(&t, "token_embd.weight", "token_embd.weight"),
            f32_of(&t, "output_norm.weight", "output_norm.weight"),
        ];
        let n_head = meta
            .get(&gguf::arch_key(self.layout.arch(), "attention.head_count"))
            .and_then(Value::to_u64)
            .unwrap() as usize;
        let head_dim = t["token_embd.weight"].dims[0] as usize / n_head;
        for (il, &from) in self.blocks.iter().enumerate() {
            out.extend(self.block(&t, il, from, head_dim));
        }
        (meta, out)
    }

    fn metadata(&self, src: &Metadata) -> Metadata {
        let arch = self.layout.arch();
        let key = |k: &str| gguf::arch_key(arch, k);
        let skey = |k: &str| gguf::arch_key(src.architecture().unwrap(), k);
        let get = |k: &str| src.get(&skey(k)).unwrap().to_u64().unwrap();
        let n_ff = get("feed_forward_length") as u32;
        let mut meta = Metadata::new();
        meta.set("general.architecture", Value::String(arch.into()));
        meta.set("general.file_type", Value::U32(0));
        for (k, v) in src.iter() {
            if k.starts_with("tokenizer.") || k == "general.name" {
                meta.set(k, v.clone());
            }
        }
        meta.set(&key("block_count"), Value::U32(self.blocks.len() as u32));
        for k in [
            "context_length",
            "embedding_length",
            "attention.head_count",
            "attention.head_count_kv",
        ] {
            meta.set(&key(k), Value::U32(get(k) as u32));
        }
        for k in ["attention.layer_norm_rms_epsilon", "rope.freq_base"] {
            meta.set(&key(k), src.get(&skey(k)).unwrap().clone());
        }
        meta.set(&key("expert_count"), Value::U32(self.n_expert as u32));
        meta.set(&key("expert_used_count"), Value::U32(self.n_used as u32));
        let width = n_ff / self.n_expert as u32;
        match self.layout {
            Layout::Qwen3Moe => {
                meta.set(&key("feed_forward_length"), Value::U32(n_ff));
                meta.set(&key("expert_feed_forward_length"), Value::U32(width));
            }
            Layout::Mixtral => meta.set(&key("feed_forward_length"), Value::U32(width)),
        }
        meta
    }

    /// Block `il` of the new model, from block `from` of the source.
    fn block(
        &self,
        t: &HashMap<String, F32Tensor>,
        il: usize,
        from: usize,
        head_dim: usize,
    ) -> Vec<OutTensor<'static>> {
        let src = |n: &str| format!("blk.{from}.{n}.weight");
        let dst = |n: &str| format!("blk.{il}.{n}.weight");
        let mut out = Vec::new();
        for n in ["attn_norm", "attn_v", "attn_output", "ffn_norm"] {
            out.push(f32_of(t, &src(n), &dst(n)));
        }
        let n_embd = t[&src("attn_norm")].dims[0] as usize;
        for n in ["attn_q", "attn_k"] {
            let w = &t[&src(n)];
            let data = match self.layout {
                Layout::Qwen3Moe => {
                    neox_order(&w.data, n_embd, w.dims[1] as usize / head_dim, head_dim)
                }
                Layout::Mixtral => w.data.clone(),
            };
            out.push(tensor(dst(n), &w.dims, GgmlType::F32, &data));
        }
        let seed = 7000 + il as u64 * 10;
        if self.layout == Layout::Qwen3Moe {
            for (k, n) in ["attn_q_norm", "attn_k_norm"].into_iter().enumerate() {
                let v: Vec<f32> = noise(seed + k as u64, head_dim, 0.3)
                    .iter()
                    .map(|x| 1.0 + x)
                    .collect();
                out.push(tensor(dst(n), &[head_dim as u64], GgmlType::F32, &v));
            }
        }
        let e = self.n_expert;
        let router = noise(seed + 2, n_embd * e, self.router_scale);
        out.push(tensor(
            dst("ffn_gate_inp"),
            &[n_embd as u64, e as u64],
            GgmlType::F32,
            &router,
        ));
        let gate = &t[&src("ffn_gate")];
        let n_ff = gate.dims[1] as usize;
        let width = (n_ff / e) as u64;
        let in_dims = [n_embd as u64, width, e as u64];
        for n in ["ffn_gate", "ffn_up"] {
            // Expert j's rows are the dense rows j*width.., already consecutive.
            let name = format!("blk.{il}.{n}_exps.weight");
            out.push(tensor(name, &in_dims, self.expert_type, &t[&src(n)].data));
        }
        let quiet = self.quiet_expert;
        let scale = |j| e as f32 * if Some(j) == quiet { 0.01 } else { 1.0 };
        let down = split_down(&t[&src("ffn_down")].data, n_ff, e, scale);
        let down_dims = [width, n_embd as u64, e as u64];
        let name = format!("blk.{il}.ffn_down_exps.weight");
        out.push(tensor(name, &down_dims, self.expert_type, &down));
        out
    }
}

/// Source tensor `from` written as F32 under `to`.
fn f32_of(t: &HashMap<String, F32Tensor>, from: &str, to: &str) -> OutTensor<'static> {
    let s = t
        .get(from)
        .unwrap_or_else(|| panic!("no {from} in the source"));
    tensor(to.to_string(), &s.dims, GgmlType::F32, &s.data)
}
