//! A model's blocks as llama.cpp names them: the count `{arch}.block_count` and the tensors
//! `blk.N.*`. Every path (prune, inspect, verify, the forward pass, quantization, importance
//! matrices) reads both through these functions, so a file means one thing to all of them.

use crate::error::{Error, Result};
use crate::gguf::{arch_key, Metadata, Model, Value};

/// The largest block count accepted (the deepest real models have a few hundred blocks). Every
/// per-layer table is sized by the block count, so a hostile file must not be able to ask for
/// 2^32 entries; the count is also checked against the tensors present ([`check_blocks`]).
pub const MAX_BLOCK_COUNT: u64 = 1 << 16;

/// The model's block count, `{arch}.block_count`: an unsigned integer (llama.cpp reads a u32)
/// no larger than [`MAX_BLOCK_COUNT`].
pub fn block_count(metadata: &Metadata) -> Result<usize> {
    let arch = metadata.architecture()?;
    let key = arch_key(arch, "block_count");
    match metadata.get(&key) {
        None => Err(Error::MissingKey { key }),
        Some(v) => checked_count(key, v),
    }
}

/// [`block_count`], or None when the file has no architecture or no block count (not every
/// GGUF is a transformer); a count that is present but wrong is still an error.
pub fn block_count_if_any(metadata: &Metadata) -> Result<Option<usize>> {
    let Ok(arch) = metadata.architecture() else {
        return Ok(None);
    };
    let key = arch_key(arch, "block_count");
    match metadata.get(&key) {
        None => Ok(None),
        Some(v) => checked_count(key, v).map(Some),
    }
}

fn checked_count(key: String, v: &Value) -> Result<usize> {
    let bad = |why: &str| Error::BlockCount {
        key: key.clone(),
        found: v.display(4),
        why: why.to_string(),
    };
    let n = match v {
        Value::U8(_) | Value::U16(_) | Value::U32(_) | Value::U64(_) => v.to_u64(),
        Value::I8(_) | Value::I16(_) | Value::I32(_) | Value::I64(_) => v.to_u64(),
        _ => return Err(bad("expected an unsigned integer")),
    }
    .ok_or_else(|| bad("expected an unsigned integer"))?;
    if n > MAX_BLOCK_COUNT {
        return Err(bad(&format!(
            "more than any model has (at most {MAX_BLOCK_COUNT} accepted)"
        )));
    }
    Ok(n as usize)
}

/// The block index of a `blk.N.*` tensor name: N in plain decimal (no sign, no leading zero),
/// followed by a dot. `blk.01.x` and `blk.+1.x` are not block tensors to llama.cpp (it formats
/// names with `%d`), so they are not to any path here.
pub fn block_index(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let (digits, _) = rest.split_once('.')?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// `name` with its block index replaced by `new` (`blk.7.ffn_up.weight` -> `blk.5.ffn_up.weight`);
/// None if `name` is not a block tensor.
pub fn with_block_index(name: &str, new: usize) -> Option<String> {
    let i = block_index(name)?;
    let rest = &name["blk.".len() + i.to_string().len()..];
    Some(format!("blk.{new}{rest}"))
}

/// Every `blk.N` tensor must name a block below `n_layers`, and every block must have tensors.
/// Run before anything is sized by the block count: it bounds the count by the tensors present.
pub fn check_blocks(model: &Model, n_layers: usize) -> Result<()> {
    let mut seen = vec![false; n_layers];
    for t in &model.tensors {
        if let Some(i) = block_index(&t.info.name) {
            match seen.get_mut(i) {
                Some(s) => *s = true,
                None => {
                    return Err(Error::Invalid(format!(
                        "tensor {:?} belongs to block {i}, but block_count is {n_layers}",
                        t.info.name
                    )))
                }
            }
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::Invalid(format!("block {missing} has no tensors (block_count is {n_layers}): the file is missing blocks")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_are_plain_decimal() {
        assert_eq!(block_index("blk.0.attn_q.weight"), Some(0));
        assert_eq!(block_index("blk.29.ffn_up.weight"), Some(29));
        for name in [
            "blk.01.x", "blk.+1.x", "blk.-1.x", "blk..x", "blk.1", "blkx.1.x", "blk.١.x",
        ] {
            assert_eq!(block_index(name), None, "{name}");
        }
        assert_eq!(
            with_block_index("blk.12.a.b", 3).as_deref(),
            Some("blk.3.a.b")
        );
        assert_eq!(with_block_index("blk.012.a", 3), None);
    }

    #[test]
    fn block_count_is_a_capped_unsigned_integer() {
        let md = |v: Value| {
            let mut m = Metadata::new();
            m.set("general.architecture", Value::String(b"llama".to_vec()));
            m.set("llama.block_count", v);
            m
        };
        assert_eq!(block_count(&md(Value::U32(30))).unwrap(), 30);
        assert_eq!(block_count(&md(Value::I32(4))).unwrap(), 4);
        for (v, why) in [
            (Value::U32(u32::MAX), "at most 65536"),
            (Value::U64(1 << 24), "at most 65536"),
            (Value::F32(30.0), "expected an unsigned integer"),
            (
                Value::String(b"30".to_vec()),
                "expected an unsigned integer",
            ),
            (Value::I32(-1), "expected an unsigned integer"),
        ] {
            let e = block_count(&md(v)).unwrap_err().to_string();
            assert!(e.contains("llama.block_count") && e.contains(why), "{e}");
        }
        let mut none = Metadata::new();
        none.set("general.architecture", Value::String(b"llama".to_vec()));
        assert_eq!(block_count_if_any(&none).unwrap(), None);
        assert!(block_count_if_any(&md(Value::F32(1.0))).is_err());
    }
}
