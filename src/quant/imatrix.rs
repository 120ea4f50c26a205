//! Importance matrices: llama-imatrix's files, read and written in both formats.
//!
//! - GGUF (what llama-imatrix writes by default): per weight `NAME.in_sum2` (F32, ne = [n_cols,
//!   n_mat]: sums of squared activations) and `NAME.counts` (F32, ne = [1, n_mat]: how many
//!   activation rows were summed), plus `imatrix.datasets`, `imatrix.chunk_count`,
//!   `imatrix.chunk_size`. Names are sorted.
//! - Legacy `.dat`: i32 entry count; per entry i32 name length, name, i32 ncall, i32 nval, nval
//!   f32 holding mean*ncall; then optionally i32 chunk count, i32 length and the dataset name.
//!
//! The value the quantizer uses is what llama-quantize's `load_imatrix` computes: the per-column
//! mean of squared activations, `in_sum2 / count` (1 where the count is 0), or for `.dat`
//! `value / ncall`, all in f32, so importance-steered blocks come out byte-identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::gguf::{self, Array, GgmlType, Metadata, OutTensor, TensorData, Value, WriteOptions};
use crate::output::{OutputRule, Pending};

pub const KEY_DATASETS: &str = "imatrix.datasets";
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";
const SUFFIX_SUMS: &str = ".in_sum2";
const SUFFIX_COUNTS: &str = ".counts";

/// One weight's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixEntry {
    /// GGUF: sums of squared activations, `n_cols * n_mat` values. Legacy: mean * ncall.
    pub sums: Vec<f32>,
    /// GGUF: activation rows summed, per matrix (expert). Legacy: `[ncall]`.
    pub counts: Vec<i64>,
}

/// An importance matrix: statistics per weight name, and where they came from.
#[derive(Debug, Clone, Default)]
pub struct ImatrixData {
    pub entries: BTreeMap<String, ImatrixEntry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
    /// Read from a legacy `.dat` file (whose sums are means times ncall).
    pub legacy: bool,
    means: BTreeMap<String, Vec<f32>>,
}

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::Imatrix {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// llama-quantize's normalisation of one entry.
fn mean_of(e: &ImatrixEntry, legacy: bool) -> Vec<f32> {
    if legacy {
        let ncall = e.counts.first().copied().unwrap_or(0);
        return if ncall > 0 {
            e.sums.iter().map(|&s| s / ncall as f32).collect()
        } else {
            e.sums.clone()
        };
    }
    let n_mat = e.counts.len().max(1);
    let ne0 = e.sums.len() / n_mat;
    let mut out = vec![0f32; e.sums.len()];
    for (j, &c) in e.counts.iter().enumerate() {
        let count = c as f32;
        for i in 0..ne0 {
            out[j * ne0 + i] = if count > 0.0 {
                e.sums[j * ne0 + i] / count
            } else {
                1.0
            };
        }
    }
    out
}

impl ImatrixData {
    /// Builds an importance matrix from raw statistics (e.g. collected by a forward pass).
    pub fn new(
        entries: BTreeMap<String, ImatrixEntry>,
        datasets: Vec<String>,
        chunk_count: u32,
        chunk_size: u32,
    ) -> ImatrixData {
        let mut d = ImatrixData {
            entries,
            datasets,
            chunk_count,
            chunk_size,
            legacy: false,
            means: BTreeMap::new(),
        };
        d.refresh();
        d
    }

    fn refresh(&mut self) {
        self.means = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), mean_of(e, self.legacy)))
            .collect();
    }

    /// The per-column importance of a weight (mean of squared inputs), as llama-quantize uses it.
    pub fn get(&self, tensor_name: &str) -> Option<&[f32]> {
        self.means.get(tensor_name).map(|v| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads either format: GGUF if the file starts with the GGUF magic, else legacy `.dat`.
    /// Any size; a file given for a model is read with [`ImatrixData::read_for`].
    pub fn read(path: impl AsRef<Path>) -> Result<ImatrixData> {
        Self::read_bounded(path.as_ref(), u64::MAX)
    }

    /// [`ImatrixData::read`] of a matrix for `model`: a file larger than the model's weights
    /// justify ([`crate::limits::imatrix_bytes`]) is refused before it is read.
    pub fn read_for(path: impl AsRef<Path>, model: &crate::gguf::Model) -> Result<ImatrixData> {
        Self::read_bounded(path.as_ref(), crate::limits::imatrix_bytes(model))
    }

    fn read_bounded(path: &Path, limit: u64) -> Result<ImatrixData> {
        let bytes =
            crate::limits::read_bounded(path, limit, "an importance matrix for this model")?;
        if bytes.starts_with(gguf::read::MAGIC) {
            Self::parse_gguf(path, &bytes)
        } else {
            Self::parse_dat(path, &bytes).map_err(|e| match e {
                Error::Imatrix { path, what } => Error::Imatrix {
                    path,
                    what: format!("not GGUF, and not a legacy .dat imatrix either ({what})"),
                },
                e => e,
            })
        }
    }

    /// Parses the GGUF format from `bytes`, the whole file (read once, by the caller).
    fn parse_gguf(path: &Path, bytes: &[u8]) -> Result<ImatrixData> {
        let content = gguf::file::parse_in(path, bytes)?;
        let meta = &content.metadata;
        let datasets = match meta.get(KEY_DATASETS) {
            Some(Value::Array(Array::String(v))) => v
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            _ => Vec::new(),
        };
        let u32_of = |k: &str| meta.get(k).and_then(|v| v.to_u64()).unwrap_or(0) as u32;
        let mut sums: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for info in &content.tensors {
            let f32s = || -> Result<Vec<f32>> {
                if info.ggml_type != GgmlType::F32 {
                    return Err(bad(
                        path,
                        format!("tensor {:?} is {}, expected F32", info.name, info.ggml_type),
                    ));
                }
                Ok(gguf::file::tensor_bytes(bytes, &content, info)
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            };
            if let Some(name) = info.name.strip_suffix(SUFFIX_SUMS) {
                sums.insert(name.to_string(), f32s()?);
            } else if let Some(name) = info.name.strip_suffix(SUFFIX_COUNTS) {
                counts.insert(
                    name.to_string(),
                    f32s()?.iter().map(|&c| c.round() as i64).collect(),
                );
            }
        }
        if sums.is_empty() {
            return Err(bad(path, "no *.in_sum2 tensors"));
        }
        let mut entries = BTreeMap::new();
        for (name, s) in sums {
            let c = counts
                .remove(&name)
                .ok_or_else(|| bad(path, format!("{name:?} has sums but no counts")))?;
            if c.is_empty() || s.len() % c.len() != 0 {
                return Err(bad(
                    path,
                    format!(
                        "{name:?}: {} sums do not split into {} matrices",
                        s.len(),
                        c.len()
                    ),
                ));
            }
            entries.insert(name, ImatrixEntry { sums: s, counts: c });
        }
        if let Some(name) = counts.keys().next() {
            return Err(bad(path, format!("{name:?} has counts but no sums")));
        }
        Ok(ImatrixData::new(
            entries,
            datasets,
            u32_of(KEY_CHUNK_COUNT),
            u32_of(KEY_CHUNK_SIZE),
        ))
    }

    fn parse_dat(path: &Path, b: &[u8]) -> Result<ImatrixData> {
        let mut pos = 0usize;
        let i32_at = |pos: &mut usize| -> Result<i32> {
            let s = b
                .get(*pos..*pos + 4)
                .ok_or_else(|| bad(path, format!("truncated at byte {pos}")))?;
            *pos += 4;
            Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let n = i32_at(&mut pos)?;
        if n < 1 {
            return Err(bad(path, format!("entry count {n}: not an imatrix file")));
        }
        let mut entries = BTreeMap::new();
        for k in 0..n {
            let len = i32_at(&mut pos)?;
            if len < 0 || pos + len as usize > b.len() {
                return Err(bad(
                    path,
                    format!("entry {k}: name length {len} at byte {pos}"),
                ));
            }
            let name = String::from_utf8_lossy(&b[pos..pos + len as usize]).into_owned();
            pos += len as usize;
            let ncall = i32_at(&mut pos)?;
            let nval = i32_at(&mut pos)?;
            if nval < 1 || pos + 4 * nval as usize > b.len() {
                return Err(bad(
                    path,
                    format!("entry {name:?}: {nval} values at byte {pos}"),
                ));
            }
            let sums = b[pos..pos + 4 * nval as usize]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            pos += 4 * nval as usize;
            entries.insert(
                name,
                ImatrixEntry {
                    sums,
                    counts: vec![ncall as i64],
                },
            );
        }
        let mut chunk_count = 0;
        let mut datasets = Vec::new();
        if pos + 4 <= b.len() {
            chunk_count = i32_at(&mut pos)?.max(0) as u32;
            if pos + 4 <= b.len() {
                let len = i32_at(&mut pos)?;
                if len > 0 && pos + len as usize <= b.len() {
                    datasets
                        .push(String::from_utf8_lossy(&b[pos..pos + len as usize]).into_owned());
                }
            }
        }
        let mut d = ImatrixData {
            entries,
            datasets,
            chunk_count,
            chunk_size: 0,
            legacy: true,
            means: BTreeMap::new(),
        };
        d.refresh();
        Ok(d)
    }

    /// Writes the GGUF format llama-imatrix writes (and llama-quantize reads), under `rule`.
    pub fn write_gguf(&self, path: impl AsRef<Path>, rule: &OutputRule) -> Result<()> {
        self.stage_gguf(path.as_ref(), rule)?.commit()?;
        Ok(())
    }

    /// Writes the GGUF format to a temporary file beside `path`, to be put in place later (by
    /// [`Pending::commit`]) with other output of the same run, or removed if that fails.
    pub fn stage_gguf(&self, path: &Path, rule: &OutputRule) -> Result<Pending> {
        let mut meta = Metadata::new();
        meta.set("general.type", Value::String(b"imatrix".to_vec()));
        meta.set(
            KEY_DATASETS,
            Value::Array(Array::String(
                self.datasets
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
            )),
        );
        meta.set(KEY_CHUNK_COUNT, Value::U32(self.chunk_count));
        meta.set(KEY_CHUNK_SIZE, Value::U32(self.chunk_size));
        let mut tensors = Vec::new();
        for (name, e) in &self.entries {
            let n_mat = e.counts.len().max(1) as u64;
            let le = |v: &mut dyn Iterator<Item = f32>| -> Vec<u8> {
                v.flat_map(|x| x.to_le_bytes()).collect()
            };
            tensors.push(OutTensor {
                name: format!("{name}{SUFFIX_SUMS}"),
                dims: vec![e.sums.len() as u64 / n_mat, n_mat],
                ggml_type: GgmlType::F32,
                data: TensorData::Bytes(le(&mut e.sums.iter().copied())),
            });
            tensors.push(OutTensor {
                name: format!("{name}{SUFFIX_COUNTS}"),
                dims: vec![1, n_mat],
                ggml_type: GgmlType::F32,
                data: TensorData::Bytes(le(&mut e.counts.iter().map(|&c| c as f32))),
            });
        }
        let options = WriteOptions {
            output: rule.clone(),
            ..Default::default()
        };
        gguf::write_model(path, 3, &meta, tensors, &options, &mut |_, _| {})
    }

    /// Writes the legacy `.dat` format (`llama-imatrix --output-format dat`), under `rule`.
    pub fn write_dat(&self, path: impl AsRef<Path>, rule: &OutputRule) -> Result<()> {
        let path = path.as_ref();
        let mut out = Vec::new();
        out.extend_from_slice(&(self.entries.len() as i32).to_le_bytes());
        let chunk = self.chunk_size.max(1) as i64;
        for (name, e) in &self.entries {
            out.extend_from_slice(&(name.len() as i32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            let (ncall, values): (i32, Vec<f32>) = if self.legacy {
                (
                    e.counts.first().copied().unwrap_or(0) as i32,
                    e.sums.clone(),
                )
            } else {
                // as llama-imatrix: ncall rounds the largest count up to whole chunks
                let max = e.counts.iter().copied().max().unwrap_or(0);
                let ncall = ((max + chunk - 1) / chunk) as i32;
                let n_mat = e.counts.len().max(1);
                let per = e.sums.len() / n_mat;
                let vals = e
                    .sums
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let mut count = e.counts[i / per] as f32;
                        let mut value = v;
                        if count == 0.0 {
                            value = 1.0;
                            count = 1.0;
                        }
                        (value / count) * ncall as f32
                    })
                    .collect();
                (ncall, vals)
            };
            out.extend_from_slice(&ncall.to_le_bytes());
            out.extend_from_slice(&(values.len() as i32).to_le_bytes());
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.chunk_count as i32).to_le_bytes());
        let ds = self.datasets.last().map(|s| s.as_bytes()).unwrap_or(b"");
        out.extend_from_slice(&(ds.len() as i32).to_le_bytes());
        out.extend_from_slice(ds);
        let pending = Pending::create(path, rule)?;
        std::io::Write::write_all(&mut pending.file(0), &out).map_err(|source| Error::Io {
            path: PathBuf::from(path),
            source,
        })?;
        pending.commit()?;
        Ok(())
    }

    /// Renames entries: `rename(name)` gives the new name, or None to drop the entry.
    pub fn renamed(&self, mut rename: impl FnMut(&str) -> Option<String>) -> ImatrixData {
        let entries = self
            .entries
            .iter()
            .filter_map(|(k, e)| rename(k).map(|n| (n, e.clone())))
            .collect();
        let mut d = ImatrixData {
            entries,
            means: BTreeMap::new(),
            ..self.clone()
        };
        d.refresh();
        d
    }

    /// The matrix for a model with layers `removed` deleted: entries of removed layers are
    /// dropped and `blk.N.` is renumbered to the kept layers' new indices.
    pub fn after_layer_removal(&self, removed: &[usize]) -> ImatrixData {
        self.renamed(|name| renumber_layer(name, removed))
    }
}

/// `blk.N.rest` renumbered after `removed` layers are deleted, or None if N was removed.
/// Names outside layers are unchanged.
pub fn renumber_layer(name: &str, removed: &[usize]) -> Option<String> {
    let Some(layer) = crate::blocks::block_index(name) else {
        return Some(name.to_string());
    };
    if removed.contains(&layer) {
        return None;
    }
    let new = layer - removed.iter().filter(|&&r| r < layer).count();
    crate::blocks::with_block_index(name, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImatrixData {
        let mut e = BTreeMap::new();
        for l in 0..4 {
            e.insert(
                format!("blk.{l}.ffn_down.weight"),
                ImatrixEntry {
                    sums: vec![2.0 * (l + 1) as f32, 4.0, 0.0, 8.0],
                    counts: vec![2],
                },
            );
        }
        e.insert(
            "output.weight".into(),
            ImatrixEntry {
                sums: vec![1.0, 2.0, 3.0, 4.0],
                counts: vec![2, 0],
            },
        );
        ImatrixData::new(e, vec!["wiki.valid.raw".into()], 3, 512)
    }

    #[test]
    fn means_follow_llama_quantize() {
        let d = sample();
        assert_eq!(
            d.get("blk.1.ffn_down.weight").unwrap(),
            &[2.0, 2.0, 0.0, 4.0]
        );
        // a matrix with count 0 gets importance 1
        assert_eq!(d.get("output.weight").unwrap(), &[0.5, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn gguf_and_dat_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = sample();
        let g = dir.path().join("m.gguf");
        d.write_gguf(&g, &OutputRule::default()).unwrap();
        let back = ImatrixData::read(&g).unwrap();
        assert_eq!(back.entries, d.entries);
        assert_eq!((back.chunk_count, back.chunk_size), (3, 512));
        assert_eq!(back.datasets, d.datasets);
        let dat = dir.path().join("m.dat");
        d.write_dat(&dat, &OutputRule::default()).unwrap();
        let back = ImatrixData::read(&dat).unwrap();
        assert!(back.legacy);
        assert_eq!(
            back.get("blk.3.ffn_down.weight"),
            d.get("blk.3.ffn_down.weight")
        );
    }

    #[test]
    fn layer_removal_renumbers_and_drops() {
        assert_eq!(
            renumber_layer("blk.3.attn_v.weight", &[1, 2]).as_deref(),
            Some("blk.1.attn_v.weight")
        );
        assert_eq!(renumber_layer("blk.2.attn_v.weight", &[1, 2]), None);
        assert_eq!(renumber_layer("blk.0.x", &[1]).as_deref(), Some("blk.0.x"));
        assert_eq!(
            renumber_layer("output.weight", &[0]).as_deref(),
            Some("output.weight")
        );
        let d = sample().after_layer_removal(&[1]);
        assert_eq!(d.len(), 4);
        assert_eq!(d.get("blk.1.ffn_down.weight").unwrap()[0], 3.0);
        assert!(d.get("blk.3.ffn_down.weight").is_none());
    }
}
