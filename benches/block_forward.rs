//! One decoder block forward (dequantize + run) on the real SmolLM2 model, 512 tokens.
//! Run with `cargo bench --bench block_forward`; needs the cached model (scripts/fetch-models.sh).

use gguf_prune::forward::Forward;
use gguf_prune::gguf::Model;
use std::time::Instant;

fn main() {
    let home = std::env::var("GGUF_PRUNE_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/gguf-prune",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let path = format!("{home}/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let Ok(model) = Model::open(&path) else {
        eprintln!("skipping: {path} not found (run scripts/fetch-models.sh)");
        return;
    };
    let fw = Forward::new(&model).expect("llama is supported");
    let window: Vec<u32> = (0..512u32).map(|i| (i * 37) % 49152).collect();
    let x = fw.embed(&[window]).expect("embedding");
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(fw.load_block(10).expect("block 10"));
    }
    let load = t.elapsed().as_secs_f64() / reps as f64;
    let w = fw.load_block(10).expect("block 10");
    let t = Instant::now();
    for _ in 0..reps {
        let mut y = x.clone();
        fw.block_forward(10, &w, &mut y, None).expect("forward");
        std::hint::black_box(&y);
    }
    let run = t.elapsed().as_secs_f64() / reps as f64;
    println!("block 10 of SmolLM2, 512 tokens: dequantize {:.2} ms, forward {:.2} ms ({:.0} tok/s per block)", load * 1e3, run * 1e3, 512.0 / run);
}
