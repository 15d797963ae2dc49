//! Prompt batches: the host-side description of what a policy conditions on.

use blade_data::{EvalCase, ItemId, TrainPrompt};

/// A batch of prompts: per prompt, the history (oldest first) and the items a generated list
/// must not contain (the history itself when history masking is on).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptBatch {
    /// Per prompt, up to `L` history items, oldest first.
    pub histories: Vec<Vec<ItemId>>,
    /// Per prompt, items that may not appear in a generated list (sorted or not).
    pub exclude: Vec<Vec<ItemId>>,
}

impl PromptBatch {
    /// Prompts of evaluation cases. With `mask_history`, every item the user saw before the
    /// target is excluded from lists and rankings (METHOD.md section 6).
    pub fn from_cases(cases: &[EvalCase], mask_history: bool) -> Self {
        Self {
            histories: cases.iter().map(|c| c.history.clone()).collect(),
            exclude: cases
                .iter()
                .map(|c| {
                    if mask_history {
                        c.seen.clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        }
    }

    /// Prompts of training windows; with `mask_history` the window itself is excluded.
    pub fn from_train(prompts: &[TrainPrompt], mask_history: bool) -> Self {
        Self {
            histories: prompts.iter().map(|p| p.history.clone()).collect(),
            exclude: prompts
                .iter()
                .map(|p| {
                    if mask_history {
                        p.history.clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        }
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.histories.len()
    }

    /// Whether the batch holds no prompt.
    pub fn is_empty(&self) -> bool {
        self.histories.is_empty()
    }

    /// Each prompt repeated `g` times in place (`p0 p0 p0 p1 p1 p1 ...`), for group sampling.
    pub fn repeat_each(&self, g: usize) -> Self {
        let rep = |v: &Vec<Vec<ItemId>>| {
            v.iter()
                .flat_map(|x| std::iter::repeat_n(x.clone(), g))
                .collect::<Vec<_>>()
        };
        Self {
            histories: rep(&self.histories),
            exclude: rep(&self.exclude),
        }
    }

    /// The prompts at `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            histories: self.histories[range.clone()].to_vec(),
            exclude: self.exclude[range].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_each_groups_copies_together() {
        let b = PromptBatch {
            histories: vec![vec![1], vec![2]],
            exclude: vec![vec![], vec![2]],
        };
        let r = b.repeat_each(3);
        assert_eq!(
            r.histories,
            vec![vec![1], vec![1], vec![1], vec![2], vec![2], vec![2]]
        );
        assert_eq!(r.exclude[3], vec![2]);
        assert_eq!(r.slice(2..4).histories, vec![vec![1], vec![2]]);
    }
}
