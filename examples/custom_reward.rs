//! A list reward written outside blade, trained with BLADE.
//!
//! `Novelty` rewards lists of less popular items (mean self-information of the items under the
//! training popularity). Mixed with NDCG@10 it becomes the alignment target of a short BLADE run
//! on the synthetic data. Run with `cargo run -p blade-examples --example custom_reward`.

use blade_core::align::{train_align, AlignConfig, AlignInputs, Method};
use blade_core::reward::{parse_reward, CatalogInfo, ListReward, RewardContext, WeightedSum};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{BackendSpec, ItemLm, ItemLmConfig, SftConfig};
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, ItemId, PreprocessConfig};

/// Mean `-log2 p(item)` of the list, with `p` the item's share of training interactions.
struct Novelty;

impl ListReward for Novelty {
    fn name(&self) -> String {
        "novelty".into()
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        let pop = &ctx.catalog.popularity;
        let total: u32 = pop.iter().sum::<u32>().max(1);
        let info: f32 = list
            .iter()
            .map(|&i| {
                let p = (pop.get(i as usize).copied().unwrap_or(0) + 1) as f32 / total as f32;
                -p.log2()
            })
            .sum();
        info / list.len().max(1) as f32 / 16.0 // roughly onto [0, 1]
    }
}

fn main() -> anyhow::Result<()> {
    let raw = generate(&SyntheticConfig {
        users: 300,
        ..SyntheticConfig::default()
    });
    let dataset = Dataset::from_raw(&raw, &PreprocessConfig::default())?;
    let split = dataset.leave_one_out(10);
    let device = BackendSpec::Flex.device()?;
    let root = std::env::temp_dir().join("blade-custom-reward");

    let sft_dir = root.join("sft");
    let config = SftConfig::new(ItemLmConfig::new(dataset.num_items())).with_epochs(3);
    train_sft(&config, &split, &device, &sft_dir, Dashboard::Plain, false)?;

    let catalog = CatalogInfo::from_dataset(&dataset, &split);
    let ndcg = parse_reward("ndcg@10", &catalog)?;
    let reward = WeightedSum::new(vec![(1.0, ndcg), (0.2, Box::new(Novelty))]);
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: &reward,
        init: &sft_dir,
        device: &device,
    };
    let cfg = AlignConfig::new(Method::Blade.default_config())
        .with_steps(20)
        .with_eval_every(10);
    let out = train_align::<ItemLm>(&cfg, &inputs, &root.join("blade"), Dashboard::Plain, false)?;
    println!(
        "`{}`: SFT reference {:.4} -> BLADE {:.4}",
        out.summary.reward, out.summary.reference_reward, out.summary.policy_reward
    );
    Ok(())
}
