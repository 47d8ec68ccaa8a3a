"""Tests of `keras_snn.fixed_point`, the one definition of each rounding,
saturation, multiplier, requantization, threshold and batch-norm rule.

Expected values are computed by hand in the comments; the TFLite ones follow
TFLM's `quantization_util.cc` (`QuantizeMultiplier` rounds the Q31
significand with `TfLiteRound`, i.e. `std::round`, ties away from zero) and
gemmlowp's `fixedpoint.h`.
"""

import decimal
import fractions
import math
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge import reference
from keras_snn import fixed_point
from keras_snn import functional

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIE_EVEN_DOWN = 0.5 + 2.0**-32  # significand * 2^31 = 2^30 + 0.5


# -- rounding and saturation ------------------------------------------------
def test_round_half_away_ties_both_signs():
    x = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.4, -0.6, 3.0, -0.0]
    np.testing.assert_array_equal(
        fixed_point.round_half_away(x), [1, -1, 2, -2, 3, -3, 0, -1, 3, 0]
    )
    assert fixed_point.round_half_away(x).dtype == np.int64


def test_round_half_away_is_exact_where_floor_plus_half_is_not():
    below_half = np.nextafter(0.5, 0.0)  # 0.49999999999999994
    odd = 2.0**52 + 1.0  # floor(odd + 0.5) gives odd + 1
    x = np.array([below_half, -below_half, odd, -odd])
    np.testing.assert_array_equal(
        fixed_point.round_half_away(x), [0, 0, 2**52 + 1, -(2**52 + 1)]
    )
    # The replaced forms: floor(|x| + 0.5) loses the first and third,
    # floor(x + 0.5) also rounds negative ties up.
    assert np.floor(below_half + 0.5) == 1.0
    assert np.floor(odd + 0.5) == odd + 1
    assert np.floor(-2.5 + 0.5) == -2.0
    assert fixed_point.round_half_away(-2.5) == -3


def test_round_half_away_keeps_float_dtype_on_request():
    x = np.array([0.5, -2.5, 0.49999997, 3e20], np.float32)
    rounded = fixed_point.round_half_away(x, None)
    assert rounded.dtype == np.float32
    np.testing.assert_array_equal(rounded, np.float32([1, -3, 0, 3e20]))


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-100, 100).map(
    lambda k: k + 0.5
))
def test_round_half_away_equals_decimal_round_half_up(x):
    exact = decimal.Decimal(x).quantize(
        decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP
    )
    assert int(fixed_point.round_half_away(x)) == int(exact)


def test_saturate_edges():
    np.testing.assert_array_equal(
        fixed_point.saturate(np.array([-129, -128, 0, 127, 128]), 8),
        [-128, -128, 0, 127, 127],
    )
    np.testing.assert_array_equal(
        fixed_point.saturate(np.array([-32769, -32768, 32767, 32768]), 16),
        [-32768, -32768, 32767, 32767],
    )
    assert fixed_point.saturate(2**40, 32) == 2**31 - 1


def test_wrap_int32():
    np.testing.assert_array_equal(
        fixed_point.wrap_int32([2**31, 2**32 + 5, -(2**31) - 1]),
        [-(2**31), 5, 2**31 - 1],
    )


# -- the integer reference's convention: multiplier and right shift ---------
def test_rshift_round_ties_toward_plus_infinity():
    z = np.array([5, 6, 7, -5, -6, -7, -3, -1, 1])
    # (z + 1) >> 1: 3, 3, 4, -2, -3, -3, -1, 0, 1
    np.testing.assert_array_equal(
        fixed_point.rshift_round(z, 1), [3, 3, 4, -2, -3, -3, -1, 0, 1]
    )
    # Per-channel shifts: 100 / 4 = 25, 100 / 8 = 12.5 -> 13, -12.5 -> -12.
    np.testing.assert_array_equal(
        fixed_point.rshift_round(np.array([100, 100, -100]), [2, 3, 3]),
        [25, 13, -12],
    )


def test_requantize_hand_values():
    half = 1 << 14  # 0.5 as a 15-bit multiplier with shift 15
    # 3 * 0.5 = 1.5 -> 2; -3 * 0.5 = -1.5 -> -1 (ties up); 7 * 0.5 -> 4.
    np.testing.assert_array_equal(
        fixed_point.requantize(np.array([3, -3, 7, -7]), half, 15),
        [2, -1, 4, -3],
    )
    # Per channel: multipliers 0.75 and 0.5.
    np.testing.assert_array_equal(
        fixed_point.requantize(
            np.array([[4, 4]]), np.array([3 << 13, half]), np.array([15, 15])
        ),
        [[3, 2]],
    )
    # Accumulators beyond int32 (int64 biases): 2^40 * 0.75 = 3 * 2^38.
    assert fixed_point.requantize(1 << 40, 3 << 13, 15) == 3 << 38


@pytest.mark.parametrize(
    "real, expected",
    [
        # frexp(real) = (f, e): m = round(f 2^15), n = 15 - e.
        (0.5, (1 << 14, 15)),
        (0.75, (3 << 13, 15)),
        (1.0, (1 << 14, 14)),  # f = 0.5, e = 1
        (3.0, (3 << 13, 13)),  # f = 0.75, e = 2
        (1.0 - 2.0**-15, ((1 << 15) - 1, 15)),  # f 2^15 = 32767 exactly
        # The extremes of n: 2^13 (e = 14) and 2^-32 (e = -31).
        (2.0**13, (1 << 14, 1)),
        (2.0**-32, (1 << 14, 46)),
        # A tie, f 2^15 = 2^14 + 0.5: away from zero (to even: 2^14).
        (0.5 + 2.0**-16, ((1 << 14) + 1, 15)),
        # f 2^15 = 2^15 - 0.5 rounds up to 2^15, which renormalizes.
        (1.0 - 2.0**-16, (1 << 14, 14)),
        # 192 / 127 = (96 / 127) 2^1: 96 2^15 / 127 = 24769.51 -> 24770.
        (192 / 127, (24770, 14)),
    ],
)
def test_quantize_multiplier_shift_hand_values(real, expected):
    assert fixed_point.quantize_multiplier_shift(real) == expected
    assert quantize.quantize_multiplier(real) == expected
    assert fixed_point.MULTIPLIER_BITS == 15


@pytest.mark.parametrize(
    "real, match",
    [
        (0.0, "> 0"),
        (-0.5, "> 0"),
        (2.0**14, "shift"),  # n = 0
        (2.0**14 - 2.0**-5, "shift"),  # rounds up to 2^14: n = 0
        (2.0**-33, "shift"),  # n = 47
    ],
)
def test_quantize_multiplier_shift_refuses(real, match):
    with pytest.raises(ValueError, match=match):
        fixed_point.quantize_multiplier_shift(real)


@pytest.mark.parametrize(
    "bound, levels, expected",
    [
        (1.0, 127, 2.0**-6),  # 1 / 2^-6 = 64 <= 127 < 128 = 1 / 2^-7
        (127.0, 127, 1.0),  # exactly representable: no spare bit
        (127.5, 127, 2.0),
        (0.5, 127, 2.0**-7),
        (1.765625, 32767, 2.0**-14),  # 28928 <= 32767 < 57856
        (32767 * 2.0**-14, 32767, 2.0**-14),  # the largest bound for 2^-14
        (32767 * 2.0**-14 + 2.0**-20, 32767, 2.0**-13),
        (0.0, 127, 2.0**-40),
    ],
)
def test_power_of_two_scale_hand_values(bound, levels, expected):
    assert fixed_point.power_of_two_scale(bound, levels) == expected


@pytest.mark.parametrize(
    "bound, clip, expected",
    [
        # 127 (1 + 1/64) = 128.98: 1 / 2^-7 = 128 fits, 1.0 saturates to
        # 127 (the input of edge.quantize).
        (1.0, 1 / 64, 2.0**-7),
        (1.0, 0.0, 2.0**-6),
        (1.5, 1 / 64, 2.0**-6),  # 192 > 128.98; 96 fits
        (128.98 * 2.0**-7, 1 / 64, 2.0**-7),
        (129.0 * 2.0**-7, 1 / 64, 2.0**-6),
    ],
)
def test_power_of_two_scale_with_clip(bound, clip, expected):
    assert fixed_point.power_of_two_scale(bound, 127, clip) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.floats(2.0**-30, 2.0**30),
    st.sampled_from([127, 32767]),
    st.sampled_from([0.0, 1 / 64]),
)
def test_power_of_two_scale_is_the_smallest_that_fits(bound, levels, clip):
    scale = fixed_point.power_of_two_scale(bound, levels, clip)
    assert math.frexp(scale)[0] == 0.5  # a power of two
    limit = levels * (1.0 + clip)
    assert bound / scale <= limit < 2 * bound / scale


# -- the TFLite convention --------------------------------------------------
@pytest.mark.parametrize(
    "real, expected",
    [
        (0.0, (0, 0)),
        (0.5, (1 << 30, 0)),
        (0.75, (3 << 29, 0)),
        (1.0 - 2.0**-31, ((1 << 31) - 1, 0)),
        (1.0 - 2.0**-40, (1 << 30, 1)),  # q = 2^31 is halved
        # QuantizeMultiplierGreaterThanOne's range: exponent >= 0.
        (1.0, (1 << 30, 1)),
        (3.0, (3 << 29, 2)),
        (517.0, (1084227584, 10)),  # 517 / 1024 * 2^31
        # TfLiteRound at ties: away from zero, both signs.
        (TIE_EVEN_DOWN, ((1 << 30) + 1, 0)),
        (-TIE_EVEN_DOWN, (-((1 << 30) + 1), 0)),
        (-0.75, (-(3 << 29), 0)),
        # Tiny: exponent -31 is kept, below it is flushed to zero.
        (2.0**-32, (1 << 30, -31)),
        (2.0**-33, (0, 0)),
        (2.0**-40, (0, 0)),
    ],
)
def test_quantize_multiplier_tflm(real, expected):
    assert fixed_point.quantize_multiplier(real) == expected


def test_gemmlowp_saturating_rounding_doubling_high_mul():
    srdhm = fixed_point.saturating_rounding_doubling_high_mul
    assert srdhm(-(2**31), -(2**31)) == 2**31 - 1  # the one overflow
    assert srdhm(1 << 30, 1 << 30) == 1 << 29
    # 2 * 3 * 2^30 / 2^32 = 1.5 -> 2, -1.5 -> -1: the nudge rounds ties
    # toward +infinity.
    assert srdhm(3, 1 << 30) == 2
    assert srdhm(-3, 1 << 30) == -1
    np.testing.assert_array_equal(
        srdhm(np.array([5, -5]), 1 << 30), [3, -2]
    )


def test_gemmlowp_rounding_divide_by_pot_ties_away():
    rdbpot = fixed_point.rounding_divide_by_pot
    np.testing.assert_array_equal(
        rdbpot(np.array([3, -3, 5, -5, 6, -6, 7, -7]), 1),
        [2, -2, 3, -3, 3, -3, 4, -4],
    )
    np.testing.assert_array_equal(
        rdbpot(np.array([5, -5, 6, -6, 2, -2]), 2), [1, -1, 2, -2, 1, -1]
    )
    assert rdbpot(12345, 0) == 12345


def test_multiply_by_quantized_multiplier_both_builds():
    mbqm = fixed_point.multiply_by_quantized_multiplier
    # 0.25 as (2^30, -1): 5 * 0.25 = 1.25. Double rounding: srdhm gives
    # round(2.5) = 3, then 3 / 2 = 1.5 -> 2. Single: (5 2^30 + 2^31) >> 32
    # = 1. -6 * 0.25 = -1.5: away from zero (-2) vs up (-1).
    np.testing.assert_array_equal(
        mbqm(np.array([5, -6, 10, -10]), 1 << 30, -1), [2, -2, 3, -3]
    )
    np.testing.assert_array_equal(
        mbqm(np.array([5, -6]), 1 << 30, -1, single=True), [1, -1]
    )
    # Greater than one: 7 << 2 = 28, times 0.5 = 14.
    assert mbqm(7, 1 << 30, 2) == 14
    assert mbqm(7, 1 << 30, 2, single=True) == 14
    # The left shift wraps to int32 as in C: 2^30 << 2 = 2^32 -> 0.
    assert mbqm(1 << 30, 1 << 30, 2) == 0
    # Per channel.
    np.testing.assert_array_equal(
        mbqm(np.array([[8, 8]]), np.array([1 << 30, 3 << 29]), [0, -1]),
        [[4, 3]],
    )


# -- properties -------------------------------------------------------------
REALS = st.floats(2.0**-20, 0.999, allow_nan=False)
ACCUMULATORS = st.integers(-(2**24), 2**24)


@settings(max_examples=400, deadline=None)
@given(REALS, ACCUMULATORS)
def test_requantize_is_the_rounded_product(real, acc):
    m, n = fixed_point.quantize_multiplier_shift(real)
    assert 1 << 14 <= m < 1 << 15 and 1 <= n <= 46
    # 15 significant bits: a relative error of at most 2^-15.
    assert abs(m / 2**n - real) <= real * 2.0**-15
    # acc m / 2^n rounded half up, in exact rationals.
    exact = fractions.Fraction(acc * m, 2**n)
    assert int(fixed_point.requantize(acc, m, n)) == math.floor(
        exact + fractions.Fraction(1, 2)
    )


def _tflm_int64(x, quantized_multiplier, shift):
    """TFLM's `MultiplyByQuantizedMultiplier(int64_t x, ...)` (common.cc):
    the Q31 multiplier reduced to 16 bits, `(q + 2^15) >> 16` (0x7FFF from
    0x7FFF0000 on), then `(x r + 2^(total - 1)) >> total`, `total = 15 -
    shift`, in int64."""
    x = np.asarray(x, np.int64)
    q = np.int64(quantized_multiplier)
    reduced = (q + (1 << 15)) >> 16 if q < 0x7FFF0000 else np.int64(0x7FFF)
    total = np.int64(15 - shift)
    return (x * reduced + (np.int64(1) << (total - 1))) >> total


def _single_rounding_int64(x, quantized_multiplier, shift):
    """The `TFLITE_SINGLE_ROUNDING` form that LiteRT's kernels use, with the
    whole Q31 multiplier: `(x q + 2^(30 - shift)) >> (31 - shift)` in
    int64."""
    x = np.asarray(x, np.int64)
    total = np.int64(31 - shift)
    product = x * np.int64(quantized_multiplier)
    return (product + (np.int64(1) << (total - 1))) >> total


@settings(max_examples=500, deadline=None)
@given(
    st.integers(1 << 14, (1 << 15) - 1),
    st.integers(1, 46),
    st.integers(-(2**31), 2**31 - 1),
)
def test_requantize_equals_tflm_and_single_rounding_for_15_bit_multipliers(
    m, n, acc
):
    # The ratio m / 2^n is a float32 (15 significant bits), and TFLite's
    # QuantizeMultiplier turns it into the Q31 multiplier m << 16 with the
    # exponent 15 - n.
    ratio = float(np.float32(m / 2**n))
    assert ratio == m / 2**n
    q, shift = fixed_point.quantize_multiplier(ratio)
    assert (q, shift) == (m << 16, 15 - n)
    expected = fixed_point.requantize(acc, m, n)
    assert _tflm_int64(acc, q, shift) == expected
    assert _single_rounding_int64(acc, q, shift) == expected
    if -(2**31) <= int(expected) < 2**31:
        single = fixed_point.multiply_by_quantized_multiplier(
            acc, q, shift, single=True
        )
        assert single == expected


def test_tflm_and_single_rounding_differ_for_other_multipliers():
    # The equivalence needs the 15-bit multiplier: for q = 2^30 + 2^15
    # (0.5 + 2^-16), TFLM's reduced multiplier is 2^14 + 1 (rounded up from
    # 2^14 + 0.5), LiteRT's stays exact. x = 2^16, shift 0: exact 2^15 + 1;
    # TFLM (2^16 (2^14 + 1) + 2^14) >> 15 = 2^15 + 2 (as if 0.5 + 2^-15).
    q, x = (1 << 30) + (1 << 15), 1 << 16
    assert _single_rounding_int64(x, q, 0) == (1 << 15) + 1
    assert _tflm_int64(x, q, 0) == (1 << 15) + 2


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-6, 1e6, allow_nan=False))
def test_quantize_multiplier_ranges_and_exponent_sign(real):
    q, exponent = fixed_point.quantize_multiplier(real)
    assert 1 << 30 <= q < 1 << 31
    assert abs(q * 2.0 ** (exponent - 31) - real) <= real * 2.0**-31
    # TFLM's GreaterThanOne / SmallerThanOneExp checks.
    if real > 1.0:
        assert exponent >= 0
    if real < 1.0:
        assert exponent <= 0


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40), st.integers(1, 20))
def test_rshift_round_is_floor_of_quotient_plus_half(z, shift):
    # Python's // floors, so (2z + 2^n) // 2^(n+1) is round half up.
    expected = (2 * z + 2**shift) // 2 ** (shift + 1)
    assert int(fixed_point.rshift_round(z, shift)) == expected


# -- neuron constants -------------------------------------------------------
def test_quantize_decay():
    assert fixed_point.quantize_decay(1.0) == 1 << 15
    assert fixed_point.quantize_decay(0.5) == 1 << 14
    assert fixed_point.quantize_decay(0.0) == 0
    # Ties away from zero: 0.5 -> 1 and 2.5 -> 3 (Python's round: 0, 2).
    assert fixed_point.quantize_decay(2.0**-16) == 1
    assert fixed_point.quantize_decay(5 * 2.0**-16) == 3
    assert fixed_point.DECAY_BITS == integer.DECAY_BITS == 15


def test_quantize_membrane_decay_is_even_q15():
    qmd = fixed_point.quantize_membrane_decay
    # 2 round(k 2^14): 1 -> 2^15 (the identity), 0.5 -> 2^14, 0 -> 0.
    assert qmd(1.0) == 1 << 15
    assert qmd(0.5) == 1 << 14
    assert qmd(0.0) == 0
    # 0.9 2^14 = 14745.6 -> 14746 -> 29492 (round(0.9 2^15) = 29491, odd).
    assert qmd(0.9) == 29492
    # A tie, k 2^14 = 2.5 -> 3 (away from zero) -> 6.
    assert qmd(2.5 * 2.0**-14) == 6
    # Every value is even.
    assert all(qmd(k) % 2 == 0 for k in np.linspace(0.0, 1.0, 101))


def test_decay_multiply_hand_values():
    dm = fixed_point.decay_multiply
    # v d / 2^15 with d = 2^14 (0.5), ties away from zero: 3 -> 1.5 -> 2,
    # -3 -> -2 (rshift_round would give -1), 6 -> 3, -63 -> -32.
    np.testing.assert_array_equal(
        dm(np.array([3, -3, 6, -6, -63, 63]), 1 << 14), [2, -2, 3, -3, -32, 32]
    )
    # d = 2^15 is the identity, on the whole int16 range.
    v = np.array([-32768, -1, 0, 1, 32767])
    np.testing.assert_array_equal(dm(v, 1 << 15), v)
    # d = 29492 (0.9): 1000 29492 / 2^15 = 900.02 -> 900; -32768 ->
    # -29492 exactly.
    np.testing.assert_array_equal(
        dm(np.array([1000, -32768]), 29492), [900, -29492]
    )
    assert dm(5, 0) == 0


# Every even d in [0, 2^15]; v on a grid of int16 that includes the ends,
# the small odd values (ties) and both signs.
EVEN_DECAYS = np.arange(0, (1 << 15) + 1, 2)
GRID_V = np.unique(
    np.concatenate(
        [np.arange(-300, 301), np.arange(-32768, 32768, 97), [32767, -32768]]
    )
)


def test_decay_multiply_is_tflite_int16_mul_for_every_even_decay():
    # TFLite's int16 MUL of v (scale s) by the constant d (scale 2^-15)
    # into scale s: MultiplyByQuantizedMultiplier(v d, 2^30, -14), i.e. the
    # real multiplier 2^-15 as a Q31 2^30 with exponent -14.
    assert fixed_point.quantize_multiplier(2.0**-15) == (1 << 30, -14)
    for chunk in np.array_split(EVEN_DECAYS, 32):
        expected = fixed_point.multiply_by_quantized_multiplier(
            GRID_V[:, None] * chunk[None, :], 1 << 30, -14
        )
        actual = np.stack(
            [fixed_point.decay_multiply(GRID_V, int(d)) for d in chunk], 1
        )
        np.testing.assert_array_equal(actual, expected)


@settings(max_examples=500, deadline=None)
@given(
    st.integers(-(2**15), 2**15 - 1),
    st.integers(0, 1 << 14).map(lambda k: 2 * k),
)
def test_decay_multiply_is_tflite_int16_mul_property(v, d):
    expected = fixed_point.multiply_by_quantized_multiplier(
        v * d, 1 << 30, -14
    )
    assert fixed_point.decay_multiply(v, d) == expected
    # And it is k v rounded half away from zero, in exact rationals.
    exact = fractions.Fraction(v * d, 1 << 15)
    away = math.floor(abs(exact) + fractions.Fraction(1, 2))
    assert int(expected) == (away if exact >= 0 else -away)


def test_odd_decays_would_round_twice():
    # Why the decay is even: for odd d the halving inside TFLite's MUL
    # (SaturatingRoundingDoublingHighMul by 2^30) rounds first. v = 5461,
    # d = 3: v d = 16383 = 2^14 - 1, and 16383 / 2^15 = 0.49997 -> 0 once;
    # twice: srdhm(16383, 2^30) = round(8191.5) = 8192, 8192 / 2^14 = 0.5
    # -> 1 (away from zero).
    assert fixed_point.decay_multiply(5461, 3) == 0
    assert fixed_point.saturating_rounding_doubling_high_mul(
        16383, 1 << 30
    ) == 8192
    assert fixed_point.multiply_by_quantized_multiplier(
        5461 * 3, 1 << 30, -14
    ) == 1


def test_quantize_threshold():
    assert fixed_point.quantize_threshold(1.0, 0.25) == 4
    assert fixed_point.quantize_threshold(1.0, 0.4) == 3  # 2.5 -> 3
    assert fixed_point.quantize_threshold(-1.0, 0.4) == -3
    assert fixed_point.quantize_threshold(1.0, 0.25, strict=True) == 3
    # Loihi's use: theta in steps of theta / n is n for every n it uses.
    for theta in (0.3, 1.0, 7.77):
        for n in (1, 2, 255, 4095, 131071):
            step = theta / n
            assert fixed_point.quantize_threshold(theta, step) == n


# -- batch norm -------------------------------------------------------------
def test_batch_norm_factor_and_affine_hand_values():
    # 2 / sqrt(3 + 1) = 1; 0.5 * 1 = 0.5; gamma None: 1 / sqrt(0 + 0.25) = 2.
    np.testing.assert_array_equal(
        fixed_point.batch_norm_factor([2.0, 2.0], [3.0, 3.0], 1.0),
        [1.0, 1.0],
    )
    assert fixed_point.batch_norm_factor([2.0], [3.0], 1.0, 0.5)[0] == 0.5
    assert fixed_point.batch_norm_factor(None, [0.0], 0.25)[0] == 2.0
    # (x - mean) f + beta: (5 - 1) 2 + 3 = 11; beta None: 8.
    assert fixed_point.batch_norm_affine(5.0, 1.0, 3.0, 2.0) == 11.0
    assert fixed_point.batch_norm_affine(5.0, 1.0, None, 2.0) == 8.0


def _bn_params(rng, channels=3):
    return {
        "gamma": rng.uniform(0.5, 2.0, channels).astype("float32"),
        "beta": rng.normal(size=channels).astype("float32"),
        "mean": rng.normal(size=channels).astype("float32"),
        "variance": rng.uniform(0.1, 3.0, channels).astype("float32"),
        "epsilon": 1e-3,
        "scale": 0.7,
    }


def test_every_batch_norm_consumer_uses_the_one_factor():
    rng = np.random.default_rng(0)
    p = _bn_params(rng)
    factor = fixed_point.batch_norm_factor(
        p["gamma"], p["variance"], p["epsilon"], p["scale"]
    )
    x = rng.normal(size=(4, 3))
    # The float reference's batch norm.
    np.testing.assert_array_equal(
        reference.batch_norm(x, p),
        fixed_point.batch_norm_affine(x, p["mean"], p["beta"], factor),
    )
    # Folding into a dense layer (float64 kernel keeps float64 results).
    kernel = rng.normal(size=(2, 3))
    bias = rng.normal(size=3)
    folded_kernel, folded_bias = functional.fold_batch_norm(
        kernel, bias, p["gamma"], p["beta"], p["mean"], p["variance"],
        p["epsilon"], p["scale"],
    )
    np.testing.assert_array_equal(folded_kernel, kernel * factor)
    np.testing.assert_array_equal(
        folded_bias,
        fixed_point.batch_norm_affine(bias, p["mean"], p["beta"], factor),
    )
    # An unfoldable batch norm (on the input) becomes an affine node.
    nodes = [
        ir.Node("input", "input", [], (3,)),
        ir.Node("bn", "batch_norm", ["input"], (3,), dict(p)),
    ]
    graph = ir.Graph(nodes, "bn", timesteps=1)
    affine = fuse.fuse(graph).node("bn")
    assert affine.op == "affine"
    np.testing.assert_array_equal(affine.params["scale"], factor)
    np.testing.assert_array_equal(
        affine.params["offset"],
        fixed_point.batch_norm_affine(0.0, p["mean"], p["beta"], factor),
    )


# -- one definition ---------------------------------------------------------
SOURCES = sorted(
    path
    for folder in ("keras_snn", "edge")
    for path in (ROOT / folder).rglob("*.py")
)
DEFINITIONS = [
    "round_half",
    "round",
    "rshift_round",
    "requantize",
    "saturate",
    "wrap_int32",
    "quantize_multiplier",
    "quantize_multiplier_shift",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "quantize_decay",
    "quantize_membrane_decay",
    "decay_multiply",
    "power_of_two_scale",
    "quantize_threshold",
    "batch_norm_factor",
    "batch_norm_affine",
]


def _matches(pattern):
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


@pytest.mark.parametrize("name", DEFINITIONS)
def test_one_definition_of_each_function(name):
    # `def name(`, `def _name(` and `def name_suffix(` for the rounding
    # families (`def _round_half_away`, `def _quantize_multiplier`, ...).
    suffix = r"\w*" if name in ("round_half",) else ""
    found = _matches(rf"^\s*def _*{name}{suffix}\(")
    expected = 0 if name == "round" else 1
    assert len(found) == expected, found
    assert all(f.startswith("keras_snn/fixed_point.py:") for f in found)


@pytest.mark.parametrize(
    "pattern",
    [
        r"floor\(\s*(np\.abs\(|abs\()?[^)]*\)?\s*\+\s*0\.5",  # floor(x+0.5)
        r"\bfrexp\(",  # multipliers
        r"(np|math|ops|tf)\.sqrt\([^)]*\+",  # sqrt(var + eps)
        r"<<\s*(integer\.)?DECAY_BITS\)\)",  # round(decay * 2^15)
    ],
)
def test_fixed_point_code_only_in_fixed_point(pattern):
    outside = [
        f
        for f in _matches(pattern)
        if not f.startswith("keras_snn/fixed_point.py:")
    ]
    assert not outside, outside
