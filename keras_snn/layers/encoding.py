"""Input encoders: turn a static input `(batch, ...)` into a sequence.

All encoders add a time axis after the batch axis, giving
`(batch, timesteps, ...)`.
"""

import keras
from keras import ops

from keras_snn import functional
from keras_snn.layers.checks import POSITIVE
from keras_snn.layers.checks import check_finite
from keras_snn.layers.checks import check_float_input
from keras_snn.layers.checks import check_number
from keras_snn.layers.checks import in_xla_context
from keras_snn.layers.checks import propagate_non_finite
from keras_snn.layers.wrappers import repeat_over_time
from keras_snn.saving import register

__all__ = ["BernoulliEncoding", "DirectEncoding", "PoissonEncoding"]


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
