//! Quickstart: the library path behind `blade demo`, in a few lines.
//!
//! Synthetic data -> leave-one-out split -> SFT of the item-level transformer on the CPU ->
//! evaluation against the `pop` baseline. Run with
//! `cargo run -p blade-examples --example quickstart`.

use blade_core::sft::{train_sft, Dashboard};
use blade_core::{
    BackendSpec, EvalConfig, Evaluator, ItemLmConfig, PopRecommender, Recommender, SftConfig,
};
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig};

fn main() -> anyhow::Result<()> {
    let raw = generate(&SyntheticConfig {
        users: 300,
        ..SyntheticConfig::default()
    });
    let dataset = Dataset::from_raw(&raw, &PreprocessConfig::default())?;
    let split = dataset.leave_one_out(10);
    let device = BackendSpec::Flex.device()?;

    let config = SftConfig::new(ItemLmConfig::new(dataset.num_items())).with_epochs(3);
    let dir = std::env::temp_dir().join("blade-quickstart");
    let sft = train_sft(&config, &split, &device, &dir, Dashboard::Plain, false)?;

    let evaluator = Evaluator::new(&dataset, &split, EvalConfig::default())?;
    let pop = PopRecommender::new(&split.item_popularity);
    for rec in [&sft.model as &dyn Recommender, &pop] {
        let (report, _) = evaluator.evaluate(rec, &split.test, &mut |_, _| {})?;
        let ndcg = report.full_ranking.get("ndcg@10").unwrap_or(f64::NAN);
        println!("{:>8}: NDCG@10 = {ndcg:.4}", rec.name());
    }
    Ok(())
}
