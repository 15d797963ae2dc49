//! `blade`: align generative recommenders to list-wise goals.
//!
//! This binary only parses arguments, picks the device and renders results; the work is done
//! by `blade-core`, `blade-data`, `blade-metrics`, `blade-llm` and `blade-exp` (run folders,
//! comparisons, tables and pictures).

/// mimalloc instead of the system allocator: burn's CPU backends allocate and free
/// megabyte-sized buffers for every operation, and glibc's allocator returns many of them to the
/// kernel and faults them back in (measured: about 4 s of system time in a 25 s SFT epoch).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: position 15 of `mi_option_e` in the v3 header that
/// libmimalloc-sys 0.1.49 builds by default (v2 has it at 15 too); the test below checks its
/// default, 1000 ms.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[allow(unsafe_code)]
mod mi {
    unsafe extern "C" {
        pub(super) safe fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
        #[cfg(test)]
        pub(super) safe fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }
}

/// Tells mimalloc never to return freed memory to the kernel. By default it purges free pages
/// after a second, and burn's per-op buffers are then faulted back in and zeroed by the kernel:
/// 2.4-3.1 s of system time in an 8-step alignment run on ML-100K, 0.3-0.6 s without purging,
/// for 10-20% more peak memory (docs/results/speed-itemlm.md). The environment variable
/// `MIMALLOC_PURGE_DELAY` still wins when set.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        mi::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// mimalloc's own purge delay (ms), which `keep_freed_memory` replaces.
const MI_DEFAULT_PURGE_DELAY: std::ffi::c_long = 1000;

/// Sets the allocator for the policy a command trains: an LLM policy's memory goal needs freed
/// memory handed back to the system, after mimalloc's own delay (LoRA alignment of
/// SmolLM2-135M: 1,433,644 KiB peak against 1,500,760 KiB keeping it, in the same wall time;
/// purging at once saved a little more memory but took 25% longer, docs/results/speed-llm.md).
/// The item policy keeps freed memory (above). `MIMALLOC_PURGE_DELAY` still wins when set.
pub(crate) fn memory_for(kind: blade_exp::RunKind) {
    if kind == blade_exp::RunKind::Llm && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        mi::mi_option_set(MI_OPTION_PURGE_DELAY, MI_DEFAULT_PURGE_DELAY);
    }
}

mod bench;
mod common;
mod compare;
mod data_cmd;
mod demo;
mod eval_cmd;
mod export_cmd;
mod llm_cmd;
mod recommend;
mod train_cmd;

use clap::{Parser, Subcommand};

/// Bayesian list-wise alignment of generative recommenders.
#[derive(Parser, Debug)]
#[command(name = "blade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch, import and describe datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Train a policy (`--method sft`).
    Train(Box<train_cmd::TrainArgs>),
    /// Evaluate a trained run or a baseline (`random`, `pop`) and print every metric.
    Eval(eval_cmd::EvalArgs),
    /// Align several methods from one SFT run over several seeds; tables, curves and pictures.
    Compare(Box<compare::CompareArgs>),
    /// Print the top-K recommendations of a trained run for one user, with titles.
    Recommend(recommend::RecommendArgs),
    /// Measure rollout and ranking throughput and the alignment step time (blade vs bon-static).
    Bench(bench::BenchArgs),
    /// Inspect and run a pretrained language model (GGUF or safetensors).
    #[command(subcommand)]
    Llm(llm_cmd::LlmCommand),
    /// Export an LLM run, adapters merged, as a Hugging Face folder or a GGUF file.
    Export(export_cmd::ExportArgs),
    /// Train and compare every method on the built-in synthetic data (offline, minutes on a CPU).
    Demo(demo::DemoArgs),
}

fn main() {
    keep_freed_memory();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(c) => data_cmd::run(c),
        Command::Train(a) => train_cmd::run(*a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Recommend(a) => recommend::run(a),
        Command::Compare(a) => compare::run(*a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Llm(c) => llm_cmd::run(c),
        Command::Export(a) => export_cmd::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn tau_auto_and_spread_reach_the_blade_config() {
        use blade_core::align::{Method, MethodConfig};
        use clap::Parser;
        let config = |tau: &str, extra: &[&str]| {
            let mut args = vec![
                "blade", "train", "--method", "blade", "--out", "x", "--tau", tau,
            ];
            args.extend_from_slice(extra);
            let super::Command::Train(t) = super::Cli::try_parse_from(args)?.command else {
                unreachable!()
            };
            match t
                .align
                .config(Method::Blade, 1, true, blade_exp::RunKind::Item)
            {
                Ok(c) => Ok(c),
                Err(e) => Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, e)),
            }
        };
        let MethodConfig::Blade(auto) = config("auto", &[]).unwrap().method else {
            unreachable!()
        };
        assert!(auto.tau_auto);
        let MethodConfig::Blade(fixed) = config("0.5", &[]).unwrap().method else {
            unreachable!()
        };
        assert!(!fixed.tau_auto && fixed.tau == 0.5 && fixed.tau_spread.is_none());
        let err = config("1.5", &[]).unwrap_err().to_string();
        assert!(err.contains("[0, 1], `auto`, `spread`"), "{err}");
        for (arg, share) in [("spread", 0.5), ("spread:0.8", 0.8)] {
            let MethodConfig::Blade(c) = config(arg, &[]).unwrap().method else {
                unreachable!()
            };
            assert_eq!((c.tau_spread, c.tau_auto), (Some(share), false), "{arg}");
        }
        for bad in ["spread:0", "spread:1.5", "spread:x"] {
            let err = config(bad, &[]).unwrap_err().to_string();
            assert!(err.contains("share S in (0, 1]"), "{bad}: {err}");
        }
        // the run's check (before anything is trained) refuses two rules for the prior strength
        let both = config("spread", &["--kappa", "3"]).unwrap();
        let err = both.check().unwrap_err().to_string();
        assert!(err.contains("kappa and tau spread"), "{err}");
    }

    #[test]
    fn gradient_passes_default_by_policy_and_follow_the_flags() {
        use blade_core::align::Method;
        use blade_exp::RunKind;
        use clap::Parser;
        let passes = |extra: &[&str], kind: RunKind| {
            let mut args = vec!["blade", "train", "--method", "grpo", "--out", "x"];
            args.extend_from_slice(extra);
            let super::Command::Train(t) = super::Cli::try_parse_from(args).unwrap().command else {
                unreachable!()
            };
            let c = t.align.config(Method::Grpo, 1, true, kind).unwrap();
            (c.grad_shards, c.recompute)
        };
        assert_eq!(passes(&[], RunKind::Item), (4, false));
        assert_eq!(passes(&[], RunKind::Llm), (16, true));
        assert_eq!(passes(&["--recompute"], RunKind::Item), (4, true));
        let off = ["--recompute", "false", "--grad-shards", "2"];
        assert_eq!(passes(&off, RunKind::Llm), (2, false));
        assert_eq!(
            passes(&["--recompute", "--steps", "3"], RunKind::Llm),
            (16, true)
        );
    }
}

#[cfg(test)]
mod allocator_tests {
    use super::*;

    /// The option number is mimalloc's purge delay: its default is 1000 (ms), and setting it
    /// sticks. (A shifted enum would read another option's default, e.g. 0 for the NUMA option
    /// after it.)
    #[test]
    fn the_purge_delay_option_is_the_one_we_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(
            mi::mi_option_get(MI_OPTION_PURGE_DELAY),
            MI_DEFAULT_PURGE_DELAY
        );
        keep_freed_memory();
        assert_eq!(mi::mi_option_get(MI_OPTION_PURGE_DELAY), -1);
    }
}
