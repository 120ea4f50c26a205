//! Position-derived roles (rule 7 of the module documentation): sliding window, recurrent,
//! no-RoPE, MoE interleave, dense lead, shared KV. A kept layer's true role comes from its
//! original index; llama.cpp derives one from its new index. Where they differ, the per-layer
//! array is written, or a new parameter value that reproduces every role, or the removal is
//! refused with the reason and nearby removals that would keep the pattern.

use super::format::{Formula, Role};
use super::keys::{check_len, uint_like};
use super::{plan, Ctx, Plan};
use crate::blocks::{format_layers, LayerSet};
use crate::error::Result;
use crate::gguf::{Array, Value};

/// Every role of every table, in order: its keys are read by a position rule, and its edit (if
/// it needs one) is added to `plan`.
pub(super) fn apply_roles(ctx: &Ctx, plan: &mut Plan) -> Result<()> {
    for table in ctx.tables() {
        for role in &table.roles {
            for key in role.param_key.iter().chain(&role.array_key) {
                plan.read_positional(ctx.key(key));
            }
            if let Some((key, value)) = apply_role(ctx, role)? {
                plan.edit(key, value);
            }
        }
    }
    Ok(())
}

/// Checks one role; returns the metadata edit that keeps it true, if one is needed.
fn apply_role(ctx: &Ctx, role: &Role) -> Result<Option<(String, Value)>> {
    if !is_on(ctx, role) {
        return Ok(None);
    }
    if let Some(edit) = sliced_array(ctx, role)? {
        return Ok(Some(edit));
    }
    let param_key = role.param_key.as_ref().map(|t| ctx.key(t));
    let orig = match param_key.as_ref().filter(|k| ctx.md.contains(k)) {
        Some(k) => ctx.md.get_u64(k)?,
        None => match role.default {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let new_main = ctx.kept_main.len() as u64;
    let truth: Vec<bool> = ctx
        .kept_main
        .iter()
        .map(|&il| role.formula.eval(il as u64, orig, ctx.n_main as u64))
        .collect();
    let derive = |p: u64| -> Vec<bool> {
        (0..new_main)
            .map(|j| role.formula.eval(j, p, new_main))
            .collect()
    };
    check_reused_before(ctx, role, orig)?;
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
            return Ok(Some((key.clone(), uint_like(ctx.md.get(key), p))));
        }
    }
    Err(ctx.conflict(refusal(ctx, role, orig, &truth, &same)))
}

/// Whether the role applies to this model: its `requires_positive` key is positive and its
/// `unless_zero` key is not zero (when the role names them).
fn is_on(ctx: &Ctx, role: &Role) -> bool {
    let value = |t: &String| ctx.md.get(&ctx.key(t)).and_then(Value::to_f64);
    if let Some(t) = &role.requires_positive {
        if !value(t).is_some_and(|v| v > 0.0) {
            return false;
        }
    }
    if let Some(t) = &role.unless_zero {
        if value(t) == Some(0.0) {
            return false;
        }
    }
    true
}

/// A per-layer array already in the file carries the roles: it is sliced to the kept layers.
fn sliced_array(ctx: &Ctx, role: &Role) -> Result<Option<(String, Value)>> {
    if let Some(t) = &role.array_key {
        let key = ctx.key(t);
        if let Some(Value::Array(a)) = ctx.md.get(&key) {
            check_len(&key, a, ctx.n)?;
            return Ok(Some((key, Value::Array(a.select(&ctx.set.kept)))));
        }
    }
    Ok(None)
}

/// For a trailing role whose layers reuse the state of the `keep_before` layers before them,
/// those layers stay.
fn check_reused_before(ctx: &Ctx, role: &Role, orig: u64) -> Result<()> {
    if !(role.formula == Formula::Trailing && role.keep_before > 0 && orig > 0) {
        return Ok(());
    }
    let n_main = ctx.n_main as u64;
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
    Ok(())
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
