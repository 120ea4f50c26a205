//! Writing GGUF files: header, key-values, tensor infos, then data at aligned offsets.
//!
//! Offsets are derived, never copied: each tensor starts at `align_up(previous end, alignment)`,
//! so changing a tensor's type only changes sizes. Output goes through [`crate::output`]: a
//! temporary file beside the target, renamed into place only when complete, so an error, a full
//! disk or a signal leaves nothing at the target path.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::file::{split_path, SPLIT_COUNT_KEY, SPLIT_NO_KEY, SPLIT_TENSORS_COUNT_KEY};
use super::read::{align_up, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
use super::types::GgmlType;
use super::value::{Array, Metadata, Value};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::output::{OutputRule, Pending};

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
    /// Which files may be written over (never an input; an existing file only with `force`).
    pub output: OutputRule,
    /// Split the output into shards of at most this many tensor bytes each (llama.cpp's
    /// `gguf-split --split-max-size`); shards are named `{stem}-00001-of-0000N.gguf`.
    pub split_max_bytes: Option<u64>,
    /// After writing, skip comparing copied tensors byte for byte with their sources (the
    /// structure is still checked). Read by [`crate::jobs`]; the writer itself ignores it.
    pub skip_byte_comparison: bool,
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
    write_header(&mut out, version, metadata, tensors, offsets, alignment)
        .expect("writing to a Vec cannot fail");
    out
}

/// Streams the header to `w` (as [`header_bytes`] lays it out) and returns its length. A
/// 262,144-token vocabulary makes a header of several MiB: streamed, it is never held whole.
pub fn write_header<W: Write>(
    w: &mut W,
    version: u32,
    metadata: &Metadata,
    tensors: &[&OutTensor],
    offsets: &[u64],
    alignment: u64,
) -> io::Result<u64> {
    let mut out = Counted { inner: w, n: 0 };
    out.write_all(MAGIC)?;
    out.write_all(&version.to_le_bytes())?;
    out.write_all(&(tensors.len() as u64).to_le_bytes())?;
    out.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata.iter() {
        put_string(&mut out, key.as_bytes())?;
        out.write_all(&(value.value_type() as u32).to_le_bytes())?;
        put_value(&mut out, value)?;
    }
    for (t, &offset) in tensors.iter().zip(offsets) {
        put_string(&mut out, t.name.as_bytes())?;
        out.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            out.write_all(&d.to_le_bytes())?;
        }
        out.write_all(&t.ggml_type.to_u32().to_le_bytes())?;
        out.write_all(&offset.to_le_bytes())?;
    }
    let mut pad = align_up(out.n, alignment) - out.n;
    while pad > 0 {
        let step = pad.min(64);
        out.write_all(&[0u8; 64][..step as usize])?;
        pad -= step;
    }
    Ok(out.n)
}

/// A writer that counts the bytes through it.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_string(out: &mut impl Write, s: &[u8]) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s)
}

fn put_value(out: &mut impl Write, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => out.write_all(&[*v]),
        Value::I8(v) => out.write_all(&[*v as u8]),
        Value::U16(v) => out.write_all(&v.to_le_bytes()),
        Value::I16(v) => out.write_all(&v.to_le_bytes()),
        Value::U32(v) => out.write_all(&v.to_le_bytes()),
        Value::I32(v) => out.write_all(&v.to_le_bytes()),
        Value::F32(v) => out.write_all(&v.to_le_bytes()),
        Value::U64(v) => out.write_all(&v.to_le_bytes()),
        Value::I64(v) => out.write_all(&v.to_le_bytes()),
        Value::F64(v) => out.write_all(&v.to_le_bytes()),
        Value::Bool(v) => out.write_all(&[*v as u8]),
        Value::String(s) => put_string(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut impl Write, array: &Array) -> io::Result<()> {
    out.write_all(&(array.elem_type() as u32).to_le_bytes())?;
    out.write_all(&(array.len() as u64).to_le_bytes())?;
    macro_rules! le {
        ($v:expr) => {{
            for x in $v {
                out.write_all(&x.to_le_bytes())?;
            }
            Ok(())
        }};
    }
    match array {
        Array::U8(v) => out.write_all(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
        Array::Bool(v) => le!(v.iter().map(|&x| x as u8)),
        Array::String(v) => v.iter().try_for_each(|s| put_string(out, s)),
        Array::Array(v) => v.iter().try_for_each(|a| put_array(out, a)),
    }
}

/// The alignment a metadata list asks for (`general.alignment`, default 32).
pub fn alignment_of(metadata: &Metadata) -> u64 {
    match metadata.get(ALIGNMENT_KEY) {
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
        _ => DEFAULT_ALIGNMENT,
    }
}

/// One output file: its final path and the tensors it holds.
struct Shard {
    target: PathBuf,
    first: usize,
    end: usize,
}

/// The temporary names of the shards: the tag goes before the shard suffix, so the first
/// temporary shard opens as a split model.
fn shard_temps(prefix: &Path, n_shards: u64, tag: &str) -> Vec<PathBuf> {
    let mut p = prefix.as_os_str().to_os_string();
    p.push(tag);
    (0..n_shards)
        .map(|i| split_path(Path::new(&p), i, n_shards))
        .collect()
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
    check_writable(version, metadata, &tensors)?;
    let alignment = alignment_of(metadata);
    let padded: Vec<u64> = tensors
        .iter()
        .map(|t| align_up(t.data.len(), alignment))
        .collect();

    let ranges = shard_ranges(&padded, options.split_max_bytes)?;
    let n_shards = ranges.len() as u64;
    let (shards, pending) = stage(target, &ranges, options)?;

    let total: u64 = padded.iter().sum();
    let mut done = 0u64;
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
        let shard_tensors = &mut tensors[shard.first..shard.end];
        write_one(
            pending.file(i),
            &shard.target,
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

/// The tensor ranges of the output files: a new shard starts when the next tensor would pass
/// the size limit. Refuses more shards than llama.cpp can count.
fn shard_ranges(padded: &[u64], split_max_bytes: Option<u64>) -> Result<Vec<(usize, usize)>> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    match split_max_bytes {
        None => ranges.push((0, padded.len())),
        Some(max) => {
            let (mut start, mut size) = (0usize, 0u64);
            for (i, &p) in padded.iter().enumerate() {
                if i > start && size + p > max {
                    ranges.push((start, i));
                    (start, size) = (i, 0);
                }
                size += p;
            }
            ranges.push((start, padded.len()));
        }
    }
    let n_shards = ranges.len() as u64;
    if n_shards > u16::MAX as u64 {
        return Err(Error::TooManyShards { n_shards });
    }
    Ok(ranges)
}

/// Names the output files (`target`, or shards named after it) and creates their temporary
/// files under the output rule.
fn stage(
    target: &Path,
    ranges: &[(usize, usize)],
    options: &WriteOptions,
) -> Result<(Vec<Shard>, Pending)> {
    if options.split_max_bytes.is_none() {
        let (first, end) = ranges[0];
        let shard = Shard {
            target: target.to_path_buf(),
            first,
            end,
        };
        return Ok((vec![shard], Pending::create(target, &options.output)?));
    }
    let n_shards = ranges.len() as u64;
    let text = target.to_string_lossy();
    let prefix = PathBuf::from(text.strip_suffix(".gguf").unwrap_or(&text).to_string());
    let shards: Vec<Shard> = ranges
        .iter()
        .enumerate()
        .map(|(i, &(first, end))| Shard {
            target: split_path(&prefix, i as u64, n_shards),
            first,
            end,
        })
        .collect();
    let targets = shards.iter().map(|s| s.target.clone()).collect();
    let pending = Pending::create_all(targets, &options.output, |tag| {
        shard_temps(&prefix, n_shards, tag)
    })?;
    Ok((shards, pending))
}

/// Refuses what would make a file that llama.cpp (and our own reader) rejects: a version
/// other than 2 or 3, a `general.alignment` that is not a power of two as u32, two tensors of
/// one name, or a known-type tensor whose bytes do not match its type and dimensions.
fn check_writable(version: u32, metadata: &Metadata, tensors: &[OutTensor]) -> Result<()> {
    if version != 2 && version != 3 {
        return Err(Error::WriteVersion { version });
    }
    if let Some(v) = metadata.get(ALIGNMENT_KEY) {
        if !matches!(v, Value::U32(a) if *a != 0 && a.is_power_of_two()) {
            return Err(Error::WriteAlignment {
                key: ALIGNMENT_KEY,
                shown: v.display(4),
                value_type: v.value_type(),
            });
        }
    }
    let mut names = std::collections::HashSet::with_capacity(tensors.len());
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(Error::DuplicateTensor {
                name: t.name.clone(),
            });
        }
        if t.dims.len() > super::read::MAX_DIMS as usize {
            return Err(Error::TooManyDims {
                name: t.name.clone(),
                n_dims: t.dims.len(),
                max: super::read::MAX_DIMS,
            });
        }
        if t.ggml_type.is_known() {
            let n = t.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let expected = n.and_then(|n| t.ggml_type.bytes_for(n));
            if expected != Some(t.data.len()) {
                return Err(Error::DataLength {
                    name: t.name.clone(),
                    len: t.data.len(),
                    ty: t.ggml_type,
                    dims: t.dims.clone(),
                    takes: expected,
                });
            }
        }
    }
    Ok(())
}

/// How much is copied between checks for Ctrl-C.
const COPY_CHUNK: u64 = 64 << 20;

/// Writes one file to `file`: the header, then each tensor's data padded to the alignment;
/// errors name `path`, the file's target.
fn write_one(
    file: &File,
    path: &Path,
    version: u32,
    metadata: &Metadata,
    tensors: &mut [OutTensor],
    alignment: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let offsets = data_offsets(tensors, alignment);
    let refs: Vec<&OutTensor> = tensors.iter().collect();
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_header(&mut out, version, metadata, &refs, &offsets, alignment).map_err(io_err(path))?;
    let mut file: &File = out.into_inner().map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    for t in tensors.iter_mut() {
        interrupt::check()?;
        let len = t.data.len();
        write_data(&mut file, path, t, progress)?;
        write_padding(&mut file, path, align_up(len, alignment) - len, progress)?;
    }
    file.flush().map_err(io_err(path))?;
    Ok(())
}

/// Each tensor's offset in the data section: one after the other, each aligned.
fn data_offsets(tensors: &[OutTensor], alignment: u64) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut next = 0u64;
    for t in tensors {
        offsets.push(next);
        next = align_up(next + t.data.len(), alignment);
    }
    offsets
}

/// Writes one tensor's data: a streamed copy, bytes in memory, or bytes made now (checked
/// against the length the header announced).
fn write_data(
    file: &mut &File,
    path: &Path,
    t: &mut OutTensor,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let len = t.data.len();
    match &mut t.data {
        TensorData::Copy {
            file: src,
            offset,
            len,
        } => copy_range(src, *offset, *len, file, path, progress),
        TensorData::Bytes(bytes) => {
            file.write_all(bytes).map_err(io_err(path))?;
            progress(len);
            Ok(())
        }
        TensorData::Lazy { len: want, make } => {
            let bytes = make()?;
            if bytes.len() as u64 != *want {
                return Err(Error::MadeLength {
                    name: t.name.clone(),
                    got: bytes.len(),
                    want: *want,
                });
            }
            file.write_all(&bytes).map_err(io_err(path))?;
            progress(len);
            Ok(())
        }
    }
}

/// Copies `len` bytes from `offset` of `src` to `file`, in chunks between checks for Ctrl-C.
fn copy_range(
    src: &File,
    offset: u64,
    len: u64,
    file: &mut &File,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut src: &File = src;
    src.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    let mut left = len;
    while left > 0 {
        interrupt::check()?;
        let step = left.min(COPY_CHUNK);
        let copied =
            io::copy(&mut Read::by_ref(&mut src).take(step), file).map_err(io_err(path))?;
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
    Ok(())
}

/// Writes `pad` zero bytes (reported to `progress` at once, before they are written).
fn write_padding(
    file: &mut &File,
    path: &Path,
    mut pad: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let zeros = [0u8; 4096];
    progress(pad);
    while pad > 0 {
        let step = pad.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..step]).map_err(io_err(path))?;
        pad -= step as u64;
    }
    Ok(())
}
