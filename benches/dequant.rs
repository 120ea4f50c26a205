//! Dequantizing every block weight of the real models to a candle tensor, the way the forward
//! pass loads a block: through candle's ggml kernels, and through ours ([`kernels::dequantize`]).
//! Also checks that the two give the same bits. Run with `cargo bench --bench dequant`
//! (`RAYON_NUM_THREADS=1` to compare on one thread); needs the cached models
//! (scripts/fetch-models.sh).

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{Device, Tensor};
use gguf_prune::gguf::{GgmlType, Model, ModelTensor};
use gguf_prune::kernels;
use std::time::Instant;

/// candle's type for ours, for the types both read.
fn candle_type(ty: GgmlType) -> Option<GgmlDType> {
    use GgmlType::*;
    Some(match ty {
        F32 => GgmlDType::F32,
        F16 => GgmlDType::F16,
        BF16 => GgmlDType::BF16,
        Q4_0 => GgmlDType::Q4_0,
        Q4_1 => GgmlDType::Q4_1,
        Q5_0 => GgmlDType::Q5_0,
        Q5_1 => GgmlDType::Q5_1,
        Q8_0 => GgmlDType::Q8_0,
        Q2_K => GgmlDType::Q2K,
        Q3_K => GgmlDType::Q3K,
        Q4_K => GgmlDType::Q4K,
        Q5_K => GgmlDType::Q5K,
        Q6_K => GgmlDType::Q6K,
        _ => return None,
    })
}

fn by_candle(ty: GgmlDType, bytes: &[u8], n: usize) -> Tensor {
    let q = qtensor_from_ggml(ty, bytes, vec![n], &Device::Cpu).expect("candle reads it");
    q.dequantize(&Device::Cpu).expect("candle dequantizes it")
}

fn by_ours(ty: GgmlType, bytes: &[u8], n: usize) -> Tensor {
    let mut w = vec![0f32; n];
    kernels::dequantize(ty, bytes, &mut w).expect("ours dequantizes it");
    Tensor::from_vec(w, n, &Device::Cpu).expect("a tensor")
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.to_vec1().expect("f32 values");
    v.into_iter().map(f32::to_bits).collect()
}

fn bench(path: &str, reps: usize) {
    let Ok(model) = Model::open(path) else {
        eprintln!("skipping: {path} not found (run scripts/fetch-models.sh)");
        return;
    };
    let weights: Vec<&ModelTensor> = model
        .tensors
        .iter()
        .filter(|t| t.info.name.starts_with("blk.") && candle_type(t.info.ggml_type).is_some())
        .collect();
    let n_elements: u64 = weights.iter().map(|t| t.info.n_elements()).sum();
    for t in &weights {
        let (ty, n) = (t.info.ggml_type, t.info.n_elements() as usize);
        let theirs = by_candle(candle_type(ty).unwrap(), model.data(t), n);
        assert_eq!(
            bits(&theirs),
            bits(&by_ours(ty, model.data(t), n)),
            "{}",
            t.info.name
        );
    }
    let time = |f: &dyn Fn(&ModelTensor)| {
        let t0 = Instant::now();
        for _ in 0..reps {
            weights.iter().for_each(|t| f(t));
        }
        t0.elapsed().as_secs_f64() / reps as f64
    };
    let candle = time(&|t| {
        let ty = candle_type(t.info.ggml_type).unwrap();
        std::hint::black_box(by_candle(ty, model.data(t), t.info.n_elements() as usize));
    });
    let ours = time(&|t| {
        let ty = t.info.ggml_type;
        std::hint::black_box(by_ours(ty, model.data(t), t.info.n_elements() as usize));
    });
    let name = path.rsplit('/').next().unwrap_or(path);
    println!(
        "{name}: {} block weights, {:.1} M values, same bits; candle {:.1} ms, ours {:.1} ms \
         ({} threads)",
        weights.len(),
        n_elements as f64 / 1e6,
        candle * 1e3,
        ours * 1e3,
        rayon::current_num_threads()
    );
}

fn main() {
    let home = std::env::var("GGUF_PRUNE_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/gguf-prune",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    for model in ["SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"] {
        bench(&format!("{home}/models/{model}.gguf"), 5);
    }
}
