//! Pretrained LLM policies for blade.
//!
//! The paper aligns a pretrained instruction-tuned LLM that reads a user's history as item titles
//! and writes the recommended titles. This crate provides everything that takes:
//!
//! - [`gguf`]: a reader of its own for GGUF files (header, metadata, tensor infos, alignment) with
//!   F32, F16, BF16, Q4_0, Q4_1 and Q8_0 tensors dequantised at load, and a small writer used by
//!   tests;
//! - [`tokenizer`]: a byte-level BPE tokenizer built from the GGUF metadata or a `tokenizer.json`,
//!   and chat templates;
//! - [`model`]: the Llama-architecture decoder (RMSNorm, rotary embeddings, grouped-query
//!   attention, SwiGLU, KV cache, LoRA adapters);
//! - [`load`]: building it from GGUF or Hugging Face safetensors + `config.json`;
//! - [`hub`]: models by repo id from the local Hugging Face cache, offline;
//! - [`export`]: a trained run, adapters merged, as a Hugging Face folder or a GGUF file.

pub mod export;
pub mod gguf;
pub mod hub;
pub mod lm;
pub mod load;
pub mod model;
pub mod tokenizer;

pub use lm::{LanguageModel, LmError};
pub mod rec;
#[doc(hidden)]
pub mod testing;

pub use rec::{LlmPolicy, PromptTemplate, TitleIndex};
pub mod run;
