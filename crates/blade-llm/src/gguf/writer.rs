//! Writing GGUF files: metadata, tensor directory and data, streamed to disk atomically.

use std::io::Write;
use std::path::Path;

use super::{quantize, GgmlType, Value};

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
