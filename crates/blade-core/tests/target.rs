//! Property and persistence tests of the Bayesian target (METHOD.md section 3).

use blade_core::target::{BayesianTarget, Concentration, TargetConfig};
use proptest::prelude::*;

/// Rewards with extremes and many ties.
fn reward() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1e3f32..1e3,
        Just(0.0f32),
        Just(1.0f32),
        Just(-0.0f32),
        Just(1e30f32),
        Just(-1e30f32),
        Just(f32::MAX),
        Just(f32::MIN),
        (0u8..4).prop_map(f32::from),
    ]
}

fn concentration() -> impl Strategy<Value = Concentration> {
    prop_oneof![
        prop_oneof![Just(0.0), Just(0.5), Just(1e9)].prop_map(Concentration::Kappa),
        prop_oneof![Just(0.0), Just(0.3), Just(1.0)].prop_map(Concentration::Tau),
        Just(Concentration::Auto),
        prop_oneof![Just(0.25), Just(0.5), Just(1.0)].prop_map(Concentration::Spread),
    ]
}

fn config() -> impl Strategy<Value = TargetConfig> {
    (
        concentration(),
        prop_oneof![Just(1.0), Just(0.5), 0.01f64..1.0],
        1usize..40,
    )
        .prop_map(|(concentration, gamma, n)| TargetConfig {
            concentration,
            gamma,
            n,
            log_floor: -20.0,
        })
}

/// A target with one prompt (id 1): a reference and a few groups (some all-equal).
fn scenario() -> impl Strategy<Value = (BayesianTarget, Vec<f32>)> {
    (
        config(),
        prop::collection::vec(reward(), 0..30),
        prop::collection::vec(
            prop_oneof![
                prop::collection::vec(reward(), 0..10),
                (reward(), 1usize..8).prop_map(|(r, g)| vec![r; g]),
            ],
            0..5,
        ),
    )
        .prop_map(|(config, reference, groups)| {
            let mut target = BayesianTarget::new(config).expect("valid config");
            target.set_reference(1, &reference).expect("finite");
            for group in &groups {
                target.observe(1, group).expect("finite");
            }
            let mut probes: Vec<f32> = reference.into_iter().chain(groups.concat()).collect();
            probes.extend([f32::NEG_INFINITY, -1e31, 0.5, 1e31, f32::INFINITY]);
            probes.sort_by(f32::total_cmp);
            (target, probes)
        })
}

proptest! {
    #[test]
    fn everything_is_finite_bounded_and_monotone((target, probes) in scenario()) {
        let n = target.config().n as f64;
        let mut last = (0.0f64, f64::NEG_INFINITY);
        for &t in &probes {
            let (le, lt) = (target.cdf_le(1, t), target.cdf_lt(1, t));
            prop_assert!(le.is_finite() && lt.is_finite());
            prop_assert!((0.0..=1.0).contains(&le) && (0.0..=1.0).contains(&lt));
            prop_assert!(lt <= le + 1e-12);
            let r = target.proxy_reward(1, t);
            prop_assert!(r.is_finite() && r >= -20.0 && r <= n.ln() + 1e-9, "R = {r}");
            prop_assert!(le + 1e-12 >= last.0, "cdf_le decreased at {t}");
            prop_assert!(r + 1e-9 >= last.1, "proxy reward decreased at {t}: {r} < {}", last.1);
            last = (le, r);
            if let Some((mean, var)) = target.beta_mean_var(1, t) {
                prop_assert!((mean - le).abs() < 1e-12);
                prop_assert!((0.0..=0.25).contains(&var));
                let (a, b) = target.beta(1, t).unwrap();
                prop_assert!(a >= 0.0 && b >= 0.0 && (a / (a + b) - le).abs() < 1e-9);
            }
        }
        let share = target.saturated_share(1, &probes);
        prop_assert!((0.0..=1.0).contains(&share));
        let tau = target.tau(1);
        prop_assert!((0.0..=1.0).contains(&tau));
        prop_assert!(target.evidence_weight(1).is_finite());
        prop_assert!(!target.kappa(1).is_nan());
        for t in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            prop_assert!(target.proxy_reward(1, t).is_finite());
        }
    }

    #[test]
    fn tau_zero_matches_the_empirical_reference_cdf(
        reference in prop::collection::vec(reward(), 1..30),
        groups in prop::collection::vec(prop::collection::vec(reward(), 1..8), 0..4),
        probe in reward(),
    ) {
        let mut target = BayesianTarget::new(TargetConfig::static_bon(16)).unwrap();
        target.set_reference(0, &reference).unwrap();
        for group in &groups {
            target.observe(0, group).unwrap();
        }
        let m = reference.len() as f64;
        let le = reference.iter().filter(|&&x| x <= probe).count() as f64 / m;
        let lt = reference.iter().filter(|&&x| x < probe).count() as f64 / m;
        prop_assert_eq!(target.cdf_le(0, probe), le);
        prop_assert_eq!(target.cdf_lt(0, probe), lt);
        prop_assert_eq!(target.beta(0, probe), None);
    }

    #[test]
    fn posterior_matches_the_closed_form(
        reference in prop::collection::vec(reward(), 1..20),
        group in prop::collection::vec(reward(), 1..10),
        kappa in prop_oneof![Just(0.5), Just(2.0), Just(1e9)],
        probe in reward(),
    ) {
        let config = TargetConfig { concentration: Concentration::Kappa(kappa), ..TargetConfig::default() };
        let mut target = BayesianTarget::new(config).unwrap();
        target.set_reference(0, &reference).unwrap();
        target.observe(0, &group).unwrap();
        let f_ref = reference.iter().filter(|&&x| x <= probe).count() as f64 / reference.len() as f64;
        let hits = group.iter().filter(|&&x| x <= probe).count() as f64;
        let w = group.len() as f64;
        let expected = (kappa * f_ref + hits) / (kappa + w);
        prop_assert!((target.cdf_le(0, probe) - expected).abs() < 1e-9);
    }
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.json");
    let mut target = BayesianTarget::new(TargetConfig {
        gamma: 0.8,
        ..TargetConfig::blade(0.3)
    })
    .unwrap();
    target.set_reference(3, &[0.25, 0.0, 1.0]).unwrap();
    target.observe(3, &[0.5, 0.5, 2.0]).unwrap();
    target.observe(3, &[0.1]).unwrap();
    target.observe(u64::MAX, &[1.0]).unwrap();
    target.save(&path).unwrap();
    let loaded = BayesianTarget::load(&path).unwrap();
    assert_eq!(loaded, target);
    assert_eq!(loaded.len(), 2);
    for t in [0.0f32, 0.3, 0.5, 2.0] {
        assert_eq!(loaded.proxy_reward(3, t), target.proxy_reward(3, t));
    }
    // No temporary file is left beside the target.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn load_rejects_bad_files_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    let err = BayesianTarget::load(&garbage).unwrap_err().to_string();
    assert!(err.contains("garbage.json"), "{err}");
    let bad = dir.path().join("bad.json");
    let mut target = BayesianTarget::new(TargetConfig::default()).unwrap();
    target.observe(0, &[1.0]).unwrap();
    target.save(&bad).unwrap();
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("\"gamma\":1.0", "\"gamma\":2.0");
    std::fs::write(&bad, text).unwrap();
    let err = BayesianTarget::load(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("gamma"), "{err}");
    assert!(BayesianTarget::load(&dir.path().join("missing.json")).is_err());
}
