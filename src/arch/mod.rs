//! Placeholder until the architecture rules land: sets block_count only.
use crate::error::Result;
use crate::gguf::{arch_key, Metadata, Value};

pub fn rewrite_metadata(
    metadata: &Metadata,
    _tensor_names: &[&str],
    kept: &[usize],
) -> Result<Metadata> {
    let mut out = metadata.clone();
    let arch = metadata.architecture()?;
    out.set(
        &arch_key(arch, "block_count"),
        Value::U32(kept.len() as u32),
    );
    Ok(out)
}
