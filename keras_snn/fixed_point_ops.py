"""Straight-through variants of the run-time fixed-point functions.

Quantization-aware training runs the integer arithmetic of the deployed
model in the forward pass: each function below returns exactly what its
`keras_snn.fixed_point` namesake returns (the same body, run on tensors;
see "Tensors" there), and passes the gradient of the real map that the
integer function rounds (a straight-through estimator, Bengio et al.
2013):

- `round_half_away_ste(x)`: `round_half_away(x, None)`, gradient 1;
- `rshift_round_ste(z, n)`: the gradient of `z 2^-n`;
- `requantize_ste(acc, m, n)`: the gradient of `acc m 2^-n`;
- `rounding_divide_by_pot_ste(x, e)`: the gradient of `x 2^-e`;
- `decay_multiply_ste(v, d_q)`: the gradient of `v d_q 2^-15`;
- `rounded_average_ste(total, count)`: the gradient of `total / count`.

So the gradient reaches every tensor argument: the accumulator (`m 2^-n`),
and a tensor multiplier or decay (`acc 2^-n`, `v 2^-15`) when they are
trained. `fixed_point.saturate` needs no variant: on tensors its gradient
is clip's (1 inside the range, 0 where it saturates). `ste` builds such a
variant for any function; the variants here are built by it (so that no
`def` repeats a rounding function's name, see
`tests/test_fixed_point.py::test_one_definition_of_each_function`).

The forward value is exact: `y + (s - stop_gradient(s))` with `y` the
integer result (held constant) and `s` the real map; `s - s` is exactly 0,
so the sum is `y` bit for bit (the form `x + stop_gradient(f(x) - x)`
rounds twice, and is exact only where `f(x) - x` is).

These are the building blocks of the QAT layers of issue 18 (weights,
currents, membrane potentials and decays on the integer grid of the
integer reference, `edge.integer`, which runs the same functions on NumPy
int64 arrays). The integer arithmetic runs in float64 and the result
has the input tensor's dtype: float32 holds the integers exactly up to
`2^24` (state of up to 24 bits), float64 up to `2^53`. This module
imports Keras on first use only.
"""

import functools

import numpy as np

from keras_snn import fixed_point

__all__ = [
    "decay_multiply_ste",
    "requantize_ste",
    "round_half_away_ste",
    "rounded_average_ste",
    "rounding_divide_by_pot_ste",
    "rshift_round_ste",
    "ste",
]


def ste(function, linear=None):
    """`function` with a straight-through gradient: that of `linear`.

    Args:
        function: callable on tensors, the exact (integer) map.
        linear: callable with the same arguments, the real map whose
            gradient the result passes. Defaults to the identity of the
            first argument.

    Returns:
        A callable with `function`'s arguments that returns
        `function(*args)` exactly and whose gradient is `linear`'s.

    Example:

    >>> floor = keras_snn.fixed_point_ops.ste(keras.ops.floor)
    >>> x = keras.Variable([0.7, -1.2])
    >>> with tf.GradientTape() as tape:
    ...     y = floor(x)
    >>> y, tape.gradient(y, x)  # [0, -2] and [1, 1]
    """
    linear = linear or (lambda x, *args, **kwargs: x)

    @functools.wraps(function)
    def straight_through(*args, **kwargs):
        from keras import ops

        exact = ops.stop_gradient(function(*args, **kwargs))
        real = ops.cast(linear(*args, **kwargs), exact.dtype)
        return exact + (real - ops.stop_gradient(real))

    return straight_through


def _real(x):
    """`x` as a tensor of its floating dtype (float64 for integers)."""
    import keras

    x = keras.ops.convert_to_tensor(x)
    if "float" in keras.backend.standardize_dtype(x.dtype):
        return x
    return keras.ops.cast(x, "float64")


def _scaled(x, *factors, shift=0):
    """`x * factors * 2^-shift` in `x`'s floating dtype: the real map of a
    rescaling, whose gradient reaches every tensor argument."""
    from keras import ops

    y = _real(x)
    for factor in factors:
        y = y * ops.cast(factor, y.dtype)
    if fixed_point._is_numpy(shift):
        power = np.ldexp(1.0, -np.asarray(shift, np.int64))
        return y * ops.cast(power, y.dtype)
    return y * ops.power(ops.cast(2, y.dtype), -ops.cast(shift, y.dtype))


def _variant(name, function, linear, doc):
    """`ste(function, linear)` named `name`, documented by `doc`."""
    variant = ste(function, linear)
    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = doc
    return variant


round_half_away_ste = _variant(
    "round_half_away_ste",
    lambda x: fixed_point.round_half_away(x, None),
    None,
    """`fixed_point.round_half_away(x, None)`, gradient 1.

    Rounds weights, biases, inputs or thresholds to the integer grid in a
    forward pass (after dividing by their scale), ties away from zero,
    keeping `x`'s floating dtype.
    """,
)

rshift_round_ste = _variant(
    "rshift_round_ste",
    fixed_point.rshift_round,
    lambda z, shift: _scaled(z, shift=shift),
    """`fixed_point.rshift_round(z, shift)`, gradient `2^-shift`.""",
)

requantize_ste = _variant(
    "requantize_ste",
    fixed_point.requantize,
    lambda acc, multiplier, shift: _scaled(acc, multiplier, shift=shift),
    """`fixed_point.requantize(acc, multiplier, shift)`, the gradient of
    `acc multiplier 2^-shift`: a synaptic layer's current on the state's
    integer grid (saturate it with `fixed_point.saturate`).""",
)

rounding_divide_by_pot_ste = _variant(
    "rounding_divide_by_pot_ste",
    fixed_point.rounding_divide_by_pot,
    lambda x, exponent: _scaled(x, shift=exponent),
    """`fixed_point.rounding_divide_by_pot(x, exponent)`, gradient
    `2^-exponent`.""",
)

decay_multiply_ste = _variant(
    "decay_multiply_ste",
    fixed_point.decay_multiply,
    lambda v, decay_q: _scaled(v, decay_q, shift=fixed_point.DECAY_BITS),
    """`fixed_point.decay_multiply(v, decay_q)`, the gradient of
    `v decay_q 2^-15`: a membrane potential's (or a synaptic current's,
    or an ALIF adaptation's) Q15 decay, as the integer reference
    computes it.""",
)

rounded_average_ste = _variant(
    "rounded_average_ste",
    fixed_point.rounded_average,
    lambda total, count: _scaled(total, 1 / _real(count)),
    """`fixed_point.rounded_average(total, count)`, the gradient of
    `total / count`: the integer average pooling of a window sum.""",
)
