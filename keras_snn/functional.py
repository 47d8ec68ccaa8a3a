"""Pure spiking dynamics shared by the layers, the exporters and the tests.

Every equation of a neuron is written here exactly once. The functions hold
no state, create no variables and do not look at a training flag; they use
only arithmetic operators plus the `spike_fn` and `detach_fn` hooks, so the
same code runs on Keras/TensorFlow tensors, on NumPy arrays and on the
integer arrays of a fixed-point reference.

Neuron model (Wu et al. 2019, Eq. 5-6; Ledinauskas et al. 2020, Sec. 2.2).
With input current `I[t]`, decay factor `k` and threshold `theta`:

```
u[t] = k * v[t-1] + I[t]                     # charge (Eq. 5, first term)
o[t] = H(u[t] - theta)                       # fire   (Eq. 6)
v[t] = u[t] * (1 - o[t])                     # reset="hard"
v[t] = u[t] - theta * o[t]                   # reset="soft" (by subtraction)
v[t] = u[t]                                  # reset="none"
```

`u[t]` is the membrane potential compared with the threshold (the paper's
`u^{t}`); `v[t]` is the potential after the reset, which is the state carried
to the next step. Substituting `v[t-1]` gives back Eq. 5 of Wu et al. 2019
literally: `u[t] = k * u[t-1] * (1 - o[t-1]) + I[t]`. `H` is the Heaviside
step with `H(0) = 1`: **a neuron whose potential equals the threshold fires**
(`f(x) = 1` for `x >= 0`, Wu et al. 2019 after Eq. 6). This convention holds
everywhere in keras_snn. The integrate-and-fire neuron is the case `k = 1`.
"""

import numpy as np
from keras import ops

RESET_MODES = ("hard", "soft", "none")

__all__ = [
    "RESET_MODES",
    "heaviside",
    "neuron_step",
    "validate_decay",
    "validate_reset",
    "validate_threshold",
]


def heaviside(x):
    """Heaviside step `H(x)`: 1 where `x >= 0`, else 0, in `x`'s dtype.

    Works on Keras tensors and NumPy arrays. It is the forward pass of
    every surrogate in `keras_snn.surrogates`.
    """
    if isinstance(x, (int, float)):
        x = np.asarray(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return (x >= 0).astype(x.dtype)
    return ops.cast(ops.greater_equal(x, 0), x.dtype)


def neuron_step(
    current,
    v,
    threshold,
    decay,
    reset="hard",
    spike_fn=heaviside,
    detach_fn=None,
):
    """One time step of a LIF/IF neuron (Wu et al. 2019, Eq. 5-6).

    Args:
        current: input current `I[t]`, any shape.
        v: potential after the previous step's reset, `v[t-1]`, same shape.
        threshold: firing threshold `theta` (scalar or broadcastable).
        decay: leak factor `k` in [0, 1]; 1 gives an IF neuron.
        reset: `"hard"` (to zero, Eq. 5), `"soft"` (subtract the threshold,
            Ledinauskas et al. 2020 Sec. 2.2) or `"none"`.
        spike_fn: maps `u - threshold` to spikes; a surrogate from
            `keras_snn.surrogates` in training, `heaviside` otherwise.
        detach_fn: `None`, or a function applied to the spikes used by the
            reset; `ops.stop_gradient` implements `detach_reset`.

    Returns:
        Tuple `(o, u, v)`: spikes `o[t]`, potential before reset `u[t]` and
        potential after reset `v[t]` (the next state).
    """
    u = decay * v + current
    o = spike_fn(u - threshold)
    if reset == "none":
        return o, u, u
    r = o if detach_fn is None else detach_fn(o)
    if reset == "hard":
        return o, u, u * (1 - r)
    if reset == "soft":
        return o, u, u - threshold * r
    raise ValueError(
        f"Argument `reset` must be one of {RESET_MODES}. Received: "
        f"reset={reset!r}"
    )


def validate_threshold(threshold, name="threshold"):
    """Returns `threshold` as a float, or raises if it is not > 0."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = None
    if value is None or not value > 0:
        raise ValueError(
            f"Argument `{name}` must be a number > 0. Received: "
            f"{name}={threshold!r}"
        )
    return value


def validate_decay(decay, name="decay"):
    """Returns `decay` as a float, or raises if it is outside [0, 1]."""
    try:
        value = float(decay)
    except (TypeError, ValueError):
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"Argument `{name}` must be a number in [0, 1]. Received: "
            f"{name}={decay!r}"
        )
    return value


def validate_reset(reset):
    """Returns `reset` if it is one of `RESET_MODES`, else raises."""
    if reset not in RESET_MODES:
        raise ValueError(
            f"Argument `reset` must be one of {RESET_MODES}. Received: "
            f"reset={reset!r}"
        )
    return reset
