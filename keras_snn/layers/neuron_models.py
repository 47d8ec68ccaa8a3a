"""Neuron models beyond LIF/IF: current-based (CUBA) and adaptive (ALIF).

The cells `CubaLIFCell` and `ALIFCell` compute one step with
`keras_snn.functional.cuba_step` and `keras_snn.functional.alif_step`, which
fire and reset through `keras_snn.functional.neuron_step`; the layers
`CubaLIF` and `ALIF` run them over the time axis with the machinery of
`keras_snn.layers.LIF` (stateful, masking, `return_state`,
`return_potentials`, `check_finite`). Each has two states, the membrane
state `v` first. Without a mask, `return_potentials` or recurrent
synapses, `fused=None` runs the whole sequence as one op
(`keras_snn.layers.fused_models`), with the step-by-step path's spikes,
states and gradients.
"""

from keras_snn import functional
from keras_snn.layers import fused_models
from keras_snn.layers.cells import LIFCell
from keras_snn.layers.checks import UNIT_INTERVAL
from keras_snn.layers.checks import check_number
from keras_snn.layers.neurons import LIF
from keras_snn.layers.neurons import cell_property
from keras_snn.saving import register

__all__ = ["ALIF", "ALIFCell", "CubaLIF", "CubaLIFCell"]

NON_NEGATIVE = ("a finite number >= 0", lambda value: value >= 0)


def _fused_sequence(op):
    """A cell's `fused_sequence` running `op` (`keras_snn.layers.fused_models`).

    The op gets the cell's reset, surrogate and `detach_reset`, and gives
    the same spikes, states and gradients as `sequence_step` applied step
    by step.
    """

    def fused_sequence(self, sequences, states, parameters, unroll):
        return op(
            sequences,
            states,
            *parameters,
            reset=self.reset,
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            unroll=unroll,
        )

    fused_sequence.__doc__ = f"The whole sequence as one op: `{op.__name__}`."
    return fused_sequence


@register
class CubaLIFCell(LIFCell):
    """One time step of the current-based LIF neuron (CUBA).

    A synaptic current `i` with leak `a` filters the input before the LIF
    membrane (`keras_snn.functional.cuba_step`):

    ```
    i[t] = a * i[t-1] + I[t]
    u[t] = k * v[t-1] + i[t]
    o[t] = H(u[t] - theta)          # H(0) = 1
    v[t] = u[t] * (1 - o[t])        # reset="hard"; "soft", "none" as LIF
    ```

    With `current_decay=0` it is `LIFCell` exactly. The states are
    `[v, i]`: the membrane state first, then the synaptic current.

    Args:
        threshold: float > 0, the firing threshold `theta`. Defaults to
            `1.0`.
        decay: float in [0, 1], the membrane leak `k`. Defaults to `0.5`.
        reset: `"hard"`, `"soft"` or `"none"`. Defaults to `"hard"`.
        surrogate: the spike's surrogate gradient. Defaults to
            `"rectangular"`.
        detach_reset: bool, keep the reset out of the gradient. Defaults to
            `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`, as for `LIFCell`. Defaults to `False`.
        trainable_decay: the same choices for `k`. Defaults to `False`.
        decay_parameterization: `"clip"` or `"sigmoid"`, as for
            `LIFCell`. Defaults to `"clip"`.
        units: `None` or int > 0, as for `LIFCell`. Defaults to `None`.
        current_decay: float in [0, 1], the synaptic current's leak `a`.
            Defaults to `0.5`.
        trainable_current_decay: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`, learn `a` like the decay (same
            `decay_parameterization`). Defaults to `False`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: the current `I[t]`, shape `(batch, ...)`.
        states: `[v[t-1], i[t-1]]`.
        training: Python bool, unused.

    Returns:
        `(spikes, [v, i])`.

    Example:

    ```python
    cell = keras_snn.layers.CubaLIFCell(current_decay=0.8, units=3)
    y = keras.layers.RNN(cell, return_sequences=True)(keras.ops.ones((2, 4, 3)))
    ```

    Reference:
        Davies et al., "Loihi: A Neuromorphic Manycore Processor with
        On-Chip Learning", IEEE Micro 2018 (the CUBA neuron); NIR's
        `CubaLIF` (Pedersen et al., "Neuromorphic intermediate
        representation", Nature Communications 2024).
    """

    fusable = True
    state_names = ("v", "i")

    def __init__(
        self,
        threshold=1.0,
        decay=0.5,
        current_decay=0.5,
        reset="hard",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        trainable_decay=False,
        trainable_current_decay=False,
        decay_parameterization="clip",
        units=None,
        **kwargs,
    ):
        current_decay = check_number(
            type(self), kwargs, "current_decay", current_decay, UNIT_INTERVAL
        )
        trainable_current_decay = functional.validate_learnable(
            trainable_current_decay, "trainable_current_decay"
        )
        if trainable_current_decay and decay_parameterization == "sigmoid":
            check_number(
                type(self),
                kwargs,
                "current_decay",
                current_decay,
                ("a number in (0, 1) when learnt through a sigmoid", _open),
            )
        super().__init__(
            threshold=threshold,
            decay=decay,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            trainable_threshold=trainable_threshold,
            trainable_decay=trainable_decay,
            decay_parameterization=decay_parameterization,
            units=units,
            **kwargs,
        )
        self.current_decay = current_decay
        self.trainable_current_decay = trainable_current_decay
        self.current_decay_weight = None

    def build(self, input_shape):
        super().build(input_shape)
        self.current_decay_weight = self.add_parameter(
            "current_decay",
            self.current_decay,
            self.trainable_current_decay,
            decay=True,
        )

    def parameters(self, dtype):
        """Returns `(threshold, decay, current_decay)` in `dtype`."""
        current_decay = self.parameter_value(
            self.current_decay_weight, self.current_decay, dtype, decay=True
        )
        return (*super().parameters(dtype), current_decay)

    def sequence_step(self, current, states, parameters):
        threshold, decay, current_decay = parameters
        o, u, v, i = functional.cuba_step(
            current,
            states[0],
            states[1],
            threshold=threshold,
            decay=decay,
            current_decay=current_decay,
            reset=self.reset,
            spike_fn=self.spike_function(threshold),
            detach_fn=self.detach_function,
        )
        return o, u, [v, i]

    fused_sequence = _fused_sequence(fused_models.cuba_sequence)

    def get_config(self):
        config = super().get_config()
        config["current_decay"] = self.current_decay
        config["trainable_current_decay"] = self.trainable_current_decay
        return config


@register
class ALIFCell(LIFCell):
    """One time step of the adaptive-threshold LIF neuron (ALIF).

    Each neuron's threshold rises by `beta` times an adaptation `b` that
    follows its own spikes with leak `rho`
    (`keras_snn.functional.alif_step`; Bellec et al. 2018):

    ```
    theta[t] = theta0 + beta * b[t]
    u[t] = k * v[t-1] + I[t]
    o[t] = H(u[t] - theta[t])       # H(0) = 1
    v[t] = u[t] * (1 - o[t])        # "hard"; "soft": u[t] - theta[t] o[t]
    b[t+1] = rho * b[t] + (1 - rho) * o[t],    b[0] = 0
    ```

    A soft reset subtracts the adaptive threshold `theta[t]`. With
    `adaptation=0` it is `LIFCell` exactly. The states are `[v, b]`: the
    membrane state first, then the adaptation for the next step.

    Args:
        threshold: float > 0, the baseline threshold `theta0`. Defaults to
            `1.0`.
        decay: float in [0, 1], the membrane leak `k`. Defaults to `0.5`.
        reset: `"hard"`, `"soft"` or `"none"`. Defaults to `"hard"`.
        surrogate: the spike's surrogate gradient. Defaults to
            `"rectangular"`.
        detach_reset: bool, keep the reset out of the gradient. Defaults to
            `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`, as for `LIFCell`;
            it learns `theta0`. Defaults to `False`.
        trainable_decay: the same choices for `k`. Defaults to `False`.
        decay_parameterization: `"clip"` or `"sigmoid"`, as for
            `LIFCell`. Defaults to `"clip"`.
        units: `None` or int > 0, as for `LIFCell`. Defaults to `None`.
        adaptation: float >= 0, `beta`, the threshold increase per unit of
            adaptation. Defaults to `0.2`.
        adaptation_decay: float in [0, 1], `rho`, the adaptation's leak
            (`exp(-dt / tau_a)` in Bellec et al.). Defaults to `0.9`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: the current `I[t]`, shape `(batch, ...)`.
        states: `[v[t-1], b[t]]`.
        training: Python bool, unused.

    Returns:
        `(spikes, [v, b])`.

    Example:

    ```python
    cell = keras_snn.layers.ALIFCell(adaptation=0.5, units=3)
    y = keras.layers.RNN(cell, return_sequences=True)(keras.ops.ones((2, 4, 3)))
    ```

    Reference:
        Bellec et al., "Long short-term memory and learning-to-learn in
        networks of spiking neurons", NeurIPS 2018.
    """

    fusable = True
    state_names = ("v", "b")

    def __init__(
        self,
        threshold=1.0,
        decay=0.5,
        adaptation=0.2,
        adaptation_decay=0.9,
        reset="hard",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        trainable_decay=False,
        decay_parameterization="clip",
        units=None,
        **kwargs,
    ):
        adaptation = check_number(
            type(self), kwargs, "adaptation", adaptation, NON_NEGATIVE
        )
        adaptation_decay = check_number(
            type(self),
            kwargs,
            "adaptation_decay",
            adaptation_decay,
            UNIT_INTERVAL,
        )
        super().__init__(
            threshold=threshold,
            decay=decay,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            trainable_threshold=trainable_threshold,
            trainable_decay=trainable_decay,
            decay_parameterization=decay_parameterization,
            units=units,
            **kwargs,
        )
        self.adaptation = adaptation
        self.adaptation_decay = adaptation_decay

    def parameters(self, dtype):
        """Returns `(threshold0, decay, adaptation, adaptation_decay)`."""
        return (
            *super().parameters(dtype),
            self.adaptation,
            self.adaptation_decay,
        )

    def sequence_step(self, current, states, parameters):
        threshold, decay, adaptation, adaptation_decay = parameters
        surrogate = self.surrogate

        def spike_fn(x):
            # `x = u - theta[t]`; the surrogate's scale uses the baseline.
            return surrogate(x, threshold)

        o, u, v, b = functional.alif_step(
            current,
            states[0],
            states[1],
            threshold=threshold,
            decay=decay,
            adaptation=adaptation,
            adaptation_decay=adaptation_decay,
            reset=self.reset,
            spike_fn=spike_fn,
            detach_fn=self.detach_function,
        )
        return o, u, [v, b]

    fused_sequence = _fused_sequence(fused_models.alif_sequence)

    def get_config(self):
        config = super().get_config()
        config["adaptation"] = self.adaptation
        config["adaptation_decay"] = self.adaptation_decay
        return config


def _open(value):
    return 0.0 < value < 1.0


@register
class CubaLIF(LIF):
    """Current-based LIF neurons over a sequence of input currents.

    Runs `keras_snn.layers.CubaLIFCell` over the time axis:

    ```
    i[t] = a * i[t-1] + I[t]        # synaptic current, leak a
    u[t] = k * v[t-1] + i[t]
    o[t] = H(u[t] - theta)          # H(0) = 1
    v[t] = u[t] * (1 - o[t])        # reset="hard"; "soft", "none" as LIF
    ```

    from `v[-1] = i[-1] = 0`. With `current_decay=0` it gives exactly the
    spikes, potentials and gradients of `keras_snn.layers.LIF`.

    Args:
        threshold: float > 0, the firing threshold `theta`. Defaults to
            `1.0`.
        decay: float in [0, 1], the membrane leak `k`. Defaults to `0.5`.
        reset: `"hard"`, `"soft"` or `"none"`. Defaults to `"hard"`.
        surrogate: the spike's surrogate gradient. Defaults to
            `"rectangular"`.
        detach_reset: bool, keep the reset out of the gradient. Defaults to
            `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`, as for `LIF`. Defaults to `False`.
        trainable_decay: the same choices for `k`. Defaults to `False`.
        decay_parameterization: `"clip"` or `"sigmoid"`, as for
            `LIF`. Defaults to `"clip"`.
        current_decay: float in [0, 1], the synaptic leak `a`. Defaults to
            `0.5`.
        trainable_current_decay: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`. Defaults to `False`.
        **kwargs: `return_sequences`, `return_potentials`, `return_state`
            (the final `v`, then `i`), `stateful`, `unroll`, `fused`
            (`keras_snn.layers.fused_models.cuba_sequence`),
            `check_finite` as for `LIF`, and the base layer's keyword
            arguments.

    Call arguments:
        sequences: float input currents `(batch, time, ...)`.
        initial_state: optional list `[v, i]` to start from.
        training: Python bool.

    Returns:
        Spikes, then potentials and the final states if requested.

    Example:

    ```python
    x = keras.Input((8, 100))
    spikes = keras_snn.layers.CubaLIF(decay=0.9, current_decay=0.8)(x)
    ```

    Reference:
        Davies et al., "Loihi: A Neuromorphic Manycore Processor with
        On-Chip Learning", IEEE Micro 2018; NIR's `CubaLIF`.
    """

    cell_class = CubaLIFCell
    extra_cell_arguments = ("current_decay", "trainable_current_decay")

    def __init__(
        self,
        threshold=1.0,
        decay=0.5,
        current_decay=0.5,
        reset="hard",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        trainable_decay=False,
        trainable_current_decay=False,
        decay_parameterization="clip",
        **kwargs,
    ):
        super().__init__(
            threshold=threshold,
            decay=decay,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            trainable_threshold=trainable_threshold,
            trainable_decay=trainable_decay,
            decay_parameterization=decay_parameterization,
            current_decay=current_decay,
            trainable_current_decay=trainable_current_decay,
            **kwargs,
        )


@register
class ALIF(LIF):
    """Adaptive-threshold LIF neurons (ALIF, LSNN) over a sequence.

    Runs `keras_snn.layers.ALIFCell` over the time axis:

    ```
    theta[t] = theta0 + beta * b[t]
    u[t] = k * v[t-1] + I[t]
    o[t] = H(u[t] - theta[t])       # H(0) = 1
    v[t] = u[t] * (1 - o[t])        # "hard"; "soft" subtracts theta[t]
    b[t+1] = rho * b[t] + (1 - rho) * o[t],    b[0] = 0
    ```

    With `adaptation=0` it gives exactly the spikes, potentials and
    gradients of `keras_snn.layers.LIF`.

    Args:
        threshold: float > 0, the baseline threshold `theta0`. Defaults to
            `1.0`.
        decay: float in [0, 1], the membrane leak `k`. Defaults to `0.5`.
        reset: `"hard"`, `"soft"` or `"none"`. Defaults to `"hard"`.
        surrogate: the spike's surrogate gradient. Defaults to
            `"rectangular"`.
        detach_reset: bool, keep the reset out of the gradient. Defaults to
            `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`, as for `LIF`. Defaults to `False`.
        trainable_decay: the same choices for `k`. Defaults to `False`.
        decay_parameterization: `"clip"` or `"sigmoid"`, as for
            `LIF`. Defaults to `"clip"`.
        adaptation: float >= 0, `beta`. Defaults to `0.2`.
        adaptation_decay: float in [0, 1], `rho`. Defaults to `0.9`.
        **kwargs: `return_sequences`, `return_potentials`, `return_state`
            (the final `v`, then `b`), `stateful`, `unroll`, `fused`
            (`keras_snn.layers.fused_models.alif_sequence`),
            `check_finite` as for `LIF`, and the base layer's keyword
            arguments.

    Call arguments:
        sequences: float input currents `(batch, time, ...)`.
        initial_state: optional list `[v, b]` to start from.
        training: Python bool.

    Returns:
        Spikes, then potentials and the final states if requested.

    Example:

    ```python
    x = keras.Input((8, 100))
    spikes = keras_snn.layers.ALIF(adaptation=0.5, adaptation_decay=0.95)(x)
    ```

    Reference:
        Bellec et al., "Long short-term memory and learning-to-learn in
        networks of spiking neurons", NeurIPS 2018.
    """

    cell_class = ALIFCell
    extra_cell_arguments = ("adaptation", "adaptation_decay")

    def __init__(
        self,
        threshold=1.0,
        decay=0.5,
        adaptation=0.2,
        adaptation_decay=0.9,
        reset="hard",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        trainable_decay=False,
        decay_parameterization="clip",
        **kwargs,
    ):
        super().__init__(
            threshold=threshold,
            decay=decay,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            trainable_threshold=trainable_threshold,
            trainable_decay=trainable_decay,
            decay_parameterization=decay_parameterization,
            adaptation=adaptation,
            adaptation_decay=adaptation_decay,
            **kwargs,
        )


for _name in CubaLIF.extra_cell_arguments:
    setattr(CubaLIF, _name, cell_property(_name))
for _name in ALIF.extra_cell_arguments:
    setattr(ALIF, _name, cell_property(_name))
del _name
