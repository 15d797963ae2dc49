//! What the alignment tests share: a small synthetic dataset and an SFT run on it.

use std::path::Path;

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
