//! Writing GGUF files: header, key-values, tensor infos, then data at aligned offsets.
//!
//! Offsets are derived, never copied: each tensor starts at `align_up(previous end, alignment)`,
//! so changing a tensor's type only changes sizes. Output goes to a temporary file beside the
//! target and is renamed into place only when complete, so an error, a full disk or Ctrl-C leaves
//! nothing at the target path.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::file::{split_path, SPLIT_COUNT_KEY, SPLIT_NO_KEY, SPLIT_TENSORS_COUNT_KEY};
use super::read::{align_up, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
use super::types::GgmlType;
use super::value::{Array, Metadata, Value};
use crate::error::{Error, Result};
use crate::interrupt;

/// Where an output tensor's bytes come from.
pub enum TensorData<'a> {
    /// A byte range of an open source file, streamed with `std::io::copy` (the kernel's
    /// `copy_file_range` on Linux), never held in memory.
    Copy {
        file: &'a File,
        offset: u64,
        len: u64,
    },
    /// Bytes already in memory.
    Bytes(Vec<u8>),
    /// Bytes made when the tensor is written, so that only one such tensor is in memory at once.
    Lazy {
        len: u64,
        make: Box<dyn FnMut() -> Result<Vec<u8>> + 'a>,
    },
}

impl TensorData<'_> {
    pub fn len(&self) -> u64 {
        match self {
            TensorData::Copy { len, .. } | TensorData::Lazy { len, .. } => *len,
            TensorData::Bytes(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor to write.
pub struct OutTensor<'a> {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub data: TensorData<'a>,
}

/// How to write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Replace an existing file at the target path.
    pub overwrite: bool,
    /// Split the output into shards of at most this many tensor bytes each (llama.cpp's
    /// `gguf-split --split-max-size`); shards are named `{stem}-00001-of-0000N.gguf`.
    pub split_max_bytes: Option<u64>,
    /// Paths that must never be written (the inputs).
    pub protect: Vec<PathBuf>,
}

/// Serializes the header: magic, version, counts, key-values and tensor infos, padded to the
/// alignment. `offsets[i]` is tensor i's offset in the data section.
pub fn header_bytes(
    version: u32,
    metadata: &Metadata,
    tensors: &[&OutTensor],
    offsets: &[u64],
    alignment: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata.iter() {
        put_string(&mut out, key.as_bytes());
        out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        put_value(&mut out, value);
    }
    for (t, &offset) in tensors.iter().zip(offsets) {
        put_string(&mut out, t.name.as_bytes());
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.to_u32().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.resize(align_up(out.len() as u64, alignment) as usize, 0);
    out
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.push(*v as u8),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(*v as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, array: &Array) {
    out.extend_from_slice(&(array.elem_type() as u32).to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match array {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}

/// The alignment a metadata list asks for (`general.alignment`, default 32).
pub fn alignment_of(metadata: &Metadata) -> u64 {
    match metadata.get(ALIGNMENT_KEY) {
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
        _ => DEFAULT_ALIGNMENT,
    }
}

/// One output file: its final path, its temporary path, and the tensors it holds.
struct Shard {
    target: PathBuf,
    temp: PathBuf,
    first: usize,
    end: usize,
}

/// Files written to temporary paths, not yet in place. Dropping it removes them; [`commit`]
/// renames them to their targets.
///
/// [`commit`]: Pending::commit
#[must_use = "the output is only put in place by commit()"]
pub struct Pending {
    temps: Vec<PathBuf>,
    targets: Vec<PathBuf>,
    committed: bool,
}

impl Pending {
    /// The temporary paths, first shard first (open them to verify before committing).
    pub fn temp_paths(&self) -> &[PathBuf] {
        &self.temps
    }

    /// The final paths.
    pub fn targets(&self) -> &[PathBuf] {
        &self.targets
    }

    /// Renames every temporary file to its target.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        for (temp, target) in self.temps.iter().zip(&self.targets) {
            std::fs::rename(temp, target).map_err(io_err(target))?;
            interrupt::forget_temp(temp);
        }
        self.committed = true;
        Ok(std::mem::take(&mut self.targets))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            for p in &self.temps {
                let _ = std::fs::remove_file(p);
                interrupt::forget_temp(p);
            }
        }
    }
}

/// A temporary name beside `target`. For shards the shard suffix stays last, so the first
/// temporary shard opens as a split model.
fn temp_name(target: &Path, shard: Option<(&Path, u64, u64)>) -> PathBuf {
    let tag = format!(".tmp-gguf-prune-{}", std::process::id());
    match shard {
        None => {
            let mut name = target.as_os_str().to_os_string();
            name.push(tag);
            PathBuf::from(name)
        }
        Some((prefix, i, n)) => {
            let mut p = prefix.as_os_str().to_os_string();
            p.push(tag);
            split_path(Path::new(&p), i, n)
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a model to temporary files beside `target` (one, or shards named after it) and
/// returns them pending: verify them, then [`Pending::commit`].
///
/// `progress` is called with (bytes written, bytes total) as data goes out.
pub fn write_model(
    target: &Path,
    version: u32,
    metadata: &Metadata,
    mut tensors: Vec<OutTensor>,
    options: &WriteOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Pending> {
    let alignment = alignment_of(metadata);
    let padded: Vec<u64> = tensors
        .iter()
        .map(|t| align_up(t.data.len(), alignment))
        .collect();

    // Plan the shards: a new one starts when the next tensor would pass the size limit.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    match options.split_max_bytes {
        None => ranges.push((0, tensors.len())),
        Some(max) => {
            let (mut start, mut size) = (0usize, 0u64);
            for (i, &p) in padded.iter().enumerate() {
                if i > start && size + p > max {
                    ranges.push((start, i));
                    (start, size) = (i, 0);
                }
                size += p;
            }
            ranges.push((start, tensors.len()));
        }
    }
    let n_shards = ranges.len() as u64;
    let shards: Vec<Shard> = if options.split_max_bytes.is_none() {
        vec![Shard {
            target: target.to_path_buf(),
            temp: temp_name(target, None),
            first: 0,
            end: tensors.len(),
        }]
    } else {
        let text = target.to_string_lossy();
        let prefix = PathBuf::from(text.strip_suffix(".gguf").unwrap_or(&text).to_string());
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(first, end))| Shard {
                target: split_path(&prefix, i as u64, n_shards),
                temp: temp_name(target, Some((&prefix, i as u64, n_shards))),
                first,
                end,
            })
            .collect()
    };

    for shard in &shards {
        check_target(&shard.target, options)?;
    }

    let total: u64 = padded.iter().sum();
    let mut done = 0u64;
    let mut pending = Pending {
        temps: Vec::new(),
        targets: Vec::new(),
        committed: false,
    };
    for (i, shard) in shards.iter().enumerate() {
        let mut meta = if i == 0 {
            metadata.clone()
        } else {
            Metadata::new()
        };
        for key in [SPLIT_NO_KEY, SPLIT_COUNT_KEY, SPLIT_TENSORS_COUNT_KEY] {
            meta.remove(key);
        }
        if options.split_max_bytes.is_some() {
            if i > 0 && alignment != DEFAULT_ALIGNMENT {
                meta.set(ALIGNMENT_KEY, Value::U32(alignment as u32));
            }
            // llama-gguf-split's order (it sets split.count last), so a split matches its
            // output byte for byte.
            meta.set(SPLIT_NO_KEY, Value::U16(i as u16));
            meta.set(SPLIT_TENSORS_COUNT_KEY, Value::I32(tensors.len() as i32));
            meta.set(SPLIT_COUNT_KEY, Value::U16(n_shards as u16));
        }
        pending.temps.push(shard.temp.clone());
        pending.targets.push(shard.target.clone());
        interrupt::register_temp(&shard.temp);
        let shard_tensors = &mut tensors[shard.first..shard.end];
        write_one(
            &shard.temp,
            version,
            &meta,
            shard_tensors,
            alignment,
            &mut |n| {
                done += n;
                progress(done, total)
            },
        )?;
    }
    Ok(pending)
}

fn check_target(target: &Path, options: &WriteOptions) -> Result<()> {
    let canonical_target = canonical_or_self(target);
    for input in &options.protect {
        if canonical_or_self(input) == canonical_target {
            return Err(Error::OutputIsInput {
                path: target.to_path_buf(),
            });
        }
    }
    if target.exists() && !options.overwrite {
        return Err(Error::OutputExists {
            path: target.to_path_buf(),
        });
    }
    Ok(())
}

/// The canonical path, or for a file that does not exist yet, its canonical folder joined
/// with its name.
fn canonical_or_self(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.canonicalize()
                .map(|d| d.join(name))
                .unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// How much is copied between checks for Ctrl-C.
const COPY_CHUNK: u64 = 64 << 20;

fn write_one(
    path: &Path,
    version: u32,
    metadata: &Metadata,
    tensors: &mut [OutTensor],
    alignment: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let err = io_err(path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut next = 0u64;
    for t in tensors.iter() {
        offsets.push(next);
        next = align_up(next + t.data.len(), alignment);
    }
    let refs: Vec<&OutTensor> = tensors.iter().collect();
    let header = header_bytes(version, metadata, &refs, &offsets, alignment);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header).map_err(io_err(path))?;
    let mut file = out.into_inner().map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    let zeros = [0u8; 4096];
    for t in tensors.iter_mut() {
        interrupt::check()?;
        let len = t.data.len();
        match &mut t.data {
            TensorData::Copy {
                file: src,
                offset,
                len,
            } => {
                let mut src: &File = src;
                src.seek(SeekFrom::Start(*offset)).map_err(io_err(path))?;
                let mut left = *len;
                while left > 0 {
                    interrupt::check()?;
                    let step = left.min(COPY_CHUNK);
                    let copied = io::copy(&mut Read::by_ref(&mut src).take(step), &mut file)
                        .map_err(io_err(path))?;
                    if copied != step {
                        return Err(Error::Io {
                            path: path.to_path_buf(),
                            source: io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("source ended {} bytes early", step - copied),
                            ),
                        });
                    }
                    left -= step;
                    progress(step);
                }
            }
            TensorData::Bytes(bytes) => {
                file.write_all(bytes).map_err(io_err(path))?;
                progress(len);
            }
            TensorData::Lazy { len: want, make } => {
                let bytes = make()?;
                if bytes.len() as u64 != *want {
                    return Err(Error::Invalid(format!(
                        "tensor {:?}: made {} bytes, expected {want}",
                        t.name,
                        bytes.len()
                    )));
                }
                file.write_all(&bytes).map_err(io_err(path))?;
                progress(len);
            }
        }
        let mut pad = align_up(len, alignment) - len;
        progress(pad);
        while pad > 0 {
            let step = pad.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..step]).map_err(io_err(path))?;
            pad -= step as u64;
        }
    }
    file.flush().map_err(err)?;
    Ok(())
}
