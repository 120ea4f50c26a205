//! The rules about metadata keys (rules 5, 6, 8 and 9 of the module documentation): per-layer
//! arrays sliced to the kept layers, layer inputs and reused states that pin layers, layer-index
//! lists renumbered, pinned defaults, and the refusal of keys no rule reads; and the integer
//! conversions that keep a rewritten value's type.

use super::format::Layers;
use super::{Ctx, Plan};
use crate::error::{Error, Result};
use crate::gguf::{Array, Value};

/// Rule 5, per-layer arrays: each array of one entry per layer (or per main layer) is sliced
/// to the kept layers; any other length is [`Error::PerLayerLength`].
pub(super) fn slice_per_layer(ctx: &Ctx, plan: &mut Plan) -> Result<()> {
    for table in ctx.tables() {
        for (templates, expected, keep) in [
            (&table.per_layer, ctx.n, ctx.set.kept.to_vec()),
            (&table.per_main_layer, ctx.n_main, ctx.kept_main.clone()),
        ] {
            for t in templates {
                let key = ctx.key(t);
                if let Some(Value::Array(a)) = ctx.md.get(&key) {
                    check_len(&key, a, expected)?;
                    plan.edit(key.clone(), Value::Array(a.select(&keep)));
                }
                plan.handled.push(key);
            }
        }
        plan.handled
            .extend(table.not_per_layer.iter().map(|t| ctx.key(t)));
    }
    Ok(())
}

/// [`Error::PerLayerLength`] unless `a` has `expected` entries.
pub(super) fn check_len(key: &str, a: &Array, expected: usize) -> Result<()> {
    if a.len() != expected {
        return Err(Error::PerLayerLength {
            key: key.to_string(),
            expected,
            got: a.len(),
        });
    }
    Ok(())
}

/// Rules 5 and 6, layers other layers or inputs depend on: a layer with an extra input may
/// not go (the rest of its array is sliced), nor a layer whose state a kept layer reuses.
pub(super) fn slice_inputs(ctx: &Ctx, plan: &mut Plan) -> Result<()> {
    for table in ctx.tables() {
        for t in &table.per_layer_inputs {
            let key = ctx.key(t);
            if let Some(Value::Array(a)) = ctx.md.get(&key) {
                check_len(&key, a, ctx.n)?;
                check_inputs_kept(ctx, &key, a)?;
                plan.edit(key.clone(), Value::Array(a.select(&ctx.set.kept)));
            }
            plan.handled.push(key);
        }
        check_reuses(ctx, table)?;
    }
    Ok(())
}

/// In `a` (one entry per layer), a layer with an entry `>= 0` takes that extra input: it stays.
fn check_inputs_kept(ctx: &Ctx, key: &str, a: &Array) -> Result<()> {
    if let Some(&r) = ctx
        .set
        .removed
        .iter()
        .find(|&&r| a.int_at(r).is_some_and(|v| v >= 0))
    {
        return Err(ctx.conflict(format!(
            "{key} connects layer {r} to input {} (the input count sizes the input embedding); keep layer {r}",
            a.int_at(r).unwrap_or(-1)
        )));
    }
    Ok(())
}

/// The `reuse_previous` arrays of `table` that the file has, each checked by [`check_reuse`].
fn check_reuses(ctx: &Ctx, table: &Layers) -> Result<()> {
    for t in &table.reuse_previous {
        let key = ctx.key(t);
        if let Some(Value::Array(a)) = ctx.md.get(&key) {
            check_reuse(ctx, &key, a)?;
        }
    }
    Ok(())
}

/// In `a` (one entry per main layer), a 0 layer reuses the state of the nearest earlier 1 layer:
/// every kept 0 layer must still find the same provider.
fn check_reuse(ctx: &Ctx, key: &str, a: &Array) -> Result<()> {
    let mut provider: Option<usize> = None;
    let mut kept_provider: Option<usize> = None;
    for il in 0..a.len().min(ctx.n_main) {
        let kept = ctx.set.new_index(il).is_some();
        if a.int_at(il).unwrap_or(1) != 0 {
            provider = Some(il);
            if kept {
                kept_provider = Some(il);
            }
        } else if kept && provider != kept_provider {
            let lost = provider.map_or("none".to_string(), |p| p.to_string());
            return Err(ctx.conflict(format!(
                "{key}: layer {il} reuses the state computed by layer {lost}, which would be removed; keep layer {lost}"
            )));
        }
    }
    Ok(())
}

/// Rule 6, layer-index lists: every listed layer stays and gets its new index.
pub(super) fn renumber_lists(ctx: &Ctx, plan: &mut Plan) -> Result<()> {
    for table in ctx.tables() {
        for t in &table.layer_lists {
            let key = ctx.key(t);
            if let Some(value) = ctx.md.get(&key) {
                let renumbered = renumber_list(ctx, &key, value)?;
                plan.edit(key.clone(), renumbered);
            }
            plan.read_positional(key);
        }
    }
    Ok(())
}

fn renumber_list(ctx: &Ctx, key: &str, value: &Value) -> Result<Value> {
    let Value::Array(a) = value else {
        return Ok(value.clone());
    };
    let mut out = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        let v = a
            .int_at(i)
            .ok_or_else(|| list_error(key, format!("entry {i} is not an integer layer index")))?;
        let il = usize::try_from(v)
            .map_err(|_| list_error(key, format!("layer index {v} is negative")))?;
        let Some(j) = ctx.set.new_index(il) else {
            return Err(ctx.conflict(format!(
                "{key} names layer {il}, which would be removed; keep layer {il}"
            )));
        };
        out.push(j as i128);
    }
    int_array_like(a, &out)
        .map(Value::Array)
        .ok_or_else(|| list_error(key, "not an integer array".into()))
}

fn list_error(key: &str, what: String) -> Error {
    Error::LayerIndexList {
        key: key.to_string(),
        what,
    }
}

/// Rule 8, pinned defaults: a value llama.cpp derives from the depth when its key is absent
/// is written with the original depth.
pub(super) fn pin_defaults(ctx: &Ctx, plan: &mut Plan) {
    for table in ctx.tables() {
        for pin in &table.pins {
            let key = ctx.key(&pin.key);
            if !ctx.md.contains(&key) {
                let v = pin.formula.eval(pin.coefficient, ctx.n_main as u64);
                plan.edit(key.clone(), Value::F32(v as f32));
            }
            plan.read_positional(key);
        }
    }
}

/// Rule 9, unknown positions: a `position_keys` scalar no position rule read, or an
/// unlisted `{arch}.*` array of `block_count` entries, is refused rather than guessed at.
pub(super) fn check_unknown(ctx: &Ctx, generic: &Layers, plan: &Plan) -> Result<()> {
    for t in &generic.position_keys {
        let key = ctx.key(t);
        if let Some(v) = ctx.md.get(&key).filter(|v| !matches!(v, Value::Array(_))) {
            if !plan.positional.contains(&key) {
                return Err(ctx.conflict(format!(
                    "{key} = {} encodes layer positions and {} has no rule that reads it; \
                     refusing rather than guessing what it marks",
                    v.display(8),
                    ctx.file_name()
                )));
            }
        }
    }
    let prefix = format!("{}.", ctx.arch);
    let n = ctx.n;
    for (key, value) in ctx.md.iter() {
        if let Value::Array(a) = value {
            if key.starts_with(&prefix) && a.len() == n && !plan.handled.iter().any(|h| h == key) {
                return Err(ctx.conflict(format!(
                    "{key} is an array of {n} entries (= block_count) that {} does not list; it may be \
                     per-layer (and need slicing) or not, so add it to `per_layer` or `not_per_layer`",
                    ctx.file_name()
                )));
            }
        }
    }
    Ok(())
}

/// `v` as the same integer type as `orig` (U32 when there is none or it is not an integer).
pub(super) fn uint_like(orig: Option<&Value>, v: u64) -> Value {
    match orig {
        Some(Value::U8(_)) if v <= u8::MAX as u64 => Value::U8(v as u8),
        Some(Value::U16(_)) if v <= u16::MAX as u64 => Value::U16(v as u16),
        Some(Value::I8(_)) if v <= i8::MAX as u64 => Value::I8(v as i8),
        Some(Value::I16(_)) if v <= i16::MAX as u64 => Value::I16(v as i16),
        Some(Value::I32(_)) if v <= i32::MAX as u64 => Value::I32(v as i32),
        Some(Value::U64(_)) => Value::U64(v),
        Some(Value::I64(_)) if v <= i64::MAX as u64 => Value::I64(v as i64),
        _ if v <= u32::MAX as u64 => Value::U32(v as u32),
        _ => Value::U64(v),
    }
}

/// An integer array of the same element type as `like` holding `vals` (None if it does not fit).
fn int_array_like(like: &Array, vals: &[i128]) -> Option<Array> {
    macro_rules! conv {
        ($variant:ident, $t:ty) => {
            Array::$variant(
                vals.iter()
                    .map(|&v| <$t>::try_from(v).ok())
                    .collect::<Option<Vec<$t>>>()?,
            )
        };
    }
    Some(match like {
        Array::U8(_) => conv!(U8, u8),
        Array::I8(_) => conv!(I8, i8),
        Array::U16(_) => conv!(U16, u16),
        Array::I16(_) => conv!(I16, i16),
        Array::U32(_) => conv!(U32, u32),
        Array::I32(_) => conv!(I32, i32),
        Array::U64(_) => conv!(U64, u64),
        Array::I64(_) => conv!(I64, i64),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_types_are_kept() {
        assert_eq!(uint_like(Some(&Value::I32(3)), 7), Value::I32(7));
        assert_eq!(uint_like(Some(&Value::U64(3)), 7), Value::U64(7));
        assert_eq!(uint_like(None, 7), Value::U32(7));
        assert_eq!(
            int_array_like(&Array::I32(vec![]), &[1, 2]),
            Some(Array::I32(vec![1, 2]))
        );
        assert_eq!(int_array_like(&Array::U8(vec![]), &[300]), None);
    }
}
