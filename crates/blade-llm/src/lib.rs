//! Pretrained LLM policies for blade.
//!
//! The paper aligns a pretrained instruction-tuned LLM that reads a user's history as item titles
//! and writes the recommended titles. This crate provides everything that takes:
//!
//! - [`gguf`]: GGUF files: a reader of its own (header, metadata, tensor directory, every header
//!   value checked against llama.cpp's limits and the file's size), the block codecs (F32, F16,
//!   BF16, Q4_0, Q4_1, Q8_0) and a streaming writer;
//! - [`safetensors`]: Hugging Face safetensors files and checkpoint folders (sharded or not), read
//!   and written;
//! - [`tokenizer`]: Hugging Face's `tokenizers` built from the GGUF metadata or a
//!   `tokenizer.json`, and chat templates;
//! - [`model`]: the Llama-architecture decoder (RMSNorm, rotary embeddings, grouped-query
//!   attention, SwiGLU, KV cache, LoRA adapters);
//! - [`load`]: building it from GGUF or from safetensors + `config.json`;
//! - [`qmatrix`]: weights kept in the GGUF blocks for inference, with their own products;
//! - [`hub`]: models by repo id from the local Hugging Face cache, offline;
//! - [`rec`]: the recommender: prompts, the title trie, the policy;
//! - [`run`]: LLM run folders (adapters saved apart from the base weights);
//! - [`export`]: a trained run, adapters merged, as a Hugging Face folder or a GGUF file.
//!
//! Test fixtures (tiny random models in both formats) live in the `blade-testkit` crate, outside
//! the library.

pub mod error;
pub mod export;
pub mod gguf;
pub mod hub;
pub mod lm;
pub mod load;
pub mod model;
pub mod qmatrix;
pub mod rec;
pub mod run;
pub mod safetensors;
pub mod tokenizer;

pub use error::LoadError;
pub use lm::{LanguageModel, LmError};
pub use rec::{LlmPolicy, PromptTemplate, TitleIndex};
