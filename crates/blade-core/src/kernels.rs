//! blade's own CPU kernels, added to burn through its backend-extension API
//! (`#[backend_extension]`): burn's flex backend computes GELU with a scalar `erf` per element
//! (36x slower than PyTorch's vectorised kernel at one alignment pass's sizes) and
//! `log_softmax` as six element-wise passes around a scalar `exp`
//! (docs/results/speed-itemlm.md). [`gelu`] and [`log_softmax`] run `blade-kernels`'
//! vectorised kernels on flex devices, each with its own backward pass on flex autodiff
//! devices, and burn's own functions everywhere else (ndarray, wgpu, cuda), so every backend
//! computes the same functions.
//!
//! The vectorised GELU is within `1.5e-7 * (1 + |x|)` of the exact one and its derivative
//! within `4e-7` (burn-flex's own: `8e-8 * (1 + |x|)`); `log_softmax` within `2e-6 (1 + |y|)`
//! of an `f64` computation (tested in `blade-kernels`). The tests here check values and
//! gradients against burn's functions through the dispatch layer.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata,
};
use burn::tensor::{Bytes, DType, Device, Tensor};

/// Operations blade computes with its own kernels where a backend's are slow.
#[backend_extension(Flex, Autodiff)]
pub trait KernelOps: Backend {
    /// GELU (exact, `erf`-based). Default: the backend's own.
    fn blade_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu(x)
    }

    /// `grad * GELU'(x)`. Default: the backend's own.
    fn blade_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu_backward(x, grad)
    }

    /// `log_softmax` over the last dimension. Default: burn's composition.
    fn blade_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        default_log_softmax::<Self>(x)
    }

    /// The backward pass of [`blade_log_softmax`](KernelOps::blade_log_softmax) from its output:
    /// `grad - exp(out) * sum(grad)` over the last dimension. Default: burn's operations.
    fn blade_log_softmax_backward(
        out: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        default_log_softmax_backward::<Self>(out, grad)
    }
}

/// A contiguous `f32` view of a flex tensor: the tensor itself when it already is one (no
/// copy), else a contiguous copy.
fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// `kernel` over the values of an `f32` tensor, as a new tensor of its shape.
fn map_f32(x: FlexTensor, kernel: impl FnOnce(&[f32]) -> Vec<f32>) -> FlexTensor {
    let x = contiguous_f32(x);
    let values = kernel(x.as_slice::<f32>().unwrap_or_default());
    flex_f32(values, x.layout().shape().clone())
}

/// `kernel` over the values of two `f32` tensors of one shape, as a new tensor of that shape.
fn zip_f32(
    a: FlexTensor,
    b: FlexTensor,
    kernel: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) -> FlexTensor {
    let (a, b) = (contiguous_f32(a), contiguous_f32(b));
    let values = kernel(
        a.as_slice::<f32>().unwrap_or_default(),
        b.as_slice::<f32>().unwrap_or_default(),
    );
    flex_f32(values, b.layout().shape().clone())
}

fn flex_f32(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

impl KernelOps for Flex {
    fn blade_gelu(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return <Flex as ActivationOps<Flex>>::gelu(x);
        }
        map_f32(x, blade_kernels::gelu)
    }

    fn blade_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !same_f32(&x, &grad) {
            return <Flex as ActivationOps<Flex>>::gelu_backward(x, grad);
        }
        zip_f32(x, grad, blade_kernels::gelu_backward)
    }

    fn blade_log_softmax(x: FlexTensor) -> FlexTensor {
        let cols = last_dim(&x);
        if x.dtype() != DType::F32 || cols == 0 {
            return default_log_softmax::<Flex>(x);
        }
        map_f32(x, |v| blade_kernels::log_softmax_rows(v, cols))
    }

    fn blade_log_softmax_backward(out: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let cols = last_dim(&out);
        if !same_f32(&out, &grad) || cols == 0 {
            return default_log_softmax_backward::<Flex>(out, grad);
        }
        zip_f32(out, grad, |o, g| {
            blade_kernels::log_softmax_backward_rows(o, g, cols)
        })
    }
}

/// Both `f32`, of one shape.
fn same_f32(a: &FlexTensor, b: &FlexTensor) -> bool {
    a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.layout().shape() == b.layout().shape()
}

/// The length of the last dimension (0 for a tensor without dimensions or elements).
fn last_dim(t: &FlexTensor) -> usize {
    match t.layout().shape().as_slice().last() {
        Some(&cols) if t.layout().num_elements() > 0 => cols,
        _ => 0,
    }
}

/// burn's `log_softmax` over the last dimension, in backend operations.
fn default_log_softmax<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    let max = B::float_max_dim(x.clone(), last);
    let shifted = B::float_sub(x, max);
    let lse = B::float_log(B::float_sum_dim(B::float_exp(shifted.clone()), last));
    B::float_sub(shifted, lse)
}

/// `grad - exp(out) * sum(grad)` over the last dimension, in backend operations.
fn default_log_softmax_backward<B: Backend>(
    out: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = out.shape().num_dims() - 1;
    let total = B::float_sum_dim(grad.clone(), last);
    B::float_sub(grad, B::float_mul(B::float_exp(out), total))
}

/// The backward node of [`KernelOps::blade_gelu`] on an autodiff device: `grad * GELU'(x)`
/// from the saved input, by the inner backend's [`KernelOps::blade_gelu_backward`].
#[derive(Debug)]
struct GeluBackward;

impl<B: Backend + KernelOps> Backward<B, 1> for GeluBackward {
    type State = NodeId;

    fn backward(self, ops: Ops<NodeId, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let input = checkpointer.retrieve_node_output(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::blade_gelu_backward(input, grad)
        });
    }
}

/// The backward node of [`KernelOps::blade_log_softmax`] on an autodiff device; its state is
/// the forward output (kept, like any saved activation, until the backward pass).
#[derive(Debug)]
struct LogSoftmaxBackward;

impl<B: Backend + KernelOps> Backward<B, 1> for LogSoftmaxBackward {
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<FloatTensor<B>, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let out = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::blade_log_softmax_backward(out, grad)
        });
    }
}

impl<B: Backend + KernelOps, C: CheckpointStrategy> KernelOps for Autodiff<B, C> {
    fn blade_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::blade_gelu(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::blade_gelu(x.into_primitive())),
        }
    }

    fn blade_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match LogSoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::blade_log_softmax(x.into_primitive());
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::blade_log_softmax(x.into_primitive())),
        }
    }
}

/// Whether `device` (or the device under its autodiff) is burn's flex CPU backend.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// GELU (exact, `erf`-based), differentiable: blade's vectorised kernel on flex devices,
/// burn's GELU on every other backend.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if is_flex(&x.device()) {
        Tensor::from_dispatch(<Dispatch as KernelOps>::blade_gelu(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// `log_softmax` along `dim`, differentiable: blade's vectorised kernel on flex devices when
/// `dim` is the last dimension, burn's `log_softmax` otherwise.
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if dim + 1 == D && is_flex(&x.device()) {
        Tensor::from_dispatch(<Dispatch as KernelOps>::blade_log_softmax(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::log_softmax(x, dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        crate::policy::item_lm::to_host(t).unwrap()
    }

    /// A `[20, 30]` tensor whose `i`-th value (row-major) is `f(i)`.
    fn pattern(device: &Device, f: impl Fn(usize) -> f32) -> Tensor<2> {
        let xs: Vec<f32> = (0..600).map(f).collect();
        Tensor::<1>::from_floats(xs.as_slice(), device).reshape([20, 30])
    }

    fn input(device: &Device) -> Tensor<2> {
        pattern(device, |i| (i as f32 - 300.0) / 37.0)
    }

    #[test]
    fn values_match_burns_gelu_on_flex() {
        let device = Device::flex();
        let x = input(&device);
        let ours = values(gelu(x.clone()));
        let burns = values(burn::tensor::activation::gelu(x.clone()));
        for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert!(
                (a - b).abs() <= 3e-7 * (1.0 + b.abs()),
                "at {i}: {a} vs {b}"
            );
        }
        // a transposed (non-contiguous) view gives the transpose of the values
        let t = values(gelu(x.clone().transpose()).transpose());
        assert_eq!(t, ours);
    }

    #[test]
    fn gradients_match_burns_gelu_on_flex_autodiff() {
        let device = Device::flex().autodiff();
        let weights = pattern(&device, |i| ((i * 37) % 11) as f32 - 5.0);
        let grad_of = |ours: bool| {
            let x = input(&device).require_grad();
            let y = if ours {
                gelu(x.clone())
            } else {
                burn::tensor::activation::gelu(x.clone())
            };
            let grads = (y * weights.clone()).sum().backward();
            values(x.grad(&grads).unwrap())
        };
        let (ours, burns) = (grad_of(true), grad_of(false));
        for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert!(
                (a - b).abs() <= 3e-6 * (1.0 + b.abs()),
                "at {i}: {a} vs {b}"
            );
        }
        assert!(ours.iter().any(|g| *g != 0.0));
    }

    #[test]
    fn log_softmax_values_and_gradients_match_burns() {
        let device = Device::flex().autodiff();
        let weights = pattern(&device, |i| ((i * 13) % 7) as f32 - 3.0);
        let run = |ours: bool| {
            let leaf = (input(&device) * 3.0).require_grad();
            // a masked logit per row, as the policy's masks make them
            let mask = Tensor::<2>::zeros([20, 30], &device).slice_fill([0..20, 0..1], -1e9);
            let x = leaf.clone() + mask;
            let y = if ours {
                log_softmax(x, 1)
            } else {
                burn::tensor::activation::log_softmax(x, 1)
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            (values(y), values(leaf.grad(&grads).unwrap()))
        };
        let ((ours, g_ours), (burns, g_burns)) = (run(true), run(false));
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for (a, b) in g_ours.iter().zip(&g_burns) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
        }
        // a leading dimension other than the last runs burn's
        let x = input(&Device::flex());
        assert_eq!(
            values(log_softmax(x.clone(), 0)),
            values(burn::tensor::activation::log_softmax(x, 0))
        );
    }

    #[test]
    fn untracked_autodiff_tensors_pass_through() {
        let device = Device::flex().autodiff();
        let x = input(&device);
        let y = gelu(x.clone());
        assert_eq!(values(y), values(gelu(input(&Device::flex()))));
    }
}
