//! The alignment trainer end to end on small synthetic data: every method runs without NaN,
//! BLADE improves its own training reward over the SFT reference, and runs resume.

mod common;

use std::path::Path;

use blade_core::align::{train_align, AlignConfig, AlignInputs, Method, OptimConfig};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::Dashboard;
use blade_core::{BackendSpec, ItemLm};
use blade_data::{Dataset, Split};

/// burn seeds a device globally, so two tests training at once would interleave their random
/// draws; training tests take this lock to stay deterministic.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup(dir: &Path) -> (Dataset, Split) {
    common::synthetic_sft(dir, 160, 80, 3)
}

fn small(method: Method, steps: usize) -> AlignConfig {
    AlignConfig::new(method.default_config())
        .with_steps(steps)
        .with_prompts_per_step(16)
        .with_group_size(6)
        .with_reference_lists(8)
        .with_eval_every(0)
        .with_optim(OptimConfig::new().with_lr(1e-3))
}

#[test]
fn every_method_trains_and_blade_improves_its_reward() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let sft = root.path().join("sft");
    let (ds, split) = setup(&sft);
    let device = BackendSpec::Flex.device().unwrap();
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10 + 0.2*ild", &catalog).unwrap();
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init: &sft,
        device: &device,
    };

    for method in Method::ALL {
        let dir = root.path().join(method.name());
        let out = train_align::<ItemLm>(&small(method, 3), &inputs, &dir, Dashboard::Plain, false)
            .unwrap();
        assert!(
            !out.summary.non_finite,
            "{} produced a non-finite value",
            method.name()
        );
        assert_eq!(out.curves.len(), 4, "step 0 + 3 steps");
        for f in [
            "model.bpk",
            "optim.bpk",
            "target.json",
            "state.json",
            "curves.csv",
            "summary.json",
        ] {
            assert!(dir.join(f).exists(), "{} lacks {f}", method.name());
        }
        let caches = std::fs::read_dir(sft.join("reference")).unwrap().count();
        assert_eq!(
            caches, 1,
            "one reference cache beside the SFT run, shared by all methods"
        );
        let static_tau = out.curves[1..].iter().all(|c| c.tau == 0.0);
        match method {
            Method::BonStatic => assert!(static_tau, "bon-static is tau = 0"),
            Method::Blade => assert!(out.curves[1..].iter().all(|c| (c.tau - 0.3).abs() < 1e-9)),
            _ => {}
        }
    }

    let dir = root.path().join("blade-long");
    let out = train_align::<ItemLm>(
        &small(Method::Blade, 40),
        &inputs,
        &dir,
        Dashboard::Plain,
        false,
    )
    .unwrap();
    let s = &out.summary;
    eprintln!(
        "blade reward: reference {:.4}, aligned {:.4}",
        s.reference_reward, s.policy_reward
    );
    assert!(
        s.policy_reward > s.reference_reward * 1.05,
        "BLADE should raise its training reward: reference {:.4}, aligned {:.4}",
        s.reference_reward,
        s.policy_reward
    );
}

#[test]
fn alignment_resumes_from_its_checkpoint() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let sft = root.path().join("sft");
    let (ds, split) = setup(&sft);
    let device = BackendSpec::Flex.device().unwrap();
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10", &catalog).unwrap();
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init: &sft,
        device: &device,
    };
    let dir = root.path().join("blade");
    train_align::<ItemLm>(
        &small(Method::Blade, 2),
        &inputs,
        &dir,
        Dashboard::Plain,
        false,
    )
    .unwrap();
    let target_before = std::fs::read_to_string(dir.join("target.json")).unwrap();
    let out = train_align::<ItemLm>(
        &small(Method::Blade, 4),
        &inputs,
        &dir,
        Dashboard::Plain,
        true,
    )
    .unwrap();
    assert_eq!(
        out.curves.iter().map(|c| c.step).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let target_after = std::fs::read_to_string(dir.join("target.json")).unwrap();
    assert_ne!(
        target_before, target_after,
        "the restored posterior kept collecting evidence"
    );
    // a missing SFT folder is a clear error
    let bad = AlignInputs {
        init: Path::new("/nonexistent/sft"),
        ..inputs
    };
    let err = train_align::<ItemLm>(
        &small(Method::Blade, 1),
        &bad,
        &root.path().join("x"),
        Dashboard::Plain,
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("/nonexistent/sft"), "{err}");
}
