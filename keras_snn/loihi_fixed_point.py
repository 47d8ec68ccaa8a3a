"""Loihi 2's fixed point: one definition for the Loihi reference and QAT.

Lava's bit-accurate CUBA neuron (`PyLifModelBitAcc`, lava-nc 0.10.0) and
the NetX weight format, written once so that the Loihi reference that
every NetX file is checked against (`edge.targets.loihi.reference`, NumPy
int64) and quantization-aware training for Loihi
(`keras_snn.quantization_loihi`, Keras tensors holding integers in float64)
run the same functions. Each function takes NumPy arrays or tensors
(`keras_snn.fixed_point`'s backends); the `_ste` variants give training a
straight-through gradient with the exact forward value
(`keras_snn.fixed_point_ops.ste`).

One step of a layer, in file units (weights `w`, biases `b` and the
threshold mantissa `n` are integers; `a` is the synaptic input):

- current: `u = wrap24(trunc(u (4096 - iDecay) / 4096) + (a << 6))`;
- voltage: `v = trunc(v (4096 - vDecay) / 4096) + u + (b << 6)`, clipped
  to `+-(2^23 - 1)`;
- spike where `v > n << 6` (strict), then `v = 0` (hard reset).

The mapping of float weights: `w = 2 round(S W / 2)` (even integers in
`[-254, 254]`: an 8-bit mantissa times 2), `b = round(S b)` in
`[-4096, 4095]`, with `S` the layer's scale (`edge.targets.loihi`).
"""

import numpy as np

from keras_snn import fixed_point
from keras_snn import fixed_point_ops
from keras_snn import functional

__all__ = [
    "ACT_SHIFT",
    "DECAY_SHIFT",
    "DECAY_UNITY",
    "STATE_BITS",
    "STATE_LIMIT",
    "LoihiDecay",
    "bias_integers",
    "decay_toward_zero",
    "decay_toward_zero_ste",
    "fold_average_pool",
    "neuron_step",
    "synapse_wrap",
    "weight_integers",
    "wrap",
    "wrap_current",
]

DECAY_UNITY = 4096  # decays are 12-bit fractions of 4096
DECAY_SHIFT = 12
ACT_SHIFT = 6  # synaptic input, bias (bias_exp) and threshold are << 6
STATE_BITS = 24  # u and v
STATE_LIMIT = (1 << (STATE_BITS - 1)) - 1  # v is clipped to +-(2^23 - 1)
WEIGHT_MANTISSA = 127  # |w / 2| of the weights written (even integers)
BIAS_MIN, BIAS_MAX = -4096, 4095  # 13-bit signed bias mantissa


def decay_toward_zero(x, d):
    """`trunc(x (4096 - d) / 4096)`: Lava's decay, rounding toward zero.

    `sign(x) ((|x| (4096 - d)) >> 12)`, as `PyLifModelBitAcc`'s
    `subthr_dynamics` decays `u` by `iDecay` and `v` by `vDecay`.

    Args:
        x: integers (NumPy or a tensor), `|x| < 2^41` on tensors.
        d: the decay, an int in `[0, 4096]`.

    Returns:
        int64 NumPy array (a tensor of `x`'s dtype for tensors).
    """
    xp = fixed_point._backend(x)
    x = xp.integer(x)
    magnitude = xp.floor_shift(xp.abs(x) * (DECAY_UNITY - int(d)), DECAY_SHIFT)
    return xp.finish(xp.sign(x) * magnitude)


decay_toward_zero_ste = fixed_point_ops.ste(
    decay_toward_zero,
    lambda x, d: x * ((DECAY_UNITY - int(d)) / DECAY_UNITY),
)
decay_toward_zero_ste.__name__ = "decay_toward_zero_ste"
decay_toward_zero_ste.__doc__ = (
    "`decay_toward_zero(x, d)`, the gradient of `x (4096 - d) / 4096`."
)


class LoihiDecay:
    """Loihi's decay as a factor: `LoihiDecay(d) * x` is
    `decay_toward_zero(x, d)` (or `multiply(x, d)`), so the shared
    `keras_snn.functional.neuron_step` runs on Loihi's integers.

    Args:
        d: `vDecay` or `iDecay`, an int in `[0, 4096]`.
        multiply: the decay function; `decay_toward_zero_ste` in training.
    """

    def __init__(self, d, multiply=decay_toward_zero):
        self.d = int(d)
        self.multiply = multiply

    def __mul__(self, x):
        return self.multiply(x, self.d)

    __rmul__ = __mul__

    def __repr__(self):
        return f"LoihiDecay((4096 - {self.d}) / 4096, toward zero)"


def wrap(x, bits):
    """Two's-complement wrap of integers to `bits` bits (kept wide).

    `((x + 2^(bits-1)) mod 2^bits) - 2^(bits-1)`: what a `bits`-bit
    register holds after an overflow (Lava's int32 arithmetic, its
    convolution's 24-bit `signed_clamp`). On tensors the gradient is 1.
    """
    xp = fixed_point._backend(x)
    x = xp.integer(x)
    half = xp.pow2(np.int64(bits - 1))
    wrapped = x - xp.floor_shift(x + half, np.int64(bits)) * xp.pow2(
        np.int64(bits)
    )
    if xp is fixed_point._NumPy:
        return wrapped
    from keras import ops

    return xp.finish(x + ops.stop_gradient(wrapped - x))


def wrap_current(u):
    """Lava's 24-bit wrap of the current: one correction, as in
    `subthr_dynamics` (above `2^23` subtract `2^24`, at or below `-2^23`
    add it)."""
    xp = fixed_point._backend(u)
    limit = 1 << (STATE_BITS - 1)
    u = xp.where(u > limit, u - 2 * limit, u)
    return xp.where(u <= -limit, u + 2 * limit, u)


def synapse_wrap(a, kind):
    """The synaptic input as Lava holds it: a convolution's output is a
    signed 24-bit value (`signed_clamp`, a wrap), a dense layer's int32."""
    return wrap(a, STATE_BITS if kind == "conv" else 32)


def weight_integers(weight, scale, clip=True):
    """`w = 2 round(S W / 2)`: NetX's even weights, in `[-254, 254]`.

    Args:
        weight: float weights (output channels on the last axis), NumPy
            or a tensor (then with a straight-through gradient).
        scale: `S`, a number or one per output channel.
        clip: clip the mantissa to `[-127, 127]`; `False` gives the
            unclipped value (the exporter checks its range).

    Returns:
        The integers, int64 NumPy (a tensor for a tensor `weight`).
    """
    if fixed_point._is_numpy(weight):
        half = np.asarray(scale, np.float64) * np.asarray(weight, np.float64)
        mantissa = fixed_point.round_half_away(half / 2)
    else:
        from keras import ops

        s = ops.cast(scale, weight.dtype)
        mantissa = fixed_point_ops.round_half_away_ste(s * weight / 2)
    if clip:
        mantissa = fixed_point._backend(mantissa).clip(
            mantissa, -WEIGHT_MANTISSA, WEIGHT_MANTISSA
        )
    return 2 * mantissa


def bias_integers(bias, scale):
    """`b = round(S b)`, clipped to the 13-bit mantissa `[-4096, 4095]`."""
    if fixed_point._is_numpy(bias):
        s = np.asarray(scale, np.float64)
        q = fixed_point.round_half_away(s * np.asarray(bias, np.float64))
    else:
        from keras import ops

        s = ops.cast(scale, bias.dtype)
        q = fixed_point_ops.round_half_away_ste(s * bias)
    return fixed_point._backend(q).clip(q, BIAS_MIN, BIAS_MAX)


def fold_average_pool(weight, kind, pool_size, shape, xp=np):
    """A synaptic layer's weights with the average pool before it folded in.

    Average pooling of spikes is linear: a conv after a `k x k` pool (with
    stride `k`) is a conv with a `k`-times larger kernel (each tap
    repeated) divided by `k^2`; a dense layer's rows repeat the same way.

    Args:
        weight: conv `(kh, kw, in, out)` or dense `(h/k * w/k * c, out)`
            weights (rows in HWC order).
        kind: `"conv"` or `"dense"`.
        pool_size: `(kh, kw)` of the pool.
        shape: `(h, w, c)`, the pool's input.
        xp: `numpy` or `keras.ops` (the same calls on both).

    Returns:
        The folded weights.
    """
    kh, kw = pool_size
    if kind == "conv":
        return xp.repeat(xp.repeat(weight, kh, 0), kw, 1) / (kh * kw)
    h, w, c = shape
    rows = xp.reshape(weight, (h // kh, w // kw, c, -1))
    rows = xp.repeat(xp.repeat(rows, kh, 0), kw, 1) / (kh * kw)
    return xp.reshape(rows, (h * w * c, -1))


def neuron_step(
    a,
    u,
    v,
    threshold,
    v_decay,
    i_decay,
    bias,
    decay=decay_toward_zero,
    spike_fn=functional.heaviside,
):
    """One step of Lava's bit-accurate CUBA neuron (`PyLifModelBitAcc`).

    `u = wrap24(trunc(u (4096 - iDecay) / 4096) + wrap32(a << 6))`, then
    `v = clip24(trunc(v (4096 - vDecay) / 4096) + u + (bias << 6))`, spike
    where `v > threshold << 6`, then `v = 0` there. The voltage and the
    hard reset are `keras_snn.functional.neuron_step` (Wu et al. 2019,
    Eq. 5-6) with the current `u + (bias << 6)`, the decay
    `LoihiDecay(vDecay)` and the threshold `(threshold << 6) + 1` (on
    integers `v > t` is `v >= t + 1`); clipping after the reset is the
    same as before it (a clipped positive `v` still exceeds every
    threshold, a negative one never fires).

    Args:
        a: the synaptic input of this step (integers).
        u: the current after the previous step.
        v: the voltage after the previous step's reset.
        threshold: `vThMant`.
        v_decay: `vDecay`.
        i_decay: `iDecay`.
        bias: the bias mantissas (integers, per output channel).
        decay: `decay_toward_zero`, or its `_ste` variant in training.
        spike_fn: maps `v - ((threshold << 6) + 1)` to spikes
            (`heaviside`; a surrogate in training).

    Returns:
        `(spikes, u, v)`.
    """
    xp = fixed_point._backend(a, u, v)
    shift = 1 << ACT_SHIFT
    u = wrap_current(wrap(decay(u, i_decay) + wrap(a * shift, 32), 32))
    spikes, _, v = functional.neuron_step(
        u + xp.integer(bias) * shift,
        v,
        int(threshold) * shift + 1,
        LoihiDecay(v_decay, decay),
        "hard",
        spike_fn=spike_fn,
    )
    return spikes, u, xp.clip(v, -STATE_LIMIT, STATE_LIMIT)
