//! Reading GGUF files: header, metadata, tensor directory; tensor data on demand.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{dequantize, GgmlType, GgufError, Value};

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

// Limits on what a header may claim. Where llama.cpp (ggml's `gguf.cpp`) refuses a file, blade
// refuses it too, with the same limit; lengths and counts are also bounded by the bytes the file
// has left, so a corrupt header fails cleanly instead of allocating what the file cannot hold.

/// Most dimensions of a tensor: ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Longest tensor name in bytes: ggml's `GGML_MAX_NAME` (64) less the terminating NUL.
pub const MAX_NAME: usize = 63;
/// Versions read: llama.cpp dropped version 1 and writes 3 (`GGUF_VERSION`).
pub const VERSIONS: std::ops::RangeInclusive<u32> = 2..=3;
/// Bytes a metadata entry takes at least: key length (u64), an empty key, the value type (u32)
/// and a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Bytes a tensor directory entry takes at least: name length (u64), an empty name, n_dims
/// (u32), one dim (u64), the type (u32) and the offset (u64).
const MIN_TENSOR_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Bytes one element of metadata value type `ty` takes at least (`None`: unknown type).
fn min_value_bytes(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 4 + 8,
        _ => return None,
    })
}

struct Cursor<R> {
    inner: R,
    pos: u64,
    path: PathBuf,
    file_len: u64,
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

    /// Bytes left in the file after the cursor.
    fn left(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > self.left() {
            return Err(self.fail(format!(
                "a string of {len} bytes runs past the end of the file ({} bytes left)",
                self.left()
            )));
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
                let Some(min) = min_value_bytes(item) else {
                    return Err(self.fail(format!("unknown array element type {item}")));
                };
                if len.saturating_mul(min) > self.left() {
                    return Err(self.fail(format!(
                        "an array of {len} elements of type {item} runs past the end of the file \
                         ({} bytes left)",
                        self.left()
                    )));
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
            file_len,
        };
        if &c.bytes::<4>()? != b"GGUF" {
            return Err(GgufError::Format {
                path: path.to_path_buf(),
                what: "the file does not start with the magic `GGUF`".into(),
            });
        }
        let version = c.u32()?;
        if !VERSIONS.contains(&version) {
            return Err(c.fail(format!(
                "version {version}; versions {} to {} are read (llama.cpp dropped version 1)",
                VERSIONS.start(),
                VERSIONS.end()
            )));
        }
        let tensor_count = c.u64()?;
        let kv_count = c.u64()?;
        let least = tensor_count
            .saturating_mul(MIN_TENSOR_BYTES)
            .saturating_add(kv_count.saturating_mul(MIN_KV_BYTES));
        if least > c.left() {
            return Err(c.fail(format!(
                "{tensor_count} tensors and {kv_count} metadata entries need at least {least} \
                 bytes; the file has {} left",
                c.left()
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                // llama.cpp refuses duplicate keys
                return Err(c.fail(format!("metadata key `{key}` appears twice")));
            }
        }
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
        let mut names = std::collections::HashSet::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = c.string()?;
            if name.len() > MAX_NAME {
                return Err(c.fail(format!(
                    "tensor name `{name}` is {} bytes; ggml allows {MAX_NAME} (GGML_MAX_NAME)",
                    name.len()
                )));
            }
            if !names.insert(name.clone()) {
                return Err(c.fail(format!("tensor `{name}` appears twice")));
            }
            let n_dims = c.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.fail(format!(
                    "tensor `{name}` has {n_dims} dimensions; ggml allows 1 to {MAX_DIMS} \
                     (GGML_MAX_DIMS)"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = GgmlType::from_code(c.u32()?);
            if let Some((per_block, _)) = ggml_type.block() {
                if dims[0] % per_block as u64 != 0 {
                    return Err(c.fail(format!(
                        "tensor `{name}` of type {ggml_type} has rows of {} values, not a \
                         multiple of its block of {per_block} (llama.cpp refuses such rows)",
                        dims[0]
                    )));
                }
            }
            let offset = c.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        // llama.cpp reads general.alignment as a u32 and refuses one that is not a power of 2
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(c.fail(format!(
                    "general.alignment = {v:?}; expected a u32 power of 2, as llama.cpp reads it \
                     (it writes 32)"
                )))
            }
        };
        if let Some(t) = tensors.iter().find(|t| t.offset % alignment != 0) {
            return Err(c.fail(format!(
                "tensor `{}` starts at offset {}, not a multiple of general.alignment ({alignment})",
                t.name, t.offset
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
        let (info, raw) = self.tensor_bytes(name)?;
        let values = dequantize(info.ggml_type, &raw, info.len())
            .ok_or_else(|| self.content(format!("tensor `{name}`: unsupported type")))?;
        Ok((info.shape(), values))
    }

    /// Reads tensor `name` as stored (its blocks, not dequantised), with its directory entry.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, Vec<u8>), GgufError> {
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
        Ok((info, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::super::GgufWriter;
    use super::*;
    use crate::gguf::test_ramp as ramp;

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
        // cut before the tensor directory: the counts ask for more than the file holds
        std::fs::write(&path, &bytes[..30]).unwrap();
        let err = GgufFile::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("need at least 32 bytes; the file has 6 left"),
            "{err}"
        );
        // cut inside the tensor's directory entry (at its type)
        std::fs::write(&path, &bytes[..56]).unwrap();
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
                patched(offset_at, &[u64::MAX - 31]),
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

    #[test]
    fn llama_cpp_limits_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.gguf");
        let check = |w: &GgufWriter, want: &[&str]| {
            std::fs::write(&path, w.to_bytes()).unwrap();
            let err = GgufFile::open(&path).unwrap_err().to_string();
            assert!(
                err.contains("l.gguf") && want.iter().all(|x| err.contains(x)),
                "{want:?}: {err}"
            );
        };
        let mut w = GgufWriter::new();
        w.tensor("m", &[1, 1, 1, 2, 32], &ramp(64), GgmlType::F32);
        check(&w, &["5 dimensions", "GGML_MAX_DIMS"]);
        let mut w = GgufWriter::new();
        w.tensor(&"x".repeat(64), &[32], &ramp(32), GgmlType::F32);
        check(&w, &["64 bytes", "GGML_MAX_NAME"]);
        let mut w = GgufWriter::new();
        w.tensor("m", &[32], &ramp(32), GgmlType::F32);
        w.tensor("m", &[32], &ramp(32), GgmlType::F32);
        check(&w, &["tensor `m` appears twice"]);
        let mut w = GgufWriter::new();
        w.meta("a", Value::U32(1)).meta("a", Value::U32(2));
        check(&w, &["key `a` appears twice"]);
        for a in [Value::U32(48), Value::U64(32), Value::U32(0)] {
            let mut w = GgufWriter::new();
            w.meta("general.alignment", a);
            check(&w, &["general.alignment", "power of 2"]);
        }
        // the writer lays tensors out every 32 bytes; a file claiming 64 has a misaligned one
        let mut w = GgufWriter::new();
        w.meta("general.alignment", Value::U32(64));
        w.tensor("a", &[8], &ramp(8), GgmlType::F32);
        w.tensor("b", &[8], &ramp(8), GgmlType::F32);
        check(&w, &["tensor `b` starts at offset 32", "(64)"]);
        // a Q8_0 row of 64 values patched to 48: not a whole number of blocks
        let mut w = GgufWriter::new();
        w.tensor("q", &[1, 64], &ramp(64), GgmlType::Q8_0);
        let mut raw = w.to_bytes();
        let dims_at = 24 + 8 + 1 + 4; // header, name length and "q", n_dims
        raw[dims_at..dims_at + 8].copy_from_slice(&48u64.to_le_bytes());
        std::fs::write(&path, &raw).unwrap();
        let err = GgufFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("rows of 48 values"), "{err}");
        // counts, string and array lengths beyond what the file holds
        let mut w = GgufWriter::new();
        w.meta("s", Value::String("abc".into()));
        w.meta("t", Value::Array(vec![Value::U32(1), Value::U32(2)]));
        let bytes = w.to_bytes();
        let patch = |at: usize, v: u64| {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            std::fs::write(&path, &b).unwrap();
            GgufFile::open(&path).unwrap_err().to_string()
        };
        let err = patch(16, 1 << 40); // kv_count
        assert!(
            err.contains("1099511627776 metadata entries need at least"),
            "{err}"
        );
        let s_len_at = 24 + 8 + 1 + 4; // header, key length and "s", value type
        let err = patch(s_len_at, 1 << 40);
        assert!(
            err.contains("string of 1099511627776 bytes runs past"),
            "{err}"
        );
        let arr_len_at = s_len_at + 8 + 3 + 8 + 1 + 4 + 4; // "abc", key "t", type 9, item type
        let err = patch(arr_len_at, 1 << 40);
        assert!(err.contains("array of 1099511627776 elements"), "{err}");
    }
}
