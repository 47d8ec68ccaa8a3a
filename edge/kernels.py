"""NumPy kernels of the synaptic operations, for floats and integers alike.

Layout is Keras': NHWC activations, `(kh, kw, in, out)` convolution kernels
and `(in, out)` dense kernels. Integer inputs are accumulated in int64
(computed in float64, through BLAS, where every partial sum is exact
there: the same integers) and float inputs in float64, so the same
functions serve the float reference (to check fusion) and the integer
reference (to define the deployed arithmetic). Padding follows
TensorFlow's `"same"` rule (the extra row or column goes after), which
TFLite, ONNX and the C runtime reproduce.
"""

import math

import numpy as np

__all__ = ["avg_pool2d", "conv2d", "dense", "max_pool2d", "same_padding"]


# Integers below 2**53 in magnitude, and every sum of them that stays
# below it, are exact in float64.
EXACT_FLOAT64 = 2**53


def _accumulator(x):
    return np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64


def _product_dtype(x, kernel, axes):
    """The dtype to multiply-accumulate integer `x` and `kernel` in.

    float64 (BLAS) when every partial sum of the products is exact there:
    `max|x| * max_out sum_axes |kernel| < 2**53` bounds each one, whatever
    the order of summation; int64 otherwise. The result is cast back to
    int64, identical to accumulating in int64.
    """
    if x.size == 0 or kernel.size == 0:
        return np.int64
    bound = float(np.max(np.abs(x))) * float(
        np.max(np.sum(np.abs(kernel), axis=axes, dtype=np.float64))
    )
    return np.float64 if bound < EXACT_FLOAT64 else np.int64


def _operands(x, kernel, axes):
    """`(x, kernel, integer)`: both in the dtype to multiply-accumulate
    in (float64 for float inputs; for integers `_product_dtype`), and
    whether the inputs were integers (then cast the result to int64)."""
    if _accumulator(x) is np.float64:
        return np.asarray(x, np.float64), np.asarray(kernel, np.float64), False
    x, kernel = np.asarray(x, np.int64), np.asarray(kernel, np.int64)
    work = _product_dtype(x, kernel, axes)
    return np.asarray(x, work), np.asarray(kernel, work), True


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
    x, kernel, integer = _operands(np.asarray(x), kernel, (0, 1, 2))
    kh, kw = kernel.shape[:2]
    x = _pad(x, (kh, kw), strides, padding)
    windows = _windows(x, (kh, kw), strides)  # N, OH, OW, Cin, kh, kw
    y = np.einsum("nhwcij,ijco->nhwo", windows, kernel, optimize=True)
    if integer:
        y = np.asarray(y, np.int64)
    if bias is not None:
        y = y + np.asarray(bias, y.dtype)
    return y


def dense(x, kernel, bias=None):
    """`x @ kernel + bias` with `x` of shape `(N, in)`."""
    x, kernel, integer = _operands(np.asarray(x), kernel, (0,))
    y = x @ kernel
    if integer:
        y = np.asarray(y, np.int64)
    if bias is not None:
        y = y + np.asarray(bias, y.dtype)
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
