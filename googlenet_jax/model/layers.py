"""Pooling and normalisation layers with the exact semantics of torchvision and Caffe.

All functions take NHWC arrays. Output sizes follow PyTorch's `pooling_output_shape`
(which Caffe shares for ceil-mode pools), so feature maps match the references at every
input size, odd ones included.
"""
import functools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Output length of a 1-D pooling window, as PyTorch computes it.

    In ceil mode the last window may hang over the end, but it must start inside the
    input (or its left padding), otherwise it is dropped.
    """
    extra = stride - 1 if ceil_mode else 0
    out = (size + 2 * padding - kernel + extra) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _window_padding(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool):
    """(low, high) padding that makes a VALID reduce_window produce PyTorch's output size."""
    out = pool_output_size(size, kernel, stride, padding, ceil_mode)
    high = max((out - 1) * stride + kernel - size - padding, 0)
    return padding, high


def _max_pool_axis(x, axis: int, kernel: int, stride: int, padding: int, ceil_mode: bool):
    low, high = _window_padding(x.shape[axis], kernel, stride, padding, ceil_mode)
    out = pool_output_size(x.shape[axis], kernel, stride, padding, ceil_mode)
    pads = [(0, 0)] * x.ndim
    pads[axis] = (low, high)
    x = jnp.pad(x, pads, constant_values=-jnp.inf)
    windows = [lax.slice_in_dim(x, i, i + (out - 1) * stride + 1, stride, axis) for i in range(kernel)]
    return functools.reduce(jnp.maximum, windows)


def max_pool(x, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = True, *,
             separable: bool = True):
    """Max pool over H and W; padded cells hold -inf and never win.

    separable=True computes it as a max over W then over H, each a running maximum of
    strided slices: the same values as a 2-D window, and its gradient is elementwise selects
    instead of select_and_scatter, which dominates a training step on XLA:CPU. Where values
    tie, that gradient is split between them (torch picks one); after a ReLU the only ties
    are zeros, whose gradient the ReLU discards anyway. separable=False is XLA's own 2-D
    `reduce_window` (and select_and_scatter for the gradient).
    """
    if not separable:
        spatial = [_window_padding(size, kernel, stride, padding, ceil_mode) for size in x.shape[1:3]]
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, kernel, kernel, 1), (1, stride, stride, 1),
                                 [(0, 0), *spatial, (0, 0)])
    x = _max_pool_axis(x, 2, kernel, stride, padding, ceil_mode)
    return _max_pool_axis(x, 1, kernel, stride, padding, ceil_mode)


def avg_pool_ceil(x, kernel: int, stride: int):
    """Caffe's / torch's AvgPool2d(kernel, stride, ceil_mode=True) without padding.

    A window that hangs over the edge averages only the cells inside the input.
    """
    pads = [(0, 0)] + [_window_padding(d, kernel, stride, 0, True) for d in x.shape[1:3]] + [(0, 0)]
    window, strides = (1, kernel, kernel, 1), (1, stride, stride, 1)
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = lax.reduce_window(ones, 0.0, lax.add, window, strides, pads)
    return total / count


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) averaging matrix of torch's AdaptiveAvgPool over one axis.

    Window i covers [floor(i * in / out), ceil((i + 1) * in / out)).
    """
    matrix = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = math.ceil((i + 1) * in_size / out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool(x, out_size: int):
    """torch.nn.AdaptiveAvgPool2d(out_size) on an NHWC array."""
    _, height, width, _ = x.shape
    if out_size == 1:
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    rows = jnp.asarray(adaptive_pool_matrix(height, out_size), x.dtype)
    cols = jnp.asarray(adaptive_pool_matrix(width, out_size), x.dtype)
    return jnp.einsum("ph,nhwc,qw->npqc", rows, x, cols)


def local_response_norm(x, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Caffe's ACROSS_CHANNELS LRN (= torch.nn.LocalResponseNorm): alpha is divided by size.

    b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2) ** beta, with the window
    centred on c and zero-padded at the channel ends.
    """
    squared = jnp.square(x)
    half = size // 2
    # torch pads (size // 2) before and ((size - 1) // 2) after the channel axis.
    window_sum = lax.reduce_window(
        squared, 0.0, lax.add, (1, 1, 1, size), (1, 1, 1, 1),
        [(0, 0), (0, 0), (0, 0), (half, (size - 1) // 2)])
    return x / jnp.power(k + (alpha / size) * window_sum, beta)
