//! Fuzzes opening a model for the forward pass: any bytes, written to a file and opened as a
//! model, must give `Ok` or `Err` from verification and from `Forward::new` (which validates
//! block count, hyper-parameters and tensor shapes), never a panic or a large allocation; and a
//! model that `Forward::new` accepts must run a short window through every block without a
//! panic (a NaN in the stream is an error, not a result).
#![no_main]

use gguf_prune::forward::Forward;
use gguf_prune::gguf::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // One file per fuzzing process, rewritten for every input (the model API opens paths).
    let path = std::env::temp_dir().join(format!("gguf-prune-fuzz-{}.gguf", std::process::id()));
    std::fs::write(&path, data).expect("writing the fuzz input");
    let model = match Model::open(&path) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Err(e) = gguf_prune::verify::check_structure(&model) {
        let _ = e.to_string();
    }
    let fw = match Forward::new(&model) {
        Ok(fw) => fw,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let window: Vec<u32> = (0..4).collect();
    if let Err(e) = fw.run(&[window], Default::default(), &mut |_, _| Ok(()), &mut |_| {}) {
        let _ = e.to_string();
    }
});
