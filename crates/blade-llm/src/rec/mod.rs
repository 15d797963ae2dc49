//! Recommendation with titles: an LLM [`Policy`] that reads a user's history as item titles and
//! writes K catalogue titles, one per line, under a token trie so that every title it writes is a
//! real catalogue item.
//!
//! - **Prompt**: a configurable template (the LLM4Rec style: the last L titles, oldest first, then
//!   an instruction), wrapped in the model's chat template.
//! - **Items as token sequences**: item `i` is `tokens(title_i) ++ [separator]` (the separator is
//!   the newline token by default). Titles are tokenised on their own; the byte-level
//!   pre-tokenizer splits at a newline, so a title's tokens do not depend on the line before it.
//!   Duplicate titles get a ` #2`, ` #3`, ... suffix so that the map title -> item is one-to-one.
//! - **Constrained decoding**: a trie over those sequences. At each step only tokens that continue
//!   a path to an item still allowed (not excluded, not already in the list) can be chosen; the
//!   distribution is the model's softmax renormalised over those tokens, and a list's
//!   log-probability is the sum over its tokens of these renormalised log-probabilities (the same
//!   quantity in sampling, greedy decoding and the differentiable [`Policy::log_prob`]).
//! - **Full ranking**: an item's score is its title's log-probability as the *first* line of the
//!   answer, under the same trie renormalisation, computed in batches over the catalogue with the
//!   prompt's KV cache shared (prefilled once per user).
//!
//! The parts: [`prompt`] (the template and its rendering), [`trie`] (titles as token sequences
//! and the walk that constrains decoding), [`policy`] (the model as a blade policy).

pub mod policy;
pub mod prompt;
pub mod trie;

pub use policy::{LlmContext, LlmPolicy};
pub use prompt::PromptTemplate;
pub use trie::TitleIndex;
