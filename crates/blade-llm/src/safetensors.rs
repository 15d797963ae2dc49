//! safetensors, Hugging Face's weight format: the header reader (every offset and size checked
//! against the file), a checkpoint folder ([`SafetensorsModel`]: `config.json` plus one file or
//! the shards of `model.safetensors.index.json`) and a streaming writer.
//!
//! Layout: `u64 header length | JSON header | data`; the header maps each tensor's name to its
//! `dtype`, row-major `shape` and `data_offsets` `[start, end)` from the start of the data, and
//! may hold a `__metadata__` map of strings.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::Value as Json;

use crate::error::{ferr, LoadError};

/// A tensor on the host: `(row-major shape, values)`.
pub type HostTensor = (Vec<usize>, Vec<f32>);

/// Bytes per element of the safetensors dtypes, `None` for dtypes blade does not know.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone)]
struct StEntry {
    file: PathBuf,
    dtype: String,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

impl StEntry {
    /// Opens the file the tensor is in.
    fn open(&self) -> Result<File, LoadError> {
        File::open(&self.file).map_err(|x| ferr(&self.file, x.to_string()))
    }

    /// Reads and decodes the tensor from `f`, its file opened (`name` is for messages).
    fn read(&self, f: &mut File, name: &str) -> Result<HostTensor, LoadError> {
        let io = |x: std::io::Error| ferr(&self.file, x.to_string());
        f.seek(SeekFrom::Start(self.start)).map_err(io)?;
        let mut raw = vec![0u8; (self.end - self.start) as usize];
        f.read_exact(&mut raw).map_err(io)?;
        let values = decode(&raw, &self.dtype).ok_or_else(|| {
            ferr(
                &self.file,
                format!(
                    "tensor `{name}` has dtype {}; F32, F16 and BF16 are supported",
                    self.dtype
                ),
            )
        })?;
        if values.len() != self.shape.iter().product::<usize>() {
            return Err(ferr(
                &self.file,
                format!(
                    "tensor `{name}`: {} values for shape {:?}",
                    values.len(),
                    self.shape
                ),
            ));
        }
        Ok((self.shape.clone(), values))
    }
}

/// A Hugging Face checkpoint: `config.json` plus one `model.safetensors` or several shards listed
/// in `model.safetensors.index.json`.
#[derive(Debug)]
pub struct SafetensorsModel {
    dir: PathBuf,
    config: Json,
    entries: BTreeMap<String, StEntry>,
}

fn read_header(path: &Path) -> Result<BTreeMap<String, StEntry>, LoadError> {
    let mut f = File::open(path).map_err(|e| ferr(path, e.to_string()))?;
    let len = f.metadata().map_err(|e| ferr(path, e.to_string()))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| ferr(path, "too short for a safetensors header"))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 || 8 + n > len {
        return Err(ferr(
            path,
            format!("header length {n} does not fit the file ({len} bytes)"),
        ));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf)
        .map_err(|e| ferr(path, e.to_string()))?;
    let header: BTreeMap<String, Json> = serde_json::from_slice(&buf)
        .map_err(|e| ferr(path, format!("the header is not a JSON object: {e}")))?;
    let base = 8 + n;
    let mut out = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |w: &str| ferr(path, format!("tensor `{name}`: {w}"));
        let dtype = v["dtype"]
            .as_str()
            .ok_or_else(|| bad("no dtype"))?
            .to_string();
        let shape = v["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .map(|d| d as usize)
                    .ok_or_else(|| bad("bad shape"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let off = v["data_offsets"]
            .as_array()
            .ok_or_else(|| bad("no data_offsets"))?;
        let (s, e) = match (
            off.first().and_then(Json::as_u64),
            off.get(1).and_then(Json::as_u64),
        ) {
            (Some(s), Some(e)) if off.len() == 2 && s <= e => (s, e),
            _ => {
                return Err(bad(
                    "data_offsets is not a pair [start, end] with start <= end",
                ))
            }
        };
        if base.checked_add(e).is_none_or(|end| end > len) {
            return Err(bad(&format!(
                "data_offsets [{s}, {e}] end past the end of the file ({len} bytes, data from \
                 byte {base}): truncated download?"
            )));
        }
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let Some(elements) = elements else {
            return Err(bad(&format!(
                "shape {shape:?} has more elements than fit in memory"
            )));
        };
        if let Some(size) = dtype_size(&dtype) {
            if elements.checked_mul(size) != Some(e - s) {
                return Err(bad(&format!(
                    "shape {shape:?} of {dtype} needs {} bytes, data_offsets [{s}, {e}] hold {}",
                    elements.saturating_mul(size),
                    e - s
                )));
            }
        }
        out.insert(
            name,
            StEntry {
                file: path.to_path_buf(),
                dtype,
                shape,
                start: base + s,
                end: base + e,
            },
        );
    }
    Ok(out)
}

impl SafetensorsModel {
    /// Opens the checkpoint folder `dir` (or the folder of a `.safetensors` file).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let cfg_path = dir.join("config.json");
        let config: Json = serde_json::from_str(
            &std::fs::read_to_string(&cfg_path).map_err(|e| ferr(&cfg_path, e.to_string()))?,
        )
        .map_err(|e| ferr(&cfg_path, format!("not JSON: {e}")))?;
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if path.is_file() {
            vec![path.to_path_buf()]
        } else if index.exists() {
            let idx: Json = serde_json::from_str(
                &std::fs::read_to_string(&index).map_err(|e| ferr(&index, e.to_string()))?,
            )
            .map_err(|e| ferr(&index, format!("not JSON: {e}")))?;
            let map = idx["weight_map"]
                .as_object()
                .ok_or_else(|| ferr(&index, "no `weight_map` object"))?;
            let mut shards: Vec<PathBuf> = map
                .values()
                .filter_map(Json::as_str)
                .map(|f| dir.join(f))
                .collect();
            shards.sort();
            shards.dedup();
            shards
        } else {
            vec![dir.join("model.safetensors")]
        };
        let mut entries = BTreeMap::new();
        for f in &files {
            entries.extend(read_header(f)?);
        }
        Ok(Self {
            dir,
            config,
            entries,
        })
    }

    /// The checkpoint's folder (where `config.json` and the tokenizer files are).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed `config.json`.
    pub fn config_json(&self) -> &Json {
        &self.config
    }

    /// The path of `config.json`, for messages.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Number of tensors over all files.
    pub fn num_tensors(&self) -> usize {
        self.entries.len()
    }

    /// Whether the checkpoint holds tensor `name` (its Hugging Face name).
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Tensor `name` (its Hugging Face name) as F32, or `None` if no file holds it.
    pub fn read(&self, name: &str) -> Result<Option<HostTensor>, LoadError> {
        self.entries
            .get(name)
            .map(|e| e.read(&mut e.open()?, name))
            .transpose()
    }
}

/// How a written safetensors tensor stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
}

impl StDtype {
    /// The dtype's name in a safetensors header.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(values.len() * self.size());
        match self {
            Self::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
            Self::F16 => values
                .iter()
                .for_each(|&v| out.extend(f16::from_f32(v).to_le_bytes())),
            Self::BF16 => values
                .iter()
                .for_each(|&v| out.extend(bf16::from_f32(v).to_le_bytes())),
        }
    }
}

/// A tensor to write: `(name, row-major shape, values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Writes a safetensors file of F32 tensors (atomically).
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> std::io::Result<()> {
    write_safetensors_as(path, tensors, StDtype::F32, &BTreeMap::new())
}

/// Writes a safetensors file with every tensor stored as `dtype` and `metadata` as its
/// `__metadata__` (left out when empty), streamed to a temporary sibling file that is synced and
/// renamed, so no half-written file is left at `path`.
pub fn write_safetensors_as(
    path: &Path,
    tensors: &[NamedTensor],
    dtype: StDtype,
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0usize;
    for (name, shape, v) in tensors {
        if shape.iter().product::<usize>() != v.len() {
            return Err(std::io::Error::other(format!(
                "tensor `{name}`: {} values for shape {shape:?}",
                v.len()
            )));
        }
        let end = offset + dtype.size() * v.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut buf = Vec::new();
    blade_data::write_atomic_with(path, |f| {
        f.write_all(&(h.len() as u64).to_le_bytes())?;
        f.write_all(&h)?;
        for (_, _, v) in tensors {
            dtype.encode(v, &mut buf);
            f.write_all(&buf)?;
        }
        Ok(())
    })
    .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Reads every tensor of one safetensors file as F32 (F16 / BF16 converted).
pub fn read_safetensors_f32(path: &Path) -> Result<BTreeMap<String, HostTensor>, LoadError> {
    let entries = read_header(path)?;
    let Some(first) = entries.values().next() else {
        return Ok(BTreeMap::new());
    };
    // one file: opened once for all its tensors
    let mut f = first.open()?;
    entries
        .into_iter()
        .map(|(name, e)| e.read(&mut f, &name).map(|t| (name, t)))
        .collect()
}

fn decode(raw: &[u8], dtype: &str) -> Option<Vec<f32>> {
    Some(match dtype {
        "F32" => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "F16" => raw
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        "BF16" => raw
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}
