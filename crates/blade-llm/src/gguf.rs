//! A reader (and a small writer) of GGUF, the llama.cpp weight format.
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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

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

/// ggml tensor types this crate knows by name (the numbering of ggml's `ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// Blocks of 32: `f16 d`, 16 bytes of 4-bit codes; `x = (q - 8) * d`.
    Q4_0,
    /// Blocks of 32: `f16 d`, `f16 m`, 16 bytes of 4-bit codes; `x = q * d + m`.
    Q4_1,
    /// Blocks of 32: `f16 d`, 32 signed bytes; `x = q * d`.
    Q8_0,
    /// bfloat16.
    BF16,
    /// Any other type (k-quants, i-quants, ...): readable metadata, not dequantised here.
    Other(u32),
}

impl GgmlType {
    /// The type of ggml's numeric code.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// ggml's numeric code.
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
            Self::Other(c) => c,
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for an unsupported type.
    pub fn block(self) -> Option<(usize, usize)> {
        match self {
            Self::F32 => Some((1, 4)),
            Self::F16 | Self::BF16 => Some((1, 2)),
            Self::Q4_0 => Some((32, 18)),
            Self::Q4_1 => Some((32, 20)),
            Self::Q8_0 => Some((32, 34)),
            Self::Other(_) => None,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Other(c) => write!(f, "ggml type {c}"),
            t => write!(f, "{t:?}"),
        }
    }
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

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dims, fastest-varying first.
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape (ggml dims reversed): `[out, in]` for a linear layer's weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements (saturating: [`GgufFile::open`] refuses tensors whose element count
    /// or byte length does not fit, so a directory it returns never saturates).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    /// Number of elements, `None` when the product of the dims overflows.
    pub fn checked_len(&self) -> Option<usize> {
        let n = self
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        usize::try_from(n).ok()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the tensor occupies, or `None` for an unsupported type.
    pub fn byte_len(&self) -> Option<usize> {
        let (per_block, bytes) = self.ggml_type.block()?;
        self.checked_len()?.div_ceil(per_block).checked_mul(bytes)
    }
}

/// An open GGUF file: its metadata and tensor directory; tensor data is read on demand.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    data_start: u64,
    file_len: u64,
}

/// Bounds on what a header may claim, so a corrupt file fails cleanly instead of allocating.
const MAX_STRING: u64 = 1 << 24;
const MAX_ARRAY: u64 = 1 << 28;
const MAX_DIMS: u32 = 8;

struct Cursor<R> {
    inner: R,
    pos: u64,
    path: PathBuf,
}

impl<R: Read> Cursor<R> {
    fn fail(&self, what: impl Into<String>) -> GgufError {
        GgufError::Format {
            path: self.path.clone(),
            what: format!("{} (at byte {})", what.into(), self.pos),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| self.fail("unexpected end of file"))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(self.fail(format!("string length {len} is implausible")));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| self.fail("unexpected end of file in a string"))?;
        self.pos += len;
        String::from_utf8(buf).map_err(|_| self.fail("a string is not UTF-8"))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.bytes::<1>()?[0]),
            1 => Value::I8(i8::from_le_bytes(self.bytes::<1>()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes::<2>()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes::<2>()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes::<4>()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes::<4>()?)),
            7 => match self.bytes::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.fail(format!("bool byte {b} is neither 0 nor 1"))),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(self.fail("arrays nested too deeply"));
                }
                let item = self.u32()?;
                let len = self.u64()?;
                if len > MAX_ARRAY {
                    return Err(self.fail(format!("array length {len} is implausible")));
                }
                let mut items = Vec::with_capacity(len.min(1 << 16) as usize);
                for _ in 0..len {
                    items.push(self.value(item, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes::<8>()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes::<8>()?)),
            t => return Err(self.fail(format!("unknown metadata value type {t}"))),
        })
    }
}

impl GgufFile {
    /// Reads the header, metadata and tensor directory of `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |cause| GgufError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut c = Cursor {
            inner: BufReader::new(file),
            pos: 0,
            path: path.to_path_buf(),
        };
        if &c.bytes::<4>()? != b"GGUF" {
            return Err(GgufError::Format {
                path: path.to_path_buf(),
                what: "the file does not start with the magic `GGUF`".into(),
            });
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(c.fail(format!("version {version}; versions 2 and 3 are supported")));
        }
        let tensor_count = c.u64()?;
        let kv_count = c.u64()?;
        if tensor_count > 1 << 20 || kv_count > 1 << 20 {
            return Err(c.fail(format!(
                "{tensor_count} tensors / {kv_count} metadata entries is implausible"
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = c.string()?;
            let n_dims = c.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.fail(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = GgmlType::from_code(c.u32()?);
            let offset = c.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32);
        if alignment == 0 || alignment > 1 << 20 {
            return Err(c.fail(format!(
                "general.alignment = {alignment}; expected 1..={} (llama.cpp writes 32)",
                1 << 20
            )));
        }
        let data_start = c
            .pos
            .div_ceil(alignment)
            .checked_mul(alignment)
            .ok_or_else(|| c.fail("the data section's start overflows"))?;
        let me = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start,
            file_len,
        };
        for t in &me.tensors {
            if t.checked_len().is_none()
                || (t.ggml_type.block().is_some() && t.byte_len().is_none())
            {
                return Err(me.content(format!(
                    "tensor `{}` has dims {:?}: its size does not fit in memory",
                    t.name, t.dims
                )));
            }
            if let Some(n) = t.byte_len() {
                let end = me
                    .data_start
                    .checked_add(t.offset)
                    .and_then(|e| e.checked_add(n as u64))
                    .unwrap_or(u64::MAX);
                if end > file_len {
                    return Err(me.content(format!(
                        "tensor `{}` ends at byte {end}, past the end of the file ({file_len} bytes): truncated download?",
                        t.name
                    )));
                }
            }
        }
        Ok(me)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn content(&self, what: String) -> GgufError {
        GgufError::Content {
            path: self.path.clone(),
            what,
        }
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned integer metadata value.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.content(format!("metadata `{key}` (an integer) is missing")))
    }

    /// A required float metadata value.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.content(format!("metadata `{key}` (a number) is missing")))
    }

    /// A required string metadata value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.content(format!("metadata `{key}` (a string) is missing")))
    }

    /// A required array of strings.
    pub fn get_strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        let arr = self
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| self.content(format!("metadata `{key}` (an array) is missing")))?;
        arr.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.content(format!("metadata `{key}` holds a non-string")))
            })
            .collect()
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads tensor `name` and dequantises it to `f32`; returns `(row-major shape, values)`.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.content(format!("tensor `{name}` is missing")))?;
        let n = info.byte_len().ok_or_else(|| {
            self.content(format!(
                "tensor `{name}` is stored as {}, which blade cannot dequantise (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)",
                info.ggml_type
            ))
        })?;
        let io = |cause| GgufError::Io {
            path: self.path.clone(),
            cause,
        };
        let mut f = File::open(&self.path).map_err(io)?;
        let start = self.data_start.saturating_add(info.offset);
        if start.saturating_add(n as u64) > self.file_len {
            return Err(self.content(format!("tensor `{name}` runs past the end of the file")));
        }
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut raw = vec![0u8; n];
        f.read_exact(&mut raw).map_err(io)?;
        let values = dequantize(info.ggml_type, &raw, info.len())
            .ok_or_else(|| self.content(format!("tensor `{name}`: unsupported type")))?;
        Ok((info.shape(), values))
    }
}

/// Dequantises `n` values of type `ty` from `raw`; `None` for unsupported types or short input.
pub fn dequantize(ty: GgmlType, raw: &[u8], n: usize) -> Option<Vec<f32>> {
    let (per, bytes) = ty.block()?;
    if raw.len() < n.div_ceil(per) * bytes {
        return None;
    }
    let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut out = Vec::with_capacity(n.div_ceil(per) * per);
    match ty {
        GgmlType::F32 => out.extend(
            raw.chunks_exact(4)
                .take(n)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(raw.chunks_exact(2).take(n).map(half)),
        GgmlType::BF16 => out.extend(
            raw.chunks_exact(2)
                .take(n)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Q4_0 => {
            for blk in raw.chunks_exact(bytes).take(n.div_ceil(per)) {
                let d = half(&blk[..2]);
                let qs = &blk[2..];
                out.extend(qs.iter().map(|&q| (f32::from(q & 0x0f) - 8.0) * d));
                out.extend(qs.iter().map(|&q| (f32::from(q >> 4) - 8.0) * d));
            }
        }
        GgmlType::Q4_1 => {
            for blk in raw.chunks_exact(bytes).take(n.div_ceil(per)) {
                let (d, m) = (half(&blk[..2]), half(&blk[2..4]));
                let qs = &blk[4..];
                out.extend(qs.iter().map(|&q| f32::from(q & 0x0f) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
        }
        GgmlType::Q8_0 => {
            for blk in raw.chunks_exact(bytes).take(n.div_ceil(per)) {
                let d = half(&blk[..2]);
                out.extend(blk[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        GgmlType::Other(_) => return None,
    }
    out.truncate(n);
    Some(out)
}

/// Quantises `values` (a multiple of 32 long for the block types) the way ggml's reference
/// quantisers do. Used by the writer, i.e. by tests and by anyone exporting a model.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let h = |x: f32| f16::from_f32(x).to_le_bytes();
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => values.iter().for_each(|&v| out.extend(h(v))),
        GgmlType::BF16 => values
            .iter()
            .for_each(|&v| out.extend(bf16::from_f32(v).to_le_bytes())),
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 if !values.len().is_multiple_of(32) => {
            return None
        }
        GgmlType::Q4_0 => {
            for blk in values.chunks_exact(32) {
                // the value of largest magnitude, with its sign, maps to -8
                let max = blk
                    .iter()
                    .copied()
                    .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                for j in 0..16 {
                    out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
                }
            }
        }
        GgmlType::Q4_1 => {
            for blk in values.chunks_exact(32) {
                let min = blk.iter().copied().fold(f32::INFINITY, f32::min);
                let max = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                out.extend(h(min));
                let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                for j in 0..16 {
                    out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
                }
            }
        }
        GgmlType::Q8_0 => {
            for blk in values.chunks_exact(32) {
                let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                out.extend(blk.iter().map(|&v| (v * id).round() as i8 as u8));
            }
        }
        GgmlType::Other(_) => return None,
    }
    Some(out)
}

/// Builds a GGUF file in memory and writes it atomically. Tests use it to make tiny models.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry.
    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor of row-major `shape`, stored as `ty`.
    ///
    /// # Panics
    /// If `values` does not match `shape`, or a block type gets a row not a multiple of 32
    /// (programming errors of the caller, not user data).
    pub fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
        ty: GgmlType,
    ) -> &mut Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "{name}: shape"
        );
        let raw = quantize(ty, values).unwrap_or_else(|| panic!("{name}: cannot store as {ty}"));
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.into(), dims, ty, raw));
        self
    }

    /// The header (magic, metadata, tensor infos, padding) and each tensor's offset from the
    /// start of the data section.
    fn header(&self) -> (Vec<u8>, Vec<usize>) {
        let mut b = Vec::new();
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.metadata.len() as u64).to_le_bytes());
        fn val(b: &mut Vec<u8>, v: &Value) {
            match v {
                Value::U8(x) => b.push(*x),
                Value::I8(x) => b.extend(x.to_le_bytes()),
                Value::U16(x) => b.extend(x.to_le_bytes()),
                Value::I16(x) => b.extend(x.to_le_bytes()),
                Value::U32(x) => b.extend(x.to_le_bytes()),
                Value::I32(x) => b.extend(x.to_le_bytes()),
                Value::F32(x) => b.extend(x.to_le_bytes()),
                Value::Bool(x) => b.push(u8::from(*x)),
                Value::String(x) => {
                    b.extend((x.len() as u64).to_le_bytes());
                    b.extend(x.as_bytes());
                }
                Value::Array(items) => {
                    let ty = items.first().map_or(4, Value::type_code);
                    b.extend(ty.to_le_bytes());
                    b.extend((items.len() as u64).to_le_bytes());
                    items.iter().for_each(|i| val(b, i));
                }
                Value::U64(x) => b.extend(x.to_le_bytes()),
                Value::I64(x) => b.extend(x.to_le_bytes()),
                Value::F64(x) => b.extend(x.to_le_bytes()),
            }
        }
        for (k, v) in &self.metadata {
            s(&mut b, k);
            b.extend(v.type_code().to_le_bytes());
            val(&mut b, v);
        }
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for (name, dims, ty, raw) in &self.tensors {
            s(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
            b.extend(ty.code().to_le_bytes());
            b.extend((offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = (offset + raw.len()).div_ceil(ALIGN) * ALIGN;
        }
        b.resize(b.len().div_ceil(ALIGN) * ALIGN, 0);
        (b, offsets)
    }

    /// Writes the file to `out`: the header, then each tensor at its aligned offset.
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let (header, offsets) = self.header();
        out.write_all(&header)?;
        let mut at = 0usize;
        for ((_, _, _, raw), off) in self.tensors.iter().zip(offsets) {
            out.write_all(&vec![0u8; off - at])?;
            out.write_all(raw)?;
            at = off + raw.len();
        }
        Ok(())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        self.write_to(&mut b)
            .expect("writing to memory does not fail");
        b
    }

    /// Writes the file atomically (a synced temporary sibling file, then a rename), streaming
    /// the tensors rather than building the file in memory.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        blade_data::write_atomic_with(path, |f| self.write_to(f))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Alignment of tensor data in files this writer makes (GGUF's default, `general.alignment`).
const ALIGN: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    #[test]
    fn quantised_round_trips_within_half_a_step() {
        let x = ramp(128);
        for (ty, step) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 2e-3),
            (GgmlType::BF16, 2e-2),
            (GgmlType::Q8_0, 3.0 / 127.0),
            (GgmlType::Q4_1, 6.0 / 15.0),
            // Q4_0 is asymmetric (codes -8..7): the side opposite the largest value saturates
            (GgmlType::Q4_0, 2.0 * 3.0 / 8.0),
        ] {
            let raw = quantize(ty, &x).unwrap();
            assert_eq!(
                raw.len(),
                x.len().div_ceil(ty.block().unwrap().0) * ty.block().unwrap().1
            );
            let y = dequantize(ty, &raw, x.len()).unwrap();
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                err <= step * 0.5 + 1e-3,
                "{ty}: max error {err} > half step {step}"
            );
        }
    }

    #[test]
    fn hand_made_q4_0_and_q4_1_blocks() {
        // Q4_0: d = 0.5, codes 0..15 in the low nibbles, 15 - j in the high ones
        let mut blk = f16::from_f32(0.5).to_le_bytes().to_vec();
        blk.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = dequantize(GgmlType::Q4_0, &blk, 32).unwrap();
        assert_eq!(y[0], -4.0);
        assert_eq!(y[15], 3.5);
        assert_eq!(y[16], 3.5);
        assert_eq!(y[31], -4.0);
        // Q4_1: d = 2, m = -1
        let mut blk = f16::from_f32(2.0).to_le_bytes().to_vec();
        blk.extend(f16::from_f32(-1.0).to_le_bytes());
        blk.extend((0..16u8).map(|j| j | (3 << 4)));
        let y = dequantize(GgmlType::Q4_1, &blk, 32).unwrap();
        assert_eq!((y[0], y[5], y[20]), (-1.0, 9.0, 5.0));
        // Q8_0: d = 0.25, q = -128..
        let mut blk = f16::from_f32(0.25).to_le_bytes().to_vec();
        blk.extend((0..32i32).map(|j| (j * 8 - 128) as i8 as u8));
        let y = dequantize(GgmlType::Q8_0, &blk, 32).unwrap();
        assert_eq!((y[0], y[16], y[31]), (-32.0, 0.0, 30.0));
    }

    #[test]
    fn written_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let a = ramp(64);
        let b = ramp(3 * 5);
        GgufWriter::new()
            .meta("general.architecture", Value::String("llama".into()))
            .meta("llama.block_count", Value::U32(2))
            .meta("llama.rope.freq_base", Value::F32(10000.0))
            .meta(
                "tokenizer.ggml.tokens",
                Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
            )
            .meta("flag", Value::Bool(true))
            .tensor("m", &[2, 32], &a, GgmlType::Q8_0)
            .tensor("v", &[3, 5], &b, GgmlType::F32)
            .write(&path)
            .unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get_u64("llama.block_count").unwrap(), 2);
        assert_eq!(f.get_f64("llama.rope.freq_base").unwrap(), 10000.0);
        assert_eq!(f.get_strings("tokenizer.ggml.tokens").unwrap(), ["a", "b"]);
        assert_eq!(f.get("flag"), Some(&Value::Bool(true)));
        let (shape, v) = f.tensor_f32("v").unwrap();
        assert_eq!((shape, v), (vec![3, 5], b));
        let (shape, m) = f.tensor_f32("m").unwrap();
        assert_eq!(shape, vec![2, 32]);
        assert!(m.iter().zip(&a).all(|(x, y)| (x - y).abs() < 0.02));
        let err = f.tensor_f32("nope").unwrap_err().to_string();
        assert!(
            err.contains("t.gguf") && err.contains("`nope` is missing"),
            "{err}"
        );
        let err = f.get_u64("llama.context_length").unwrap_err().to_string();
        assert!(err.contains("llama.context_length"), "{err}");
    }

    #[test]
    fn corrupt_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gguf");
        std::fs::write(&path, b"GGML\x03\0\0\0").unwrap();
        let err = GgufFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("bad.gguf") && err.contains("magic"), "{err}");
        // a valid file cut short inside the tensor data
        let mut w = GgufWriter::new();
        w.tensor("m", &[4, 32], &ramp(128), GgmlType::F32);
        let bytes = w.to_bytes();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = GgufFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // cut inside the header
        std::fs::write(&path, &bytes[..30]).unwrap();
        let err = GgufFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("unexpected end of file"), "{err}");
        // an unsupported tensor type reads its metadata, fails on the tensor
        let mut raw = bytes.clone();
        // the ggml type of the only tensor sits 12 bytes before the end of its directory entry
        let entry_end = 24 + 8 + 1 + 4 + 16 + 4 + 8; // header, name len + "m", n_dims, dims, type, offset
        raw[entry_end - 12..entry_end - 8].copy_from_slice(&12u32.to_le_bytes());
        std::fs::write(&path, &raw).unwrap();
        let f = GgufFile::open(&path).unwrap();
        let err = f.tensor_f32("m").unwrap_err().to_string();
        assert!(
            err.contains("ggml type 12") && err.contains("cannot dequantise"),
            "{err}"
        );
    }

    #[test]
    fn header_numbers_that_overflow_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.gguf");
        let mut w = GgufWriter::new();
        w.tensor("m", &[4, 32], &ramp(128), GgmlType::F32);
        let bytes = w.to_bytes();
        // header (24) + name length and "m" (9) + n_dims (4): the two u64 dims, then the
        // type (u32) and the offset (u64)
        let (dims_at, offset_at) = (37, 37 + 16 + 4);
        let patched = |at: usize, words: &[u64]| {
            let mut b = bytes.clone();
            for (k, w) in words.iter().enumerate() {
                b[at + 8 * k..at + 8 * k + 8].copy_from_slice(&w.to_le_bytes());
            }
            b
        };
        for (what, raw) in [
            (
                "a dims product past 2^64",
                patched(dims_at, &[1 << 40, 1 << 40]),
            ),
            ("a byte length past 2^64", patched(dims_at, &[1 << 62, 2])),
            (
                "an offset near u64::MAX",
                patched(offset_at, &[u64::MAX - 3]),
            ),
            (
                "a large but finite size",
                patched(dims_at, &[1 << 31, 1 << 31]),
            ),
        ] {
            std::fs::write(&path, &raw).unwrap();
            let err = GgufFile::open(&path).expect_err(what).to_string();
            assert!(
                err.contains("h.gguf")
                    && (err.contains("does not fit") || err.contains("past the end")),
                "{what}: {err}"
            );
        }
        // general.alignment of u64::MAX (or 0) is refused before any arithmetic
        for a in [u64::MAX, 0] {
            let mut w = GgufWriter::new();
            w.meta("general.alignment", Value::U64(a));
            w.tensor("m", &[4, 32], &ramp(128), GgmlType::F32);
            std::fs::write(&path, w.to_bytes()).unwrap();
            let err = GgufFile::open(&path).unwrap_err().to_string();
            assert!(err.contains("general.alignment"), "{err}");
        }
    }
}
