//! A tiny GGUF builder for tests: whole files as bytes in memory (like candle's `gguf_tests.rs`).
//!
//! The encoder here is written separately from `src/gguf/write.rs`, so a test that parses a built
//! file checks the reader against a second reading of the format, not against itself. Every field
//! can be overridden (counts, offsets, raw value bytes, key bytes), and [`Built`] records where
//! each part landed so bad-input tests can patch a byte and assert the error names that offset.
//! The tiny models made with it are in [`tiny`].
//!
//! A test crate declares it `pub mod support;`: its items are then that crate's public interface,
//! which rustc does not report as dead code when one crate uses only some of them, while unused
//! private items here are still reported (so no `allow(dead_code)`).

pub mod failure;
pub mod moe;
pub mod tiny;

pub use tiny::{counting, noise, tiny_gemma3, tiny_llama, TinyModel, Weight, LLAMA_REST};

use std::path::{Path, PathBuf};

use gguf_prune::gguf::{Array, Value};

/// ggml type ids used by the tests.
pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q8_0: u32 = 8;
/// An id no ggml build has used (carried by byte range).
pub const UNKNOWN_TYPE: u32 = 1000;

/// GGUF value type ids (`gguf_type`).
pub mod vt {
    pub const U8: u32 = 0;
    pub const U32: u32 = 4;
    pub const BOOL: u32 = 7;
    pub const ARRAY: u32 = 9;
}

/// A key-value as it will be encoded: a typed value, or a type id with raw payload bytes.
#[derive(Clone, Debug)]
pub enum Kv {
    Value(Value),
    Raw { type_id: u32, payload: Vec<u8> },
}

/// One tensor info plus its data.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: Vec<u8>,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
    /// Offset in the data section; None: the next aligned offset after the previous tensor.
    pub offset: Option<u64>,
    /// Encoded n_dims; None: `dims.len()`.
    pub n_dims: Option<u32>,
}

/// A GGUF file to build.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub magic: [u8; 4],
    pub version: u32,
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
    pub kvs: Vec<(Vec<u8>, Kv)>,
    pub tensors: Vec<TensorSpec>,
    /// Alignment used for the layout; None: `general.alignment` if it is a u32, else 32.
    pub layout_alignment: Option<u64>,
    /// Pad the last tensor's data up to the alignment (llama.cpp's and our writer do).
    pub pad_end: bool,
}

/// A built file and where its parts are.
#[derive(Clone, Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// Offset of each key-value (its key length field).
    pub kv_at: Vec<usize>,
    /// Offset of each key-value's value type field.
    pub kv_type_at: Vec<usize>,
    /// Offset of each tensor info (its name length field).
    pub tensor_at: Vec<usize>,
    /// Offset of each tensor info's `offset` field.
    pub tensor_offset_field_at: Vec<usize>,
    /// Absolute offset of the data section.
    pub data_offset: usize,
    /// Each tensor's offset in the data section.
    pub tensor_offsets: Vec<u64>,
}

impl Gguf {
    pub fn new(version: u32) -> Gguf {
        Gguf {
            magic: *b"GGUF",
            version,
            tensor_count: None,
            kv_count: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
            layout_alignment: None,
            pad_end: true,
        }
    }

    pub fn kv(mut self, key: &str, value: Value) -> Gguf {
        self.kvs.push((key.as_bytes().to_vec(), Kv::Value(value)));
        self
    }

    pub fn kv_raw(mut self, key: &[u8], type_id: u32, payload: Vec<u8>) -> Gguf {
        self.kvs.push((key.to_vec(), Kv::Raw { type_id, payload }));
        self
    }

    /// Sets `general.alignment` (a u32, as llama.cpp requires), which also drives the layout.
    pub fn alignment(self, a: u32) -> Gguf {
        self.kv("general.alignment", Value::U32(a))
    }

    pub fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> Gguf {
        self.tensors.push(TensorSpec {
            name: name.as_bytes().to_vec(),
            dims: dims.to_vec(),
            type_id,
            data,
            offset: None,
            n_dims: None,
        });
        self
    }

    /// An F32 tensor whose elements count from `seed`, so every tensor's bytes differ.
    pub fn f32_tensor(self, name: &str, dims: &[u64], seed: f32) -> Gguf {
        let n: u64 = dims.iter().product();
        self.tensor(name, dims, F32, f32_bytes(&counting(seed, n as usize)))
    }

    fn alignment_for_layout(&self) -> u64 {
        if let Some(a) = self.layout_alignment {
            return a;
        }
        for (k, v) in &self.kvs {
            if k == b"general.alignment" {
                if let Kv::Value(Value::U32(a)) = v {
                    if *a != 0 && a.is_power_of_two() {
                        return *a as u64;
                    }
                }
            }
        }
        32
    }

    pub fn build(&self) -> Built {
        let align = self.alignment_for_layout();
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        put_u32(&mut out, self.version);
        put_u64(
            &mut out,
            self.tensor_count.unwrap_or(self.tensors.len() as u64),
        );
        put_u64(&mut out, self.kv_count.unwrap_or(self.kvs.len() as u64));
        let (mut kv_at, mut kv_type_at) = (Vec::new(), Vec::new());
        for (key, kv) in &self.kvs {
            kv_at.push(out.len());
            put_bytes(&mut out, key);
            kv_type_at.push(out.len());
            match kv {
                Kv::Value(v) => {
                    put_u32(&mut out, value_type_id(v));
                    encode_value(&mut out, v);
                }
                Kv::Raw { type_id, payload } => {
                    put_u32(&mut out, *type_id);
                    out.extend_from_slice(payload);
                }
            }
        }
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            let off = t.offset.unwrap_or(next);
            offsets.push(off);
            next = align_up(off + t.data.len() as u64, align);
        }
        let (mut tensor_at, mut offset_field_at) = (Vec::new(), Vec::new());
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            tensor_at.push(out.len());
            put_bytes(&mut out, &t.name);
            put_u32(&mut out, t.n_dims.unwrap_or(t.dims.len() as u32));
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.type_id);
            offset_field_at.push(out.len());
            put_u64(&mut out, off);
        }
        let data_offset = align_up(out.len() as u64, align) as usize;
        out.resize(data_offset, 0);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            // Empty data is not placed, so a tensor can point far past the end of the file.
            if t.data.is_empty() {
                continue;
            }
            let start = data_offset + off as usize;
            let end = start + t.data.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[start..end].copy_from_slice(&t.data);
        }
        if self.pad_end {
            let padded =
                data_offset as u64 + align_up(out.len() as u64 - data_offset as u64, align);
            out.resize(padded as usize, 0);
        }
        Built {
            bytes: out,
            kv_at,
            kv_type_at,
            tensor_at,
            tensor_offset_field_at: offset_field_at,
            data_offset,
            tensor_offsets: offsets,
        }
    }
}

pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s);
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn array_type_id(a: &Array) -> u32 {
    match a {
        Array::U8(_) => 0,
        Array::I8(_) => 1,
        Array::U16(_) => 2,
        Array::I16(_) => 3,
        Array::U32(_) => 4,
        Array::I32(_) => 5,
        Array::F32(_) => 6,
        Array::Bool(_) => 7,
        Array::String(_) => 8,
        Array::Array(_) => 9,
        Array::U64(_) => 10,
        Array::I64(_) => 11,
        Array::F64(_) => 12,
    }
}

/// Encodes a value's payload (without its type id).
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_bytes(out, s),
        Value::Array(a) => encode_array(out, a),
    }
}

/// Encodes an array's payload: element type, count, elements.
pub fn encode_array(out: &mut Vec<u8>, a: &Array) {
    put_u32(out, array_type_id(a));
    put_u64(out, a.len() as u64);
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => v.iter().for_each(|x| out.push(*x as u8)),
        Array::U16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::U64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => v.iter().for_each(|x| out.push(u8::from(*x))),
        Array::String(v) => v.iter().for_each(|s| put_bytes(out, s)),
        Array::Array(v) => v.iter().for_each(|inner| encode_array(out, inner)),
    }
}

/// One value of every scalar type, a UTF-8 and a non-UTF-8 string, arrays of every element
/// type, an empty array, and arrays nested three deep.
pub fn every_value_type() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(0xfe)),
        ("t.i8", Value::I8(-7)),
        ("t.u16", Value::U16(0xbeef)),
        ("t.i16", Value::I16(-12345)),
        ("t.u32", Value::U32(0xdead_beef)),
        ("t.i32", Value::I32(-1_000_000_007)),
        ("t.f32", Value::F32(-0.15625)),
        ("t.bool.true", Value::Bool(true)),
        ("t.bool.false", Value::Bool(false)),
        ("t.string", Value::String("héllo wörld".as_bytes().to_vec())),
        ("t.string.empty", Value::String(Vec::new())),
        // Latin-1 bytes and a lone continuation byte: not UTF-8, carried unchanged.
        (
            "t.string.latin1",
            Value::String(vec![b'c', 0xe9, b'd', 0x80, 0xff]),
        ),
        ("t.u64", Value::U64(u64::MAX - 3)),
        ("t.i64", Value::I64(i64::MIN + 5)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-128, 0, 127]))),
        ("a.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("a.i16", Value::Array(Array::I16(vec![-32768, 32767]))),
        ("a.u32", Value::Array(Array::U32(vec![7, 8, 9, u32::MAX]))),
        ("a.i32", Value::Array(Array::I32(vec![-1, 2, -3]))),
        ("a.f32", Value::Array(Array::F32(vec![1.5, -0.0, f32::MAX]))),
        (
            "a.bool",
            Value::Array(Array::Bool(vec![true, false, true, true])),
        ),
        (
            "a.string",
            Value::Array(Array::String(vec![
                b"<s>".to_vec(),
                Vec::new(),
                vec![0xff, 0xfe, 0x00, b'x'],
                "▁the".as_bytes().to_vec(),
            ])),
        ),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("a.i64", Value::Array(Array::I64(vec![i64::MIN, i64::MAX]))),
        (
            "a.f64",
            Value::Array(Array::F64(vec![f64::MIN_POSITIVE, 1e300])),
        ),
        ("a.empty", Value::Array(Array::U32(Vec::new()))),
        (
            "a.nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2]),
                Array::String(vec![b"a".to_vec(), vec![0xc3]]),
                Array::Array(vec![Array::Bool(vec![true]), Array::F64(Vec::new())]),
                Array::U8(Vec::new()),
            ])),
        ),
    ]
}

/// Writes bytes to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Parses bytes and returns the error text, panicking if they parse.
pub fn parse_err(bytes: &[u8]) -> String {
    match gguf_prune::gguf::Content::parse(bytes) {
        Ok(c) => panic!(
            "expected a parse error, got {} tensors, {} keys",
            c.tensors.len(),
            c.metadata.len()
        ),
        Err(e) => e.to_string(),
    }
}

/// Asserts that parsing fails with a message containing every one of `needles`.
#[track_caller]
pub fn assert_rejects(bytes: &[u8], needles: &[&str]) -> String {
    let msg = parse_err(bytes);
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
    msg
}
