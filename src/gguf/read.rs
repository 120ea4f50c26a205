//! Parsing a GGUF file from bytes. Every count and length is checked against the bytes that
//! remain before anything is allocated, so a hostile header cannot ask for more memory than the
//! file holds.

use super::types::GgmlType;
use super::value::{Array, GgufString, Metadata, Value, ValueType};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"GGUF";
/// llama.cpp's `GGUF_DEFAULT_ALIGNMENT`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are refused (each level costs a stack frame).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The key naming the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost first (ggml's `ne`).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data: from the type and dimensions, or, for a type this build does not know,
    /// up to the next tensor (or the end of the file).
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The parsed header of one GGUF file: everything but the tensor data.
#[derive(Debug, Clone)]
pub struct Content {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where the data section starts.
    pub data_offset: u64,
}

impl Content {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Parses the header of a GGUF file held in `bytes` and checks every tensor's range.
    /// Long on purpose: it reads the header in the file's order (magic, version, counts,
    /// metadata, tensor infos, alignment, data), each count checked before it is used.
    pub fn parse(bytes: &[u8]) -> Result<Content> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            return Err(r.error_at(
                0,
                format!(
                    "not a GGUF file: magic is {:?}, expected \"GGUF\"",
                    String::from_utf8_lossy(magic)
                ),
            ));
        }
        let version = r.u32("version")?;
        if version == 1 {
            return Err(r.error_at(4, "GGUF version 1 is not supported (only 2 and 3)".into()));
        }
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(r.error_at(
                4,
                format!("big-endian GGUF (version field reads {version:#x}) is not supported"),
            ));
        }
        if version != 2 && version != 3 {
            return Err(r.error_at(
                4,
                format!("unsupported GGUF version {version} (only 2 and 3)"),
            ));
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata key-value count")?;
        // Smallest possible entries: a key-value is a length, a type and one byte; a tensor info
        // is an empty name, n_dims, a type and an offset (no dimensions: a scalar).
        r.check_count(kv_count, 8 + 4 + 1, "metadata key-value count", 16)?;
        r.check_count(tensor_count, 8 + 4 + 4 + 8, "tensor count", 8)?;

        let mut metadata = Metadata::new();
        // Duplicate keys are found with a set: `Metadata::contains` is a scan, and a hostile
        // file can hold a million keys.
        let mut seen_keys = std::collections::HashSet::new();
        let mut alignment_at = 0;
        for _ in 0..kv_count {
            let key_at = r.pos;
            let key = r.utf8("key")?;
            if !seen_keys.insert(key.clone()) {
                return Err(r.error_at(key_at, format!("duplicate metadata key {key:?}")));
            }
            if key == ALIGNMENT_KEY {
                alignment_at = key_at;
            }
            let value_type = r.value_type(&key)?;
            let value = r.value(value_type, &key, 0)?;
            metadata.push(key, value);
        }

        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
            Some(other) => {
                return Err(r.error_at(
                    alignment_at,
                    format!(
                        "{ALIGNMENT_KEY} is {}, expected a power of two as u32",
                        other.display(4)
                    ),
                ));
            }
        };

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
        let mut names = std::collections::HashSet::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let info_at = r.pos;
            let name = r.utf8("tensor name")?;
            if !names.insert(name.clone()) {
                return Err(r.error_at(info_at, format!("duplicate tensor name {name:?}")));
            }
            let n_dims = r.u32("tensor n_dims")?;
            if n_dims > MAX_DIMS {
                return Err(r.error_at(
                    info_at,
                    format!("tensor {name:?} has {n_dims} dimensions, at most {MAX_DIMS} allowed"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let type_id = r.u32("tensor type")?;
            let ggml_type = GgmlType::from_u32(type_id);
            let offset = r.u64("tensor offset")?;
            let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            // ggml counts elements (and each dimension) in an i64.
            let n_elements = n_elements
                .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64))
                .ok_or_else(|| {
                    r.error_at(
                        info_at,
                        format!("tensor {name:?} dimensions {dims:?} overflow"),
                    )
                })?;
            let size = if ggml_type.is_known() {
                let block = ggml_type.block_size().unwrap_or(1);
                // A tensor with no dimensions is one element (as in ggml), so its row is 1 long.
                let row = dims.first().copied().unwrap_or(1);
                if row % block != 0 {
                    return Err(r.error_at(info_at, format!(
                        "tensor {name:?}: row length {row} is not a multiple of {ggml_type}'s block size {block}"
                    )));
                }
                ggml_type
                    .bytes_for(n_elements)
                    .ok_or_else(|| r.error_at(info_at, format!("tensor {name:?} size overflows")))?
            } else {
                u64::MAX // filled in below from the next tensor's offset
            };
            if offset % alignment != 0 {
                return Err(r.error_at(info_at, format!(
                    "tensor {name:?} (#{i}) offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                size,
            });
        }

        let data_offset = align_up(r.pos as u64, alignment);
        let file_len = bytes.len() as u64;
        let data_len = file_len.saturating_sub(data_offset);
        if !tensors.is_empty() && data_offset > file_len {
            return Err(r.error_at(
                r.pos,
                format!("file ends at byte {file_len} before its data section at {data_offset}"),
            ));
        }
        // Check ranges in offset order: in bounds, not overlapping; size unknown types by their gap.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].offset);
        for (k, &i) in order.iter().enumerate() {
            let next_start = order.get(k + 1).map_or(data_len, |&j| tensors[j].offset);
            let t = &mut tensors[i];
            if t.size == u64::MAX {
                t.size = next_start.saturating_sub(t.offset);
            }
            let end = t.offset.checked_add(t.size);
            match end {
                Some(end) if end <= data_len => {
                    if end > next_start {
                        let other = &tensors[order[k + 1]].name;
                        let t = &tensors[i];
                        return Err(Error::Parse {
                            offset: data_offset + t.offset,
                            what: format!("tensor {:?} (bytes {}..{end} of the data section) overlaps tensor {other:?} at {next_start}", t.name, t.offset),
                        });
                    }
                }
                _ => {
                    return Err(Error::TensorOutOfBounds {
                        name: t.name.clone(),
                        offset: data_offset.saturating_add(t.offset),
                        len: t.size,
                        file_len,
                    })
                }
            }
        }
        Ok(Content {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }
}

pub fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error_at(&self, offset: usize, what: String) -> Error {
        Error::Parse {
            offset: offset as u64,
            what,
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error_at(
                self.pos,
                format!(
                    "file truncated: {what} needs {n} bytes, {} remain",
                    self.remaining()
                ),
            ));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    /// Refuses a count (read at offset `at`) whose smallest encoding would not fit in the
    /// remaining bytes.
    fn check_count(&self, count: u64, min_bytes_each: u64, what: &str, at: usize) -> Result<()> {
        if count
            .checked_mul(min_bytes_each)
            .is_none_or(|n| n > self.remaining())
        {
            return Err(self.error_at(
                at,
                format!(
                    "{what} {count} cannot fit in the {} bytes that remain",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returns N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<GgufString> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() {
            return Err(self.error_at(
                at,
                format!(
                    "{what}: string length {len} exceeds the {} bytes that remain",
                    self.remaining()
                ),
            ));
        }
        Ok(self.take(len, what)?.to_vec())
    }

    fn utf8(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let bytes = self.string(what)?;
        String::from_utf8(bytes).map_err(|e| {
            self.error_at(
                at,
                format!(
                    "{what} is not UTF-8: {:?}",
                    String::from_utf8_lossy(e.as_bytes())
                ),
            )
        })
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType> {
        let at = self.pos;
        let id = self.u32("value type")?;
        ValueType::from_u32(id)
            .ok_or_else(|| self.error_at(at, format!("key {key:?} has unknown value type {id}")))
    }

    fn value(&mut self, t: ValueType, key: &str, depth: usize) -> Result<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => Value::Array(self.array_value(key, depth)?),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        let at = self.pos;
        match self.array::<1>(key)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.error_at(
                at,
                format!("key {key:?}: bool byte is {b}, expected 0 or 1"),
            )),
        }
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.error_at(
                at,
                format!("key {key:?}: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
            ));
        }
        let elem = self.value_type(key)?;
        let count = self.u64(key)?;
        let min_size = elem
            .scalar_size()
            .unwrap_or(if elem == ValueType::String { 8 } else { 12 });
        if count
            .checked_mul(min_size)
            .is_none_or(|n| n > self.remaining())
        {
            return Err(self.error_at(
                at,
                format!(
                    "key {key:?}: array of {count} {elem:?} cannot fit in the {} bytes that remain",
                    self.remaining()
                ),
            ));
        }
        let n = count as usize;
        macro_rules! scalars {
            ($variant:ident, $ty:ty) => {{
                let raw = self.take(count * min_size, key)?;
                Array::$variant(
                    raw.chunks_exact(std::mem::size_of::<$ty>())
                        .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(count, key)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(count, key)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => scalars!(U16, u16),
            ValueType::I16 => scalars!(I16, i16),
            ValueType::U32 => scalars!(U32, u32),
            ValueType::I32 => scalars!(I32, i32),
            ValueType::F32 => scalars!(F32, f32),
            ValueType::U64 => scalars!(U64, u64),
            ValueType::I64 => scalars!(I64, i64),
            ValueType::F64 => scalars!(F64, f64),
            ValueType::Bool => Array::Bool((0..n).map(|_| self.bool(key)).collect::<Result<_>>()?),
            ValueType::String => {
                Array::String((0..n).map(|_| self.string(key)).collect::<Result<_>>()?)
            }
            ValueType::Array => Array::Array(
                (0..n)
                    .map(|_| self.array_value(key, depth + 1))
                    .collect::<Result<_>>()?,
            ),
        })
    }
}
