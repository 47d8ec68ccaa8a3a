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

from keras_snn import fixed_point
from keras_snn.specs import LEARNABLE_SHAPES

RESET_MODES = ("hard", "soft", "none")

__all__ = [
    "RESET_MODES",
    "heaviside",
    "neuron_step",
    "validate_count",
    "validate_decay",
    "validate_number",
    "validate_positive",
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
    select_ops=None,
    clip_fn=None,
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
        select_ops: `None`, or a namespace with `greater_equal` and `where`
            (`keras.ops` or `numpy`): then the same equations are written
            with a comparison and selections instead of arithmetic on the
            spikes, `o = where(u >= theta, 1, 0)`, hard reset
            `v = u * where(u >= theta, 0, 1)`, soft reset
            `v = u - where(u >= theta, theta, 0)`. The values are the same;
            this form is what the exporters use, because integer graphs
            (TFLite int8, TFLite-Micro) compare and select exactly where a
            multiplication by the spikes would be rescaled. `spike_fn` and
            `detach_fn` are not used (inference only).
        clip_fn: `None`, or a function applied to the potential `u[t]`
            before the comparison: the integer reference saturates it to
            the state's width (`keras_snn.fixed_point.saturate`).

    Returns:
        Tuple `(o, u, v)`: spikes `o[t]`, potential before reset `u[t]` and
        potential after reset `v[t]` (the next state).
    """
    u = decay * v + current
    if clip_fn is not None:
        u = clip_fn(u)
    if select_ops is not None:
        return _select_step(u, threshold, reset, select_ops)
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


def _select_step(u, threshold, reset, select_ops):
    """`neuron_step`'s fire and reset written with compare and select."""
    fire = select_ops.greater_equal(u, threshold)
    o = select_ops.where(fire, 1.0, 0.0)
    if reset == "none":
        return o, u, u
    if reset == "hard":
        # A product, not where(fire, 0, u): an int8 SELECT_V2 gives its
        # inputs the scale of its output, and the output (the state after
        # reset) never reaches the threshold, so `u` would be clipped below
        # it and never fire.
        return o, u, u * select_ops.where(fire, 0.0, 1.0)
    if reset == "soft":
        return o, u, u - select_ops.where(fire, threshold, 0.0)
    raise ValueError(
        f"Argument `reset` must be one of {RESET_MODES}. Received: "
        f"reset={reset!r}"
    )


def cuba_step(
    current,
    v,
    i,
    threshold,
    decay,
    current_decay,
    reset="hard",
    spike_fn=heaviside,
    detach_fn=None,
    select_ops=None,
    clip_fn=None,
):
    """One step of the current-based LIF neuron (CUBA; Loihi, NIR CubaLIF).

    A synaptic current `i` with its own leak `a` filters the input, and the
    membrane integrates it with `neuron_step`:

    ```
    i[t] = a * i[t-1] + I[t]                    # synaptic current
    u[t] = k * v[t-1] + i[t]                    # neuron_step's charge
    o[t], v[t]                                  # neuron_step's fire, reset
    ```

    With `a = 0`, `i[t] = I[t]` and the step is `neuron_step` exactly (the
    LIF neuron). This is Loihi's neuron model (Davies et al. 2018; its
    current and voltage decays are `1 - a` and `1 - k`) and NIR's
    `CubaLIF`, in discrete time.

    Args:
        current: input current `I[t]`, any shape.
        v: membrane state `v[t-1]` (after the previous reset).
        i: synaptic current `i[t-1]`, same shape.
        threshold: firing threshold `theta`, as for `neuron_step`.
        decay: the membrane's leak `k`, as for `neuron_step`.
        current_decay: leak factor `a` of the synaptic current, in [0, 1]
            (scalar or broadcastable).
        reset: as for `neuron_step`.
        spike_fn: as for `neuron_step`.
        detach_fn: as for `neuron_step`.
        select_ops: as for `neuron_step`.
        clip_fn: as for `neuron_step`; also applied to the current `i[t]`
            (the integer reference saturates both states).

    Returns:
        Tuple `(o, u, v, i)`: spikes `o[t]`, potential before reset `u[t]`,
        the new states `v[t]` and `i[t]`.
    """
    i = current_decay * i + current
    if clip_fn is not None:
        i = clip_fn(i)
    o, u, v = neuron_step(
        i, v, threshold, decay, reset, spike_fn, detach_fn, select_ops, clip_fn
    )
    return o, u, v, i


def alif_step(
    current,
    v,
    b,
    threshold,
    decay,
    adaptation,
    adaptation_decay,
    reset="hard",
    spike_fn=heaviside,
    detach_fn=None,
    select_ops=None,
    clip_fn=None,
):
    """One step of the adaptive-threshold LIF neuron (ALIF, Bellec 2018).

    Every neuron has an adaptation variable `b` that rises with its own
    spikes and decays with `rho`; its threshold is raised by `beta * b`
    (Bellec et al. 2018, the LSNN's adaptive neurons, in discrete time):

    ```
    theta[t] = theta0 + beta * b[t]             # adaptive threshold
    u[t], o[t], v[t] = neuron_step(I[t], v[t-1], theta[t], k)
    b[t+1] = rho * b[t] + (1 - rho) * o[t]      # adaptation
    ```

    i.e. `b[t] = rho b[t-1] + (1 - rho) o[t-1]`, with `b[0] = 0`. The state
    carried from step to step is `b[t+1]`, which depends only on this
    step's spikes. A soft reset subtracts the adaptive threshold `theta[t]`
    of this step (`v[t] = u[t] - theta[t] o[t]`). With `beta = 0` the step
    is `neuron_step` exactly (the LIF neuron).

    Args:
        current: input current `I[t]`, any shape.
        v: membrane state `v[t-1]`.
        b: adaptation `b[t]` (from the previous step), same shape.
        threshold: the baseline threshold `theta0`.
        decay: the membrane's leak `k`, as for `neuron_step`.
        adaptation: `beta >= 0`, how much one unit of `b` raises the
            threshold.
        adaptation_decay: `rho` in [0, 1], the leak of `b`.
        reset: as for `neuron_step`; `"soft"` subtracts `theta[t]`.
        spike_fn: as for `neuron_step`, called on `u[t] - theta[t]`.
        detach_fn: as for `neuron_step`.
        select_ops: as for `neuron_step`.
        clip_fn: as for `neuron_step`; also applied to the new adaptation
            (the integer reference saturates every state).

    Returns:
        Tuple `(o, u, v, b)`: spikes, potential before reset, the new
        membrane state `v[t]` and the new adaptation `b[t+1]`.
    """
    theta = threshold + adaptation * b
    o, u, v = neuron_step(
        current,
        v,
        theta,
        decay,
        reset,
        spike_fn,
        detach_fn,
        select_ops,
        clip_fn,
    )
    b = adaptation_decay * b + (1 - adaptation_decay) * o
    if clip_fn is not None:
        b = clip_fn(b)
    return o, u, v, b


DECAY_PARAMETERIZATIONS = ("clip", "sigmoid")


def validate_learnable(value, name):
    """Returns `False` or one of `LEARNABLE_SHAPES` (`True` is `"layer"`).

    Args:
        value: `False`, `True`, `"layer"`, `"channel"` or `"neuron"`.
        name: the argument's name, used in the message.

    Raises:
        ValueError: "Argument `trainable_decay` must be False, True or one
            of ('layer', 'channel', 'neuron'). Received: ...".
    """
    if value is True:
        return "layer"
    if value is False or value is None:
        return False
    if isinstance(value, str) and value in LEARNABLE_SHAPES:
        return value
    raise ValueError(
        f"Argument `{name}` must be False, True or one of "
        f"{LEARNABLE_SHAPES} (True is 'layer'). Received: {name}={value!r}"
    )


def validate_parameterization(value, name="decay_parameterization"):
    """Returns `value` if it is one of `DECAY_PARAMETERIZATIONS`."""
    if value not in DECAY_PARAMETERIZATIONS:
        raise ValueError(
            f"Argument `{name}` must be one of {DECAY_PARAMETERIZATIONS}. "
            f"Received: {name}={value!r}"
        )
    return value


def sigmoid_decay(parameter):
    """The decay `k = 1 - sigmoid(a)` of PLIF (Fang et al. 2021).

    Fang et al. write the leak as `1/tau = sigmoid(a)` with a trainable `a`,
    so `k = 1 - 1/tau = sigmoid(-a)`, which stays in (0, 1) for any `a`.
    Works on Keras tensors and NumPy arrays.
    """
    if isinstance(parameter, (int, float, np.ndarray, np.generic)):
        return 1.0 / (1.0 + np.exp(np.asarray(parameter, "float64")))
    return ops.sigmoid(-parameter)


def sigmoid_decay_parameter(decay):
    """The `a` with `sigmoid_decay(a) == decay`, for `decay` in (0, 1)."""
    return float(np.log((1.0 - decay) / decay))


__all__ += [
    "DECAY_PARAMETERIZATIONS",
    "LEARNABLE_SHAPES",
    "alif_step",
    "cuba_step",
    "sigmoid_decay",
    "sigmoid_decay_parameter",
    "validate_learnable",
    "validate_parameterization",
]


def validate_number(value, name, accepted, predicate, owner=None):
    """Returns `value` as a float if it is finite and `predicate` holds.

    NaN and infinities are always refused, whatever `predicate` says.

    Args:
        value: the argument received.
        name: the argument's name, used in the message.
        accepted: what is accepted, in words, e.g. `"a number > 0"`.
        predicate: function of the float value, `True` when it is valid.
        owner: optional class name to start the message with.

    Raises:
        ValueError: "Argument `name` must be <accepted>. Received:
            name=<value>".
    """
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not np.isfinite(number) or not predicate(number):
        prefix = f"{owner}: argument" if owner else "Argument"
        raise ValueError(
            f"{prefix} `{name}` must be {accepted}. Received: {name}={value!r}"
        )
    return number


def validate_count(value, name, owner=None):
    """Returns `value` as an int, or raises if it is not an integer >= 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < 1
    ):
        prefix = f"{owner}: argument" if owner else "Argument"
        raise ValueError(
            f"{prefix} `{name}` must be an integer >= 1. Received: "
            f"{name}={value!r}"
        )
    return int(value)


def validate_positive(value, name, owner=None):
    """Returns `value` as a float, or raises if it is not a number > 0."""
    return validate_number(
        value, name, "a finite number > 0", _is_positive, owner
    )


def validate_threshold(threshold, name="threshold"):
    """Returns `threshold` as a float, or raises if it is not > 0."""
    return validate_positive(threshold, name)


def validate_decay(decay, name="decay"):
    """Returns `decay` as a float, or raises if it is outside [0, 1]."""
    return validate_number(decay, name, "a number in [0, 1]", _is_unit_interval)


def _is_positive(value):
    return value > 0


def _is_unit_interval(value):
    return 0.0 <= value <= 1.0


def validate_reset(reset):
    """Returns `reset` if it is one of `RESET_MODES`, else raises."""
    if reset not in RESET_MODES:
        raise ValueError(
            f"Argument `reset` must be one of {RESET_MODES}. Received: "
            f"reset={reset!r}"
        )
    return reset


# ---------------------------------------------------------------------------
# Readout heads (keras_snn.layers.readout, keras_snn.losses)
# ---------------------------------------------------------------------------

READOUT_MODES = ("last", "mean", "max")

__all__ += [
    "READOUT_MODES",
    "leaky_integration_matrix",
    "voting_matrix",
]


def voting_matrix(num_classes, population, dtype="float32"):
    """The constant voting matrix `M` of Wu et al. 2019, Eq. 11.

    Output neuron `j` votes for class `j // population` (populations are
    contiguous blocks), and `M` averages each population:

    ```
    M[c, j] = 1 / population   if j // population == c, else 0
    ```

    so `M @ o` is, per class, the fraction of its population that fired
    and `(1/T) sum_t M o[t]` lies in [0, 1] like the label vector `Y`.

    Args:
        num_classes: int > 0, the number of classes.
        population: int > 0, the number of neurons voting for each class.
        dtype: NumPy dtype of the result. Defaults to `"float32"`.

    Returns:
        NumPy array of shape `(num_classes, num_classes * population)`.
    """
    owner = np.arange(num_classes * population) // population
    matrix = owner[None, :] == np.arange(num_classes)[:, None]
    return (matrix / population).astype(dtype)


def leaky_integration_matrix(timesteps, decay, dtype="float32"):
    """Matrix `L` that runs a leaky integrator over time in one product.

    `L[t, s] = decay**(t - s)` for `s <= t` and 0 otherwise, so that
    `u = L @ c` (along the time axis) solves

    ```
    u[t] = decay * u[t-1] + c[t],   u[-1] = 0
    ```

    which is `neuron_step` with `reset="none"` and a neuron that never
    fires (infinite threshold), i.e. Eq. 5 of Wu et al. 2019 without the
    firing term. `0**0` is taken as 1, so `decay=0` gives `u[t] = c[t]`.

    Args:
        timesteps: the sequence length `T`: a Python int (the result is a
            NumPy array) or a scalar integer tensor (the result is a
            tensor, for sequences of unknown length).
        decay: float in [0, 1], the leak factor.
        dtype: dtype of the result. Defaults to `"float32"`.

    Returns:
        Array or tensor of shape `(T, T)`, lower triangular.
    """
    if isinstance(timesteps, (int, np.integer)):
        steps = np.arange(int(timesteps))
        lag = steps[:, None] - steps[None, :]
        powers = np.power(float(decay), np.maximum(lag, 0).astype("float64"))
        return np.where(lag >= 0, powers, 0.0).astype(dtype)
    steps = ops.arange(timesteps)
    lag = ops.expand_dims(steps, 1) - ops.expand_dims(steps, 0)
    lag = ops.cast(lag, dtype)
    powers = ops.power(ops.cast(decay, dtype), ops.maximum(lag, 0))
    return ops.where(lag >= 0, powers, ops.zeros_like(powers))


__all__ += [
    "batch_norm_parameters",
    "fold_batch_norm",
    "neunorm_output",
    "neunorm_step",
]


def fold_batch_norm(
    kernel,
    bias,
    gamma,
    beta,
    moving_mean,
    moving_variance,
    epsilon,
    scale=1.0,
):
    """Folds an inference-mode batch norm into the preceding layer's weights.

    The batchnorm-scale fusion of Zheng et al. 2021 (Eq. 9-10). For output
    channel `k`, with `s = scale` (`alpha * V_th` for tdBN, 1 for plain
    batch norm):

    ```
    f[k] = gamma[k] * s / sqrt(var[k] + eps)
    W'[..., k] = f[k] * W[..., k]                                # Eq. 9
    B'[k] = f[k] * (B[k] - mean[k]) + beta[k]                    # Eq. 10
    ```

    so that `x @ W' + B'` (or the convolution with `W'`) equals the layer
    followed by the normalization with its moving statistics, and the
    network stays fully spiking at inference.

    The output channel must be the last kernel axis: a `Dense` kernel
    `(in, out)` or a `Conv1D`/`Conv2D`/`Conv3D` kernel `(..., in, out)`,
    followed by a normalization over that channel (`axis=-1`). Depthwise
    kernels, whose output channels are `in * multiplier`, do not qualify.

    Args:
        kernel: NumPy array whose last axis is the output channel.
        bias: NumPy array `(out,)`, or `None` for a layer without bias
            (treated as 0; the folded layer then needs a bias).
        gamma: `(out,)` scale of the normalization (`lambda` in the paper),
            or `None` for `scale=False` (treated as 1).
        beta: `(out,)` offset, or `None` for `center=False` (treated as 0).
        moving_mean: `(out,)` inference mean `mu_inf`.
        moving_variance: `(out,)` inference variance `sigma_inf^2`.
        epsilon: float, the normalization's epsilon.
        scale: float, the constant factor `alpha * V_th` of tdBN; 1 for
            `keras.layers.BatchNormalization`. Defaults to `1.0`.

    Returns:
        Tuple `(folded_kernel, folded_bias)` of NumPy arrays in the
        kernel's dtype (float32 if the kernel is not a float array),
        computed in float64.

    Example:

    ```python
    kernel, bias = conv.get_weights()
    folded = keras_snn.functional.fold_batch_norm(
        kernel, bias, *keras_snn.functional.batch_norm_parameters(tdbn)
    )
    ```
    """
    kernel = np.asarray(kernel)
    dtype = kernel.dtype if kernel.dtype.kind == "f" else np.dtype("float32")
    if kernel.ndim < 2:
        raise ValueError(
            "Argument `kernel` must have at least 2 axes, the last being "
            f"the output channel. Received: kernel.shape={kernel.shape}"
        )
    channels = kernel.shape[-1]

    def vector(value, name, default):
        if value is None and default is not None:
            return np.full((channels,), default, "float64")
        value = np.asarray(value, "float64")
        if value.shape != (channels,):
            raise ValueError(
                f"Argument `{name}` must have shape ({channels},), one "
                "value per output channel (the last kernel axis). "
                f"Received: {name}.shape={value.shape}"
            )
        return value

    bias = vector(bias, "bias", 0.0)
    gamma = vector(gamma, "gamma", 1.0)
    beta = vector(beta, "beta", 0.0)
    mean = vector(moving_mean, "moving_mean", None)
    variance = vector(moving_variance, "moving_variance", None)
    factor = fixed_point.batch_norm_factor(
        gamma, variance, float(epsilon), float(scale)
    )
    folded_kernel = kernel.astype("float64") * factor
    folded_bias = fixed_point.batch_norm_affine(bias, mean, beta, factor)
    return folded_kernel.astype(dtype), folded_bias.astype(dtype)


def batch_norm_parameters(layer):
    """The inference parameters of a batch-norm layer, for `fold_batch_norm`.

    Accepts a built `keras.layers.BatchNormalization`, a
    `keras_snn.layers.TDBatchNormalization`, or either wrapped in a
    `keras.layers.Wrapper` such as `keras_snn.layers.TimeFolded`. The layer
    must normalize its last axis.

    Args:
        layer: the normalization layer.

    Returns:
        Tuple `(gamma, beta, moving_mean, moving_variance, epsilon, scale)`
        in the order of `fold_batch_norm`'s arguments: NumPy arrays
        (`gamma` is `None` when the layer has `scale=False`, `beta` when it
        has `center=False`), the float `epsilon`, and `scale`, which is the
        layer's `alpha * threshold` for tdBN and 1 otherwise.
    """
    inner = getattr(layer, "layer", None)
    if inner is not None and not hasattr(layer, "moving_mean"):
        layer = inner
    if getattr(layer, "moving_variance", None) is None:
        raise ValueError(
            "Argument `layer` must be a built BatchNormalization or "
            "TDBatchNormalization layer (with moving statistics). "
            f"Received: layer={layer!r}"
        )
    rank = getattr(getattr(layer, "input_spec", None), "ndim", None)
    axis = layer.axis
    if rank is not None and axis >= 0:
        axis -= rank
    if axis != -1:
        raise ValueError(
            "Only a normalization of the last axis (the output channel of "
            f"the preceding kernel) can be folded. Received: axis={layer.axis}"
        )

    def numpy(variable):
        return None if variable is None else ops.convert_to_numpy(variable)

    return (
        numpy(getattr(layer, "gamma", None)),
        numpy(getattr(layer, "beta", None)),
        numpy(layer.moving_mean),
        numpy(layer.moving_variance),
        float(layer.epsilon),
        float(getattr(layer, "output_scale", 1.0)),
    )


def neunorm_step(spikes, x, decay, scale):
    """One step of the NeuNorm auxiliary neuron (Wu et al. 2019, Eq. 9).

    At each spatial location the auxiliary neuron integrates the mean spike
    count over the `F` feature maps (the last axis) with a leak:

    ```
    x[t] = k * x[t-1] + (v / F) * sum_f o_f[t]                  # Eq. 9
    ```

    Args:
        spikes: spikes `o[t]` of shape `(batch, ..., F)`; `F` must be
            static.
        x: auxiliary state `x[t-1]` of shape `(batch, ..., 1)`.
        decay: the decay factor `k` (`k_tau2`), in [0, 1].
        scale: the constant scaling factor `v`.

    Returns:
        The new state `x[t]`, shape `(batch, ..., 1)`. NumPy in, NumPy out.
    """
    features = spikes.shape[-1]
    if isinstance(spikes, (np.ndarray, np.generic)):
        total = np.sum(spikes, axis=-1, keepdims=True)
    else:
        total = ops.sum(spikes, axis=-1, keepdims=True)
    return decay * x + (scale / features) * total


def neunorm_output(spikes, x, weight):
    """What the next layer receives under NeuNorm (Wu et al. 2019, Eq. 10).

    ```
    y_c[t] = o_c[t] - U_c * x[t]                                 # Eq. 10
    ```

    Eq. 10 convolves `y` with the next layer's kernel, so the subtraction is
    done per location and feature map before that layer.

    Args:
        spikes: spikes `o[t]`, shape `(batch, ..., F)` (or with a time axis,
            `(batch, time, ..., F)`).
        x: auxiliary state `x[t]` from `neunorm_step`, the spikes' shape
            with a last axis of 1.
        weight: the trainable `U`, shape `(..., F)`: one value per location
            and feature map.

    Returns:
        `spikes - weight * x`, the spikes' shape.
    """
    return spikes - weight * x
