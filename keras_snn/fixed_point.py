"""Fixed-point arithmetic: the one definition of every rounding rule.

Every integer target of `edge` (the integer reference `edge.integer`, the
generated C, the integer TFLite model, Loihi) and
the float code that prepares their constants (batch-norm folding) use the
functions of this module, so that one convention has one definition. They
work on NumPy arrays (int64 for integers, float64 for reals) and Python
numbers, and the run-time ones also on tensors (see "Tensors" below),
for quantization-aware training.

Conventions:

- Constants (weights, biases, thresholds, decays, multipliers) are rounded
  from reals with `round_half_away`: to the nearest integer, ties away from
  zero, exactly (C's `round`, TFLite's `TfLiteRound`). It is exact at every
  tie: `floor(|x| + 0.5)` is not (it rounds `0.49999999999999994` to 1 and
  odd integers above `2^52` up), and `floor(x + 0.5)` also rounds negative
  ties up (`-2.5 -> -2`).
- Run-time rescaling has two conventions, one per family of targets:
  - the integer reference, the C runtime and the integer TFLite model:
    an int64 product and a rounding right shift,
    `rshift_round(z, n) = (z + 2^(n-1)) >> n` (arithmetic shift: ties
    round toward +infinity), with a 15-bit multiplier `m` in
    `[2^14, 2^15)` and a shift `n` in `[1, 46]` from
    `quantize_multiplier_shift` (`requantize`); LiteRT and TFLite-Micro
    compute exactly this for such multipliers (see `requantize`); the
    membrane decay is `decay_multiply` (ties away from zero, TFLite's
    int16 MUL);
  - TFLite's own functions, reproduced so that tests can prove the
    equivalences above: a Q31 multiplier and an exponent from
    `quantize_multiplier` (TFLM's `QuantizeMultiplier`), applied with
    gemmlowp's `SaturatingRoundingDoublingHighMul` then
    `RoundingDivideByPOT` (`multiply_by_quantized_multiplier`).
- Saturation clips to the signed `bits`-bit range (`saturate`); int32
  overflow in TFLite kernels wraps (`wrap_int32`).
- A neuron's decay is an even Q15 number (`quantize_membrane_decay`),
  its threshold an integer in the state's scale (`quantize_threshold`).
- Activation scales are powers of two (`power_of_two_scale`).
- Tensors: the run-time functions (`round_half_away`, `saturate`,
  `rshift_round`, `requantize`, `rounding_divide_by_pot`,
  `decay_multiply`, `rounded_average`) also take Keras tensors (with
  the TensorFlow backend: `tf.Tensor`, `keras.Variable`), for
  quantization-aware training. Each has one body, run by NumPy on
  arrays and numbers (int64 in, int64 out, as the integer reference
  needs) and by `keras.ops` when an argument is a tensor: the shifts are
  floor divisions by powers of two, and the integers are held in
  float64 (int64 for integer tensors), where every value of these rules
  is exact (products below `2^53`: int8 x int16 sums times a 15-bit
  multiplier, Q15 decays); the result has the tensor's dtype. Keras is
  imported only then. `keras_snn.fixed_point_ops` adds their
  straight-through variants for training.
- Batch norm at inference is the affine map `(x - mean) f + beta` with
  `f = scale * gamma / sqrt(var + eps)` (`batch_norm_factor`,
  `batch_norm_affine`); folding it into the previous layer applies the
  same map to that layer's bias.
"""

import math
import numbers

import numpy as np

__all__ = [
    "DECAY_BITS",
    "INT32_MAX",
    "INT32_MIN",
    "MULTIPLIER_BITS",
    "batch_norm_affine",
    "batch_norm_factor",
    "decay_multiply",
    "multiply_by_quantized_multiplier",
    "power_of_two_scale",
    "quantize_decay",
    "quantize_membrane_decay",
    "quantize_multiplier",
    "quantize_multiplier_shift",
    "quantize_threshold",
    "requantize",
    "round_half_away",
    "rounded_average",
    "rounding_divide_by_pot",
    "rshift_round",
    "saturate",
    "saturating_rounding_doubling_high_mul",
    "wrap_int32",
]

DECAY_BITS = 15
MULTIPLIER_BITS = 15
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------------------
# Backends: one body per rule, on NumPy int64 arrays or on Keras tensors.
# ---------------------------------------------------------------------------

_NUMPY_TYPES = (np.ndarray, np.generic, numbers.Number, list, tuple)


def _backend(*values):
    """The arithmetic of the rules' bodies for these arguments: `_NumPy`,
    unless one of them is a tensor (anything but a NumPy array, a number
    or a list): then `_Tensors`, which imports Keras."""
    for value in values:
        if not _is_numpy(value):
            return _Tensors(value)
    return _NumPy


def _is_numpy(value):
    return isinstance(value, _NUMPY_TYPES)


class _NumPy:
    """NumPy: the integer reference's int64 arithmetic, unchanged."""

    abs = staticmethod(np.abs)
    clip = staticmethod(np.clip)
    floor_divide = staticmethod(np.floor_divide)
    sign = staticmethod(np.sign)
    trunc = staticmethod(np.trunc)
    where = staticmethod(np.where)
    integer = exponent = staticmethod(lambda x: np.asarray(x, np.int64))
    cast = staticmethod(lambda x, dtype: x.astype(dtype))
    pow2 = staticmethod(lambda n: np.int64(1) << n)
    floor_shift = staticmethod(lambda z, n: z >> n)  # floor(z / 2^n)
    finish = staticmethod(lambda y: y)

    @staticmethod
    def real(x):
        x = np.asarray(x)
        return x if x.dtype.kind == "f" else x.astype(np.float64)


class _Tensors:
    """`keras.ops`: integers in float64 (or int64), cast back at the end.

    The result has the dtype of `like`, the first tensor argument (int64
    for a boolean one); the arithmetic runs in float64 for a floating
    `like` and in int64 otherwise. Floor division by a power of two and
    products below `2^53` are exact in float64.
    """

    def __init__(self, like):
        import keras

        self.ops = keras.ops
        self._dtype = keras.backend.standardize_dtype
        dtype = self._dtype(like.dtype)
        floating = "float" in dtype
        self.compute = "float64" if floating else "int64"
        self.dtype = dtype if floating or "int" in dtype else "int64"
        for name in ("abs", "cast", "clip", "floor_divide", "sign", "trunc"):
            setattr(self, name, getattr(keras.ops, name))
        self.where = keras.ops.where

    def real(self, x):
        x = self.ops.convert_to_tensor(x)
        if "float" in self._dtype(x.dtype):
            return x
        return self.ops.cast(x, "float64")

    def integer(self, x):
        return self.ops.cast(x, self.compute)

    def exponent(self, n):
        """A shift: int64 NumPy for constants (see `pow2`), else a tensor."""
        return np.asarray(n, np.int64) if _is_numpy(n) else n

    def pow2(self, n):
        """`2^n` in the compute dtype; exact (NumPy's for constants)."""
        if _is_numpy(n):
            if self.compute == "float64":
                return self.ops.convert_to_tensor(np.ldexp(1.0, n))
            return self.ops.convert_to_tensor(np.int64(1) << n)
        two = self.ops.cast(2, self.compute)
        return self.ops.power(two, self.ops.cast(n, self.compute))

    def floor_shift(self, z, n):
        """`floor(z / 2^n)`."""
        return self.ops.floor_divide(z, self.pow2(n))

    def finish(self, y):
        return self.ops.cast(y, self.dtype)


# ---------------------------------------------------------------------------
# Rounding and saturation.
# ---------------------------------------------------------------------------


def round_half_away(x, dtype="int64"):
    """Rounds to the nearest integer, ties away from zero, exactly.

    The convention of C's `round` and TFLite's `TfLiteRound`: `0.5 -> 1`,
    `-0.5 -> -1`, `2.5 -> 3`, `-2.5 -> -3` (NumPy's `np.round` and Python's
    `round` round ties to even instead). `x - trunc(x)` is exact in binary
    floating point, so every tie is found, unlike `floor(|x| + 0.5)`.

    Args:
        x: array-like or number of reals, or a tensor (see "Tensors" in
            the module docstring).
        dtype: dtype of the result, or `None` to keep the floating type of
            `x` (float64 for integer input); use `None` when the result
            may not fit the integer type and is clipped afterwards, and
            for tensors in a forward pass. Defaults to `"int64"`.

    Returns:
        NumPy array (0-d for a scalar input) of `dtype`, or a tensor for
        a tensor `x`.

    Example:

    >>> keras_snn.fixed_point.round_half_away([0.5, -0.5, 2.5, -2.4])
    array([ 1, -1,  3, -2])
    """
    xp = _backend(x)
    x = xp.real(x)
    whole = xp.trunc(x)
    away = xp.abs(x - whole) >= 0.5
    rounded = whole + xp.cast(xp.where(away, xp.sign(x), 0), x.dtype)
    return rounded if dtype is None else xp.cast(rounded, dtype)


def saturate(x, bits):
    """Clips integers to the signed `bits`-bit range.

    On tensors its gradient is clip's: 1 inside the range, 0 where it
    saturates (the usual straight-through estimator of a clipped
    quantizer), so it needs no `_ste` variant.

    Args:
        x: array-like of integers, or a tensor.
        bits: int, the width (8 gives `[-128, 127]`).

    Returns:
        NumPy array (tensor for a tensor `x`), `x` clipped to
        `[-2^(bits-1), 2^(bits-1) - 1]`.
    """
    limit = (1 << (bits - 1)) - 1
    return _backend(x).clip(x, -limit - 1, limit)


def wrap_int32(x):
    """Two's-complement wrap of int64 values to int32, kept as int64.

    What an int32 C variable holds after an overflowing operation.
    """
    return np.asarray(x, np.int64).astype(np.int32).astype(np.int64)


# ---------------------------------------------------------------------------
# The integer reference's convention: multiplier and rounding right shift.
# ---------------------------------------------------------------------------


def rshift_round(z, shift):
    """`(z + 2^(shift-1)) >> shift`: divides by `2^shift`, ties up.

    The run-time rounding of the integer reference and the C runtime: an
    arithmetic right shift of int64 values after adding half, so ties round
    toward +infinity (`5 >> 1 -> 3`, `-5 >> 1 -> -2`). The shift is a floor
    division by `2^shift` (what it is on tensors).

    Args:
        z: array-like of integers (int64), or a tensor.
        shift: int or int array (per channel), every value >= 1.

    Returns:
        int64 NumPy array (a tensor of `z`'s dtype for tensors).
    """
    xp = _backend(z, shift)
    z = xp.integer(z)
    shift = xp.exponent(shift)
    return xp.finish(xp.floor_shift(z + xp.pow2(shift - 1), shift))


def requantize(acc, multiplier, shift):
    """`rshift_round(acc * multiplier, shift)` in int64 (per channel).

    Rescales an accumulator (bias included) by `multiplier / 2^shift`
    (from `quantize_multiplier_shift`): the integer reference's
    requantization. With a 15-bit multiplier this is, bit for bit, what
    both TFLite-Micro (`MultiplyByQuantizedMultiplier(int64_t, ...)`,
    which reduces its Q31 multiplier to 16 bits) and LiteRT (which keeps
    the Q31 multiplier and rounds once) compute for the Q31 multiplier
    `multiplier << 16`: the two runtimes differ for other multipliers, and
    agree, with each other and with this function, on these.

    Args:
        acc: array-like of integers (accumulators, bias included), or a
            tensor (exact in float64 while `|acc * multiplier| < 2^53`).
        multiplier: int or int array, in `[2^14, 2^15)`.
        shift: int or int array, in `[1, 46]`.

    Returns:
        int64 NumPy array (a tensor of `acc`'s dtype for tensors).
    """
    xp = _backend(acc, multiplier, shift)
    product = xp.integer(acc) * xp.integer(multiplier)
    return xp.finish(rshift_round(product, shift))


def quantize_multiplier_shift(real):
    """`(m, n)` with `m / 2^n ~= real`, `m` of 15 bits, `2^14 <= m < 2^15`.

    The integer reference's multiplier (`requantize`): the significand of
    `real` rounded to `MULTIPLIER_BITS` (15) bits, ties away from zero,
    and the shift `n = 15 - exponent`. `m / 2^n` is a float32 and a
    TFLite scale ratio that TFLite turns into the Q31 multiplier
    `m << 16` exactly (see `requantize`).

    Args:
        real: float > 0, the scale ratio.

    Returns:
        Tuple `(m, n)` of Python ints.

    Raises:
        ValueError: `real` is not positive, or needs a shift outside
            [1, 46] (TFLite-Micro's range of exponents, `[-31, 14]`).

    Example:

    >>> keras_snn.fixed_point.quantize_multiplier_shift(0.75)
    (24576, 15)
    """
    real = float(real)
    if not real > 0:
        raise ValueError(f"A requantization scale must be > 0: got {real}")
    mantissa, exponent = math.frexp(real)
    m = int(round_half_away(mantissa * (1 << MULTIPLIER_BITS)))
    if m == 1 << MULTIPLIER_BITS:
        m //= 2
        exponent += 1
    n = MULTIPLIER_BITS - exponent
    if not 1 <= n <= 46:
        raise ValueError(
            f"The scale ratio {real:g} cannot be expressed with a shift in "
            "[1, 46]."
        )
    return m, n


def rounded_average(total, count):
    """`total / count` rounded to nearest, halves away from zero, as
    TFLite's integer AVERAGE_POOL_2D divides a window's sum by its count:
    `(total + count // 2) / count` for a positive total, `(total -
    count // 2) / count` otherwise, dividing with truncation (C's `/`).

    Args:
        total: array-like of integers (window sums), or a tensor.
        count: int or int array > 0 (the window's positions inside the
            input).

    Returns:
        int64 NumPy array (a tensor of `total`'s dtype for tensors).
    """
    xp = _backend(total, count)
    total = xp.integer(total)
    count = xp.integer(count)
    half = xp.floor_divide(count, 2)
    nudged = xp.where(total > 0, total + half, total - half)
    quotient = xp.floor_divide(xp.abs(nudged), count)
    return xp.finish(xp.where(nudged < 0, -quotient, quotient))


def power_of_two_scale(bound, levels, clip=0.0):
    """The smallest power of two `s` with `bound / s <= levels (1 + clip)`.

    The scale of the integer reference's activations (the input, currents,
    membrane potentials, the output): with every activation scale a power
    of two, each requantization ratio `s_x * s_w / s_y` is the float32
    `m / 2^n` of `quantize_multiplier_shift` for a weight scale `s_w`
    that is itself a float32, so TFLite's kernels derive the same
    multiplier from the tensors' scales. With `clip=0` it spends at most
    one bit of the range; a `clip > 0` accepts that values within the top
    `clip / (1 + clip)` of the range saturate, to keep that bit (an input
    in [0, 1] gets `2^-7`, and 1.0 becomes 127/128, rather than `2^-6`).

    Args:
        bound: float >= 0, the largest magnitude to represent.
        levels: int, the largest integer (127 for int8, 32767 for int16).
        clip: float >= 0, the fraction beyond `levels` allowed to
            saturate. Defaults to 0.

    Returns:
        Python float, a power of two (`2^-40` for a zero bound).

    Example:

    >>> keras_snn.fixed_point.power_of_two_scale(1.0, 127)
    0.015625
    >>> keras_snn.fixed_point.power_of_two_scale(1.0, 127, clip=1 / 64)
    0.0078125
    """
    bound = float(bound)
    if not bound > 0:
        return 2.0**-40
    _, exponent = math.frexp(bound / (levels * (1.0 + clip)))
    scale = math.ldexp(1.0, exponent - 1)  # at or below the ratio
    return scale if bound / scale <= levels * (1.0 + clip) else 2 * scale


# ---------------------------------------------------------------------------
# The TFLite / TFLite-Micro convention.
# ---------------------------------------------------------------------------


def quantize_multiplier(real):
    """A real multiplier as a Q31 significand and an exponent (TFLM).

    Reproduces `tflite::QuantizeMultiplier` (`quantization_util.cc`, built
    without `TFLITE_EMULATE_FLOAT` or `TFLITE_SINGLE_ROUNDING`):
    `real ~= q * 2^(exponent - 31)`, `q = round(frexp(real).mantissa *
    2^31)` with ties away from zero (`TfLiteRound`); a `q` of `2^31` is
    halved and the exponent incremented; an exponent below -31 flushes to
    `(0, 0)`; zero gives `(0, 0)`. Values >= 1 give a positive exponent
    (TFLM's `QuantizeMultiplierGreaterThanOne` path), values below one a
    zero or negative one (`QuantizeMultiplierSmallerThanOneExp`).

    Args:
        real: float (a Python float is a C double).

    Returns:
        Tuple `(q, exponent)` of Python ints, `2^30 <= |q| < 2^31` unless 0.

    Example:

    >>> keras_snn.fixed_point.quantize_multiplier(0.5)
    (1073741824, 0)
    >>> keras_snn.fixed_point.quantize_multiplier(3.0)
    (1610612736, 2)
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    mantissa, exponent = math.frexp(real)
    q = int(round_half_away(mantissa * (1 << 31)))
    if q == 1 << 31:
        q //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    return q, exponent


def saturating_rounding_doubling_high_mul(a, b):
    """Reproduces gemmlowp `SaturatingRoundingDoublingHighMul` on int32.

    The high 32 bits of `2 a b`, rounded to nearest with ties away from
    zero (the nudge `2^30` or `1 - 2^30` before a division that truncates
    toward zero), saturating the single overflow case
    `a == b == INT32_MIN` to `INT32_MAX`.

    Args:
        a: int array holding int32 values.
        b: int or int array holding int32 values.

    Returns:
        int64 NumPy array holding int32 values.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C++ integer division truncates toward zero.
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x, exponent):
    """Reproduces gemmlowp `RoundingDivideByPOT`: `x / 2^exponent`.

    Rounds to nearest with ties away from zero (`5 / 2 -> 3`,
    `-5 / 2 -> -3`), unlike `rshift_round`: gemmlowp's `x & mask` is the
    remainder `x - (x >> exponent) 2^exponent`, written so on tensors.

    Args:
        x: int array, or a tensor.
        exponent: int or int array in `[0, 31]`.

    Returns:
        int64 NumPy array (a tensor of `x`'s dtype for tensors).
    """
    xp = _backend(x, exponent)
    x = xp.integer(x)
    exponent = xp.exponent(exponent)
    quotient = xp.floor_shift(x, exponent)
    remainder = x - quotient * xp.pow2(exponent)
    threshold = xp.floor_shift(xp.pow2(exponent) - 1, 1) + xp.integer(x < 0)
    return xp.finish(quotient + xp.integer(remainder > threshold))


def multiply_by_quantized_multiplier(x, multiplier, shift, single=False):
    """Reproduces `tflite::MultiplyByQuantizedMultiplier(int32_t, ...)`.

    With `single=False` the double-rounding build (TFLM's default,
    `common.cc`): a left shift by `max(shift, 0)` (wrapping to int32),
    `saturating_rounding_doubling_high_mul` by the Q31 `multiplier`, then
    `rounding_divide_by_pot` by `max(-shift, 0)`. For `shift <= 0` this is
    also `MultiplyByQuantizedMultiplierSmallerThanOneExp`.

    With `single=True` the `TFLITE_SINGLE_ROUNDING` build:
    `(x * multiplier + 2^(30 - shift)) >> (31 - shift)`, ties up, wrapped
    to int32 (LiteRT's reference FULLY_CONNECTED rounds this way).

    Args:
        x: int array holding int32 values.
        multiplier: int or int array, Q31 significands from
            `quantize_multiplier`.
        shift: int or int array, the exponents.
        single: bool, the single-rounding build. Defaults to `False`.

    Returns:
        int64 NumPy array holding int32 values.
    """
    shift = np.asarray(shift, np.int64)
    if single:
        total_shift = 31 - shift
        nudge = np.int64(1) << (total_shift - 1)
        product = np.asarray(x, np.int64) * np.asarray(multiplier, np.int64)
        return wrap_int32((product + nudge) >> total_shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(np.asarray(x, np.int64) << left)
    high = saturating_rounding_doubling_high_mul(shifted, multiplier)
    return rounding_divide_by_pot(high, right)


# ---------------------------------------------------------------------------
# Neuron constants.
# ---------------------------------------------------------------------------


def quantize_decay(decay, bits=DECAY_BITS):
    """The decay factor as a fixed-point integer, `round(decay * 2^bits)`.

    Ties away from zero (`round_half_away`); `decay = 1` is exact.

    Args:
        decay: float, the membrane decay `k`, or an array of them (one per
            channel or neuron).
        bits: int, the fraction bits. Defaults to `DECAY_BITS` (Q15).

    Returns:
        Python int (int64 array for an array `decay`).
    """
    return _int_or_array(
        round_half_away(np.asarray(decay, np.float64) * (1 << bits))
    )


def _int_or_array(values):
    """A 0-d integer array as a Python int; other arrays as int64."""
    values = np.asarray(values, np.int64)
    return int(values) if values.ndim == 0 else values


def quantize_membrane_decay(decay):
    """The integer reference's decay: an even Q15 integer, `2 round(k 2^14)`.

    Even, so that `decay_multiply` rounds once (see there); `decay = 1`
    gives `2^15`, the identity (an IF neuron, no multiplication).

    Args:
        decay: float in [0, 1], the membrane decay `k` (or an array).

    Returns:
        Python int in `[0, 2^15]`, even (int64 array for an array).
    """
    return 2 * quantize_decay(decay, DECAY_BITS - 1)


def decay_multiply(v, decay_q):
    """`k v` on integers: `rounding_divide_by_pot(v * decay_q, 15)`.

    The decay of a membrane potential in the integer reference (Wu et al.
    2019, Eq. 5, `k u[t-1]`), ties away from zero. For an even `decay_q`
    (`quantize_membrane_decay`) and int16 `v` it is exactly TFLite's int16
    MUL of `v` by the constant `decay_q` in scale `2^-15` (the product has
    the potential's scale):
    `multiply_by_quantized_multiplier(v * decay_q, 2^30, -14)`, whose
    first rounding (a halving) is exact on even products.

    Args:
        v: array-like of integers, the potentials, or a tensor.
        decay_q: int, from `quantize_membrane_decay`, or an array of them
            broadcastable to `v` (one per channel or neuron).

    Returns:
        int64 NumPy array (a tensor of `v`'s dtype for tensors).
    """
    xp = _backend(v, decay_q)
    product = xp.integer(v) * xp.integer(decay_q)
    return xp.finish(rounding_divide_by_pot(product, DECAY_BITS))


def quantize_adaptation_step(adaptation, adaptation_decay, scale):
    """The integer jump of an adaptive threshold per spike (ALIF).

    The integer reference keeps the ALIF adaptation (Bellec et al. 2018,
    `keras_snn.functional.alif_step`) as the threshold's rise
    `a = beta b` in the potential's scale, so that it decays with the
    membrane's own arithmetic:
    `a[t+1] = decay_multiply(a[t], rho_q) + step_q o[t]` and the
    threshold is `th_q + a[t]`. `step_q = round((1 - rho_q 2^-15) beta /
    scale)` is the rise one spike gives, `(1 - rho) beta` in float.

    Args:
        adaptation: float `beta >= 0`.
        adaptation_decay: float `rho` in [0, 1].
        scale: float > 0, the potential's scale.

    Returns:
        Python int >= 0.
    """
    rho = quantize_membrane_decay(adaptation_decay) / (1 << DECAY_BITS)
    return int(round_half_away((1.0 - rho) * float(adaptation) / scale))


def quantize_threshold(threshold, scale, strict=False):
    """The firing threshold as an integer in the potential's scale.

    `th_q = round_half_away(threshold / scale)` is the integer threshold of
    the comparison `u >= th_q` on integer potentials `u = v / scale`. With
    `strict=True` it returns `th_q - 1` for hardware that fires at
    `u > th` instead (exact when potentials are integers: `u >= th_q` iff
    `u > th_q - 1`).

    Args:
        threshold: float, the threshold `theta` of the float model, or an
            array of them (one per channel or neuron).
        scale: float > 0, the real value of one integer step of the
            potential.
        strict: bool, return the threshold of a `>` comparison. Defaults
            to `False`.

    Returns:
        Python int (int64 array for an array `threshold`).
    """
    th_q = _int_or_array(
        round_half_away(np.asarray(threshold, np.float64) / float(scale))
    )
    return th_q - 1 if strict else th_q


# ---------------------------------------------------------------------------
# Batch norm at inference.
# ---------------------------------------------------------------------------


def batch_norm_factor(gamma, variance, epsilon, scale=1.0):
    """The inference batch-norm factor `f = scale * gamma / sqrt(var + eps)`.

    `scale` is tdBN's constant `alpha * V_th` (1 for a plain batch norm);
    Zheng et al. 2021, Eq. 8-10.

    Args:
        gamma: array of per-channel scales, or `None` (`scale=False`: 1).
        variance: array of moving variances.
        epsilon: float, the normalization's epsilon.
        scale: float or array. Defaults to `1.0`.

    Returns:
        float64 NumPy array, one factor per channel.
    """
    gamma = 1.0 if gamma is None else np.asarray(gamma, np.float64)
    variance = np.asarray(variance, np.float64)
    return scale * gamma / np.sqrt(variance + epsilon)


def batch_norm_affine(x, mean, beta, factor):
    """Inference batch norm with a factor: `(x - mean) * factor + beta`.

    Applied to activations it is the batch norm; applied to a layer's bias
    it is the folded bias (Zheng et al. 2021, Eq. 10); applied to 0 it is
    the offset of the equivalent per-channel affine map.

    Args:
        x: array (activations, a bias, or 0).
        mean: array of moving means.
        beta: array of offsets, or `None` (`center=False`: 0).
        factor: `batch_norm_factor(...)`.

    Returns:
        NumPy array, float64 for float64 inputs.
    """
    beta = 0.0 if beta is None else beta
    return (x - mean) * factor + beta
