"""edge.kernels: integer convolutions and dense layers are exact.

The integer reference accumulates in int64; `edge.kernels` computes the
products in float64 (BLAS) when a bound proves every partial sum exact
there, and in int64 otherwise. Both must give the int64 accumulation's
integers, on either side of the bound.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from edge import kernels


def int64_conv(x, kernel, strides, padding):
    """The plain int64 accumulation (the definition)."""
    kh, kw = kernel.shape[:2]
    x = kernels._pad(np.asarray(x, np.int64), (kh, kw), strides, padding)
    windows = kernels._windows(x, (kh, kw), strides)
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel.astype(np.int64))


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**16),
    magnitude=st.sampled_from([1, 127, 2**15, 2**40]),
    stride=st.sampled_from([1, 2]),
    padding=st.sampled_from(["same", "valid"]),
)
def test_integer_conv_and_dense_equal_int64_accumulation(
    seed, magnitude, stride, padding
):
    rng = np.random.default_rng(seed)
    x = rng.integers(-magnitude, magnitude + 1, (2, 6, 5, 3))
    kernel = rng.integers(-127, 128, (3, 3, 3, 4))
    bias = rng.integers(-(2**20), 2**20, 4)
    y = kernels.conv2d(x, kernel, bias, (stride, stride), padding)
    expected = int64_conv(x, kernel, (stride, stride), padding) + bias
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, expected)
    flat = x.reshape(len(x), -1)
    weights = rng.integers(-127, 128, (flat.shape[1], 5))
    expected = np.einsum("ni,io->no", flat, weights) + bias[:1]
    y = kernels.dense(flat, weights, bias[:1])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize(
    "magnitude, work", [(2**20, np.float64), (2**50, np.int64)]
)
def test_float64_only_below_the_exactness_bound(magnitude, work):
    x = np.full((1, 4), magnitude, np.int64)
    kernel = np.full((4, 2), 127, np.int64)
    assert kernels._product_dtype(x, kernel, (0,)) is work
    # Past the bound float64 would round: 2**50 * 508 + 1 is not a float64.
    x[0, 0] += 1
    expected = (x.astype(object) @ kernel.astype(object)).astype(np.int64)
    np.testing.assert_array_equal(kernels.dense(x, kernel), expected)
