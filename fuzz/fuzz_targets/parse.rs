//! Fuzzes the GGUF header parser: any input must give `Ok` or `Err`, never a panic, a hang or a
//! large allocation; and a header that parses must serialize back to the same bytes.
#![no_main]

use gguf_prune::gguf::write::header_bytes;
use gguf_prune::gguf::{align_up, Content, OutTensor, TensorData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let content = match Content::parse(data) {
        Ok(c) => c,
        Err(e) => {
            // Error messages are built from hostile values too.
            let _ = e.to_string();
            return;
        }
    };
    for (_, v) in content.metadata.iter() {
        let _ = v.display(4);
    }
    let tensors: Vec<OutTensor> = content
        .tensors
        .iter()
        .map(|t| OutTensor {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            data: TensorData::Bytes(Vec::new()),
        })
        .collect();
    let refs: Vec<&OutTensor> = tensors.iter().collect();
    let offsets: Vec<u64> = content.tensors.iter().map(|t| t.offset).collect();
    // Alignment 1: the header exactly, without the padding before the data section.
    let header = header_bytes(content.version, &content.metadata, &refs, &offsets, 1);
    assert_eq!(
        &data[..header.len()],
        &header[..],
        "a parsed header must serialize back to the same bytes"
    );
    assert_eq!(
        align_up(header.len() as u64, content.alignment),
        content.data_offset
    );
    let data_len = data.len() as u64 - content.data_offset.min(data.len() as u64);
    for t in &content.tensors {
        assert!(
            t.offset + t.size <= data_len,
            "tensor {:?} out of range",
            t.name
        );
    }
});
