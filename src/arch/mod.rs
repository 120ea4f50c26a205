//! What each architecture's layer index means to llama.cpp, and the metadata rewrite that keeps
//! it true when whole layers are removed.
//!
//! The knowledge is data, in `formats/*.toml` (see `formats/README.md`), read from llama.cpp's
//! loader (`llama-model.cpp`, `src/models/*.cpp`, `llama-hparams.cpp`). This module applies it.
//! The rules, in the order they are checked:
//!
//! 1. **Layer list.** The [`LayerSet`] is for this model's `block_count` (it is checked when
//!    built: at least one layer kept and one removed, all in range); otherwise [`Error::Layers`].
//! 2. **MTP heads.** The last `{arch}.nextn_predict_layers` blocks are multi-token-prediction
//!    heads, not part of the main stack: removing one is refused; removing main layers keeps them
//!    last, so the key stays as it is.
//! 3. **Global tensors packing per-layer data** (gemma3n/gemma4 `per_layer_token_embd`,
//!    `per_layer_model_proj`): refused when present; slicing them is not supported.
//! 4. **Depth-detected behaviour** (gemma2 27B at 46 blocks, gemma3 27B at 62, exaone4 at 64,
//!    deepseek2 "lite" depths, baichuan's RoPE/ALiBi choice): refused when the original or the new
//!    depth is listed.
//! 5. **Per-layer arrays.** Every key llama.cpp reads per layer (the generic list plus the
//!    architecture's): an array is sliced to the kept layers and keeps its element type; a scalar
//!    applies to all layers and stays; an array of any other length than llama.cpp expects is
//!    [`Error::PerLayerLength`] naming key, expected and got.
//! 6. **Layers other layers or inputs depend on**: layer-index lists (`ple.layers`) are
//!    renumbered; removing a listed layer, a layer with an extra input (`deepstack_mapping`), or a
//!    DSA indexer layer whose top-k a kept layer reuses (`indexer.types`) is refused.
//! 7. **Position-derived roles** (sliding window, recurrent, no-RoPE, MoE interleave, dense lead,
//!    shared KV, deepstack): the kept layers' true roles are computed from the original index
//!    and compared with what llama.cpp would derive at their new index. When they differ, the
//!    per-layer array llama.cpp reads is written if there is one; otherwise a new value for the
//!    scalar parameter is written if one reproduces every kept layer's role exactly; otherwise
//!    the removal is refused ([`Error::ArchConflict`]) with removals that would keep it intact.
//! 8. **Pinned defaults** (minicpm's `residual_scale = 1.4 / sqrt(n_layer)`): written with the
//!    original depth when the key is absent.
//! 9. **Unknown positions.** A scalar listed under `position_keys` in `generic.toml` that no
//!    rule of the architecture reads is refused, and so is an unlisted `{arch}.*` array with
//!    `block_count` entries: it may be per-layer (slicing needed) or indexed by something else
//!    that happens to have the same length (slicing would corrupt it silently), and llama.cpp
//!    reads only keys it knows, so the right answer is a line in `formats/<arch>.toml`, not a
//!    guess. An architecture without a formats file gets the generic rules only.
//! 10. `{arch}.block_count` is set to the number of kept layers.

pub mod format;
pub mod forward;
pub mod names;

pub use forward::{ForwardSpec, RopeStyle};

use crate::blocks::{block_count, format_layers, LayerSet};
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Array, Metadata, Value};
use format::{Formula, Layers, Role};

/// Rewrites every piece of layer-dependent metadata for a model that keeps `set.kept`: sets
/// `{arch}.block_count`, slices per-layer arrays, writes the kept layers' true roles where
/// llama.cpp derives them from the index, and refuses ([`Error::ArchConflict`]) where nothing
/// can express them. See the module documentation for the full rule list.
pub fn rewrite_metadata(
    metadata: &Metadata,
    tensor_names: &[&str],
    set: &LayerSet,
) -> Result<Metadata> {
    let edits = plan(metadata, tensor_names, set, true)?;
    let mut out = metadata.clone();
    for (key, value) in edits {
        out.set(&key, value);
    }
    Ok(out)
}

/// The same checks as [`rewrite_metadata`] without building metadata: Ok if removing `removed`
/// (original indices, any order, no duplicates) is allowed. Cheap enough to call per candidate
/// set during layer selection.
pub fn check_removal(metadata: &Metadata, tensor_names: &[&str], removed: &[usize]) -> Result<()> {
    let set = LayerSet::new(block_count(metadata)?, removed)?;
    plan(metadata, tensor_names, &set, false).map(|_| ())
}

/// Everything the model needs to know to judge one layer set.
struct Ctx<'a> {
    md: &'a Metadata,
    arch: &'a str,
    /// The architecture's table, if a formats file names it.
    table: Option<&'a Layers>,
    /// `block_count`.
    n: usize,
    /// Main layers: `block_count - nextn_predict_layers`.
    n_main: usize,
    set: &'a LayerSet,
    /// `set.kept` below `n_main`, in order: new main index j holds original layer `kept_main[j]`.
    kept_main: Vec<usize>,
    suggest: bool,
    tensor_names: &'a [&'a str],
}

impl Ctx<'_> {
    fn conflict(&self, why: String) -> Error {
        Error::ArchConflict {
            arch: self.arch.to_string(),
            why,
        }
    }

    fn key(&self, template: &str) -> String {
        format::key(template, self.arch)
    }

    fn tables(&self) -> impl Iterator<Item = &Layers> {
        let generic = format::formats().ok().map(|f| &f.generic);
        generic.into_iter().chain(self.table)
    }

    fn file_name(&self) -> String {
        match format::formats().ok().and_then(|f| f.find(self.arch)) {
            Some(f) => format!("formats/{}", f.file),
            None => format!("formats/{}.toml (there is none)", self.arch),
        }
    }
}

/// Checks `set` and returns the metadata edits, in order.
fn plan(
    md: &Metadata,
    tensor_names: &[&str],
    set: &LayerSet,
    suggest: bool,
) -> Result<Vec<(String, Value)>> {
    let formats = format::formats()?;
    let arch = md.architecture()?;
    let n = block_count(md)?;
    set.check_block_count(n)?;

    let nextn_key = arch_key(arch, "nextn_predict_layers");
    let nextn = match md.get(&nextn_key) {
        Some(_) => md.get_u64(&nextn_key)? as usize,
        None => 0,
    };
    if nextn > n {
        return Err(Error::Invalid(format!(
            "{nextn_key} = {nextn} exceeds block_count {n}"
        )));
    }
    let n_main = n - nextn;
    let ctx = Ctx {
        md,
        arch,
        table: formats.find(arch).map(|f| &f.layers),
        n,
        n_main,
        set,
        kept_main: set.kept.iter().copied().filter(|&k| k < n_main).collect(),
        suggest,
        tensor_names,
    };

    // 2. MTP heads.
    if let Some(&r) = ctx.set.removed.iter().find(|&&r| r >= n_main) {
        return Err(ctx.conflict(format!(
            "layer {r} is a multi-token-prediction head ({nextn_key} = {nextn}: layers {n_main}..{}); \
             remove only main layers, below {n_main}",
            n - 1
        )));
    }
    if ctx.kept_main.is_empty() {
        return Err(Error::Layers(format!(
            "every main layer (0..{n_main}) would be removed"
        )));
    }

    let mut edits: Vec<(String, Value)> = Vec::new();
    // 3. Global tensors packing per-layer data.
    for table in ctx.tables() {
        for name in &table.global_tensors {
            if let Some(t) = tensor_names.iter().find(|t| **t == name.as_str()) {
                return Err(ctx.conflict(format!(
                    "tensor {t} packs data for all {n} layers in one global tensor; removing layers \
                     would need it sliced, which is not supported (no layer set can be removed)"
                )));
            }
        }
    }
    // 4. Depth-detected behaviour.
    for table in ctx.tables() {
        for d in &table.depth {
            let new_main = ctx.kept_main.len() as u64;
            if d.block_counts.contains(&(n_main as u64)) || d.block_counts.contains(&new_main) {
                return Err(ctx.conflict(format!(
                    "llama.cpp changes behaviour at depth {:?} ({}); {n_main} -> {new_main} layers would \
                     cross it (no layer set can be removed)",
                    d.block_counts, d.why
                )));
            }
        }
    }
    // 5. Per-layer arrays.
    // Keys some rule reads (`handled`), and the subset read by position rules (`positional`).
    let mut handled: Vec<String> = vec![nextn_key.clone()];
    let mut positional: Vec<String> = Vec::new();
    for table in ctx.tables() {
        for (templates, expected, keep) in [
            (&table.per_layer, n, ctx.set.kept.to_vec()),
            (&table.per_main_layer, n_main, ctx.kept_main.clone()),
        ] {
            for t in templates {
                let key = ctx.key(t);
                if let Some(Value::Array(a)) = md.get(&key) {
                    if a.len() != expected {
                        return Err(Error::PerLayerLength {
                            key,
                            expected,
                            got: a.len(),
                        });
                    }
                    edits.push((key.clone(), Value::Array(a.select(&keep))));
                }
                handled.push(key);
            }
        }
        handled.extend(table.not_per_layer.iter().map(|t| ctx.key(t)));
    }
    for table in ctx.tables() {
        for t in &table.per_layer_inputs {
            let key = ctx.key(t);
            if let Some(Value::Array(a)) = md.get(&key) {
                if a.len() != n {
                    return Err(Error::PerLayerLength {
                        key,
                        expected: n,
                        got: a.len(),
                    });
                }
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
                edits.push((key.clone(), Value::Array(a.select(&ctx.set.kept))));
            }
            handled.push(key);
        }
        for t in &table.reuse_previous {
            let key = ctx.key(t);
            if let Some(Value::Array(a)) = md.get(&key) {
                check_reuse(&ctx, &key, a)?;
            }
        }
    }
    // 6. Layer-index lists.
    for table in ctx.tables() {
        for t in &table.layer_lists {
            let key = ctx.key(t);
            if let Some(value) = md.get(&key) {
                edits.push((key.clone(), renumber_list(&ctx, &key, value)?));
            }
            positional.push(key.clone());
            handled.push(key);
        }
    }
    // 7. Position-derived roles.
    for table in ctx.tables() {
        for role in &table.roles {
            let keys = role
                .param_key
                .iter()
                .chain(&role.array_key)
                .map(|t| ctx.key(t));
            positional.extend(keys.clone());
            handled.extend(keys);
            if let Some(edit) = apply_role(&ctx, role)? {
                edits.push(edit);
            }
        }
    }
    // 8. Pinned defaults.
    for table in ctx.tables() {
        for pin in &table.pins {
            let key = ctx.key(&pin.key);
            if !md.contains(&key) {
                let v = pin.formula.eval(pin.coefficient, n_main as u64);
                edits.push((key.clone(), Value::F32(v as f32)));
            }
            positional.push(key.clone());
            handled.push(key);
        }
    }
    // 9. Unknown positions.
    let generic = &formats.generic;
    for t in &generic.position_keys {
        let key = ctx.key(t);
        if let Some(v) = md.get(&key).filter(|v| !matches!(v, Value::Array(_))) {
            if !positional.contains(&key) {
                return Err(ctx.conflict(format!(
                    "{key} = {} encodes layer positions and {} has no rule that reads it; \
                     refusing rather than guessing what it marks",
                    v.display(8),
                    ctx.file_name()
                )));
            }
        }
    }
    let prefix = format!("{arch}.");
    for (key, value) in md.iter() {
        if let Value::Array(a) = value {
            if key.starts_with(&prefix) && a.len() == n && !handled.iter().any(|h| h == key) {
                return Err(ctx.conflict(format!(
                    "{key} is an array of {n} entries (= block_count) that {} does not list; it may be \
                     per-layer (and need slicing) or not, so add it to `per_layer` or `not_per_layer`",
                    ctx.file_name()
                )));
            }
        }
    }
    // 10. The depth.
    let bc_key = arch_key(arch, "block_count");
    edits.push((
        bc_key.clone(),
        uint_like(md.get(&bc_key), set.kept.len() as u64),
    ));
    Ok(edits)
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

fn renumber_list(ctx: &Ctx, key: &str, value: &Value) -> Result<Value> {
    let Value::Array(a) = value else {
        return Ok(value.clone());
    };
    let mut out = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        let v = a.int_at(i).ok_or_else(|| {
            Error::Invalid(format!("{key}: entry {i} is not an integer layer index"))
        })?;
        let il = usize::try_from(v)
            .map_err(|_| Error::Invalid(format!("{key}: layer index {v} is negative")))?;
        let Some(j) = ctx.set.new_index(il) else {
            return Err(ctx.conflict(format!(
                "{key} names layer {il}, which would be removed; keep layer {il}"
            )));
        };
        out.push(j as i128);
    }
    int_array_like(a, &out)
        .map(Value::Array)
        .ok_or_else(|| Error::Invalid(format!("{key}: not an integer array")))
}

/// Checks one role; returns the metadata edit that keeps it true, if one is needed.
fn apply_role(ctx: &Ctx, role: &Role) -> Result<Option<(String, Value)>> {
    let md = ctx.md;
    if let Some(t) = &role.requires_positive {
        let on = md
            .get(&ctx.key(t))
            .and_then(Value::to_f64)
            .is_some_and(|v| v > 0.0);
        if !on {
            return Ok(None);
        }
    }
    if let Some(t) = &role.unless_zero {
        if md.get(&ctx.key(t)).and_then(Value::to_f64) == Some(0.0) {
            return Ok(None);
        }
    }
    // A per-layer array already in the file carries the roles: slice it.
    if let Some(t) = &role.array_key {
        let key = ctx.key(t);
        if let Some(Value::Array(a)) = md.get(&key) {
            if a.len() != ctx.n {
                return Err(Error::PerLayerLength {
                    key,
                    expected: ctx.n,
                    got: a.len(),
                });
            }
            return Ok(Some((key, Value::Array(a.select(&ctx.set.kept)))));
        }
    }
    let param_key = role.param_key.as_ref().map(|t| ctx.key(t));
    let orig = match param_key.as_ref().filter(|k| md.contains(k)) {
        Some(k) => md.get_u64(k)?,
        None => match role.default {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let n_main = ctx.n_main as u64;
    let new_main = ctx.kept_main.len() as u64;
    let truth: Vec<bool> = ctx
        .kept_main
        .iter()
        .map(|&il| role.formula.eval(il as u64, orig, n_main))
        .collect();
    let derive = |p: u64| -> Vec<bool> {
        (0..new_main)
            .map(|j| role.formula.eval(j, p, new_main))
            .collect()
    };

    if role.formula == Formula::Trailing && role.keep_before > 0 && orig > 0 {
        let start = n_main.saturating_sub(orig);
        let lo = start.saturating_sub(role.keep_before);
        if let Some(&r) = ctx
            .set
            .removed
            .iter()
            .find(|&&r| (r as u64) >= lo && (r as u64) < start)
        {
            return Err(ctx.conflict(format!(
                "layer {r} is one of the {} layers ({lo}..{}) whose state the {} layers {start}..{} reuse{}; keep layers {lo}..{}",
                role.keep_before,
                start - 1,
                role.name,
                n_main - 1,
                source(role),
                start - 1
            )));
        }
    }
    let same = derive(orig);
    if same == truth {
        return Ok(None);
    }
    // The array llama.cpp reads instead of the formula: write the kept layers' true roles.
    if let Some(t) = &role.array_key {
        let mut roles = truth.clone();
        roles.extend(std::iter::repeat_n(
            false,
            ctx.set.kept.len() - ctx.kept_main.len(),
        ));
        return Ok(Some((ctx.key(t), Value::Array(Array::Bool(roles)))));
    }
    // A new parameter value that reproduces every kept layer's role.
    if let (Some(key), true) = (&param_key, role.adjustable) {
        let hi = new_main + 1;
        if let Some(p) = (0..=hi).find(|&p| p != orig && derive(p) == truth) {
            return Ok(Some((key.clone(), uint_like(md.get(key), p))));
        }
    }
    Err(ctx.conflict(refusal(ctx, role, orig, &truth, &same)))
}

fn source(role: &Role) -> String {
    role.source
        .as_ref()
        .map_or(String::new(), |s| format!(" ({s})"))
}

fn refusal(ctx: &Ctx, role: &Role, param: u64, truth: &[bool], derived: &[bool]) -> String {
    let (j, il) = truth
        .iter()
        .zip(derived)
        .position(|(t, d)| t != d)
        .map(|j| (j, ctx.kept_main[j]))
        .unwrap_or((0, 0));
    let has = |b: bool| if b { "has" } else { "does not have" };
    let how = match (&role.param_key, role.adjustable) {
        (Some(k), true) => format!(
            "no per-layer key carries it and no value of {} expresses the kept layers",
            ctx.key(k)
        ),
        (Some(k), false) => format!(
            "no per-layer key carries it and {} cannot change",
            ctx.key(k)
        ),
        (None, _) => "no key can carry it".to_string(),
    };
    let mut why = format!(
        "{} is derived from the layer index{}: layer {il} {} it, but at its new index {j} llama.cpp would \
         decide it {}; {how}",
        role.name,
        source(role),
        has(truth[j]),
        if derived[j] { "has it" } else { "does not" },
    );
    let hint = match role.formula {
        f if f.is_periodic() && param > 1 => {
            let mut s = format!(
                ". Removals keep this pattern when every run of removed layers is a multiple of {param} long (whole periods)"
            );
            if ctx.suggest {
                let alts = suggestions(ctx, param as usize);
                if !alts.is_empty() {
                    s += &format!(", e.g. remove {} instead", alts.join(" or "));
                }
            }
            s
        }
        Formula::Leading => format!(
            ". Layers 0..{} carry it; remove only layers {param} or later",
            param.saturating_sub(1)
        ),
        Formula::Trailing => format!(
            ". The last {param} main layers carry it; remove only layers below {}",
            (ctx.n_main as u64).saturating_sub(param)
        ),
        _ => String::new(),
    };
    why += &hint;
    why
}

/// Nearby removal sets that complete each run of removed main layers to whole periods, checked.
fn suggestions(ctx: &Ctx, period: usize) -> Vec<String> {
    let runs = ctx.set.runs();
    let mut out = Vec::new();
    for forward in [true, false] {
        let mut set: Vec<usize> = Vec::new();
        let mut ok = true;
        for (a, b) in runs.iter().map(|r| (*r.start(), *r.end())) {
            let len = b - a + 1;
            let need = len.div_ceil(period) * period - len;
            set.extend(a..=b);
            if forward {
                if b + need >= ctx.n_main {
                    ok = false;
                }
                set.extend(b + 1..=b + need);
            } else {
                if need > a {
                    ok = false;
                    continue;
                }
                set.extend(a - need..a);
            }
        }
        set.sort_unstable();
        set.dedup();
        if !ok || set.len() >= ctx.n {
            continue;
        }
        let Ok(candidate) = LayerSet::new(ctx.n, &set) else {
            continue;
        };
        if plan(ctx.md, ctx.tensor_names, &candidate, false).is_ok() {
            let s = format_layers(&set);
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// `v` as the same integer type as `orig` (U32 when there is none or it is not an integer).
fn uint_like(orig: Option<&Value>, v: u64) -> Value {
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
    fn formulas_match_llama_cpp_set_swa_pattern() {
        // set_swa_pattern(6): layers 5, 11, 17 are dense.
        let swa: Vec<bool> = (0..18)
            .map(|il| Formula::NotLastOfPeriod.eval(il, 6, 18))
            .collect();
        let dense: Vec<u64> = (0..18).filter(|&il| !swa[il as usize]).collect();
        assert_eq!(dense, [5, 11, 17]);
        // dense_first: layers 0, 4, 8 are dense.
        let dense: Vec<u64> = (0..10)
            .filter(|&il| !Formula::NotFirstOfPeriod.eval(il, 4, 10))
            .collect();
        assert_eq!(dense, [0, 4, 8]);
        // n_pattern 0 means every layer is SWA; 1 means none.
        assert!((0..8).all(|il| Formula::NotLastOfPeriod.eval(il, 0, 8)));
        assert!((0..8).all(|il| !Formula::NotLastOfPeriod.eval(il, 1, 8)));
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::LastOfPeriod.eval(il, 2, 8))
                .collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::SecondOfPeriod.eval(il, 2, 8))
                .collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::Leading.eval(il, 3, 8))
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            (0..8)
                .filter(|&il| Formula::Trailing.eval(il, 3, 8))
                .collect::<Vec<_>>(),
            [5, 6, 7]
        );
    }

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
