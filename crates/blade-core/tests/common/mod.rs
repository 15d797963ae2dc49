//! What the alignment tests share: a small synthetic dataset and an SFT run on it.

use std::path::Path;

use blade_core::align::{AlignConfig, Method, OptimConfig};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{BackendSpec, ItemLmConfig, SftConfig};
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig, Split};

/// A synthetic dataset of `users` x `items` (prompts of 6 items) and an SFT run of `epochs`
/// written into `dir`.
pub fn synthetic_sft(dir: &Path, users: usize, items: usize, epochs: usize) -> (Dataset, Split) {
    let raw = generate(&SyntheticConfig {
        users,
        items,
        ..SyntheticConfig::tiny()
    });
    let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).unwrap();
    let split = ds.leave_one_out(6);
    let device = BackendSpec::Flex.device().unwrap();
    let config = SftConfig::new(
        ItemLmConfig::new(ds.num_items())
            .with_max_history(6)
            .with_d_model(32),
    )
    .with_epochs(epochs)
    .with_lr(3e-3)
    .with_batch_size(64);
    train_sft(&config, &split, &device, dir, Dashboard::Plain, false).unwrap();
    (ds, split)
}

/// A short alignment run on that data: `steps` steps of B = 12 prompts x G = 4 lists, M = 8
/// reference lists, lr 2e-3, no validation.
#[allow(dead_code)] // not every test binary uses it
pub fn short_align(method: Method, steps: usize) -> AlignConfig {
    AlignConfig::new(method.default_config())
        .with_steps(steps)
        .with_prompts_per_step(12)
        .with_group_size(4)
        .with_reference_lists(8)
        .with_eval_every(0)
        .with_optim(OptimConfig::new().with_lr(2e-3))
}
