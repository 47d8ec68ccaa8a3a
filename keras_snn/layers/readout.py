"""Readout heads: turn output spikes `(batch, time, units)` into class scores.

- `Voting`: fixed population voting, trained with `keras_snn.losses.VotingMSE`
  (Wu et al. 2019, "Decoding" and Eq. 11).
- `Decoding`: a fully connected layer on the spikes, averaged over time,
  giving logits for softmax cross-entropy (Zheng et al. 2021, Eq. 11-13).
- `MembraneReadout`: non-spiking output neurons (infinite threshold) that
  integrate their input current (Wu et al. 2021, Eq. 6; Ledinauskas et al.
  2020, Sec. 2.1).

Every head takes the spike sequence of a spiking layer such as
`keras_snn.layers.LIF` and returns `(batch, num_classes)`.
"""

import keras
from keras import ops

from keras_snn import functional
from keras_snn.layers.checks import UNIT_INTERVAL
from keras_snn.layers.checks import check_number
from keras_snn.layers.checks import serialize_options
from keras_snn.saving import register

__all__ = ["Decoding", "MembraneReadout", "Voting"]


def _check_spike_shape(layer, shape):
    """Raises unless `shape` is `(batch, time, units)`; returns `units`."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) expects spikes "
            "of shape (batch, time, units), rank 3; flatten feature maps "
            "first, e.g. with TimeFolded(keras.layers.Flatten()). "
            f"Received: input shape={shape}"
        )
    return shape[-1]


@register
class Voting(keras.layers.Layer):
    """Population voting over time (the voting layer of Wu et al. 2019).

    The output neurons are split into `num_classes` populations of
    `population` neurons; neuron `j` votes for class `j // population`.
    A constant voting matrix `M` of shape `(num_classes, units)` averages
    each population, and the votes are averaged over the `T` steps:

    ```
    y = (1/T) * sum_t M o[t],   M[c, j] = 1/population if j // population == c
    ```

    with `o[t]` the 0/1 spikes at step `t`. The paper describes `M` only as
    "the constant voting matrix connecting each voting neuron to a specific
    category"; keras_snn takes the average over each population (not the
    sum) so that `y` is the firing rate of each population, in [0, 1], on
    the same scale as the label vector `Y` of the loss
    `L = ||Y - (1/T) sum_t M o[t]||^2` (Eq. 11, `keras_snn.losses.VotingMSE`).
    The paper "randomly assign[s] a label to each neuron"; here populations
    are contiguous blocks, which is the same up to a permutation of the
    previous layer's (trainable) units. `M` is fixed: the layer has no
    weights. `keras_snn.functional.voting_matrix` returns it explicitly.

    Args:
        num_classes: int > 0, the number of classes (populations).
        population: `None` or int > 0, the number of neurons per class. The
            input must have exactly `num_classes * population` units. `None`
            infers it from the input width, which must then be divisible by
            `num_classes`. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: spikes of shape `(batch, time, units)`, e.g. the output of
            `keras_snn.layers.LIF`.

    Returns:
        The voting result, shape `(batch, num_classes)`, in [0, 1] for 0/1
        spikes; its argmax is the predicted class.

    Example:

    ```python
    x = keras.Input((4, 64))
    spikes = keras_snn.layers.LIF()(
        keras_snn.layers.TimeFolded(keras.layers.Dense(100))(x)
    )
    votes = keras_snn.layers.Voting(num_classes=10)(spikes)  # 10 x 10
    model = keras.Model(x, votes)
    model.compile("adam", keras_snn.losses.VotingMSE())
    ```

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, section "Encoding and decoding
        schemes" (Decoding) and Eq. 11.
    """

    def __init__(self, num_classes, population=None, **kwargs):
        num_classes = functional.validate_count(num_classes, "num_classes")
        if population is not None:
            population = functional.validate_count(population, "population")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.population = population
        self.supports_masking = False
        self._build_at_init()

    def _population_for(self, shape):
        units = _check_spike_shape(self, shape)
        if units is None:
            if self.population is None:
                raise ValueError(
                    f"Layer '{self.name}' (Voting) needs a known number of "
                    "units to infer `population`; pass `population` or give "
                    f"the input a static width. Received: input "
                    f"shape={tuple(shape)}"
                )
            return self.population
        if self.population is None:
            if units % self.num_classes:
                raise ValueError(
                    f"Layer '{self.name}' (Voting) splits its input into "
                    "`num_classes` equal populations, so the number of "
                    "units must be divisible by `num_classes`. Received: "
                    f"units={units}, num_classes={self.num_classes}"
                )
            return units // self.num_classes
        if units != self.num_classes * self.population:
            raise ValueError(
                f"Layer '{self.name}' (Voting) expects num_classes * "
                f"population = {self.num_classes * self.population} units. "
                f"Received: units={units}, num_classes={self.num_classes}, "
                f"population={self.population}"
            )
        return self.population

    def call(self, inputs):
        population = self._population_for(inputs.shape)
        rates = ops.mean(ops.cast(inputs, self.compute_dtype), axis=1)
        rates = ops.reshape(rates, (-1, self.num_classes, population))
        return ops.mean(rates, axis=-1)

    def compute_output_shape(self, input_shape):
        self._population_for(input_shape)
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_classes": self.num_classes, "population": self.population}
        )
        return config


class _DenseReadout(keras.layers.Layer):
    """A fully connected layer `W o + b` on spikes `(batch, time, units)`."""

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.supports_masking = False
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        input_units = _check_spike_shape(self, input_shape)
        if input_units is None:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) needs a known "
                "number of input units to size its kernel. Received: input "
                f"shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            shape=(input_units, self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,),
                name="bias",
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = keras.InputSpec(axes={-1: input_units})

    def _affine(self, x, bias_scale=None):
        """`x W + b`; the bias is multiplied by `bias_scale` if given."""
        y = ops.matmul(x, self.kernel)
        if self.bias is not None:
            bias = self.bias if bias_scale is None else self.bias * bias_scale
            y = y + bias
        return y

    def compute_output_shape(self, input_shape):
        _check_spike_shape(self, input_shape)
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
            }
        )
        config.update(
            serialize_options(
                self,
                (
                    "kernel_initializer",
                    "bias_initializer",
                    "kernel_regularizer",
                    "bias_regularizer",
                    "kernel_constraint",
                    "bias_constraint",
                ),
            )
        )
        return config


@register
class Decoding(_DenseReadout):
    """Fully connected decoding layer averaged over time (logits).

    The decoding layer of Zheng et al. 2021: a trainable matrix `M` (here
    the kernel `W`, plus an optional bias `b`) applied to the output spikes
    of every step and averaged over the `T` steps:

    ```
    Q = (1/T) * sum_t (W o[t] + b) = W ((1/T) sum_t o[t]) + b     (Eq. 11)
    p = softmax(Q)                                                (Eq. 12)
    L = -sum_i y_i log(p_i)                                       (Eq. 13)
    ```

    Because the layer is linear, the time average is taken first and one
    matrix product follows, which equals the per-step form exactly (up to
    rounding) and costs `T` times fewer multiplications. The layer returns
    the logits `Q`; Eq. 12-13 are Keras' softmax cross-entropy, so compile
    with `keras.losses.SparseCategoricalCrossentropy(from_logits=True)` for
    integer labels (or `CategoricalCrossentropy(from_logits=True)` for
    one-hot `Y`); no separate loss class is needed. Eq. 11 has no bias:
    pass `use_bias=False` for the equation exactly. The default keeps the
    bias of an ordinary fully connected layer, which only shifts `Q`.

    Args:
        num_classes: int > 0, the number of classes (output logits).
        use_bias: bool, whether to add a bias `b`. Defaults to `True`.
        kernel_initializer: initializer of `W`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of `W`. Defaults to `None`.
        bias_regularizer: optional regularizer of `b`. Defaults to `None`.
        kernel_constraint: optional constraint on `W`. Defaults to `None`.
        bias_constraint: optional constraint on `b`. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: spikes of shape `(batch, time, units)`.

    Returns:
        Logits `Q` of shape `(batch, num_classes)`.

    Example:

    ```python
    x = keras.Input((4, 64))
    spikes = keras_snn.layers.LIF()(
        keras_snn.layers.TimeFolded(keras.layers.Dense(128))(x)
    )
    logits = keras_snn.layers.Decoding(num_classes=10)(spikes)
    model = keras.Model(x, logits)
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    ```

    Reference:
        Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
        Neural Networks", AAAI 2021, Eq. 11-13.
        https://arxiv.org/abs/2011.05280
    """

    def __init__(
        self,
        num_classes,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        num_classes = functional.validate_count(num_classes, "num_classes")
        super().__init__(
            units=num_classes,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        self.num_classes = num_classes

    def call(self, inputs):
        _check_spike_shape(self, inputs.shape)
        rates = ops.mean(ops.cast(inputs, self.compute_dtype), axis=1)
        return self._affine(rates)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = config.pop("units")
        return config


@register
class MembraneReadout(_DenseReadout):
    """Non-spiking output neurons that integrate their input current.

    The output neurons have an infinite threshold, so they never fire or
    reset and their potential accumulates the current `W o[t] + b`:

    ```
    u[t] = decay * u[t-1] + W o[t] + b,    u[-1] = 0
    mode="last":  y = u[T-1]                  (the final potential)
    mode="mean":  y = (1/T) * sum_t u[t]
    mode="max":   y = max_t u[t]             (per neuron, over time)
    ```

    This is Eq. 5 of Wu et al. 2019 with no firing term (equivalently
    `keras_snn.functional.neuron_step` with `reset="none"` and an infinite
    threshold). It is computed in closed form rather than step by step:
    with `L[t, s] = decay**(t - s)` for `s <= t`
    (`keras_snn.functional.leaky_integration_matrix`), `u = L (W o + b)`.
    For `"last"` and `"mean"` the time weights (`L[T-1]`, or the mean of
    the rows of `L`) are applied to the spikes first and one matrix product
    follows; `"max"` needs the whole trajectory.

    Which mode the papers use:

    - Wu et al. 2021 (ASF-BP) take the output neurons with "an infinite
      threshold [that] always accumulate input currents" and the loss
      `L = 1/2 ||Y - u[T] / (T V_th)||^2` (Eq. 6), which reads the final
      potential `u[T]`: `mode="last"`, `decay=1.0` (IF neurons). "The
      neuron with the highest membrane potential" is the predicted class:
      the argmax over neurons of that final potential, not a maximum over
      time. Eq. 6 itself is `MembraneReadout(n, mode="last",
      use_bias=False)` followed by `keras.layers.Rescaling(1 / (T * V_th))`
      and half of `keras_snn.losses.VotingMSE`.
    - Ledinauskas et al. 2020 sum the output currents of the last layer
      (a neuron "with very large threshold") and treat them as logits:
      `mode="last"`, `decay=1.0` with softmax cross-entropy.
    - `mode="max"` (the peak potential over time) is offered for leaky
      readouts, where the final potential forgets early evidence; neither
      paper uses it.

    With `decay=1.0` and `mode="last"` the output is `T` times the logits
    of `Decoding` with the same weights.

    Args:
        units: int > 0, the number of output neurons (classes).
        decay: float in [0, 1], the leak factor of the output neurons;
            `1.0` integrates without leak. Defaults to `1.0`.
        mode: `"last"`, `"mean"` or `"max"`, how the potential trajectory
            is read out (see above). Defaults to `"last"`.
        use_bias: bool, whether the current includes a bias `b` (added at
            every step). Defaults to `True`.
        kernel_initializer: initializer of `W`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of `W`. Defaults to `None`.
        bias_regularizer: optional regularizer of `b`. Defaults to `None`.
        kernel_constraint: optional constraint on `W`. Defaults to `None`.
        bias_constraint: optional constraint on `b`. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: spikes of shape `(batch, time, units_in)`.

    Returns:
        The read-out potential, shape `(batch, units)`, usable as logits.

    Example:

    ```python
    x = keras.Input((8, 64))
    spikes = keras_snn.layers.IF()(
        keras_snn.layers.TimeFolded(keras.layers.Dense(128))(x)
    )
    logits = keras_snn.layers.MembraneReadout(10, mode="last")(spikes)
    ```

    Reference:
        Wu et al., "Training Spiking Neural Networks with Accumulated
        Spiking Flow", AAAI 2021, Eq. 6 and the text before it.
        Ledinauskas et al., "Training Deep Spiking Neural Networks", 2020,
        Sec. 2.1.
    """

    def __init__(
        self,
        units,
        decay=1.0,
        mode="last",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        units = functional.validate_count(units, "units")
        decay = check_number(type(self), kwargs, "decay", decay, UNIT_INTERVAL)
        if mode not in functional.READOUT_MODES:
            raise ValueError(
                f"Argument `mode` must be one of {functional.READOUT_MODES}. "
                f"Received: mode={mode!r}"
            )
        super().__init__(
            units=units,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        self.decay = decay
        self.mode = mode

    def call(self, inputs):
        _check_spike_shape(self, inputs.shape)
        inputs = ops.cast(inputs, self.compute_dtype)
        steps = inputs.shape[1]
        if steps is None:
            steps = ops.shape(inputs)[1]
        # Powers of the decay in float64, then rounded once to the dtype.
        leak = functional.leaky_integration_matrix(
            steps, self.decay, dtype="float64"
        )
        leak = ops.cast(leak, self.compute_dtype)
        if self.mode == "max":
            currents = self._affine(inputs)
            potentials = ops.einsum("ts,bsu->btu", leak, currents)
            return ops.max(potentials, axis=1)
        if self.mode == "last":
            weights = leak[-1]
        else:
            weights = ops.mean(leak, axis=0)
        integrated = ops.einsum("t,bti->bi", weights, inputs)
        return self._affine(integrated, bias_scale=ops.sum(weights))

    def get_config(self):
        config = super().get_config()
        config.update({"decay": self.decay, "mode": self.mode})
        return config
