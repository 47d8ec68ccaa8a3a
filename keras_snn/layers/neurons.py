"""Spiking neuron layers: `LIF` and `IF` over a sequence of input currents.

The cells `LIFCell` and `IFCell` (in `keras_snn.layers.cells`, re-exported
here) compute one time step with `keras_snn.functional.neuron_step`; the
sequence layers subclass `keras.layers.RNN` and run the cell over the time
axis of a batch-major `(batch, time, ...)` tensor of input currents.
"""

import warnings

import keras
from keras import ops
from keras.src.backend import rnn as backend_rnn

from keras_snn.layers.cells import IFCell
from keras_snn.layers.cells import LIFCell
from keras_snn.layers.cells import reject_leak_arguments
from keras_snn.layers.checks import POSITIVE
from keras_snn.layers.checks import UNIT_INTERVAL
from keras_snn.layers.checks import check_finite
from keras_snn.layers.checks import check_float_input
from keras_snn.layers.checks import check_number
from keras_snn.layers.checks import in_xla_context
from keras_snn.layers.checks import propagate_non_finite
from keras_snn.layers.checks import silence_warning
from keras_snn.saving import register

__all__ = ["IF", "IFCell", "LIF", "LIFCell"]

# Largest static sequence length the time loop is unrolled for when
# `unroll=None`; longer (or unknown) lengths use a symbolic while loop.
MAX_AUTO_UNROLL = 64


@register
class LIF(keras.layers.RNN):
    """Leaky integrate-and-fire neurons over a sequence of input currents.

    Runs `keras_snn.layers.LIFCell` over the time axis:

    ```
    u[t] = k * v[t-1] + I[t]
    o[t] = H(u[t] - theta)          # H(0) = 1: u == theta fires
    v[t] = u[t] * (1 - o[t])        # reset="hard" (Wu et al. 2019, Eq. 5)
    v[t] = u[t] - theta * o[t]      # reset="soft" (Ledinauskas et al.)
    v[t] = u[t]                     # reset="none"
    ```

    starting from `v[-1] = 0` (or the carried state when `stateful=True`).

    A layer that does not fire at all on its first training batch warns
    (`UserWarning` naming it and its threshold) in a plain `model.fit`
    without XLA; with `jit_compile=True` pass a
    `keras_snn.analysis.SilentLayerWarning` callback for the same check.
    Set the class attribute `LIF.warn_if_silent = False` to turn it off.

    Args:
        threshold: float > 0, the firing threshold `theta`. Defaults to
            `1.0`.
        decay: float in [0, 1], the leak factor `k`. Defaults to `0.5`.
        reset: `"hard"`, `"soft"` or `"none"`. Defaults to `"hard"`.
        surrogate: name, config or `keras_snn.surrogates.Surrogate` for the
            backward pass of the spike. Defaults to `"rectangular"`.
        detach_reset: bool, keep the reset out of the gradient. Defaults to
            `False`.
        trainable_threshold: `False`, `True`, `"layer"`, `"channel"` or
            `"neuron"`: learn the threshold, one for the layer (`True` is
            `"layer"`), one per channel (last feature axis) or one per
            neuron (kept >= 1e-3). Defaults to `False`.
        trainable_decay: the same choices for the decay (PLIF, Fang et al.
            2021). Defaults to `False`.
        decay_parameterization: `"clip"` (the weight is `k`, clipped to
            [0, 1]) or `"sigmoid"` (the weight is Fang et al.'s `a`, with
            `1/tau = sigmoid(a)` and `k = 1 - 1/tau`); see
            `keras_snn.layers.LIFCell`. Defaults to `"clip"`.
        recurrent: bool, recurrent synapses from the layer's own spikes of
            the previous step, `I[t] + o[t-1] W_rec` (Bellec et al. 2018's
            recurrent networks; any neuron model). Needs input currents of
            shape `(batch, time, units)`; `W_rec` is the trainable
            `recurrent_kernel`, the previous spikes the last state; runs
            step by step (no fused loop). Defaults to `False`.
        recurrent_initializer: initializer of `W_rec`. Defaults to
            `"glorot_uniform"`.
        recurrent_regularizer: regularizer of `W_rec`, or `None`.
        recurrent_constraint: constraint of `W_rec`, or `None`.
        return_sequences: bool, return spikes at every step (`True`) or at
            the last step only. Defaults to `True`.
        return_potentials: bool, also return the membrane potential `u[t]`
            (before the reset), shaped like the spikes. Defaults to `False`.
        return_state: bool, also return the final state `v`. Defaults to
            `False`.
        stateful: bool, carry the state from one batch to the next (for
            streaming); clear it with `reset_states()`. Needs a fixed batch
            size. Defaults to `False`.
        unroll: `None`, `True` or `False`. `None` unrolls the time loop when
            the sequence length is static and at most 64 steps, which is
            fastest with `jit_compile=True`, and uses a symbolic loop
            otherwise. Defaults to `None`.
        fused: `None`, `True` or `False`. How the time loop is run and
            differentiated. `True` runs the whole sequence as one op
            (`keras_snn.layers.fused.neuron_sequence`) whose backward pass is
            a hand-written reverse-time scan that recomputes the spikes and
            resets from the saved potentials, instead of differentiating
            every step; it gives the same spikes and the same gradients.
            `False` runs `LIFCell` step by step through `keras.layers.RNN`
            (the reference path). `None` uses the fused op wherever it
            applies (no mask, `return_potentials=False`) and the reference
            path otherwise. Defaults to `None`.
        check_finite: bool, whether NaN or infinite input currents are an
            error. Outside XLA a call on them raises `InvalidArgumentError`
            naming this layer; under XLA (`jit_compile=True`), which drops
            such checks, the spikes at those places become NaN, so the
            loss and the outputs show NaN instead of looking normal (a
            spike of a NaN potential would otherwise be 0). It costs one
            pass over the currents. Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        sequences: input currents, float tensor of shape
            `(batch, time, ...)` with at least one feature axis.
        initial_state: optional list with the state `v` to start from,
            shape `(batch, ...)`.
        training: Python bool, passed to the cell.

    Returns:
        Spikes as 0/1 floats of shape `(batch, time, ...)` (or
        `(batch, ...)` with `return_sequences=False`); then the potentials
        if `return_potentials`; then the final state if `return_state`.

    Example:

    ```python
    inputs = keras.Input((4, 28, 28, 1))
    x = keras_snn.layers.TimeFolded(keras.layers.Conv2D(8, 3))(inputs)
    spikes = keras_snn.layers.LIF(threshold=1.0, decay=0.5)(x)
    ```

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, Eq. 5-6 and 14. Ledinauskas et al.,
        "Training Deep Spiking Neural Networks", 2020, Sec. 2.2.
    """

    cell_class = LIFCell

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
        return_sequences=True,
        return_potentials=False,
        return_state=False,
        stateful=False,
        unroll=None,
        fused=None,
        check_finite=True,
        **kwargs,
    ):
        if fused not in (None, True, False):
            raise ValueError(
                "Argument `fused` must be None, True or False. Received: "
                f"fused={fused!r}"
            )
        if fused and return_potentials:
            raise ValueError(
                "The fused time loop does not return potentials; use "
                "fused=None or fused=False with return_potentials=True. "
                f"Received: fused={fused!r}, "
                f"return_potentials={return_potentials!r}"
            )
        if fused and not self.cell_class.fusable:
            raise ValueError(
                f"{type(self).__name__} has no fused time loop yet; use "
                f"fused=None or fused=False. Received: fused={fused!r}"
            )
        # Checked here too, so that the message names this layer.
        threshold = check_number(
            type(self), kwargs, "threshold", threshold, POSITIVE
        )
        decay = check_number(type(self), kwargs, "decay", decay, UNIT_INTERVAL)
        extra = {
            name: kwargs.pop(name)
            for name in self.extra_cell_arguments
            if name in kwargs
        }
        if fused and recurrent:
            raise ValueError(
                "The fused time loop has no recurrent synapses; use "
                "fused=None or fused=False with recurrent=True. Received: "
                f"fused={fused!r}, recurrent=True"
            )
        cell = self.cell_class(
            **self._cell_kwargs(
                threshold=threshold,
                decay=decay,
                reset=reset,
                surrogate=surrogate,
                detach_reset=detach_reset,
                trainable_threshold=trainable_threshold,
                trainable_decay=trainable_decay,
                decay_parameterization=decay_parameterization,
            ),
            recurrent=recurrent,
            recurrent_initializer=recurrent_initializer,
            recurrent_regularizer=recurrent_regularizer,
            recurrent_constraint=recurrent_constraint,
            **extra,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
        )
        if unroll not in (None, True, False):
            raise ValueError(
                "Argument `unroll` must be None, True or False. Received: "
                f"unroll={unroll!r}"
            )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.return_potentials = bool(return_potentials)
        self.fused = fused
        self.check_finite = bool(check_finite)

    # Arguments of a subclass's cell that `LIF.__init__` passes on as they
    # are (e.g. CubaLIF's `current_decay`).
    extra_cell_arguments = ()

    @staticmethod
    def _cell_kwargs(**kwargs):
        return kwargs

    def build(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        if len(sequences_shape) < 3:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) expects input "
                "currents of shape (batch, time, features...), rank >= 3; "
                "add a time axis, e.g. with keras_snn.layers.DirectEncoding. "
                f"Received: input shape={sequences_shape}"
            )
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        check_float_input(self, sequences, "input currents")
        if self.stateful and initial_state is None:
            sequences = self._check_stateful_batch(sequences)
        # Outside XLA a check raises; XLA drops checks, so there NaN/inf
        # currents are made to give NaN spikes instead of silent zeros.
        propagate = self.check_finite and in_xla_context()
        if self.check_finite and not propagate:
            sequences = check_finite(self, sequences, "input currents")
        result = super().call(
            sequences,
            initial_state=initial_state,
            mask=mask,
            training=training,
        )
        if propagate:
            result = self._propagate_non_finite(result, sequences)
        if training and self.warn_if_silent and not self._silence_checked:
            spikes = result[0] if self.return_state else result
            if self.return_potentials:
                spikes = spikes[..., 0]
            self._watch_first_batch(spikes)
        if not self.return_potentials:
            return result
        if self.return_state:
            output, *states = result
        else:
            output, states = result, []
        spikes, potentials = ops.unstack(output, 2, axis=-1)
        return (
            (spikes, potentials, *states)
            if states
            else (
                spikes,
                potentials,
            )
        )

    # Whether a layer silent on its first training batch warns (see
    # `_watch_first_batch`). Set `keras_snn.layers.LIF.warn_if_silent =
    # False` to turn the check off for all layers.
    warn_if_silent = True
    _silence_checked = False

    def _watch_first_batch(self, spikes):
        """Warns (`UserWarning`) if no neuron fires on the first batch.

        Runs once per layer, in a plain `model.fit`: eagerly the spikes are
        looked at directly; in a `tf.function` (Keras' default on CPU,
        `jit_compile="auto"`), a `tf.py_function` looks at their maximum
        once, then returns at once on later steps. XLA (`jit_compile=True`)
        cannot call Python, so there nothing is added to the compiled step;
        `keras_snn.analysis.SilentLayerWarning` does the same check from a
        callback with a sample of the data.
        """
        if keras.backend.backend() != "tensorflow" or in_xla_context():
            return
        import tensorflow as tf

        if tf.executing_eagerly():
            self._report_first_batch(ops.max(spikes))
            return
        tf.py_function(self._report_first_batch, [ops.max(spikes)], [])

    def _report_first_batch(self, max_spike):
        if self._silence_checked:
            return
        self._silence_checked = True
        if float(max_spike) <= 0.0:
            warnings.warn(silence_warning(self), UserWarning, stacklevel=2)

    def _propagate_non_finite(self, result, sequences):
        """NaN spikes where the currents are NaN/inf (see `check_finite`)."""
        source = sequences if self.return_sequences else ops.sum(sequences, 1)
        if self.return_potentials:
            source = ops.expand_dims(source, -1)
        if self.return_state:
            output, *states = result
            return [propagate_non_finite(output, source), *states]
        return propagate_non_finite(result, source)

    def _check_stateful_batch(self, sequences):
        """Refuses a batch whose size differs from the stored state's.

        A smaller batch (the last, partial batch of `predict` or `fit`)
        would otherwise be broadcast against the state and give more rows
        than inputs, or fail deep inside TensorFlow.
        """
        if self.states is None:
            return sequences
        expected = int(self.states[0].shape[0])
        received = sequences.shape[0]
        message = (
            f"Layer '{self.name}' ({type(self).__name__}) is stateful and was "
            f"built for batches of {expected} sequences (its state has "
            f"{expected} rows), so every batch must hold exactly {expected}. "
            f"Received: a batch of {{}}. Give it a number of samples that "
            f"{expected} divides, or drop the last partial batch "
            "(tf.data: `.batch(batch_size, drop_remainder=True)`)."
        )
        if received is not None:
            if received != expected:
                raise ValueError(message.format(received))
            return sequences
        if keras.backend.backend() != "tensorflow":
            return sequences
        import tensorflow as tf

        if not in_xla_context():
            check = tf.debugging.assert_equal(
                tf.shape(sequences)[0],
                expected,
                message=message.format("another size"),
            )
            with tf.control_dependencies([check]):
                return tf.identity(sequences)
        # XLA drops assertions; `ensure_shape` makes the compilation for
        # the partial batch's shape fail instead ("Shape of tensor data
        # [1,...] is not compatible with expected shape [4,...]", at the
        # node '<layer name>/EnsureShape').
        return tf.ensure_shape(sequences, (expected, *sequences.shape[1:]))

    def uses_fused_loop(self, mask=None):
        """Whether a call with this `mask` runs the fused time loop."""
        if (
            self.fused is False
            or self.return_potentials
            or not self.cell.fusable
        ):
            return False
        if mask is not None:
            if self.fused:
                raise ValueError(
                    f"Layer '{self.name}' has fused=True, and the fused time "
                    "loop does not support masks; use fused=None or "
                    "fused=False. Received: a mask"
                )
            return False
        return keras.backend.backend() == "tensorflow"

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        parameters = cell.parameters(sequences.dtype)
        timesteps = sequences.shape[1]
        unroll = self.unroll
        if unroll is None:
            unroll = timesteps is not None and timesteps <= MAX_AUTO_UNROLL
        if self.uses_fused_loop(mask):
            spikes, states = cell.fused_sequence(
                sequences, list(initial_state), parameters, unroll
            )
            return spikes[:, -1], spikes, states
        with_potentials = self.return_potentials

        def step(inputs, states):
            spikes, u, states = cell.recurrent_step(
                inputs, list(states), parameters
            )
            if with_potentials:
                spikes = ops.stack([spikes, u], axis=-1)
            return spikes, states

        # `keras.src.backend.rnn` is private: it is the time loop of
        # `keras.layers.RNN` itself. No public API checked (Keras 3.15) fits:
        # `keras.ops.scan`, `fori_loop` and `while_loop` take no mask
        # (`zero_output_for_mask`) and never unroll (on TensorFlow, `scan`'s
        # `unroll` only sets `parallel_iterations`); and
        # `keras.layers.RNN.inner_loop` calls `cell.__call__` at every step,
        # recomputing the cell's threshold and decay per step, with no way
        # to stack `return_potentials` in. NeuNorm, with no mask, uses
        # `tf.scan`.
        return backend_rnn(
            step,
            sequences,
            list(initial_state),
            go_backwards=False,
            mask=mask,
            unroll=unroll,
            input_length=timesteps,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        batch, features = sequences_shape[0], sequences_shape[2:]
        if self.return_sequences:
            output_shape = sequences_shape
        else:
            output_shape = (batch, *features)
        outputs = [output_shape]
        if self.return_potentials:
            outputs.append(output_shape)
        if self.return_state:
            outputs.extend([(batch, *features)] * self.cell.num_states)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def compute_mask(self, _, mask):
        output_mask = mask if self.return_sequences else None
        extra = int(self.return_potentials) + self.cell.num_states * int(
            self.return_state
        )
        if not extra:
            return output_mask
        return [output_mask] + [None] * extra

    def get_config(self):
        config = keras.layers.Layer.get_config(self)
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype", "units"):
            cell_config.pop(key, None)
        config.update(cell_config)
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_potentials": self.return_potentials,
                "return_state": self.return_state,
                "stateful": self.stateful,
                "unroll": self.unroll,
                "fused": self.fused,
                "check_finite": self.check_finite,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class IF(LIF):
    """Integrate-and-fire neurons over a sequence of input currents.

    `keras_snn.layers.LIF` without leak (`decay = 1`), with the reset by
    subtraction by default (Ledinauskas et al. 2020, Sec. 2.2):

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
            `"neuron"`, as for `LIF`. Defaults to `False`.
        **kwargs: `return_sequences`, `return_potentials`, `return_state`,
            `stateful`, `unroll` and `fused` as for `keras_snn.layers.LIF`,
            and the base layer's keyword arguments.

    Call arguments:
        sequences: float input currents `(batch, time, ...)`.
        initial_state: optional list with the starting state.
        training: Python bool.

    Returns:
        Spikes, then potentials and final state if requested, as for `LIF`.

    Example:

    ```python
    x = keras.Input((8, 100))
    spikes = keras_snn.layers.IF(threshold=1.0, reset="soft")(x)
    ```

    Reference:
        Ledinauskas et al., "Training Deep Spiking Neural Networks", 2020,
        Sec. 2.2, Eq. 2.
    """

    cell_class = IFCell

    def __init__(
        self,
        threshold=1.0,
        reset="soft",
        surrogate="rectangular",
        detach_reset=False,
        trainable_threshold=False,
        **kwargs,
    ):
        reject_leak_arguments(kwargs)
        super().__init__(
            threshold=threshold,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            trainable_threshold=trainable_threshold,
            **kwargs,
        )

    @staticmethod
    def _cell_kwargs(decay, trainable_decay, decay_parameterization, **kw):
        return kw


def cell_property(name):
    """A layer property that reads the cell's attribute `name`."""
    return property(
        lambda self: getattr(self.cell, name),
        doc=f"The cell's `{name}` (read-only).",
    )


# The neuron hyper-parameters read through to the cell, as Keras' SimpleRNN
# exposes its cell's arguments.
for _name in (
    "threshold",
    "decay",
    "reset",
    "surrogate",
    "detach_reset",
    "trainable_threshold",
    "trainable_decay",
    "decay_parameterization",
    "recurrent",
    "recurrent_kernel",
):
    setattr(LIF, _name, cell_property(_name))
del _name
