//! Errors of the reward module: a malformed `--reward` spec and a non-finite reward value.

use std::fmt;

/// A `--reward` spec that does not parse, with the position of the offending token.
///
/// Its `Display` names the spec, the problem, the 1-based column and what was expected, then
/// echoes the spec with a caret line under the offending token, compiler style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The spec as given.
    pub spec: String,
    /// 1-based column (in characters) of the offending token; `len + 1` for the end of the spec.
    pub column: usize,
    /// Width of the offending token in characters (at least 1).
    pub width: usize,
    /// What is wrong, e.g. ``unknown reward `ildd` ``.
    pub problem: String,
    /// What the parser expected there, e.g. `one of ndcg@K, ...`.
    pub expected: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tabs would misalign the caret line, so the echo shows them as spaces.
        let echo = self.spec.replace('\t', " ");
        write!(
            f,
            "--reward \"{}\": {} at column {}; expected {}\n  {}\n  {}{}",
            self.spec,
            self.problem,
            self.column,
            self.expected,
            echo,
            " ".repeat(self.column.saturating_sub(1)),
            "^".repeat(self.width.max(1)),
        )
    }
}

impl std::error::Error for SpecError {}

/// Everything that can go wrong when building or evaluating a list reward.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RewardError {
    /// The `--reward` spec does not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A reward returned NaN or an infinite value; it is never passed on silently.
    #[error("{}", non_finite_message(reward, *value, *list))]
    NonFinite {
        /// The reward's `name()`.
        reward: String,
        /// The offending value.
        value: f32,
        /// Index of the list in a batch ([`super::score_group`]); `None` for a single list.
        list: Option<usize>,
    },
    /// [`super::score_group`] got different numbers of contexts and lists.
    #[error(
        "reward batch has {contexts} contexts but {lists} lists; expected one context per list"
    )]
    BatchMismatch {
        /// Number of contexts given.
        contexts: usize,
        /// Number of lists given.
        lists: usize,
    },
}

fn non_finite_message(reward: &str, value: f32, list: Option<usize>) -> String {
    let at = list.map_or_else(String::new, |i| format!(" for list {i} of the batch"));
    format!("reward `{reward}` returned the non-finite value {value}{at}; rewards must be finite")
}
