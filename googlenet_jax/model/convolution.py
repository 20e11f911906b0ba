"""2-D convolution (NHWC input, HWIO kernel) whose CPU gradient avoids XLA:CPU's slow forms.

On the CPU, XLA runs a 1x1 convolution and its gradients 1.6-4x slower than the matrix
products they are, and its kernel gradient of a 3x3 convolution on a large feature map (a
"convolution" whose window is the whole map) at a fraction of the speed of one matrix product
per kernel tap. `conv2d` therefore computes, on the CPU only:
- a 1x1 stride-1 convolution as one matrix product over channels, forward and both gradients;
- the kernel gradient of a stride-1 convolution on a map of at least 56x56 as K*K products,
  one per tap, of the shifted input with the output gradient (contracting over batch and
  positions);
- everything else (forward KxK convolutions, their input gradients, the strided stem) as
  XLA's own.
These are the same sums in another order: equal to `jax.grad` of `lax.conv_general_dilated`
up to rounding (tests/model/test_convolution.py checks it in float64). On other platforms (cuDNN,
TPU) the convolution and its gradients are XLA's own.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, kernel, stride: int, padding: int):
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_DIMENSIONS)


def _is_pointwise(kernel, stride: int, padding: int) -> bool:
    return kernel.shape[:2] == (1, 1) and stride == 1 and padding == 0


def _matmul(x, matrix):
    """(..., C) x (C, O) -> (..., O): a 1x1 convolution written as what it is."""
    return lax.dot_general(x, matrix, (((x.ndim - 1,), (0,)), ((), ())))


def _uses_kernel_taps(x, stride: int) -> bool:
    """Whether the kernel gradient is faster as one matrix product per tap than as XLA's.

    Measured on a 2-core x86 CPU (jax 0.10, batch 32): on 56x56 maps (GoogLeNet's conv3)
    XLA's kernel gradient runs at 20-30 GFLOP/s and the per-tap products at 50-100; on 28x28
    and smaller maps XLA's is as fast or faster, and for the stem (7x7/2 over 3 channels) the
    49 thin products lose to it.
    """
    return stride == 1 and x.shape[1] * x.shape[2] >= 56 * 56


def _kernel_gradient_by_taps(x, grad, kernel_shape, padding: int):
    """Stride 1: for each tap (i, j), the shifted input contracted with the output gradient
    over batch and positions, one (C, N*H*W) x (N*H*W, O) product per tap."""
    size, _, in_channels, out_channels = kernel_shape
    batch, height, width, _ = grad.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    grad_matrix = grad.reshape(-1, out_channels)
    taps = [lax.slice(padded, (0, i, j, 0), (batch, i + height, j + width, in_channels))
            .reshape(-1, in_channels).T @ grad_matrix
            for i in range(size) for j in range(size)]
    return jnp.stack(taps).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _cpu_conv2d(x, kernel, stride: int, padding: int):
    if _is_pointwise(kernel, stride, padding):
        return _matmul(x, kernel[0, 0])
    return _xla_conv(x, kernel, stride, padding)


def _cpu_conv2d_forward(x, kernel, stride, padding):
    return _cpu_conv2d(x, kernel, stride, padding), (x, kernel)


def _cpu_conv2d_backward(stride, padding, residuals, grad):
    x, kernel = residuals
    if _is_pointwise(kernel, stride, padding):
        kernel_gradient = x.reshape(-1, x.shape[-1]).T @ grad.reshape(-1, grad.shape[-1])
        return _matmul(grad, kernel[0, 0].T), kernel_gradient[None, None]
    _, pullback = jax.vjp(lambda x, kernel: _xla_conv(x, kernel, stride, padding), x, kernel)
    input_gradient, kernel_gradient = pullback(grad)
    if _uses_kernel_taps(x, stride):
        kernel_gradient = _kernel_gradient_by_taps(x, grad, kernel.shape, padding)
    return input_gradient, kernel_gradient


_cpu_conv2d.defvjp(_cpu_conv2d_forward, _cpu_conv2d_backward)


def conv2d(x, kernel, *, stride: int = 1, padding: int = 0, cpu_gradients: bool = True):
    """Cross-correlation of NHWC `x` with a square HWIO `kernel`, symmetric zero padding.

    The same function as `lax.conv_general_dilated` with those arguments; with
    `cpu_gradients` (the default) XLA:CPU computes it and its gradients in the forms the
    module docstring lists, without it everywhere as XLA's own convolution.
    """
    if x.dtype != kernel.dtype:
        raise ValueError(f"conv2d: input dtype {x.dtype} and kernel dtype {kernel.dtype} differ")
    if not cpu_gradients:
        return _xla_conv(x, kernel, stride, padding)
    return lax.platform_dependent(
        x, kernel,
        cpu=lambda x, kernel: _cpu_conv2d(x, kernel, stride, padding),
        default=lambda x, kernel: _xla_conv(x, kernel, stride, padding))
