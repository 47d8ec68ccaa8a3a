"""Spiking neuron cells: one time step of `LIFCell` and `IFCell`.

The cells compute one time step with `keras_snn.functional.neuron_step`;
`keras_snn.layers.neurons` runs them over the time axis (`LIF`, `IF`).
"""

import keras
from keras import ops

from keras_snn import constraints
from keras_snn import functional
from keras_snn import surrogates
from keras_snn.layers import fused as fused_ops
from keras_snn.layers.checks import POSITIVE
from keras_snn.layers.checks import UNIT_INTERVAL
from keras_snn.layers.checks import check_number
from keras_snn.saving import register

__all__ = ["IFCell", "LIFCell"]

# Lowest value a trainable threshold may reach.
MIN_THRESHOLD = 1e-3
# A decay stored through a sigmoid must be strictly inside (0, 1).
OPEN_UNIT = (
    "a number in (0, 1) with decay_parameterization='sigmoid' and a "
    "trainable decay",
    lambda value: 0.0 < value < 1.0,
)
# The arguments of the leak, which IF neurons do not take.
LEAK_ARGUMENTS = ("decay", "trainable_decay", "decay_parameterization")


@register
class LIFCell(keras.layers.Layer):
    """One time step of the leaky integrate-and-fire neuron.

    With input current `I[t]`, decay `k`, threshold `theta` and the state
    `v[t-1]` (the potential after the previous reset):

    ```
    u[t] = k * v[t-1] + I[t]
    o[t] = H(u[t] - theta)          # H(0) = 1: u == theta fires
    v[t] = u[t] * (1 - o[t])        # reset="hard"
    v[t] = u[t] - theta * o[t]      # reset="soft"
    v[t] = u[t]                     # reset="none"
    ```

    which is Eq. 5-6 of Wu et al. 2019 for the hard reset and the reset by
    subtraction of Ledinauskas et al. 2020 (Sec. 2.2). In training the step
    `H` is replaced in the backward pass by the surrogate's gradient.

    The cell works on any feature shape: `(units,)` after a dense layer,
    `(H, W, C)` after a convolution; its state has the same shape. Use it
    through `keras_snn.layers.LIF`, which knows its output shapes for any
    feature shape; to use it in a plain `keras.layers.RNN`, give `units`
    (the input then has shape `(batch, time, units)`).

    Args:
        threshold: float > 0, the firing threshold `theta`. Defaults to
            `1.0`.
        decay: float in [0, 1], the leak factor `k` (`1 - dt / tau`).
            Defaults to `0.5`.
        reset: `"hard"`, `"soft"` or `"none"`. Defaults to `"hard"`.
        surrogate: a name, config dict or `keras_snn.surrogates.Surrogate`
            giving the backward pass of the spike. Defaults to
            `"rectangular"` (Wu et al. 2019, Eq. 14).
        detach_reset: bool, whether the reset is left out of the gradient
            (Ledinauskas et al. 2020, end of Sec. 2.4). Defaults to `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`: whether the threshold is a trainable weight, and
            its shape: one scalar for the layer (`True` is `"layer"`), one
            value per channel (the last feature axis) or one per neuron
            (the whole feature shape). Kept >= 1e-3 by a constraint.
            Defaults to `False`.
        trainable_decay: the same choices for the decay (PLIF, Fang et al.
            2021). Defaults to `False`.
        decay_parameterization: how a trainable decay is stored. `"clip"`:
            the weight is `k` itself, clipped to [0, 1] after each update.
            `"sigmoid"`: the weight is Fang et al.'s `a` with
            `1/tau = sigmoid(a)`, and `k = 1 - 1/tau = sigmoid(-a)`, in
            (0, 1) for any `a` (then `decay` must be in (0, 1)). Only used
            with a trainable decay. Defaults to `"clip"`.
        recurrent: bool, recurrent synapses from the layer's own spikes of
            the previous step: the current becomes `I[t] + o[t-1] W_rec`
            with a trainable `(units, units)` kernel `W_rec`, and `o[t-1]`
            is one more state (the last). Needs flat features. Defaults to
            `False`.
        recurrent_initializer: initializer of `W_rec`. Defaults to
            `"glorot_uniform"`.
        recurrent_regularizer: regularizer of `W_rec`, or `None`.
        recurrent_constraint: constraint of `W_rec`, or `None`.
        units: `None` or int > 0, the number of neurons of a flat
            `(batch, units)` input; sets `state_size` for
            `keras.layers.RNN`. Defaults to `None` (any feature shape).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the current `I[t]`, shape `(batch, ...)`.
        states: a list holding `v[t-1]`, shape `(batch, ...)`.
        training: Python bool, unused (the dynamics are the same in
            training and inference).

    Returns:
        `(spikes, [v])`: spikes `o[t]` of the input's shape and the new
        state.

    Example:

    ```python
    cell = keras_snn.layers.LIFCell(threshold=1.0, decay=0.5)
    spikes, state = cell(keras.ops.ones((2, 3)), [keras.ops.zeros((2, 3))])
    ```

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, Eq. 5-6.
    """

    def __init__(
        self,
        threshold=1.0,
        decay=0.5,
        reset="hard",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        trainable_decay=False,
        decay_parameterization="clip",
        recurrent=False,
        recurrent_initializer="glorot_uniform",
        recurrent_regularizer=None,
        recurrent_constraint=None,
        units=None,
        **kwargs,
    ):
        if not isinstance(recurrent, bool):
            raise ValueError(
                "Argument `recurrent` must be True or False. Received: "
                f"recurrent={recurrent!r}"
            )
        if units is not None:
            units = functional.validate_count(units, "units")
        threshold = check_number(
            type(self), kwargs, "threshold", threshold, POSITIVE
        )
        decay = check_number(type(self), kwargs, "decay", decay, UNIT_INTERVAL)
        reset = functional.validate_reset(reset)
        surrogate = surrogates.get(surrogate)
        trainable_threshold = functional.validate_learnable(
            trainable_threshold, "trainable_threshold"
        )
        trainable_decay = functional.validate_learnable(
            trainable_decay, "trainable_decay"
        )
        decay_parameterization = functional.validate_parameterization(
            decay_parameterization
        )
        if trainable_decay and decay_parameterization == "sigmoid":
            check_number(type(self), kwargs, "decay", decay, OPEN_UNIT)
        super().__init__(**kwargs)
        self.threshold = threshold
        self.decay = decay
        self.reset = reset
        self.surrogate = surrogate
        self.detach_reset = bool(detach_reset)
        self.trainable_threshold = trainable_threshold
        self.trainable_decay = trainable_decay
        self.decay_parameterization = decay_parameterization
        self.units = units
        self.recurrent = bool(recurrent)
        # Kept as given until `build`: a Keras initializer made without a
        # seed draws one from Python's `random`, which would shift the
        # weights of every layer made after a (non-recurrent) neuron layer.
        self.recurrent_initializer = recurrent_initializer
        self.recurrent_regularizer = keras.regularizers.get(
            recurrent_regularizer
        )
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.recurrent_kernel = None
        if self.recurrent:
            # The previous step's spikes are one more state, after the
            # neuron's own; the recurrent loop has no fused form.
            self.state_names = (*type(self).state_names, "spikes")
            self.fusable = False
        # The state has the input's feature shape, known after `build`;
        # -1 tells `keras.layers.RNN` to ask `get_initial_state` for it.
        size = -1 if units is None else units
        self.state_size = (
            size if self.num_states == 1 else [size] * (self.num_states)
        )
        self.output_size = size
        self.feature_shape = None if units is None else (units,)
        self.threshold_weight = None
        self.decay_weight = None

    def build(self, input_shape):
        feature_shape = check_feature_shape(self, input_shape[1:])
        if self.units is not None and feature_shape != (self.units,):
            raise ValueError(
                f"Layer '{self.name}' was created with units={self.units} "
                f"and expects inputs of shape (batch, {self.units}). "
                f"Received: input shape={tuple(input_shape)}"
            )
        self.feature_shape = feature_shape
        self.threshold_weight = self.add_parameter(
            "threshold", self.threshold, self.trainable_threshold
        )
        self.decay_weight = self.add_parameter(
            "decay", self.decay, self.trainable_decay, decay=True
        )
        if self.recurrent:
            if len(feature_shape) != 1:
                raise ValueError(
                    f"Layer '{self.name}' has recurrent=True, which needs "
                    "flat features, input shape (batch, units) per step "
                    "(add keras.layers.Flatten inside TimeFolded before "
                    f"it). Received: input shape={tuple(input_shape)}"
                )
            units = feature_shape[0]
            self.recurrent_kernel = self.add_weight(
                shape=(units, units),
                name="recurrent_kernel",
                initializer=keras.initializers.get(self.recurrent_initializer),
                regularizer=self.recurrent_regularizer,
                constraint=self.recurrent_constraint,
            )

    # Whether `keras_snn.layers.fused.neuron_sequence` can run this cell.
    fusable = True
    # The names of the states, in the order of `states` (v first).
    state_names = ("v",)

    @property
    def num_states(self):
        return len(self.state_names)

    def parameter_shape(self, learnable):
        """The weight shape for `"layer"`, `"channel"` or `"neuron"`."""
        if learnable == "layer":
            return ()
        if learnable == "channel":
            return (self.feature_shape[-1],)
        return tuple(self.feature_shape)

    def add_parameter(self, name, value, learnable, decay=False):
        """A trainable neuron parameter of shape `learnable`, or `None`.

        A threshold is kept >= 1e-3; a decay is `k` clipped to [0, 1], or
        with `decay_parameterization="sigmoid"` the PLIF parameter `a` with
        `k = sigmoid(-a)` (see `keras_snn.functional.sigmoid_decay`).
        """
        if not learnable:
            return None
        if not decay:
            initial, constraint = value, constraints.Clip(MIN_THRESHOLD, None)
        elif self.decay_parameterization == "sigmoid":
            initial = functional.sigmoid_decay_parameter(value)
            constraint = None
            name = f"{name}_parameter"
        else:
            initial, constraint = value, constraints.Clip(0.0, 1.0)
        return self.add_weight(
            shape=self.parameter_shape(learnable),
            name=name,
            initializer=keras.initializers.Constant(initial),
            constraint=constraint,
        )

    def parameter_value(self, weight, value, dtype, decay=False):
        """A parameter as the step uses it: the constant or the weight."""
        if weight is None:
            return value
        weight = ops.cast(weight, dtype)
        if decay and self.decay_parameterization == "sigmoid":
            return functional.sigmoid_decay(weight)
        return weight

    def parameters(self, dtype):
        """Returns `(threshold, decay)` as used by the step, in `dtype`."""
        return (
            self.parameter_value(self.threshold_weight, self.threshold, dtype),
            self.parameter_value(
                self.decay_weight, self.decay, dtype, decay=True
            ),
        )

    def spike_function(self, threshold):
        """The surrogate spike of `u - threshold` (Heaviside forward)."""
        surrogate = self.surrogate

        def spike_fn(x):
            return surrogate(x, threshold)

        return spike_fn

    @property
    def detach_function(self):
        return ops.stop_gradient if self.detach_reset else None

    def step(self, current, v, threshold, decay):
        """One step: returns spikes, potential before and after reset."""
        return functional.neuron_step(
            current,
            v,
            threshold=threshold,
            decay=decay,
            reset=self.reset,
            spike_fn=self.spike_function(threshold),
            detach_fn=self.detach_function,
        )

    def sequence_step(self, current, states, parameters):
        """One step on all states: `(spikes, u, new_states)`.

        `parameters` is what `parameters(dtype)` returned; the time loop of
        `keras_snn.layers.LIF` computes it once per sequence.
        """
        spikes, u, v = self.step(current, states[0], *parameters)
        return spikes, u, [v]

    def fused_sequence(self, sequences, states, parameters, unroll):
        """The whole sequence as one op with a hand-written gradient.

        `keras_snn.layers.fused.neuron_sequence` for this cell's equations
        (`fusable` cells only); returns `(spikes, new_states)`. Subclasses
        with more states run their own fused op.
        """
        threshold, decay = parameters
        spikes, v = fused_ops.neuron_sequence(
            sequences,
            states[0],
            threshold,
            decay,
            reset=self.reset,
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            unroll=unroll,
        )
        return spikes, [v]

    def recurrent_step(self, current, states, parameters):
        """`sequence_step`, with the recurrent synapses when `recurrent`.

        The current of step `t` gains the previous step's spikes through
        the recurrent kernel, `I[t] + o[t-1] W_rec` (the last state), and
        the step's spikes become that state.
        """
        if not self.recurrent:
            return self.sequence_step(current, states, parameters)
        *states, previous = states
        kernel = ops.cast(self.recurrent_kernel, current.dtype)
        current = current + ops.matmul(previous, kernel)
        spikes, u, states = self.sequence_step(current, states, parameters)
        return spikes, u, [*states, spikes]

    def call(self, inputs, states, training=False):
        if not isinstance(states, (list, tuple)):
            states = [states]
        parameters = self.parameters(inputs.dtype)
        spikes, _, states = self.recurrent_step(
            inputs, list(states), parameters
        )
        return spikes, states

    def get_initial_state(self, batch_size=None):
        if self.feature_shape is None:
            raise ValueError(
                f"Layer '{self.name}' must be built before its initial state "
                "is known: call it on an input first."
            )
        shape = (batch_size, *self.feature_shape)
        return [ops.zeros(shape, self.compute_dtype) for _ in self.state_names]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "threshold": self.threshold,
                "decay": self.decay,
                "reset": self.reset,
                "surrogate": surrogates.serialize(self.surrogate),
                "detach_reset": self.detach_reset,
                "trainable_threshold": self.trainable_threshold,
                "trainable_decay": self.trainable_decay,
                "decay_parameterization": self.decay_parameterization,
                "recurrent": self.recurrent,
                "recurrent_initializer": _serialize_initializer(
                    self.recurrent_initializer
                ),
                "recurrent_regularizer": keras.regularizers.serialize(
                    self.recurrent_regularizer
                ),
                "recurrent_constraint": keras.constraints.serialize(
                    self.recurrent_constraint
                ),
                "units": self.units,
            }
        )
        return config


@register
class IFCell(LIFCell):
    """One time step of the integrate-and-fire neuron (no leak).

    The `LIFCell` dynamics with `decay = 1`; by default the reset subtracts
    the threshold, as in Ledinauskas et al. 2020 (Sec. 2.2, Eq. 2):

    ```
    u[t] = v[t-1] + I[t]
    o[t] = H(u[t] - theta)          # H(0) = 1
    v[t] = u[t] - theta * o[t]      # reset="soft"; "hard" and "none" too
    ```

    Args:
        threshold: float > 0, the firing threshold. Defaults to `1.0`.
        reset: `"soft"`, `"hard"` or `"none"`. Defaults to `"soft"`.
        surrogate: the spike's surrogate gradient. Defaults to
            `"rectangular"`.
        detach_reset: bool, keep the reset out of the gradient. Defaults to
            `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`, as for `LIFCell`. Defaults to `False`.
        units: `None` or int > 0, as for `LIFCell`. Defaults to `None`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: the current, shape `(batch, ...)`.
        states: a list holding the potential after the last reset.
        training: Python bool, unused.

    Returns:
        `(spikes, [v])`.

    Example:

    ```python
    cell = keras_snn.layers.IFCell(threshold=0.5)
    ```

    Reference:
        Ledinauskas et al., "Training Deep Spiking Neural Networks", 2020,
        Sec. 2.2.
    """

    def __init__(
        self,
        threshold=1.0,
        reset="soft",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        units=None,
        **kwargs,
    ):
        reject_leak_arguments(kwargs)
        super().__init__(
            threshold=threshold,
            decay=1.0,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            trainable_threshold=trainable_threshold,
            trainable_decay=False,
            units=units,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        for name in LEAK_ARGUMENTS:
            del config[name]
        return config


def reject_leak_arguments(kwargs):
    """Raises if `kwargs` holds a leak argument, which IF neurons lack."""
    for name in LEAK_ARGUMENTS:
        if name in kwargs:
            raise ValueError(
                f"IF neurons have no leak, so `{name}` is not accepted; use "
                f"keras_snn.layers.LIF. Received: {name}={kwargs[name]!r}"
            )


def check_feature_shape(layer, shape):
    """The fully known feature shape of `layer`'s state, or raises."""
    shape = tuple(shape)
    if not shape or any(d is None for d in shape):
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) needs a known "
            "feature shape after the batch (and time) axes to size its "
            f"membrane state. Received: feature shape={shape}"
        )
    return tuple(int(d) for d in shape)


def _serialize_initializer(initializer):
    """A string as it is; an initializer object as its Keras config."""
    if isinstance(initializer, str):
        return initializer
    return keras.initializers.serialize(initializer)
