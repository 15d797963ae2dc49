//! Writes blade's tiny random test LLM (2 layers, d = 32, a 267-token byte-level vocabulary with
//! ChatML specials) as a GGUF file or a Hugging Face folder, so that the command line can be
//! tried, and checked against other tools, without downloading a model:
//!
//! ```text
//! cargo run -p blade-examples --example tiny_llm -- --gguf tiny.gguf
//! cargo run -p blade-examples --example tiny_llm -- --hf tiny-hf --qwen2
//! ```
//!
//! `--qwen2` gives the Qwen2 layout (Q/K/V biases, a separate output head). `--llama3-rope` gives
//! 16-wide heads, rotary base 500,000 and Llama 3's rotary scaling with an original context of
//! 64 positions, so that the scaling shows at short lengths. `--like llama3.2-1b` and
//! `--like qwen2.5-0.5b` give those models' layouts (head counts, vocabularies, rotary settings)
//! narrowed to two layers. The weights are random: the text it writes is noise, the numbers are
//! exact.

use blade_testkit::{write_tiny_gguf, write_tiny_hf, RopeScaling, TinySpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tiny_llm (--gguf FILE.gguf | --hf DIR) \
                 [--qwen2 | --llama3-rope | --like llama3.2-1b|qwen2.5-0.5b]";
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let (spec, name) = match (has("--qwen2"), has("--llama3-rope"), value("--like")) {
        (false, false, None) => (TinySpec::default(), "tiny llama"),
        (true, false, None) => (
            TinySpec {
                qkv_bias: true,
                untied: true,
                ..TinySpec::default()
            },
            "tiny qwen2",
        ),
        (false, true, None) => (
            TinySpec::scaled_rope(RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64,
            }),
            "tiny llama with Llama 3 rotary scaling",
        ),
        (false, false, Some(l)) if l == "llama3.2-1b" => {
            (TinySpec::llama32_1b(), "Llama-3.2-1B-layout")
        }
        (false, false, Some(l)) if l == "qwen2.5-0.5b" => {
            (TinySpec::qwen25_05b(), "Qwen2.5-0.5B-layout")
        }
        _ => anyhow::bail!("{usage}"),
    };
    match (value("--gguf"), value("--hf")) {
        (Some(path), None) => write_tiny_gguf(path.as_ref(), &spec)?,
        (None, Some(dir)) => write_tiny_hf(dir.as_ref(), &spec)?,
        _ => anyhow::bail!("{usage}"),
    }
    println!("wrote the {name} model");
    Ok(())
}
