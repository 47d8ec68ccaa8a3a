"""Fused multi-step CubaLIF and ALIF neurons: one op over the sequence.

`cuba_sequence` and `alif_sequence` do for `keras_snn.layers.CubaLIF` and
`keras_snn.layers.ALIF` what `keras_snn.layers.fused.neuron_sequence` does
for LIF/IF: the forward pass applies `keras_snn.functional.cuba_step` or
`keras_snn.functional.alif_step` (Heaviside spike) `T` times, so the spikes
and states are those of the step-by-step path, inside one
`tf.custom_gradient` whose backward pass is a hand-written reverse-time
scan. Per step it keeps the potential `u[t]`, the state after the reset
`v[t]` and one more tensor (CubaLIF: the synaptic current `i[t]`; ALIF:
the adaptation `b[t]` the step read), and recomputes the spikes and
surrogate slopes from them. (Keeping `v[t]` rather than recomputing it
from `u[t]`, as LIF's op does, makes the backward pass about 30% faster
without XLA, for one more tensor per step.)

The backward step is the derivative of those equations. With upstream
`go[t]` (spikes) and the state gradients `dv`, `di` / `db` (of the states
the step returned), and `du, dtheta = `the LIF step's backward (see
`keras_snn.layers.fused`; it handles the reset and `detach_reset`):

```
CubaLIF:  du, dtheta = lif(go[t], dv, u[t], theta)
          di' = di + du;  dI[t] = di'
          dv <- k du;     di <- a di'
          dk += du v[t-1];  da += di' i[t-1]
ALIF:     go' = go[t] + (1 - rho) db          (b[t+1] reads o[t])
          du, dtheta_t = lif(go', dv, u[t], theta0 + beta b[t])
          dI[t] = du;     dv <- k du;   db <- rho db + beta dtheta_t
          dtheta0 += dtheta_t;  dk += du v[t-1]
          dbeta += dtheta_t b[t];  drho += db (b[t] - o[t])
```

ALIF's surrogate slope is `surrogate.grad(u - theta[t], theta0)`, the
baseline threshold, as `ALIFCell` calls it. Parameters given as Python
numbers (constants of the layer) get no gradient computed; tensors, of
any shape that broadcasts against the state (one per channel or neuron),
get theirs summed back to their shape.

The loop is unrolled in Python for a static number of steps, or a
`tf.while_loop` otherwise; both forms compile with `jit_compile=True`.
"""

import tensorflow as tf

from keras_snn import functional
from keras_snn.layers import fused as lif_fused

__all__ = ["alif_sequence", "cuba_sequence"]


def cuba_sequence(
    currents,
    initial_state,
    threshold,
    decay,
    current_decay,
    reset,
    surrogate,
    detach_reset=False,
    unroll=True,
):
    """Runs CubaLIF neurons over a whole sequence as one fused op.

    Args:
        currents: float tensor `(batch, time, ...)`, the input `I[t]`.
        initial_state: `[v, i]`, tensors `(batch, ...)`: the membrane
            state and the synaptic current before the first step.
        threshold: `theta`, a number or a tensor broadcasting against the
            state (per channel `(C,)`, per neuron the feature shape).
        decay: the membrane leak `k`, as `threshold`.
        current_decay: the synaptic leak `a`, as `threshold`.
        reset: `"hard"`, `"soft"` or `"none"`.
        surrogate: a `keras_snn.surrogates.Surrogate`.
        detach_reset: bool, leave the reset out of the gradient.
        unroll: bool, unroll in Python (static length) or `tf.while_loop`.

    Returns:
        Tuple `(spikes, [v, i])`: spikes `(batch, time, ...)` and the
        final states.
    """
    model = _Cuba(reset, surrogate, bool(detach_reset))
    return _run(
        model,
        currents,
        initial_state,
        (threshold, decay, current_decay),
        unroll,
    )


def alif_sequence(
    currents,
    initial_state,
    threshold,
    decay,
    adaptation,
    adaptation_decay,
    reset,
    surrogate,
    detach_reset=False,
    unroll=True,
):
    """Runs ALIF neurons over a whole sequence as one fused op.

    Args:
        currents: float tensor `(batch, time, ...)`, the input `I[t]`.
        initial_state: `[v, b]`, tensors `(batch, ...)`: the membrane
            state and the adaptation read by the first step.
        threshold: the baseline `theta0`, a number or a broadcasting
            tensor (per channel or neuron).
        decay: the membrane leak `k`, as `threshold`.
        adaptation: `beta`, as `threshold`.
        adaptation_decay: `rho`, as `threshold`.
        reset: `"hard"`, `"soft"` (subtracts `theta[t]`) or `"none"`.
        surrogate: a `keras_snn.surrogates.Surrogate`, given `theta0`.
        detach_reset: bool, leave the reset out of the gradient.
        unroll: bool, unroll in Python (static length) or `tf.while_loop`.

    Returns:
        Tuple `(spikes, [v, b])`: spikes `(batch, time, ...)` and the
        final states.
    """
    model = _Alif(reset, surrogate, bool(detach_reset))
    parameters = (threshold, decay, adaptation, adaptation_decay)
    return _run(model, currents, initial_state, parameters, unroll)


class _Cuba:
    """CubaLIF's step, its saved tensors and its backward step."""

    saved = 3  # u[t], i[t], v[t]

    def __init__(self, reset, surrogate, detach_reset):
        self.reset = reset
        self.surrogate = surrogate
        self.detach_reset = detach_reset

    def forward(self, current, states, parameters):
        threshold, decay, current_decay = parameters
        o, u, v, i = functional.cuba_step(
            current,
            states[0],
            states[1],
            threshold=threshold,
            decay=decay,
            current_decay=current_decay,
            reset=self.reset,
            spike_fn=functional.heaviside,
        )
        return o, (u, i, v), [v, i]

    def initial(self, states):
        """What `backward` needs of the states before step 0."""
        return list(states)

    def previous(self, saved, parameters):
        """What `backward` needs of the states before step `t`, from the
        tensors saved at `t - 1`."""
        _, i, v = saved
        return [v, i]

    def backward(self, g_o, d_states, saved, previous, parameters):
        threshold, decay, current_decay = parameters
        dv, di = d_states
        u = saved[0]
        v_prev, i_prev = previous
        du, dtheta = lif_fused._backward_step(
            g_o, dv, u, threshold, self.reset, self.surrogate, self.detach_reset
        )
        di = di + du
        d_parameters = (
            lambda: dtheta,
            lambda: du * v_prev,
            lambda: di * i_prev,
        )
        return di, [decay * du, current_decay * di], d_parameters


class _Alif:
    """ALIF's step, its saved tensors and its backward step."""

    saved = 3  # u[t], b[t], v[t]

    def __init__(self, reset, surrogate, detach_reset):
        self.reset = reset
        self.surrogate = surrogate
        self.detach_reset = detach_reset

    def forward(self, current, states, parameters):
        threshold, decay, adaptation, adaptation_decay = parameters
        b = states[1]
        o, u, v, b_next = functional.alif_step(
            current,
            states[0],
            b,
            threshold=threshold,
            decay=decay,
            adaptation=adaptation,
            adaptation_decay=adaptation_decay,
            reset=self.reset,
            spike_fn=functional.heaviside,
        )
        return o, (u, b, v), [v, b_next]

    def initial(self, states):
        return [states[0]]

    def previous(self, saved, parameters):
        return [saved[2]]

    def backward(self, g_o, d_states, saved, previous, parameters):
        threshold, decay, adaptation, adaptation_decay = parameters
        dv, db = d_states
        u, b, _ = saved
        (v_prev,) = previous
        theta = threshold + adaptation * b
        g_o = g_o + (1 - adaptation_decay) * db
        du, dtheta = lif_fused._backward_step(
            g_o,
            dv,
            u,
            theta,
            self.reset,
            self.surrogate,
            self.detach_reset,
            surrogate_threshold=threshold,
        )

        def d_rho():
            return db * (b - functional.heaviside(u - theta))

        d_parameters = (
            lambda: dtheta,
            lambda: du * v_prev,
            lambda: dtheta * b,
            d_rho,
        )
        d_b = adaptation_decay * db + adaptation * dtheta
        return du, [decay * du, d_b], d_parameters


def _run(model, currents, initial_state, parameters, unroll):
    currents = tf.convert_to_tensor(currents)
    dtype = currents.dtype
    states = [tf.cast(state, dtype) for state in initial_state]
    # Python numbers are the layer's constants: no gradient is computed
    # for them.
    needs = tuple(not isinstance(p, (int, float)) for p in parameters)
    parameters = [tf.cast(p, dtype) for p in parameters]
    if unroll and currents.shape[1] is None:
        raise ValueError(
            "A fused loop can only be unrolled over a static number of time "
            f"steps. Received: currents.shape={currents.shape}"
        )
    run = _unrolled if unroll else _while
    outputs = run(model, needs, currents, states, parameters)
    return outputs[0], list(outputs[1:])


def _parameter_gradients(d_parameters, needs, parameters):
    return [
        lif_fused._sum_to_shape(d, p) if need else tf.zeros_like(p)
        for d, need, p in zip(d_parameters, needs, parameters, strict=True)
    ]


def _unrolled(model, needs, currents, states, parameters):
    count = len(states)

    @tf.custom_gradient
    def fused(currents, *flat):
        initial, parameters = list(flat[:count]), flat[count:]
        states = initial
        spikes, saved = [], []
        for current in tf.unstack(currents, axis=1):
            o, kept, states = model.forward(current, states, parameters)
            spikes.append(o)
            saved.append(kept)

        def backward(g_spikes, *g_states):
            g_spikes = lif_fused._zeros_if_none(g_spikes, currents)
            d_states = [
                lif_fused._zeros_if_none(g, s)
                for g, s in zip(g_states, initial, strict=True)
            ]
            g_list = tf.unstack(g_spikes, axis=1)
            d_currents = [None] * len(saved)
            totals = [None] * len(parameters)
            for t in reversed(range(len(saved))):
                previous = (
                    model.initial(initial)
                    if t == 0
                    else model.previous(saved[t - 1], parameters)
                )
                d_currents[t], d_states, d_parameters = model.backward(
                    g_list[t], d_states, saved[t], previous, parameters
                )
                for n, need in enumerate(needs):
                    if need:
                        term = d_parameters[n]()
                        totals[n] = (
                            term if totals[n] is None else totals[n] + term
                        )
            return (
                tf.stack(d_currents, axis=1),
                *d_states,
                *_parameter_gradients(totals, needs, parameters),
            )

        return (tf.stack(spikes, axis=1), *states), backward

    return fused(currents, *states, *parameters)


def _while(model, needs, currents, states, parameters):
    count = len(states)
    dtype = currents.dtype

    @tf.custom_gradient
    def fused(currents, *flat):
        initial, parameters = list(flat[:count]), flat[count:]
        time_major = lif_fused._time_major(currents)
        steps = tf.shape(time_major)[0]
        inputs = tf.TensorArray(dtype, size=steps).unstack(time_major)

        def forward_body(t, states, spikes, saved):
            o, kept, states = model.forward(inputs.read(t), states, parameters)
            saved = [
                array.write(t, x) for array, x in zip(saved, kept, strict=True)
            ]
            return t + 1, states, spikes.write(t, o), saved

        _, states, spikes, saved = tf.while_loop(
            lambda t, *_: t < steps,
            forward_body,
            (
                tf.constant(0),
                initial,
                tf.TensorArray(dtype, size=steps),
                [tf.TensorArray(dtype, size=steps) for _ in range(model.saved)],
            ),
            maximum_iterations=steps,
        )
        saved = [array.stack() for array in saved]

        def backward(g_spikes, *g_states):
            g_spikes = lif_fused._zeros_if_none(g_spikes, currents)
            d_states = [
                lif_fused._zeros_if_none(g, s)
                for g, s in zip(g_states, initial, strict=True)
            ]
            grads = tf.TensorArray(dtype, size=steps).unstack(
                lif_fused._time_major(g_spikes)
            )
            needed = [n for n, need in enumerate(needs) if need]
            first = model.initial(initial)

            def backward_body(i, d_states, totals, d_currents):
                t = steps - 1 - i
                kept = [x[t] for x in saved]
                before = [x[tf.maximum(t - 1, 0)] for x in saved]
                recomputed = model.previous(before, parameters)
                previous = [
                    tf.where(t > 0, r, s)
                    for r, s in zip(recomputed, first, strict=True)
                ]
                d_current, d_states, d_parameters = model.backward(
                    grads.read(t), d_states, kept, previous, parameters
                )
                totals = [
                    total + d_parameters[n]()
                    for total, n in zip(totals, needed, strict=True)
                ]
                return i + 1, d_states, totals, d_currents.write(t, d_current)

            _, d_states, totals, d_currents = tf.while_loop(
                lambda i, *_: i < steps,
                backward_body,
                (
                    tf.constant(0),
                    d_states,
                    [tf.zeros_like(initial[0]) for _ in needed],
                    tf.TensorArray(dtype, size=steps),
                ),
                maximum_iterations=steps,
            )
            all_totals = [None] * len(parameters)
            for total, n in zip(totals, needed, strict=True):
                all_totals[n] = total
            return (
                lif_fused._batch_major(d_currents.stack()),
                *d_states,
                *_parameter_gradients(all_totals, needs, parameters),
            )

        return (lif_fused._batch_major(spikes.stack()), *states), backward

    return fused(currents, *states, *parameters)
