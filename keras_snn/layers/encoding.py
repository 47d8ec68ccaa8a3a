"""Input encoders: turn a static input `(batch, ...)` into a sequence.

All encoders add a time axis after the batch axis, giving
`(batch, timesteps, ...)`.
"""

import keras
from keras import ops

from keras_snn import functional
from keras_snn.layers.checks import POSITIVE
from keras_snn.layers.checks import UNIT_INTERVAL
from keras_snn.layers.checks import check_finite
from keras_snn.layers.checks import check_float_input
from keras_snn.layers.checks import check_number
from keras_snn.layers.checks import in_xla_context
from keras_snn.layers.checks import propagate_non_finite
from keras_snn.layers.wrappers import repeat_over_time
from keras_snn.saving import register

__all__ = [
    "BernoulliEncoding",
    "DeltaEncoding",
    "DirectEncoding",
    "LatencyEncoding",
    "PoissonEncoding",
]


def _validate_timesteps(timesteps):
    timesteps = functional.validate_count(timesteps, "timesteps")
    return timesteps


class _Encoding(keras.layers.Layer):
    """Shared checks and shapes of the encoders."""

    def __init__(self, timesteps, check_finite=True, **kwargs):
        timesteps = _validate_timesteps(timesteps)
        super().__init__(**kwargs)
        self.timesteps = timesteps
        self.check_finite = bool(check_finite)
        self.supports_masking = False

    def _check_input(self, inputs):
        """Checks the dtype; returns `inputs`, checked for NaN/inf."""
        check_float_input(
            self,
            inputs,
            "input; scale integer images first, e.g. with "
            "keras.layers.Rescaling(1 / 255)",
        )
        if self.check_finite and not in_xla_context():
            inputs = check_finite(self, inputs, "input values")
        return inputs

    def _propagate(self, outputs, inputs):
        """Under XLA, NaN outputs where the (repeated) input is NaN/inf."""
        if self.check_finite and in_xla_context():
            outputs = propagate_non_finite(outputs, inputs)
        return outputs

    def _repeat(self, inputs):
        return repeat_over_time(inputs, self.timesteps)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.timesteps, *input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config["timesteps"] = self.timesteps
        config["check_finite"] = self.check_finite
        return config


@register
class DirectEncoding(_Encoding):
    """Repeats a static input at every time step (direct/constant encoding).

    The first synaptic layer then acts as the encoding layer of Wu et al.
    2019 ("Encoding"): it receives the real-valued input at each step and
    its spiking neurons turn it into spikes, so precision does not depend on
    a long time window. It is also the constant-current input of
    Ledinauskas et al. 2020.

    Args:
        timesteps: int >= 1, the number of time steps `T`.
        check_finite: bool, whether a NaN or infinite input is an error
            (outside XLA the call raises naming this layer; under XLA,
            which drops such checks, the spikes there become NaN). Defaults
            to `True`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: float tensor `(batch, ...)`.

    Returns:
        `(batch, timesteps, ...)`, the input repeated along time.

    Example:

    ```python
    x = keras.Input((28, 28, 1))
    seq = keras_snn.layers.DirectEncoding(timesteps=4)(x)
    # seq.shape == (None, 4, 28, 28, 1)
    ```

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, section "Encoding and decoding schemes".
    """

    def __init__(self, timesteps, check_finite=True, **kwargs):
        super().__init__(timesteps, check_finite=check_finite, **kwargs)
        self._build_at_init()

    def call(self, inputs):
        inputs = self._check_input(inputs)
        return self._repeat(inputs)


class _RandomEncoding(_Encoding):
    """Encoders that draw spikes with a per-step firing probability."""

    def __init__(self, timesteps, seed=None, check_finite=True, **kwargs):
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int)
        ):
            raise ValueError(
                "Argument `seed` must be None or an integer. Received: "
                f"seed={seed!r}"
            )
        super().__init__(timesteps, check_finite=check_finite, **kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._build_at_init()

    def probability(self, inputs):
        raise NotImplementedError

    def call(self, inputs, training=None):
        inputs = self._check_input(inputs)
        p = self._repeat(self.probability(inputs))
        if self.seed is not None and not training:
            # Inference with a seed gives the same spikes on every call.
            noise = keras.random.uniform(
                ops.shape(p), dtype=p.dtype, seed=self.seed
            )
        else:
            noise = keras.random.uniform(
                ops.shape(p), dtype=p.dtype, seed=self.seed_generator
            )
        spikes = ops.cast(ops.less(noise, p), p.dtype)
        return self._propagate(spikes, self._repeat(inputs))

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


@register
class BernoulliEncoding(_RandomEncoding):
    """Rate coding: at each step a unit spikes with probability `x`.

    `o[t] ~ Bernoulli(clip(x, 0, 1))`, independently per unit and step, so
    the expected firing rate equals the input intensity.

    Args:
        timesteps: int >= 1, the number of time steps.
        seed: int or `None`. With a seed, inference (`training=False`) gives
            the same spikes on every call and training draws a new
            reproducible sequence each call. Defaults to `None`.
        check_finite: bool, whether a NaN or infinite input is an error
            (outside XLA the call raises naming this layer; under XLA,
            which drops such checks, the spikes there become NaN). Defaults
            to `True`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: float intensities `(batch, ...)`, expected in [0, 1]
            (clipped).
        training: Python bool.

    Returns:
        0/1 spikes of shape `(batch, timesteps, ...)`.

    Example:

    ```python
    enc = keras_snn.layers.BernoulliEncoding(timesteps=8, seed=0)
    spikes = enc(keras.ops.full((2, 10), 0.25))  # about a quarter are 1
    ```
    """

    def probability(self, inputs):
        return ops.clip(inputs, 0.0, 1.0)


@register
class PoissonEncoding(_RandomEncoding):
    """Poisson rate coding: events of a Poisson process with rate `x`.

    Each unit is a Poisson process whose rate per time step is
    `max_rate * x`; a step carries a spike when it holds at least one event,
    which happens with probability `1 - exp(-max_rate * x)`. The spike
    inputs of Wu et al. 2021 (ASF-BP, Algorithm 1, "Poisson") are drawn
    this way.

    Args:
        timesteps: int >= 1, the number of time steps.
        max_rate: float > 0, the expected number of events per step at
            intensity 1. Defaults to `1.0`.
        seed: int or `None`, as for `BernoulliEncoding`. Defaults to
            `None`.
        check_finite: bool, whether a NaN or infinite input is an error
            (outside XLA the call raises naming this layer; under XLA,
            which drops such checks, the spikes there become NaN). Defaults
            to `True`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: float intensities `(batch, ...)`, negative values clipped
            to 0.
        training: Python bool.

    Returns:
        0/1 spikes of shape `(batch, timesteps, ...)`.

    Example:

    ```python
    enc = keras_snn.layers.PoissonEncoding(timesteps=20, seed=1)
    ```

    Reference:
        Wu et al., "Training Spiking Neural Networks with Accumulated
        Spiking Flow", AAAI 2021, Algorithm 1.
    """

    def __init__(
        self, timesteps, max_rate=1.0, seed=None, check_finite=True, **kwargs
    ):
        rate = check_number(type(self), kwargs, "max_rate", max_rate, POSITIVE)
        super().__init__(
            timesteps, seed=seed, check_finite=check_finite, **kwargs
        )
        self.max_rate = rate

    def probability(self, inputs):
        return 1.0 - ops.exp(-self.max_rate * ops.relu(inputs))

    def get_config(self):
        config = super().get_config()
        config["max_rate"] = self.max_rate
        return config


def _latency_steps(x, timesteps, threshold):
    """Spike step of each feature, and whether it spikes at all.

    `x` is clipped to [0, 1]; the step is `floor((1 - x) (T - 1) + 1/2)`
    (rounded half up, in float32), and a feature below `threshold` is
    silent.
    """
    x = ops.clip(ops.cast(x, "float32"), 0.0, 1.0)
    steps = ops.floor((1.0 - x) * float(timesteps - 1) + 0.5)
    active = ops.greater_equal(x, threshold)
    return steps, active


@register
class LatencyEncoding(_Encoding):
    """Latency (time-to-first-spike) coding: one spike, earlier for more.

    Each feature of a static input `x` in [0, 1] fires exactly once, at the
    step (linear latency code, rounded half up)

    ```
    t(x) = round((1 - x) * (T - 1))      o[t(x)] = 1, o[s] = 0 otherwise
    ```

    so `x = 1` fires at step 0 and `x = 0` at step `T - 1`. A feature with
    `x < threshold` does not fire at all. Inputs outside [0, 1] are
    clipped (a negative value fires at `T - 1`, a value above 1 at step 0);
    a NaN or infinite input is an error (see `check_finite`).

    The spikes come from a comparison, so no gradient flows back to the
    inputs: place the encoder directly after the data, before any
    trainable layer.

    Args:
        timesteps: int >= 1, the number of time steps `T`.
        threshold: float in [0, 1], the smallest input that still fires;
            features below it stay silent. Defaults to `0.0` (every
            feature fires).
        check_finite: bool, whether a NaN or infinite input is an error
            (outside XLA the call raises naming this layer; under XLA,
            which drops such checks, the spikes there become NaN). Defaults
            to `True`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: float intensities `(batch, ...)`, expected in [0, 1].

    Returns:
        0/1 spikes of shape `(batch, timesteps, ...)`, at most one per
        feature.

    Example:

    ```python
    enc = keras_snn.layers.LatencyEncoding(timesteps=5)
    spikes = enc(keras.ops.convert_to_tensor([[1.0, 0.5, 0.0]]))
    # the three features fire at steps 0, 2 and 4
    ```

    Reference:
        Gautrais and Thorpe, "Rate coding versus temporal order coding: a
        theoretical approach", BioSystems 1998.
    """

    def __init__(self, timesteps, threshold=0.0, check_finite=True, **kwargs):
        threshold = check_number(
            type(self), kwargs, "threshold", threshold, UNIT_INTERVAL
        )
        super().__init__(timesteps, check_finite=check_finite, **kwargs)
        self.threshold = threshold
        self._build_at_init()

    def call(self, inputs):
        inputs = self._check_input(inputs)
        steps, active = _latency_steps(inputs, self.timesteps, self.threshold)
        steps = ops.expand_dims(steps, 1)
        shape = (1, self.timesteps) + (1,) * (len(inputs.shape) - 1)
        clock = ops.reshape(ops.arange(self.timesteps, dtype="float32"), shape)
        fired = ops.logical_and(
            ops.equal(clock, steps), ops.expand_dims(active, 1)
        )
        spikes = ops.cast(fired, inputs.dtype)
        return self._propagate(spikes, ops.expand_dims(inputs, 1))

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.threshold
        return config


_POLARITIES = ("on", "both", "on_off")
_FIRST_STEPS = ("zero", "skip")


@register
class DeltaEncoding(keras.layers.Layer):
    """Delta (change) coding of a sequence: a spike where the input jumps.

    For a sequence `x[t]` of shape `(batch, T, ..., features)`, with
    `d[t] = x[t] - x[t-1]`:

    ```
    polarity="on":     o[t] = H(d[t] - theta)                 (rises)
    polarity="both":   o[t] = H(|d[t]| - theta)               (any change)
    polarity="on_off": on[t] = H(d[t] - theta), off[t] = H(-d[t] - theta),
                       concatenated on the last axis: (..., 2 * features)
    ```

    with `H(0) = 1` (a change equal to the threshold fires, as for the
    neurons). The first step is compared with zero (`first_step="zero"`,
    `x[-1] = 0`, so a large initial value fires at step 0) or never fires
    (`first_step="skip"`). The output keeps the `T` steps of the input.
    A mask is passed on unchanged.

    The spikes come from comparisons, so no gradient flows back to the
    inputs: place the encoder on the data, before any trainable layer.

    Args:
        threshold: float > 0, the change `theta` that fires. Defaults to
            `0.1`.
        polarity: `"on"`, `"both"` or `"on_off"`, as above. Defaults to
            `"on"`.
        first_step: `"zero"` or `"skip"`, as above. Defaults to `"zero"`.
        check_finite: bool, whether a NaN or infinite input is an error
            (outside XLA the call raises naming this layer; under XLA,
            which drops such checks, the spikes there become NaN). Defaults
            to `True`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: float sequences `(batch, T, ..., features)`.

    Returns:
        0/1 spikes `(batch, T, ..., features)`, or
        `(batch, T, ..., 2 * features)` (ON then OFF) for `"on_off"`.

    Example:

    ```python
    enc = keras_snn.layers.DeltaEncoding(threshold=0.5,
                                                  polarity="on_off")
    x = keras.ops.convert_to_tensor([[[0.0], [1.0], [1.0], [0.25]]])
    spikes = enc(x)  # ON at step 1, OFF at step 3: shape (1, 4, 2)
    ```
    """

    def __init__(
        self,
        threshold=0.1,
        polarity="on",
        first_step="zero",
        check_finite=True,
        **kwargs,
    ):
        threshold = check_number(
            type(self), kwargs, "threshold", threshold, POSITIVE
        )
        for name, value, accepted in (
            ("polarity", polarity, _POLARITIES),
            ("first_step", first_step, _FIRST_STEPS),
        ):
            if value not in accepted:
                raise ValueError(
                    f"Argument `{name}` of DeltaEncoding must be one of "
                    f"{', '.join(map(repr, accepted))}. Received: "
                    f"{name}={value!r}"
                )
        super().__init__(**kwargs)
        self.threshold = threshold
        self.polarity = polarity
        self.first_step = first_step
        self.check_finite = bool(check_finite)
        self.supports_masking = True
        self._build_at_init()

    def _check_rank(self, shape):
        if len(shape) < 3:
            raise ValueError(
                f"Layer '{self.name}' (DeltaEncoding) expects sequences of "
                "shape (batch, time, ..., features), rank >= 3. Received: "
                f"input shape={tuple(shape)}"
            )

    def call(self, inputs):
        self._check_rank(inputs.shape)
        check_float_input(self, inputs, "sequences")
        if self.check_finite and not in_xla_context():
            inputs = check_finite(self, inputs, "input values")
        x = ops.cast(inputs, "float32")
        previous = ops.concatenate([ops.zeros_like(x[:, :1]), x[:, :-1]], 1)
        delta = x - previous
        if self.first_step == "skip":
            step0 = ops.zeros_like(delta[:, :1])
            delta = ops.concatenate([step0, delta[:, 1:]], axis=1)
        if self.polarity == "on":
            fired = ops.greater_equal(delta, self.threshold)
        elif self.polarity == "both":
            fired = ops.greater_equal(ops.abs(delta), self.threshold)
        else:
            on = ops.greater_equal(delta, self.threshold)
            off = ops.greater_equal(-delta, self.threshold)
            fired = ops.concatenate([on, off], axis=-1)
        spikes = ops.cast(fired, inputs.dtype)
        if self.check_finite and in_xla_context():
            if self.polarity == "on_off":
                inputs = ops.concatenate([inputs, inputs], axis=-1)
            spikes = propagate_non_finite(spikes, inputs)
        return spikes

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        if self.polarity != "on_off":
            return tuple(input_shape)
        last = input_shape[-1]
        return (*input_shape[:-1], None if last is None else 2 * last)

    def get_config(self):
        config = super().get_config()
        config.update(
            threshold=self.threshold,
            polarity=self.polarity,
            first_step=self.first_step,
            check_finite=self.check_finite,
        )
        return config
