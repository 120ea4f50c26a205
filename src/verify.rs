//! Checking a written model: structure (what llama.cpp's loader will insist on) and, after a
//! prune, every tensor's bytes against the source tensor it was copied from.

use std::os::unix::fs::FileExt;

use crate::arch::names;
use crate::blocks::{block_count_if_any, check_blocks};
use crate::error::{Error, Result};
use crate::forward::ForwardSpec;
use crate::gguf::{align_up, GgmlType, GgufFile, Model, ModelTensor, Value};

/// What [`check_structure`] looked at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StructureReport {
    pub shards: usize,
    pub tensors: usize,
    pub tensor_bytes: u64,
    pub block_count: Option<usize>,
}

/// Structural checks on any GGUF model. Parsing already checked counts, lengths, bounds,
/// overlaps and alignment; this adds llama.cpp's layout rule (tensors packed in header order,
/// each at the previous end rounded up to the alignment) and [`check_loadable`].
pub fn check_structure(model: &Model) -> Result<StructureReport> {
    let mut tensor_bytes = 0;
    for shard in &model.shards {
        check_layout(shard)?;
        tensor_bytes += shard.content.tensors.iter().map(|t| t.size).sum::<u64>();
    }
    let n_layers = check_loadable(model)?;
    Ok(StructureReport {
        shards: model.shards.len(),
        tensors: model.tensors.len(),
        tensor_bytes,
        block_count: n_layers,
    })
}

/// What llama.cpp's loader refuses although our parser carries it (so that `inspect` can show
/// it): tensor type ids ggml does not define, arrays of arrays, a block count that is not a
/// plausible unsigned integer, `blk.N` tensors that disagree with the block count, and, for the
/// architectures whose blocks the forward pass knows, a block without one of its weights.
/// Returns the block count, if the file has one. Errors name the file.
pub fn check_loadable(model: &Model) -> Result<Option<usize>> {
    let in_file = |source: Error| Error::InFile {
        path: model.path().to_path_buf(),
        source: Box::new(source),
    };
    for shard in &model.shards {
        check_no_nested_arrays(shard).map_err(|source| Error::InFile {
            path: shard.path().to_path_buf(),
            source: Box::new(source),
        })?;
    }
    check_tensor_types(model).map_err(in_file)?;
    let n_layers = block_count_if_any(model.metadata()).map_err(in_file)?;
    if let Some(n) = n_layers {
        check_blocks(model, n).map_err(in_file)?;
        check_block_weights(model, n).map_err(in_file)?;
    }
    Ok(n_layers)
}

/// llama.cpp's `gguf_init_from_file` reads arrays of scalars and strings only.
fn check_no_nested_arrays(file: &GgufFile) -> Result<()> {
    for (key, value) in file.content.metadata.iter() {
        if let Value::Array(a) = value {
            if a.elem_type() == crate::gguf::ValueType::Array {
                return Err(Error::NestedArray {
                    key: key.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Every tensor type must be one of ggml's (ids up to `GGML_TYPE_COUNT` that still have a
/// block size): the rest are carried by the parser, refused by llama.cpp.
fn check_tensor_types(model: &Model) -> Result<()> {
    match model.tensors.iter().find(|t| !t.info.ggml_type.is_known()) {
        Some(t) => Err(Error::UnknownTensorType {
            name: t.info.name.clone(),
            id: GgmlType::to_u32(t.info.ggml_type),
        }),
        None => Ok(()),
    }
}

/// Each of the `n_layers` blocks has the weights its architecture's blocks need
/// ([`ForwardSpec::block_weights`]); architectures the forward pass does not know are not
/// checked here.
pub fn check_block_weights(model: &Model, n_layers: usize) -> Result<()> {
    let arch = model.metadata().architecture()?;
    let Ok(spec) = ForwardSpec::for_arch(arch) else {
        return Ok(());
    };
    let present: std::collections::HashSet<&str> =
        model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let experts = spec.has_experts(arch, model.metadata());
    for il in 0..n_layers {
        let name = |w: &str| names::block_weight(il, w);
        let fused = present.contains(name(names::ATTN_QKV).as_str());
        if let Some(w) = spec
            .block_weights(fused, experts)
            .into_iter()
            .find(|w| !present.contains(name(w).as_str()))
        {
            return Err(Error::MissingBlockTensor {
                arch: arch.to_string(),
                block: il,
                name: name(w),
            });
        }
    }
    Ok(())
}

fn check_layout(file: &GgufFile) -> Result<()> {
    let content = &file.content;
    let mut expected = 0u64;
    for t in &content.tensors {
        if t.offset != expected {
            return Err(Error::InFile {
                path: file.path().to_path_buf(),
                source: Box::new(Error::Verify(format!(
                    "tensor {:?} is at data offset {}, llama.cpp expects {expected} (tensors packed in header order)",
                    t.name, t.offset
                ))),
            });
        }
        expected = align_up(t.offset + t.size, content.alignment);
    }
    Ok(())
}

/// Bytes compared per read: keeps memory flat whatever the model size.
const CHUNK: usize = 1 << 20;

/// Checks that every copied tensor of `output` has exactly the bytes of its source tensor,
/// pairing them in order: `sources[i]` is the source of the output's i-th tensor, or None when
/// that tensor was made anew (requantized, healed) and has no source to equal.
pub fn compare_with_sources(
    output: &Model,
    source: &Model,
    sources: &[Option<&ModelTensor>],
) -> Result<()> {
    if output.tensors.len() != sources.len() {
        return Err(Error::Verify(format!(
            "output has {} tensors, expected {}",
            output.tensors.len(),
            sources.len()
        )));
    }
    let mut a = vec![0u8; CHUNK];
    let mut b = vec![0u8; CHUNK];
    for (out, src) in output.tensors.iter().zip(sources) {
        crate::interrupt::check()?;
        let Some(src) = src else { continue };
        if out.info.size != src.info.size
            || out.info.ggml_type != src.info.ggml_type
            || out.info.dims != src.info.dims
        {
            return Err(Error::Verify(format!(
                "tensor {:?} ({} {:?}, {} bytes) does not match its source {:?} ({} {:?}, {} bytes)",
                out.info.name, out.info.ggml_type, out.info.dims, out.info.size,
                src.info.name, src.info.ggml_type, src.info.dims, src.info.size
            )));
        }
        let (out_file, src_file) = (&output.shards[out.shard], &source.shards[src.shard]);
        let (out_start, src_start) = (
            out_file.data_start(&out.info),
            src_file.data_start(&src.info),
        );
        let mut done = 0u64;
        while done < out.info.size {
            let n = (out.info.size - done).min(CHUNK as u64) as usize;
            read_at(out_file, &mut a[..n], out_start + done)?;
            read_at(src_file, &mut b[..n], src_start + done)?;
            if a[..n] != b[..n] {
                let at = a[..n]
                    .iter()
                    .zip(&b[..n])
                    .position(|(x, y)| x != y)
                    .unwrap_or(0) as u64
                    + done;
                return Err(Error::Verify(format!(
                    "tensor {:?} differs from its source {:?} at byte {at} of its data",
                    out.info.name, src.info.name
                )));
            }
            done += n as u64;
        }
    }
    Ok(())
}

fn read_at(file: &GgufFile, buf: &mut [u8], offset: u64) -> Result<()> {
    file.file()
        .read_exact_at(buf, offset)
        .map_err(|source| Error::Io {
            path: file.path().to_path_buf(),
            source,
        })
}
