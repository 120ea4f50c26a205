//! Metadata values: the thirteen GGUF value types, typed arrays, and an ordered key-value list.

use crate::error::{Error, Result};

/// A GGUF value type id (`gguf_type` in llama.cpp's `gguf.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_u32(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of one scalar of this type; None for strings and arrays, whose size varies.
    pub fn scalar_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// A GGUF string: bytes, usually UTF-8 but carried unchanged when not.
pub type GgufString = Vec<u8>;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(GgufString),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous array, stored by element type so that a 262,144-entry vocabulary costs what its
/// elements cost.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<GgufString>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

macro_rules! for_each_array {
    ($array:expr, $v:ident => $body:expr) => {
        match $array {
            Array::U8($v) => $body,
            Array::I8($v) => $body,
            Array::U16($v) => $body,
            Array::I16($v) => $body,
            Array::U32($v) => $body,
            Array::I32($v) => $body,
            Array::F32($v) => $body,
            Array::Bool($v) => $body,
            Array::String($v) => $body,
            Array::Array($v) => $body,
            Array::U64($v) => $body,
            Array::I64($v) => $body,
            Array::F64($v) => $body,
        }
    };
}

impl Array {
    pub fn len(&self) -> usize {
        for_each_array!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// The elements at `keep` (in that order), same element type.
    pub fn select(&self, keep: &[usize]) -> Array {
        macro_rules! pick {
            ($variant:ident, $v:expr) => {
                Array::$variant(keep.iter().map(|&i| $v[i].clone()).collect())
            };
        }
        match self {
            Array::U8(v) => pick!(U8, v),
            Array::I8(v) => pick!(I8, v),
            Array::U16(v) => pick!(U16, v),
            Array::I16(v) => pick!(I16, v),
            Array::U32(v) => pick!(U32, v),
            Array::I32(v) => pick!(I32, v),
            Array::F32(v) => pick!(F32, v),
            Array::Bool(v) => pick!(Bool, v),
            Array::String(v) => pick!(String, v),
            Array::Array(v) => pick!(Array, v),
            Array::U64(v) => pick!(U64, v),
            Array::I64(v) => pick!(I64, v),
            Array::F64(v) => pick!(F64, v),
        }
    }

    /// Element `i` as an integer, if the array holds integers or bools.
    pub fn int_at(&self, i: usize) -> Option<i128> {
        Some(match self {
            Array::U8(v) => *v.get(i)? as i128,
            Array::I8(v) => *v.get(i)? as i128,
            Array::U16(v) => *v.get(i)? as i128,
            Array::I16(v) => *v.get(i)? as i128,
            Array::U32(v) => *v.get(i)? as i128,
            Array::I32(v) => *v.get(i)? as i128,
            Array::U64(v) => *v.get(i)? as i128,
            Array::I64(v) => *v.get(i)? as i128,
            Array::Bool(v) => *v.get(i)? as i128,
            _ => return None,
        })
    }

    /// Element `i` as a float, if the array holds numbers.
    pub fn float_at(&self, i: usize) -> Option<f64> {
        match self {
            Array::F32(v) => v.get(i).map(|&x| x as f64),
            Array::F64(v) => v.get(i).copied(),
            _ => self.int_at(i).map(|x| x as f64),
        }
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn to_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer of any width that fits.
    pub fn to_i64(&self) -> Option<i64> {
        match *self {
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I64(v) => Some(v),
            _ => self.to_u64().map(|v| v as i64).or(match *self {
                Value::I8(v) => Some(v as i64),
                Value::I16(v) => Some(v as i64),
                Value::I32(v) => Some(v as i64),
                _ => None,
            }),
        }
    }

    pub fn to_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.to_i64().map(|v| v as f64),
        }
    }

    pub fn to_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as text, if it is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short human-readable rendering; arrays longer than `max_items` are summarised.
    pub fn display(&self, max_items: usize) -> String {
        fn string(s: &[u8]) -> String {
            format!("{:?}", String::from_utf8_lossy(s))
        }
        fn array(a: &Array, max_items: usize) -> String {
            let n = a.len();
            let shown = n.min(max_items);
            let mut items: Vec<String> = Vec::with_capacity(shown + 1);
            for i in 0..shown {
                items.push(match a {
                    Array::String(v) => string(&v[i]),
                    Array::Array(v) => array(&v[i], max_items),
                    Array::Bool(v) => v[i].to_string(),
                    Array::F32(v) => v[i].to_string(),
                    Array::F64(v) => v[i].to_string(),
                    other => other.int_at(i).map_or(String::new(), |x| x.to_string()),
                });
            }
            if n > shown {
                items.push(format!("... {} more", n - shown));
            }
            format!("[{}] ({} x {:?})", items.join(", "), n, a.elem_type())
        }
        match self {
            Value::String(s) => string(s),
            Value::Array(a) => array(a, max_items),
            Value::Bool(b) => b.to_string(),
            Value::F32(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
            other => other.to_i64().map_or_else(
                || other.to_u64().map_or(String::new(), |v| v.to_string()),
                |v| v.to_string(),
            ),
        }
    }
}

/// Key-value metadata in file order. Setting an existing key replaces it in place, so a
/// rewritten file keeps the source's key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
}

impl Metadata {
    pub fn new() -> Metadata {
        Metadata::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Replaces the value of `key` where it stands, or appends it.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// Appends without checking for duplicates (the reader checks).
    pub(crate) fn push(&mut self, key: String, value: Value) {
        self.entries.push((key, value));
    }

    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> Error {
        Error::KeyType {
            key: key.to_string(),
            expected,
            found: self
                .get(key)
                .map_or("nothing".to_string(), |v| format!("{:?}", v.value_type())),
        }
    }

    /// `key` as an unsigned integer of any width.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.require(key)?
            .to_u64()
            .ok_or_else(|| self.wrong_type(key, "an unsigned integer"))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.get_u64(key)?;
        u32::try_from(v).map_err(|_| self.wrong_type(key, "an integer below 2^32"))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.require(key)?
            .to_f64()
            .ok_or_else(|| self.wrong_type(key, "a number"))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.require(key)?
            .as_str()
            .ok_or_else(|| self.wrong_type(key, "a UTF-8 string"))
    }

    pub fn get_array(&self, key: &str) -> Result<&Array> {
        self.require(key)?
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "an array"))
    }

    /// The model architecture, `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }
}

/// `{arch}.{suffix}`, the way llama.cpp spells architecture-scoped keys.
pub fn arch_key(arch: &str, suffix: &str) -> String {
    format!("{arch}.{suffix}")
}
