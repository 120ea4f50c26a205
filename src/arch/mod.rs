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
//!
//! [`plan`] here runs the rules in that order and holds rules 1 to 4 and 10; `keys.rs` has the
//! rules about keys (5, 6, 8, 9) and `roles.rs` the position-derived roles (7). `format.rs` loads
//! the tables, `forward.rs` the forward recipe, `names.rs` the tensor names.

pub mod format;
pub mod forward;
mod keys;
pub mod names;
mod roles;

pub use forward::{ForwardSpec, RopeStyle};

use crate::blocks::{block_count, LayerSet};
use crate::error::{Error, Result};
use crate::gguf::{arch_key, Metadata, Value};
use format::{Formats, Layers};

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

impl<'a> Ctx<'a> {
    /// Reads the depth and the number of multi-token-prediction heads (rule 1).
    fn new(
        md: &'a Metadata,
        formats: &'a Formats,
        tensor_names: &'a [&'a str],
        set: &'a LayerSet,
        suggest: bool,
    ) -> Result<Ctx<'a>> {
        let arch = md.architecture()?;
        let n = block_count(md)?;
        set.check_block_count(n)?;
        let nextn_key = nextn_key(arch);
        let nextn = match md.get(&nextn_key) {
            Some(_) => md.get_u64(&nextn_key)? as usize,
            None => 0,
        };
        if nextn > n {
            return Err(Error::NextnPastCount {
                key: nextn_key,
                nextn,
                block_count: n,
            });
        }
        let n_main = n - nextn;
        Ok(Ctx {
            md,
            arch,
            table: formats.find(arch).map(|f| &f.layers),
            n,
            n_main,
            set,
            kept_main: set.kept.iter().copied().filter(|&k| k < n_main).collect(),
            suggest,
            tensor_names,
        })
    }

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

/// The key of the number of multi-token-prediction heads at the end of the stack.
fn nextn_key(arch: &str) -> String {
    arch_key(arch, "nextn_predict_layers")
}

/// What the rules found so far: the metadata edits, in order, and the keys some rule reads.
struct Plan {
    edits: Vec<(String, Value)>,
    /// Keys some rule reads (an unlisted array of `block_count` entries is refused).
    handled: Vec<String>,
    /// The subset read by position rules (an unread `position_keys` scalar is refused).
    positional: Vec<String>,
}

impl Plan {
    fn edit(&mut self, key: String, value: Value) {
        self.edits.push((key, value));
    }

    /// `key` is read by a rule about layer positions.
    fn read_positional(&mut self, key: String) {
        self.positional.push(key.clone());
        self.handled.push(key);
    }
}

/// Checks `set` and returns the metadata edits, in order: the rules of the module
/// documentation, one function each.
fn plan(
    md: &Metadata,
    tensor_names: &[&str],
    set: &LayerSet,
    suggest: bool,
) -> Result<Vec<(String, Value)>> {
    let formats = format::formats()?;
    let ctx = Ctx::new(md, formats, tensor_names, set, suggest)?;
    check_heads(&ctx)?;
    check_global_tensors(&ctx)?;
    check_depth(&ctx)?;
    let mut plan = Plan {
        edits: Vec::new(),
        handled: vec![nextn_key(ctx.arch)],
        positional: Vec::new(),
    };
    keys::slice_per_layer(&ctx, &mut plan)?;
    keys::slice_inputs(&ctx, &mut plan)?;
    keys::renumber_lists(&ctx, &mut plan)?;
    roles::apply_roles(&ctx, &mut plan)?;
    keys::pin_defaults(&ctx, &mut plan);
    keys::check_unknown(&ctx, &formats.generic, &plan)?;
    // 10. The depth.
    let bc_key = arch_key(ctx.arch, "block_count");
    let depth = keys::uint_like(md.get(&bc_key), set.kept.len() as u64);
    plan.edit(bc_key, depth);
    Ok(plan.edits)
}

/// Rule 2, MTP heads: only main layers may go, and at least one of them stays.
fn check_heads(ctx: &Ctx) -> Result<()> {
    let (n, n_main) = (ctx.n, ctx.n_main);
    if let Some(&r) = ctx.set.removed.iter().find(|&&r| r >= n_main) {
        return Err(ctx.conflict(format!(
            "layer {r} is a multi-token-prediction head ({} = {}: layers {n_main}..{}); \
             remove only main layers, below {n_main}",
            nextn_key(ctx.arch),
            n - n_main,
            n - 1
        )));
    }
    if ctx.kept_main.is_empty() {
        return Err(Error::Layers(format!(
            "every main layer (0..{n_main}) would be removed"
        )));
    }
    Ok(())
}

/// Rule 3, global tensors packing per-layer data: no layer set can be removed.
fn check_global_tensors(ctx: &Ctx) -> Result<()> {
    for table in ctx.tables() {
        for name in &table.global_tensors {
            if let Some(t) = ctx.tensor_names.iter().find(|t| **t == name.as_str()) {
                return Err(ctx.conflict(format!(
                    "tensor {t} packs data for all {} layers in one global tensor; removing layers \
                     would need it sliced, which is not supported (no layer set can be removed)",
                    ctx.n
                )));
            }
        }
    }
    Ok(())
}

/// Rule 4, depth-detected behaviour: neither the original nor the new depth may be one
/// llama.cpp detects.
fn check_depth(ctx: &Ctx) -> Result<()> {
    let n_main = ctx.n_main;
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
    Ok(())
}
