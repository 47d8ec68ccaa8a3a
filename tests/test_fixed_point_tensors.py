"""The run-time functions of `keras_snn.fixed_point` on tensors, and their
straight-through variants (`keras_snn.fixed_point_ops`).

One body per rule runs on NumPy int64 arrays (the integer reference) and
on TensorFlow tensors (quantization-aware training): the properties below
say that both give the same integers, on float64 and int64 tensors, at
ties of both signs, at the saturation limits, for every shift in [1, 46]
and for the extreme accumulators (`|acc| <= 2^31`, multipliers in
`[2^14, 2^15)`).
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_snn import fixed_point
from keras_snn import fixed_point_ops

EXAMPLES = settings(max_examples=40, deadline=None)
ACC = st.integers(-(2**31), 2**31)  # int8 x int16 sums, bias included
MULTIPLIER = st.integers(2**14, 2**15 - 1)
SHIFT = st.integers(1, 46)
DECAY = st.integers(0, 2**14).map(lambda half: 2 * half)  # even Q15


def arrays(elements, size=8):
    return st.lists(elements, min_size=1, max_size=size).map(
        lambda values: np.array(values, np.int64)
    )


def assert_tensors_agree(function, data, *args, tensor_args=False):
    """`function` on int64 NumPy `data` equals it on float64 and int64
    tensors of `data` (and of the other arguments, with `tensor_args`),
    in the tensor's dtype."""
    expected = function(data, *args)
    assert isinstance(expected, np.ndarray | np.integer)
    assert np.asarray(expected).dtype == np.int64
    for dtype in (tf.float64, tf.int64):
        other = [tf.constant(a, dtype) for a in args] if tensor_args else args
        got = function(tf.constant(data, dtype), *other)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.numpy(), expected)


# -- the NumPy path stays int64 in, int64 out, and imports no TensorFlow ----
def test_importing_and_numpy_calls_import_no_tensorflow():
    script = (
        "import sys\n"
        "import _keras_snn_cli\n"
        "import numpy as np\n"
        "from keras_snn import fixed_point, fixed_point_ops\n"
        "x = np.array([5, -5, 3], np.int64)\n"
        "assert fixed_point.requantize(x, 3 << 13, 15).dtype == np.int64\n"
        "fixed_point.decay_multiply(x, 2 ** 14)\n"
        "fixed_point.rounded_average(x, 2)\n"
        "fixed_point.saturate(fixed_point.round_half_away(x * 0.5), 2)\n"
        "heavy = {'tensorflow', 'keras'} & set(sys.modules)\n"
        "assert not heavy, sorted(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


# -- NumPy int64 == float64 and int64 tensors -------------------------------
@EXAMPLES
@given(st.data())
def test_round_half_away(data):
    halves = st.integers(-(2**40), 2**40).map(lambda k: k + 0.5)
    reals = st.floats(-(2.0**62), 2.0**62, allow_nan=False) | halves
    x = np.array(data.draw(st.lists(reals, min_size=1, max_size=8)))
    expected = fixed_point.round_half_away(x)
    got = fixed_point.round_half_away(tf.constant(x))
    assert got.dtype == tf.int64
    np.testing.assert_array_equal(got.numpy(), expected)
    kept = fixed_point.round_half_away(tf.constant(x), None)
    assert kept.dtype == tf.float64
    np.testing.assert_array_equal(kept.numpy(), expected)
    # float32 rounds in float32, as NumPy does.
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(
        fixed_point.round_half_away(tf.constant(x32), None).numpy(),
        fixed_point.round_half_away(x32, None),
    )


def test_round_half_away_ties_and_float_edges_on_tensors():
    x = [0.5, -0.5, 2.5, -2.5, np.nextafter(0.5, 0), 2.0**52 + 1, -0.0]
    got = fixed_point.round_half_away(tf.constant(x, tf.float64))
    np.testing.assert_array_equal(got, [1, -1, 3, -3, 0, 2**52 + 1, 0])


@EXAMPLES
@given(arrays(st.integers(-(2**40), 2**40)), st.integers(2, 32))
def test_saturate(x, bits):
    assert_tensors_agree(fixed_point.saturate, x, bits)
    limit = 2 ** (bits - 1)
    edges = np.array([-limit - 1, -limit, -limit + 1, limit - 1, limit])
    assert_tensors_agree(fixed_point.saturate, edges, bits)


@EXAMPLES
@given(arrays(st.integers(-(2**46), 2**46)), SHIFT, st.data())
def test_rshift_round(z, shift, data):
    assert_tensors_agree(fixed_point.rshift_round, z, shift)
    # Exact ties of both signs: k 2^n + 2^(n-1) rounds up to k + 1.
    k = data.draw(arrays(st.integers(-(2 ** (46 - shift)), 2 ** (46 - shift))))
    ties = k * 2**shift + 2 ** (shift - 1)
    assert_tensors_agree(fixed_point.rshift_round, ties, shift)
    np.testing.assert_array_equal(
        fixed_point.rshift_round(tf.constant(ties, tf.float64), shift), k + 1
    )
    # Per-channel shifts, as a tensor too.
    shifts = data.draw(arrays(SHIFT, size=1)).repeat(len(z))
    assert_tensors_agree(fixed_point.rshift_round, z, shifts, tensor_args=True)


@EXAMPLES
@given(arrays(ACC), MULTIPLIER, SHIFT, st.data())
def test_requantize(acc, multiplier, shift, data):
    assert_tensors_agree(fixed_point.requantize, acc, multiplier, shift)
    # Per-channel multipliers and shifts (tensors too).
    m = data.draw(arrays(MULTIPLIER, size=1)).repeat(len(acc))
    n = data.draw(arrays(SHIFT, size=1)).repeat(len(acc))
    assert_tensors_agree(fixed_point.requantize, acc, m, n, tensor_args=True)
    # Ties: acc 2^14 = o 2^(n-1) for an odd o and acc = o 2^(n-15).
    n_tie = data.draw(st.integers(15, 46))
    odd = data.draw(
        arrays(st.integers(-(2 ** (46 - n_tie)), 2 ** (46 - n_tie)))
    )
    ties = (odd | 1) << (n_tie - 15)
    assert_tensors_agree(fixed_point.requantize, ties, 2**14, n_tie)


@pytest.mark.parametrize("shift", [1, 2, 15, 30, 46])
def test_requantize_extreme_accumulators(shift):
    acc = np.array([2**31, -(2**31), 2**31 - 1, -(2**31) + 1, 1, -1, 0])
    for multiplier in (2**14, 2**15 - 1, 24770):
        assert_tensors_agree(fixed_point.requantize, acc, multiplier, shift)
    # The largest product is 2^46 - 2^31, exact in float64.
    got = fixed_point.requantize(tf.constant(acc, tf.float64), 2**15 - 1, 1)
    assert got.numpy()[0] == (2**31 * (2**15 - 1) + 1) >> 1


@EXAMPLES
@given(arrays(st.integers(-(2**46), 2**46)), st.integers(0, 31), st.data())
def test_rounding_divide_by_pot(x, exponent, data):
    assert_tensors_agree(fixed_point.rounding_divide_by_pot, x, exponent)
    if exponent:
        # Ties of both signs round away from zero.
        k = data.draw(arrays(st.integers(-(2**14), 2**14)))
        ties = (2 * k + 1) << (exponent - 1)
        assert_tensors_agree(fixed_point.rounding_divide_by_pot, ties, exponent)
        expected = np.sign(ties) * ((np.abs(ties) >> exponent) + 1)
        got = fixed_point.rounding_divide_by_pot(
            tf.constant(ties, tf.float64), exponent
        )
        np.testing.assert_array_equal(got, expected)
    exponents = data.draw(arrays(st.integers(0, 31), size=1)).repeat(len(x))
    assert_tensors_agree(
        fixed_point.rounding_divide_by_pot, x, exponents, tensor_args=True
    )


@EXAMPLES
@given(arrays(ACC), DECAY, st.data())
def test_decay_multiply(v, decay_q, data):
    assert_tensors_agree(fixed_point.decay_multiply, v, decay_q)
    decays = data.draw(st.lists(DECAY, min_size=len(v), max_size=len(v)))
    assert_tensors_agree(
        fixed_point.decay_multiply, v, np.array(decays), tensor_args=True
    )
    # Ties: v 2^14 / 2^15 = v / 2 for odd v, both signs.
    odd = 2 * data.draw(arrays(st.integers(-(2**30), 2**30 - 1))) + 1
    assert_tensors_agree(fixed_point.decay_multiply, odd, 2**14)
    for limit in (2**15 - 1, -(2**15), 2**31 - 1, -(2**31)):
        assert_tensors_agree(fixed_point.decay_multiply, [limit], decay_q)


@EXAMPLES
@given(arrays(st.integers(-(2**36), 2**36)), st.integers(1, 49), st.data())
def test_rounded_average(total, count, data):
    assert_tensors_agree(fixed_point.rounded_average, total, count)
    # Halves of both signs (even counts) round away from zero.
    k = data.draw(arrays(st.integers(-(2**20), 2**20)))
    even = 2 * count
    assert_tensors_agree(fixed_point.rounded_average, k * even + count, even)
    assert_tensors_agree(fixed_point.rounded_average, k * even - count, even)
    counts = data.draw(arrays(st.integers(1, 49), size=1)).repeat(len(total))
    assert_tensors_agree(
        fixed_point.rounded_average, total, counts, tensor_args=True
    )


def test_lists_of_shifts_and_counts():
    z = tf.constant([100.0, 100.0, -100.0], tf.float64)
    np.testing.assert_array_equal(
        fixed_point.rshift_round(z, [2, 3, 3]), [25, 13, -12]
    )
    np.testing.assert_array_equal(
        fixed_point.rounding_divide_by_pot(z, [2, 3, 3]), [25, 13, -13]
    )
    np.testing.assert_array_equal(
        fixed_point.requantize(z, [2**14, 2**14, 2**14], [15, 16, 16]),
        [50, 25, -25],
    )
    np.testing.assert_array_equal(
        fixed_point.rounded_average(z, [3, 8, 8]), [33, 13, -13]
    )


def test_float32_tensors_are_exact_below_2_to_24():
    # The arithmetic runs in float64; the result is cast back to float32.
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**24), 2**24, 1000)
    got = fixed_point.requantize(tf.constant(acc, tf.float32), 24770, 15)
    assert got.dtype == tf.float32
    np.testing.assert_array_equal(got, fixed_point.requantize(acc, 24770, 15))
    v = rng.integers(-(2**23), 2**23, 1000)
    got = fixed_point.decay_multiply(tf.constant(v, tf.float32), 29490)
    np.testing.assert_array_equal(got, fixed_point.decay_multiply(v, 29490))


def test_graph_mode_and_keras_variables():
    acc = np.array([9483, -1040340, 2**31, -5], np.int64)

    @tf.function
    def step(x):
        y = fixed_point.requantize(x, 24770, 14)
        return fixed_point.saturate(fixed_point.decay_multiply(y, 16384), 16)

    expected = fixed_point.saturate(
        fixed_point.decay_multiply(
            fixed_point.requantize(acc, 24770, 14), 16384
        ),
        16,
    )
    np.testing.assert_array_equal(step(tf.constant(acc, tf.float64)), expected)
    variable = keras.Variable(acc.astype(np.float64), dtype="float64")
    np.testing.assert_array_equal(
        fixed_point.requantize(variable, 24770, 14),
        fixed_point.requantize(acc, 24770, 14),
    )


# -- straight-through variants ----------------------------------------------
def gradients(function, *values):
    """`function(*variables)` and the gradients of its sum, per variable."""
    variables = [tf.Variable(v) for v in values]
    with tf.GradientTape() as tape:
        y = function(*variables)
    return y, tape.gradient(y, variables)


STE_CASES = [
    # (ste function, NumPy function, data, constants, gradient of data)
    (
        fixed_point_ops.rshift_round_ste,
        fixed_point.rshift_round,
        [5, -5, 3, 2**40 + 7],
        (3,),
        2.0**-3,
    ),
    (
        fixed_point_ops.requantize_ste,
        fixed_point.requantize,
        [9483, -1040340, 2**31, -(2**31)],
        (24770, 14),
        24770 * 2.0**-14,
    ),
    (
        fixed_point_ops.rounding_divide_by_pot_ste,
        fixed_point.rounding_divide_by_pot,
        [5, -5, 12, -(2**40)],
        (2,),
        0.25,
    ),
    (
        fixed_point_ops.decay_multiply_ste,
        fixed_point.decay_multiply,
        [3, -3, 32767, -(2**31)],
        (29490,),
        29490 * 2.0**-15,
    ),
    (
        fixed_point_ops.rounded_average_ste,
        fixed_point.rounded_average,
        [7, -7, 6, 2**33],
        (4,),
        0.25,
    ),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", STE_CASES, ids=lambda case: case[0].__name__)
def test_ste_forward_is_exact_and_gradient_passes(case, dtype):
    ste, exact, data, constants, slope = case
    data = np.array(data, np.int64)
    if dtype == "float32":
        data = data[np.abs(data) < 2**24]  # exact in float32
    y, (grad,) = gradients(
        lambda x: ste(x, *constants), tf.constant(data, dtype)
    )
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, exact(data, *constants))
    grad = grad.numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad != 0)
    np.testing.assert_allclose(grad, slope, rtol=1e-6)


def test_ste_gradient_reaches_multiplier_and_decay():
    acc = tf.constant([9483.0, -1040340.0], tf.float64)
    _, (g_acc, g_m) = gradients(
        lambda a, m: fixed_point_ops.requantize_ste(a, m, 14),
        acc,
        tf.constant(24770.0, tf.float64),
    )
    np.testing.assert_array_equal(g_acc, [24770 / 2**14] * 2)
    assert g_m.numpy() == pytest.approx((9483 - 1040340) / 2**14)
    _, (g_v, g_d) = gradients(
        fixed_point_ops.decay_multiply_ste,
        tf.constant([1000.0, -3.0], tf.float64),
        tf.constant(16384.0, tf.float64),
    )
    np.testing.assert_array_equal(g_v, [0.5, 0.5])
    assert g_d.numpy() == pytest.approx(997 / 2**15)


def test_round_half_away_ste_and_saturate_gradients():
    x = tf.constant([0.5, -2.5, 1.2, 300.0, -300.0], tf.float32)
    y, (grad,) = gradients(
        lambda v: fixed_point.saturate(
            fixed_point_ops.round_half_away_ste(v), 8
        ),
        x,
    )
    assert y.dtype == tf.float32
    np.testing.assert_array_equal(y, [1, -3, 1, 127, -128])
    # Identity through the rounding, clip's gradient through saturate.
    np.testing.assert_array_equal(grad, [1, 1, 1, 0, 0])


def test_ste_builds_a_variant_of_any_function():
    floor = fixed_point_ops.ste(keras.ops.floor)
    assert floor.__name__ == "floor"
    y, (grad,) = gradients(floor, tf.constant([0.7, -1.2]))
    np.testing.assert_array_equal(y, [0, -2])
    np.testing.assert_array_equal(grad, [1, 1])
    halve = fixed_point_ops.ste(keras.ops.floor, lambda x: x / 2)
    _, (grad,) = gradients(halve, tf.constant([3.0]))
    np.testing.assert_array_equal(grad, [0.5])
