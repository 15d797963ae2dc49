//! GGUF, the llama.cpp weight format: a reader ([`GgufFile`]), the block codecs ([`quantize`],
//! [`dequantize`]) and a streaming writer ([`GgufWriter`]).
//!
//! Layout (version 2 and 3, little-endian):
//!
//! ```text
//! "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//! kv_count x (string key | u32 value type | value)
//! tensor_count x (string name | u32 n_dims | n_dims x u64 dims | u32 ggml type | u64 offset)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset
//! ```
//!
//! Strings are `u64 length | UTF-8 bytes`. `dims[0]` is the fastest-varying axis (ggml's `ne[0]`):
//! a matrix stored with dims `[in, out]` is, in row-major terms, `out` rows of `in` values, which
//! is exactly the `[out, in]` layout of a PyTorch `nn.Linear` weight. [`TensorInfo::shape`] returns
//! that row-major shape (dims reversed).
//!
//! Supported tensor types, dequantised to `f32` at load: F32, F16, BF16, Q4_0, Q4_1, Q8_0. A file
//! with another type loads its metadata fine and fails only when that tensor is asked for, with an
//! error naming the tensor and its type.

use std::path::PathBuf;

mod quant;
mod reader;
mod writer;

pub use quant::{dequantize, quantize, GgmlType};
pub use reader::{GgufFile, TensorInfo};
pub use writer::GgufWriter;

/// Errors of the GGUF reader; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or read.
    // the cause is in the message, not a `source()`: chains printed as `{:#}` would repeat it
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is not a well-formed GGUF file.
    #[error("{path}: not a valid GGUF file: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the byte offset where it helps.
        what: String,
    },
    /// A tensor or metadata key is missing or has an unexpected type.
    #[error("{path}: {what}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What was missing or wrong.
        what: String,
    },
}
/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string`.
    String(String),
    /// `array` (of one element type).
    Array(Vec<Value>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is any number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_code(&self) -> u32 {
        match self {
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
}

/// A deterministic ramp of `n` values in about [-3, 3], for the codec and reader tests.
#[cfg(test)]
fn test_ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect()
}
