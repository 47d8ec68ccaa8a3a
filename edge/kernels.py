"""NumPy kernels of the synaptic operations, for floats and integers alike.

Layout is Keras': NHWC activations, `(kh, kw, in, out)` convolution kernels
and `(in, out)` dense kernels. Integer inputs are accumulated in int64 and
float inputs in float64, so the same functions serve the float reference
(to check fusion) and the integer reference (to define the deployed
arithmetic). Padding follows TensorFlow's `"same"` rule (the extra row or
column goes after), which TFLite, ONNX and the C runtime reproduce.
"""

import math

import numpy as np

__all__ = ["avg_pool2d", "conv2d", "dense", "max_pool2d", "same_padding"]


def _accumulator(x):
    return np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64


def same_padding(size, kernel, stride):
    """TensorFlow's `"same"` padding: `(before, after)` for one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad(x, kernel_hw, strides, padding, value=0):
    if padding == "valid":
        return x
    pads = [
        same_padding(x.shape[axis], kernel_hw[i], strides[i])
        for i, axis in enumerate((1, 2))
    ]
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def _windows(x, kernel_hw, strides):
    """Sliding windows `(N, OH, OW, C, kh, kw)` of an NHWC array."""
    view = np.lib.stride_tricks.sliding_window_view(x, kernel_hw, axis=(1, 2))
    return view[:, :: strides[0], :: strides[1]]


def conv2d(x, kernel, bias=None, strides=(1, 1), padding="valid"):
    """2-D convolution (cross-correlation, as Keras' `Conv2D`).

    Args:
        x: `(N, H, W, C_in)` array.
        kernel: `(kh, kw, C_in, C_out)` array.
        bias: optional `(C_out,)` array added to the result.
        strides: `(sh, sw)`.
        padding: `"valid"` or `"same"`.

    Returns:
        `(N, OH, OW, C_out)` array in int64 (integer inputs) or float64.
    """
    acc = _accumulator(x)
    kh, kw = kernel.shape[:2]
    x = _pad(np.asarray(x, acc), (kh, kw), strides, padding)
    windows = _windows(x, (kh, kw), strides)  # N, OH, OW, Cin, kh, kw
    y = np.einsum(
        "nhwcij,ijco->nhwo", windows, np.asarray(kernel, acc), optimize=True
    )
    if bias is not None:
        y = y + np.asarray(bias, acc)
    return y


def dense(x, kernel, bias=None):
    """`x @ kernel + bias` with `x` of shape `(N, in)`."""
    acc = _accumulator(x)
    y = np.asarray(x, acc) @ np.asarray(kernel, acc)
    if bias is not None:
        y = y + np.asarray(bias, acc)
    return y


def _pool_windows(x, pool_size, strides, padding, value):
    x = _pad(x, pool_size, strides, padding, value)
    return _windows(x, pool_size, strides)


def max_pool2d(x, pool_size, strides, padding="valid"):
    """Max pooling; padded positions never win."""
    lowest = (
        np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
    )
    windows = _pool_windows(x, pool_size, strides, padding, lowest)
    return windows.max(axis=(-2, -1))


def pool_counts(shape, pool_size, strides, padding):
    """Number of real (not padded) inputs in each pooling window, `(OH, OW)`.

    TensorFlow's `"same"` average pooling divides by this count.
    """
    ones = np.ones((1, *shape[:2], 1), np.int64)
    windows = _pool_windows(ones, pool_size, strides, padding, 0)
    return windows.sum(axis=(-2, -1))[0, :, :, 0]


def avg_pool2d(x, pool_size, strides, padding="valid", divide=True):
    """Average pooling (or the window sums, with `divide=False`).

    Args:
        x: `(N, H, W, C)` array.
        pool_size, strides: pairs of ints.
        padding: `"valid"` or `"same"` (padded positions are not counted).
        divide: `False` returns the integer window sums (the integer
            reference folds the division into the next layer's scale).

    Returns:
        `(N, OH, OW, C)` array.
    """
    acc = _accumulator(x)
    windows = _pool_windows(np.asarray(x, acc), pool_size, strides, padding, 0)
    sums = windows.sum(axis=(-2, -1))
    if not divide:
        return sums
    counts = pool_counts(x.shape[1:], pool_size, strides, padding)
    return sums / counts[None, :, :, None]
