//! Writes blade's tiny random test LLM (2 layers, d = 32, a 267-token byte-level vocabulary with
//! ChatML specials) as a GGUF file or a Hugging Face folder, so that the command line can be
//! tried, and checked against other tools, without downloading a model:
//!
//! ```text
//! cargo run -p blade-examples --example tiny_llm -- --gguf tiny.gguf
//! cargo run -p blade-examples --example tiny_llm -- --hf tiny-hf --qwen2
//! ```
//!
//! `--qwen2` gives the Qwen2 layout (Q/K/V biases, a separate output head). The weights are
//! random: the text it writes is noise, the numbers are exact.

use blade_testkit::{write_tiny_gguf, write_tiny_hf, TinySpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tiny_llm (--gguf FILE.gguf | --hf DIR) [--qwen2]";
    let qwen2 = args.iter().any(|a| a == "--qwen2");
    let spec = TinySpec {
        qkv_bias: qwen2,
        untied: qwen2,
        ..TinySpec::default()
    };
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    match (value("--gguf"), value("--hf")) {
        (Some(path), None) => write_tiny_gguf(path.as_ref(), &spec)?,
        (None, Some(dir)) => write_tiny_hf(dir.as_ref(), &spec)?,
        _ => anyhow::bail!("{usage}"),
    }
    println!(
        "wrote the tiny {} model",
        if qwen2 { "qwen2" } else { "llama" }
    );
    Ok(())
}
