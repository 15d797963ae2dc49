//! `blade export`: a trained LLM run, adapters merged, for transformers or llama.cpp.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use blade_llm::export::{export_run, ExportDtype, ExportFormat, ExportOptions};
use clap::{Args, ValueEnum};

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// A Hugging Face folder (`config.json`, safetensors, tokenizer, generation config).
    Hf,
    /// One GGUF file for llama.cpp.
    Gguf,
}

/// `blade export`
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The LLM run folder (made by `blade train --policy llm`).
    #[arg(long)]
    run: PathBuf,
    /// `hf` (a folder `transformers.AutoModelForCausalLM.from_pretrained` loads) or `gguf`.
    #[arg(long, value_enum)]
    format: Format,
    /// Where to write: a new folder (hf) or a new `.gguf` file (gguf); never overwritten.
    #[arg(long)]
    out: PathBuf,
    /// Storage of the matrices: f32, f16, bf16, or q8_0 (gguf only). Vectors stay f32.
    #[arg(long, default_value = "f32")]
    dtype: ExportDtype,
    /// Largest safetensors shard (hf): bytes, or with a unit (KB, MB, GB, KiB, MiB, GiB).
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    max_shard_size: u64,
    /// The pre-tokenizer to name in a GGUF export of a Hugging Face base when blade cannot
    /// recognise it (gpt2, smollm, llama3, qwen2).
    #[arg(long)]
    pre: Option<String>,
}

/// `"5GB"` -> 5,000,000,000; `"2MiB"` -> 2,097,152; a plain number is bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a size such as 500MB or 5GB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}`; use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    let bytes = n * mult;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("`{s}`: expected at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// Runs `blade export`.
pub fn run(a: ExportArgs) -> Result<()> {
    let pre = match &a.pre {
        Some(name) => Some(
            blade_llm::tokenizer::PreTokenizer::from_gguf_name(name)
                .map_err(|e| anyhow::anyhow!("--pre: {e}"))?,
        ),
        None => None,
    };
    let opts = ExportOptions {
        format: match a.format {
            Format::Hf => ExportFormat::Hf,
            Format::Gguf => ExportFormat::Gguf,
        },
        dtype: a.dtype,
        max_shard_bytes: a.max_shard_size,
        pre,
    };
    let t0 = Instant::now();
    let r = export_run(&a.run, &a.out, &opts)?;
    println!(
        "exported {} ({} tensors, {:.1} MB of weights, {} LoRA adapters merged) in {:.1} s: {}",
        r.out.display(),
        r.tensors,
        r.tensor_bytes as f64 / 1e6,
        r.merged_adapters,
        t0.elapsed().as_secs_f64(),
        r.files.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("2MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("0.5 kb"), Ok(500));
        assert!(parse_size("5TB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("GB").unwrap_err().contains("expected a size"));
        assert!(parse_size("0").unwrap_err().contains("at least 1 byte"));
    }
}
