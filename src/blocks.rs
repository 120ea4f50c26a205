//! A model's blocks as llama.cpp names them: the count `{arch}.block_count` and the tensors
//! `blk.N.*`. Every path (prune, inspect, verify, the forward pass, quantization, importance
//! matrices) reads both through these functions, so a file means one thing to all of them.
//!
//! Also the one vocabulary for sets of layers: [`LayerSet`] (which blocks a model keeps and
//! which it loses, checked against its block count) and the `3,12-17,25` notation
//! ([`parse_layer_list`], [`format_layers`]).

use std::ops::RangeInclusive;

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
    let rest = name.strip_prefix(BLOCK_PREFIX)?;
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
    let rest = &name[BLOCK_PREFIX.len() + i.to_string().len()..];
    Some(format!("{BLOCK_PREFIX}{new}{rest}"))
}

/// The prefix of every block tensor's name (llama.cpp's `"blk.%d."`); the names that follow it
/// are in [`crate::arch::names`].
pub const BLOCK_PREFIX: &str = "blk.";

/// Every `blk.N` tensor must name a block below `n_layers`, and every block must have tensors.
/// Run before anything is sized by the block count: it bounds the count by the tensors present.
pub fn check_blocks(model: &Model, n_layers: usize) -> Result<()> {
    let mut seen = vec![false; n_layers];
    for t in &model.tensors {
        if let Some(i) = block_index(&t.info.name) {
            match seen.get_mut(i) {
                Some(s) => *s = true,
                None => {
                    return Err(Error::BlockPastCount {
                        name: t.info.name.clone(),
                        block: i,
                        block_count: n_layers,
                    })
                }
            }
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::MissingBlock {
            block: missing,
            block_count: n_layers,
        });
    }
    Ok(())
}

/// Which of a model's blocks are removed and which are kept, both as sorted original indices.
///
/// Built only by [`LayerSet::new`] or [`LayerSet::from_kept`], which check the list against the
/// block count, so every holder sees a valid set: at least one block removed, at least one kept,
/// no index twice, none out of range. The fields are public for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerSet {
    pub n_layers: usize,
    pub removed: Vec<usize>,
    pub kept: Vec<usize>,
}

impl LayerSet {
    /// Checks `removed` (any order) against a model with `n_layers` blocks: non-empty, no
    /// duplicates, in range, and at least one block left.
    pub fn new(n_layers: usize, removed: &[usize]) -> Result<LayerSet> {
        if removed.is_empty() {
            return Err(Error::Layers("no layers given".into()));
        }
        let mut sorted = removed.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Layers(format!("layer {} is listed twice", w[0])));
        }
        if let Some(&bad) = sorted.iter().find(|&&i| i >= n_layers) {
            return Err(Error::Layers(format!(
                "layer {bad} is out of range: the model has {n_layers} layers (0-{})",
                n_layers.saturating_sub(1)
            )));
        }
        if sorted.len() == n_layers {
            return Err(Error::Layers(format!(
                "removing all {n_layers} layers would leave an empty model"
            )));
        }
        let kept = (0..n_layers)
            .filter(|i| sorted.binary_search(i).is_err())
            .collect();
        Ok(LayerSet {
            n_layers,
            removed: sorted,
            kept,
        })
    }

    /// The set that keeps `kept` (sorted and distinct) of `n_layers` blocks; the other checks
    /// are [`LayerSet::new`]'s.
    pub fn from_kept(n_layers: usize, kept: &[usize]) -> Result<LayerSet> {
        if let Some(w) = kept.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::Layers(format!(
                "kept layers must be sorted and distinct, got {} before {}",
                w[0], w[1]
            )));
        }
        if let Some(&last) = kept.last().filter(|&&l| l >= n_layers) {
            return Err(Error::Layers(format!(
                "layer {last} does not exist (the model has {n_layers} layers)"
            )));
        }
        let removed: Vec<usize> = (0..n_layers)
            .filter(|i| kept.binary_search(i).is_err())
            .collect();
        LayerSet::new(n_layers, &removed)
    }

    /// Refuses a set built for another depth than the model's `n_layers`.
    pub fn check_block_count(&self, n_layers: usize) -> Result<()> {
        if self.n_layers != n_layers {
            return Err(Error::Layers(format!(
                "the plan is for {} layers, the model has {n_layers}",
                self.n_layers
            )));
        }
        Ok(())
    }

    /// New index of original block `i`, or None if it is removed.
    pub fn new_index(&self, i: usize) -> Option<usize> {
        self.kept.binary_search(&i).ok()
    }

    /// The maximal runs of consecutive removed blocks, in order.
    pub fn runs(&self) -> Vec<RangeInclusive<usize>> {
        runs(&self.removed)
    }
}

/// Maximal runs of consecutive indices in a sorted list.
fn runs(sorted: &[usize]) -> Vec<RangeInclusive<usize>> {
    let mut out: Vec<RangeInclusive<usize>> = Vec::new();
    for &x in sorted {
        match out.last_mut() {
            Some(r) if *r.end() + 1 == x => *r = *r.start()..=x,
            _ => out.push(x..=x),
        }
    }
    out
}

/// A sorted list of layers as `8-10,12,20`, the notation [`parse_layer_list`] reads.
pub fn format_layers(sorted: &[usize]) -> String {
    runs(sorted)
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a layer list: comma-separated indices and inclusive ranges, e.g. `3,12-17,25`.
pub fn parse_layer_list(text: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(Error::Layers(format!("empty entry in {text:?}")));
        }
        let number = |s: &str| -> Result<usize> {
            s.trim()
                .parse::<usize>()
                .map_err(|_| Error::Layers(format!("{s:?} in {text:?} is not a layer index")))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(Error::Layers(format!("range {part:?} runs backwards")));
                }
                if b - a >= 1 << 20 {
                    return Err(Error::Layers(format!("range {part:?} is implausibly long")));
                }
                out.extend(a..=b);
            }
            None => out.push(number(part)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_indices_and_ranges() {
        assert_eq!(parse_layer_list("20,21,22").unwrap(), vec![20, 21, 22]);
        assert_eq!(
            parse_layer_list("3, 12-14 ,25").unwrap(),
            vec![3, 12, 13, 14, 25]
        );
        for bad in ["", "1,,2", "a", "3-1", "-1", "1-", "0-99999999"] {
            assert!(parse_layer_list(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn layer_lists_format_as_ranges() {
        assert_eq!(format_layers(&[8, 9, 10, 12, 20]), "8-10,12,20");
        assert_eq!(format_layers(&[3]), "3");
        assert_eq!(format_layers(&[]), "");
        let set = LayerSet::new(30, &[17, 3, 12, 13, 14, 25, 15, 16]).unwrap();
        assert_eq!(set.runs(), [3..=3, 12..=17, 25..=25]);
    }

    #[test]
    fn layer_sets_are_checked() {
        let p = LayerSet::new(6, &[4, 1]).unwrap();
        assert_eq!(p.removed, vec![1, 4]);
        assert_eq!(p.kept, vec![0, 2, 3, 5]);
        assert_eq!(p.new_index(3), Some(2));
        assert_eq!(p.new_index(4), None);
        assert_eq!(LayerSet::from_kept(6, &[0, 2, 3, 5]).unwrap(), p);
        let msg = |r: Result<LayerSet>| r.unwrap_err().to_string();
        assert!(msg(LayerSet::new(6, &[])).contains("no layers"));
        assert!(msg(LayerSet::new(6, &[2, 2])).contains("layer 2 is listed twice"));
        assert!(msg(LayerSet::new(6, &[6])).contains("layer 6 is out of range"));
        assert!(msg(LayerSet::new(2, &[0, 1])).contains("all 2 layers"));
        assert!(msg(LayerSet::from_kept(6, &[3, 1])).contains("sorted and distinct"));
        assert!(msg(LayerSet::from_kept(6, &[1, 1])).contains("sorted and distinct"));
        assert!(msg(LayerSet::from_kept(6, &[0, 6])).contains("layer 6 does not exist"));
        assert!(msg(LayerSet::from_kept(6, &[])).contains("all 6 layers"));
        assert!(msg(LayerSet::from_kept(6, &[0, 1, 2, 3, 4, 5])).contains("no layers"));
    }

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
