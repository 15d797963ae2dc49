//! [`AlignPolicy`]: what [`train_align`](super::train_align) needs of a policy, and its
//! implementation for the item-level model [`ItemLm`].

use std::path::Path;

use burn::prelude::*;

use crate::error::CoreError;
use crate::policy::Policy;
use crate::sft::{save_model_atomic, write_atomic, SftConfig};
use crate::ItemLm;

/// A policy the alignment trainer can fine-tune: it samples and scores lists (`Policy`), is a burn
/// `Module` (gradients, optimiser, EMA blending; `Module` already implies `Clone + Send + Debug`),
/// and knows how to persist itself in a run folder.
///
/// The trainer holds two copies: the frozen reference, loaded on the plain device, and the
/// policy being trained, loaded on the autodiff device. The BOND anchor is a clone of the
/// reference whose float parameters are blended towards the policy's, parameter by parameter in
/// `Module::visit` / `Module::map` order, so both copies must share one architecture.
pub trait AlignPolicy: Policy + Module {
    /// Loads the policy stored in run folder `dir` (the SFT run or an aligned run written by
    /// `save_run`) onto `device`, which may be an autodiff device. Without dropout / in eval mode.
    fn load_run(dir: &Path, device: &Device) -> crate::Result<Self>;

    /// Persists the policy into run folder `dir` so that `load_run(dir, ..)` restores it; `init`
    /// is the SFT run it was started from (for policies that store only a delta, e.g. adapters,
    /// plus a pointer to their base). Writes atomically. The trainer calls it on the inference
    /// copy (`module.valid()`).
    fn save_run(&self, dir: &Path, init: &Path) -> crate::Result<()>;

    /// Checks that the policy can produce lists of `list_len` items for prompts of up to
    /// `max_history` items; an error names what does not fit.
    fn check_fit(&self, list_len: usize, max_history: usize) -> crate::Result<()>;
}

fn load_sft_config(dir: &Path) -> crate::Result<SftConfig> {
    let cfg_path = dir.join("config.json");
    SftConfig::read(&cfg_path)
        .map_err(|e| CoreError::file(&cfg_path, format!("not an SFT run folder ({e})")))
}

impl AlignPolicy for ItemLm {
    /// Reads `config.json` (an [`SftConfig`]) and `model.bpk`, with dropout 0: dropout would
    /// make the importance ratios noisy; the weights are unchanged.
    fn load_run(dir: &Path, device: &Device) -> crate::Result<Self> {
        let config = load_sft_config(dir)?;
        let path = dir.join("model.bpk");
        config
            .model
            .with_dropout(0.0)
            .init(device)
            .try_load_file(&path)
            .map_err(|e| CoreError::file(&path, e))
    }

    /// Writes `model.bpk` and a copy of the SFT run's `config.json`, so that the folder loads
    /// like an SFT run (`load_item_lm`, `blade eval`).
    fn save_run(&self, dir: &Path, init: &Path) -> crate::Result<()> {
        let config = load_sft_config(init)?;
        save_model_atomic(self, &dir.join("model.bpk"))?;
        write_atomic(&dir.join("config.json"), config.to_string().as_bytes())
    }

    fn check_fit(&self, list_len: usize, max_history: usize) -> crate::Result<()> {
        if self.max_list() < list_len {
            return Err(CoreError::Config(format!(
                "list length {} exceeds the SFT model's max_list {}",
                list_len,
                self.max_list()
            )));
        }
        if self.max_history() != max_history {
            return Err(CoreError::Config(format!(
                "the SFT model was trained with L = {} but the data uses L = {}",
                self.max_history(),
                max_history
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Recommender};
    use crate::{ItemLmConfig, PromptBatch};

    #[cfg(feature = "flex")]
    #[test]
    fn item_lm_round_trips_through_the_trait() {
        let root = tempfile::tempdir().unwrap();
        let (init, out) = (root.path().join("sft"), root.path().join("aligned"));
        std::fs::create_dir_all(&init).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let device = crate::BackendSpec::Flex.device().unwrap();
        let config = SftConfig::new(
            ItemLmConfig::new(30)
                .with_max_history(4)
                .with_max_list(5)
                .with_d_model(16)
                .with_d_ff(32),
        );
        write_atomic(&init.join("config.json"), config.to_string().as_bytes()).unwrap();
        save_model_atomic(&config.model.init(&device), &init.join("model.bpk")).unwrap();

        let prompts = PromptBatch {
            histories: vec![vec![1, 2, 3], vec![7], vec![]],
            exclude: vec![vec![1, 2, 3], vec![], vec![]],
        };
        let lists = vec![vec![4, 5, 6], vec![8, 9, 10], vec![11, 12, 13]];
        let model = ItemLm::load_run(&init, &device).unwrap();
        model.save_run(&out, &init).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("config.json")).unwrap(),
            config.to_string(),
            "the aligned run carries the SFT config"
        );
        let back = ItemLm::load_run(&out, &device).unwrap();
        assert_eq!(
            model.score_all(&prompts).unwrap(),
            back.score_all(&prompts).unwrap()
        );
        let host = |m: &ItemLm| {
            m.log_prob(&prompts, &lists)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(host(&model), host(&back));
        // per-slot log-probabilities: one per item, summing to the list's
        let toks = model.token_log_probs(&prompts, &lists).unwrap();
        assert_eq!(toks.values.dims(), [3, 3]);
        let summed = toks.sum().into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in summed.iter().zip(host(&model)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // the trainer's copy lives on the autodiff device and loads the same weights
        let trained = ItemLm::load_run(&out, &device.clone().autodiff()).unwrap();
        assert_eq!(host(&model), host(&trained.valid()));

        assert!(model.check_fit(5, 4).is_ok());
        let e = model.check_fit(6, 4).unwrap_err().to_string();
        assert!(e.contains("max_list 5"), "{e}");
        let e = model.check_fit(5, 3).unwrap_err().to_string();
        assert!(e.contains("L = 4"), "{e}");
        let e = ItemLm::load_run(&root.path().join("none"), &device)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an SFT run folder"), "{e}");
    }
}
