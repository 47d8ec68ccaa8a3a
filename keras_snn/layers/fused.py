"""Fused multi-step neuron: the whole time loop as one differentiable op.

`neuron_sequence` runs `keras_snn.functional.neuron_step` over the time
axis of a `(batch, time, ...)` tensor inside a single `tf.custom_gradient`.
Its forward pass is the same `T` applications of the step as the reference
path (`keras.layers.RNN` over `LIFCell`), with the Heaviside step as spike
function, so the spikes and states are the same values. Its backward pass
is written by hand: a reverse-time scan that, for each step, recomputes the
spikes and the state after the reset from the saved potentials `u[t]`
(nothing else is kept from the forward pass) and applies the surrogate's
`grad`. It returns the gradients with respect to the input currents, the
initial state, the threshold and the decay, equal to what automatic
differentiation through the unrolled reference gives (the tests check
this for every surrogate and reset mode, with and without
`detach_reset`).

With `u[t] = k v[t-1] + I[t]`, `x[t] = u[t] - theta`, `o[t] = H(x[t])`,
surrogate slope `s[t] = grad(x[t], theta)`, upstream gradients `go[t]` (of
the spikes) and `dv` (of `v[t]`, from the next step or the final state):

```
hard:  go' = go[t] - dv * u[t]   (go[t] with detach_reset)
       du  = dv * (1 - o[t]) + go' * s[t]
soft:  go' = go[t] - theta * dv  (go[t] with detach_reset)
       du  = dv + go' * s[t];    dtheta -= o[t] * dv
none:  du  = dv + go[t] * s[t]
all:   dtheta -= go' * s[t];  dk += du * v[t-1]
       dI[t] = du;            dv <- k * du       (dv of v[t-1])
```

A threshold or decay given per channel or per neuron (a trainable
`"channel"`/`"neuron"` parameter) broadcasts against the state; its
gradient is the elementwise one summed back to its shape.

The loop is unrolled in Python for a static number of steps (fastest with
XLA) and is a `tf.while_loop` with `maximum_iterations` otherwise, so both
forms compile with `jit_compile=True`.
"""

import tensorflow as tf

from keras_snn import functional

__all__ = ["neuron_sequence"]


def neuron_sequence(
    currents,
    initial_state,
    threshold,
    decay,
    reset,
    surrogate,
    detach_reset=False,
    unroll=True,
):
    """Runs the neuron over a whole sequence as one fused op.

    Args:
        currents: float tensor `(batch, time, ...)`, the input currents
            `I[t]`.
        initial_state: tensor `(batch, ...)`, the state `v[-1]`.
        threshold: `theta`: a scalar, or a tensor that broadcasts against
            the state (one value per channel `(C,)` or per neuron, the
            feature shape); its gradient has its shape.
        decay: `k`, a scalar or a broadcasting tensor, as `threshold`.
        reset: `"hard"`, `"soft"` or `"none"`.
        surrogate: a `keras_snn.surrogates.Surrogate`; its `grad` gives the
            backward pass of the spike.
        detach_reset: bool, leave the reset out of the gradient.
        unroll: bool, unroll the loop in Python (needs a static number of
            steps) or run a `tf.while_loop`.

    Returns:
        Tuple `(spikes, state)`: spikes `(batch, time, ...)` and the final
        state `v[T-1]`, `(batch, ...)`.
    """
    currents = tf.convert_to_tensor(currents)
    dtype = currents.dtype
    initial_state = tf.cast(initial_state, dtype)
    threshold = tf.cast(threshold, dtype)
    decay = tf.cast(decay, dtype)
    timesteps = currents.shape[1]
    if unroll and timesteps is None:
        raise ValueError(
            "A fused loop can only be unrolled over a static number of time "
            f"steps. Received: currents.shape={currents.shape}"
        )
    run = _unrolled if unroll else _while
    return run(
        currents,
        initial_state,
        threshold,
        decay,
        reset=reset,
        surrogate=surrogate,
        detach_reset=bool(detach_reset),
    )


def _step(current, v, threshold, decay, reset):
    """The forward step: `neuron_step` with the Heaviside spike."""
    return functional.neuron_step(
        current,
        v,
        threshold=threshold,
        decay=decay,
        reset=reset,
        spike_fn=functional.heaviside,
    )


def _state_after_reset(u, threshold, reset):
    """`v[t]` recomputed from `u[t]` (the fire and reset of `neuron_step`).

    `neuron_step` applied to `u` with zero decay: `u = 0 * v + u` is exact.
    """
    _, _, v = _step(u, u, threshold, 0.0, reset)
    return v


def _backward_step(
    g_o,
    dv,
    u,
    threshold,
    reset,
    surrogate,
    detach_reset,
    surrogate_threshold=None,
):
    """Gradients of one step; returns `(du, dtheta_elementwise)`.

    `surrogate_threshold` is the threshold the surrogate's `grad` is given
    (ALIF's baseline, while `threshold` is its adaptive one); `None` is
    `threshold`.
    """
    x = u - threshold
    o = functional.heaviside(x)
    if surrogate_threshold is None:
        surrogate_threshold = threshold
    slope = tf.cast(surrogate.grad(x, surrogate_threshold), g_o.dtype)
    dtheta = None
    if reset == "hard":
        if not detach_reset:
            g_o = g_o - dv * u
        du = dv * (1 - o) + g_o * slope
    elif reset == "soft":
        if not detach_reset:
            g_o = g_o - threshold * dv
        du = dv + g_o * slope
        dtheta = -(o * dv)
    else:
        du = dv + g_o * slope
    spike_term = g_o * slope
    dtheta = -spike_term if dtheta is None else dtheta - spike_term
    return du, dtheta


def _unrolled(currents, v0, threshold, decay, **options):
    reset = options["reset"]
    surrogate = options["surrogate"]
    detach_reset = options["detach_reset"]

    @tf.custom_gradient
    def fused(currents, v0, threshold, decay):
        v = v0
        spikes, potentials = [], []
        for current in tf.unstack(currents, axis=1):
            o, u, v = _step(current, v, threshold, decay, reset)
            spikes.append(o)
            potentials.append(u)

        def backward(g_spikes, g_state):
            g_spikes = _zeros_if_none(g_spikes, currents)
            dv = _zeros_if_none(g_state, v0)
            g_list = tf.unstack(g_spikes, axis=1)
            d_currents = [None] * len(potentials)
            dtheta = tf.zeros_like(v0)
            ddecay = tf.zeros_like(v0)
            for t in reversed(range(len(potentials))):
                u = potentials[t]
                du, dth = _backward_step(
                    g_list[t], dv, u, threshold, reset, surrogate, detach_reset
                )
                v_prev = (
                    v0
                    if t == 0
                    else _state_after_reset(potentials[t - 1], threshold, reset)
                )
                dtheta += dth
                ddecay += du * v_prev
                d_currents[t] = du
                dv = du * decay
            return (
                tf.stack(d_currents, axis=1),
                dv,
                _sum_to_shape(dtheta, threshold),
                _sum_to_shape(ddecay, decay),
            )

        return (tf.stack(spikes, axis=1), v), backward

    return fused(currents, v0, threshold, decay)


def _while(currents, v0, threshold, decay, **options):
    reset = options["reset"]
    surrogate = options["surrogate"]
    detach_reset = options["detach_reset"]
    dtype = currents.dtype

    @tf.custom_gradient
    def fused(currents, v0, threshold, decay):
        time_major = _time_major(currents)
        steps = tf.shape(time_major)[0]
        inputs = tf.TensorArray(dtype, size=steps).unstack(time_major)

        def forward_body(t, v, spikes, potentials):
            o, u, v = _step(inputs.read(t), v, threshold, decay, reset)
            return t + 1, v, spikes.write(t, o), potentials.write(t, u)

        _, v, spikes, potentials = tf.while_loop(
            lambda t, *_: t < steps,
            forward_body,
            (
                tf.constant(0),
                v0,
                tf.TensorArray(dtype, size=steps),
                tf.TensorArray(dtype, size=steps),
            ),
            maximum_iterations=steps,
        )
        potentials = potentials.stack()

        def backward(g_spikes, g_state):
            g_spikes = _zeros_if_none(g_spikes, currents)
            dv = _zeros_if_none(g_state, v0)
            grads = tf.TensorArray(dtype, size=steps).unstack(
                _time_major(g_spikes)
            )

            def backward_body(i, dv, dtheta, ddecay, d_currents):
                t = steps - 1 - i
                u = potentials[t]
                du, dth = _backward_step(
                    grads.read(t),
                    dv,
                    u,
                    threshold,
                    reset,
                    surrogate,
                    detach_reset,
                )
                u_prev = potentials[tf.maximum(t - 1, 0)]
                v_prev = tf.where(
                    t > 0, _state_after_reset(u_prev, threshold, reset), v0
                )
                return (
                    i + 1,
                    du * decay,
                    dtheta + dth,
                    ddecay + du * v_prev,
                    d_currents.write(t, du),
                )

            _, dv, dtheta, ddecay, d_currents = tf.while_loop(
                lambda i, *_: i < steps,
                backward_body,
                (
                    tf.constant(0),
                    dv,
                    tf.zeros_like(v0),
                    tf.zeros_like(v0),
                    tf.TensorArray(dtype, size=steps),
                ),
                maximum_iterations=steps,
            )
            return (
                _batch_major(d_currents.stack()),
                dv,
                _sum_to_shape(dtheta, threshold),
                _sum_to_shape(ddecay, decay),
            )

        return (_batch_major(spikes.stack()), v), backward

    return fused(currents, v0, threshold, decay)


def _time_major(x):
    perm = [1, 0] + list(range(2, x.shape.rank))
    return tf.transpose(x, perm)


def _batch_major(x):
    return _time_major(x)


def _sum_to_shape(gradient, parameter):
    """Sums an elementwise gradient `(batch, ...)` to `parameter`'s shape.

    The reverse of broadcasting: a scalar parameter gets the sum of every
    element, a per-channel `(C,)` one the sum over all but the last axis,
    a per-neuron one the sum over the batch.
    """
    shape = parameter.shape
    if shape.rank == 0:
        return tf.reduce_sum(gradient)
    lead = gradient.shape.rank - shape.rank
    gradient = tf.reduce_sum(gradient, axis=list(range(lead)))
    axes = [a for a, dim in enumerate(shape) if dim == 1]
    if axes:
        gradient = tf.reduce_sum(gradient, axis=axes, keepdims=True)
    return gradient


def _zeros_if_none(gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient
