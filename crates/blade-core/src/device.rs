//! Backend selection: `flex`, `ndarray`, `wgpu[:index]`, `cuda[:index]`.
//!
//! One code path serves every backend: policies and trainers take a burn `Device`, and this
//! module turns the CLI's `--backend` value into one. A backend whose cargo feature was not
//! compiled in is a clear error naming the feature.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{CoreError, Result};

/// A parsed `--backend` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSpec {
    /// burn's pure-Rust CPU backend (the default).
    Flex,
    /// The ndarray CPU backend (deprecated by burn 0.22, kept for comparison).
    Ndarray,
    /// A GPU through wgpu (Vulkan, Metal, DX12); the index selects among discrete GPUs.
    Wgpu(Option<usize>),
    /// An NVIDIA GPU through CUDA.
    Cuda(usize),
}

impl FromStr for BackendSpec {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => {
                let idx = i.parse::<usize>().map_err(|_| {
                    CoreError::Backend(format!(
                        "--backend {s}: the device index `{i}` is not a non-negative integer"
                    ))
                })?;
                (n, Some(idx))
            }
            None => (s, None),
        };
        match (name.to_ascii_lowercase().as_str(), index) {
            ("flex", None) => Ok(Self::Flex),
            ("ndarray", None) => Ok(Self::Ndarray),
            ("wgpu", idx) => Ok(Self::Wgpu(idx)),
            ("cuda", idx) => Ok(Self::Cuda(idx.unwrap_or(0))),
            ("flex" | "ndarray", Some(_)) => Err(CoreError::Backend(format!(
                "--backend {s}: CPU backends take no device index"
            ))),
            _ => Err(CoreError::Backend(format!(
                "--backend {s}: unknown backend; expected flex, ndarray, wgpu[:index] or cuda[:index]"
            ))),
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => write!(f, "flex"),
            Self::Ndarray => write!(f, "ndarray"),
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[allow(dead_code)] // unused when every backend is compiled in
fn not_built(backend: &str, feature: &str) -> CoreError {
    CoreError::Backend(format!(
        "backend `{backend}` is not compiled into this binary; rebuild with \
         `--features {feature}` (for example `cargo run --release --features {feature} -- ...`)"
    ))
}

impl BackendSpec {
    /// The burn device for this backend, or an error naming the cargo feature to enable.
    pub fn device(&self) -> Result<Device> {
        match *self {
            Self::Flex => flex_device(),
            Self::Ndarray => ndarray_device(),
            Self::Wgpu(index) => wgpu_device(index),
            Self::Cuda(index) => cuda_device(index),
        }
    }

    /// The backends compiled into this binary, for help texts.
    pub fn compiled() -> Vec<&'static str> {
        let mut v = Vec::new();
        if cfg!(feature = "flex") {
            v.push("flex");
        }
        if cfg!(feature = "ndarray") {
            v.push("ndarray");
        }
        if cfg!(feature = "wgpu") {
            v.push("wgpu");
        }
        if cfg!(feature = "cuda") {
            v.push("cuda");
        }
        v
    }
}

#[cfg(feature = "flex")]
fn flex_device() -> Result<Device> {
    Ok(Device::flex())
}
#[cfg(not(feature = "flex"))]
fn flex_device() -> Result<Device> {
    Err(not_built("flex", "flex"))
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // kept for comparison with flex
fn ndarray_device() -> Result<Device> {
    Ok(Device::ndarray())
}
#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device> {
    Err(not_built("ndarray", "ndarray"))
}

#[cfg(feature = "wgpu")]
fn wgpu_device(index: Option<usize>) -> Result<Device> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(index.map_or(
        DeviceKind::DefaultDevice,
        DeviceKind::DiscreteGpu,
    )))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: Option<usize>) -> Result<Device> {
    Err(not_built("wgpu", "wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}
#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device> {
    Err(not_built("cuda", "cuda"))
}

/// Seeds the backend's random generator with `seed`, runs `init` and initialises every float
/// parameter of the module it returns (burn initialises parameters lazily, at first use), all
/// under a process-wide lock. burn's generator is global to the process: two trainings started
/// side by side (tests in one binary, threads of a library user) would otherwise interleave
/// their seeds and draws, and each would get other weights from run to run. Every seeded
/// initialisation in blade goes through here; code outside blade that draws from burn's
/// generator at the same time is not covered.
pub fn seeded_init<M: burn::module::Module>(
    device: &Device,
    seed: u64,
    init: impl FnOnce() -> Result<M>,
) -> Result<M> {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::Tensor<D>>) {
            let _ = param.val();
        }
    }
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    let module = init()?;
    module.visit(&mut Touch);
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Initialisations seeded side by side on threads give the weights each seed gives alone.
    #[cfg(feature = "flex")]
    #[test]
    fn seeded_initialisations_on_threads_do_not_mix_their_draws() {
        use crate::policy::Recommender;
        let device = BackendSpec::Flex.device().unwrap();
        let prompts = crate::PromptBatch {
            histories: vec![vec![1, 2, 3]],
            exclude: vec![vec![]],
        };
        let init = |seed: u64| {
            let model = seeded_init(&device, seed, || {
                Ok(crate::ItemLmConfig::new(50)
                    .with_max_history(4)
                    .with_max_list(2)
                    .with_d_model(16)
                    .with_d_ff(32)
                    .init(&device))
            })
            .unwrap();
            model.score_all(&prompts).unwrap()
        };
        let alone: Vec<_> = (0..2).map(init).collect();
        assert_ne!(alone[0], alone[1], "two seeds, two models");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| s.spawn(move || (0..10).map(|_| init(t % 2)).collect::<Vec<_>>()))
                .collect();
            for (t, h) in handles.into_iter().enumerate() {
                for scores in h.join().unwrap() {
                    assert_eq!(scores, alone[t % 2], "thread {t}");
                }
            }
        });
    }

    #[test]
    fn parses_every_form() {
        assert_eq!("flex".parse::<BackendSpec>().ok(), Some(BackendSpec::Flex));
        assert_eq!(
            "NDARRAY".parse::<BackendSpec>().ok(),
            Some(BackendSpec::Ndarray)
        );
        assert_eq!(
            "wgpu".parse::<BackendSpec>().ok(),
            Some(BackendSpec::Wgpu(None))
        );
        assert_eq!(
            "wgpu:1".parse::<BackendSpec>().ok(),
            Some(BackendSpec::Wgpu(Some(1)))
        );
        assert_eq!(
            "cuda".parse::<BackendSpec>().ok(),
            Some(BackendSpec::Cuda(0))
        );
        assert_eq!(
            "cuda:3".parse::<BackendSpec>().ok(),
            Some(BackendSpec::Cuda(3))
        );
    }

    #[test]
    fn rejects_bad_specs_with_the_flag_value() {
        let e = "tpu".parse::<BackendSpec>().unwrap_err().to_string();
        assert!(
            e.contains("--backend tpu") && e.contains("expected flex"),
            "{e}"
        );
        let e = "cuda:x".parse::<BackendSpec>().unwrap_err().to_string();
        assert!(e.contains("`x`"), "{e}");
        assert!("flex:0".parse::<BackendSpec>().is_err());
    }

    #[test]
    fn missing_feature_names_the_feature() {
        if !cfg!(feature = "cuda") {
            let e = BackendSpec::Cuda(0).device().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        if cfg!(feature = "flex") {
            assert!(BackendSpec::Flex.device().is_ok());
        }
    }
}
