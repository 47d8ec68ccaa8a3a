"""One time step of a step graph's node: neuron models and integer arithmetic.

A *step graph* (`edge.ir`) lists, per time step, the operations of a
keras_snn network: synaptic layers, pooling, adds, neurons. This module
holds what both of its runners share, once:

- `neuron_step`: one step of a neuron node of any model (LIF/IF, CubaLIF,
  ALIF, recurrent synapses, per-channel parameters), with the equations
  of `keras_snn.functional` (the functions the Keras layers train with).
  The float reference passes floats; the integer arithmetic passes the
  fixed-point constants of `constants`, which multiply like numbers.
- `apply_integer`: one integer step of any node, the deployed arithmetic
  (the module docstring of `edge.integer` states it). It runs on NumPy
  int64 arrays in the integer reference every target is checked against
  (`edge.integer`), and on Keras tensors that hold integers in float64 in
  quantization-aware training (`keras_snn.quantization`): the two differ
  only in their `Arithmetic` (the convolution and pooling kernels, and the
  straight-through variants of the roundings that training needs).

A node is any object with `name`, `op` and `params` (a dict): an
`edge.ir.Node`, or a node of a `keras_snn.quantization.IntegerGraph`.
"""

import dataclasses

import numpy as np

from keras_snn import fixed_point
from keras_snn import functional

__all__ = [
    "Arithmetic",
    "FixedPointAdaptation",
    "FixedPointDecay",
    "apply_integer",
    "constants",
    "neuron_step",
]


def _zeros_like(x):
    if isinstance(x, (np.ndarray, np.generic)):
        return np.zeros(x.shape, x.dtype)
    from keras import ops

    return ops.zeros_like(x)


def neuron_step(
    node,
    current,
    state,
    constants,
    recurrent=None,
    clip_fn=None,
    select_ops=None,
    spike_fn=functional.heaviside,
):
    """One step of a neuron node, for the float and the integer runners.

    Args:
        node: the `"neuron"` node (its params say which model:
            `current_decay` a CubaLIF, `adaptation` an ALIF,
            `recurrent_kernel` recurrent synapses).
        current: the input current `I[t]`.
        state: `None` at the first step, else the dict this function
            returned: `"v"` (the membrane), `"current"` (the current that
            reached the membrane: `i[t]` of a CubaLIF, else `I[t]` plus the
            recurrent current), `"adaptation"` (ALIF) and `"spikes"` (the
            spikes of the step, for the recurrent synapses).
        constants: dict with `threshold`, `decay` and, as the model needs,
            `current_decay`, `adaptation`, `adaptation_decay`, each a
            number or an object that multiplies like one.
        recurrent: `None`, or a function `spikes -> current` (the
            recurrent synapses) for a node with `recurrent_kernel`.
        clip_fn: `None`, or the saturation of the integer arithmetic,
            applied to every current and potential.
        select_ops: `None`, or `keras.ops`: fire and reset written with a
            comparison and selections (`keras_snn.functional.neuron_step`),
            as the float step models of `edge.targets.tflite` run them.
        spike_fn: maps `u - theta` to spikes (`heaviside`; a surrogate in
            quantization-aware training).

    Returns:
        `(spikes, u, new_state)`.
    """
    p = node.params
    state = state or {}

    def previous(key):
        value = state.get(key)
        return _zeros_like(current) if value is None else value

    if recurrent is not None:
        current = current + recurrent(previous("spikes"))
        if clip_fn is not None:
            current = clip_fn(current)
    common = dict(
        reset=p["reset"],
        clip_fn=clip_fn,
        select_ops=select_ops,
        spike_fn=spike_fn,
    )
    v = previous("v")
    threshold, decay = constants["threshold"], constants["decay"]
    new = {}
    if "current_decay" in p:
        spikes, u, v, current = functional.cuba_step(
            current,
            v,
            previous("current"),
            threshold,
            decay,
            constants["current_decay"],
            **common,
        )
    elif "adaptation" in p:
        spikes, u, v, new["adaptation"] = functional.alif_step(
            current,
            v,
            previous("adaptation"),
            threshold,
            decay,
            constants["adaptation"],
            constants["adaptation_decay"],
            **common,
        )
    else:
        spikes, u, v = functional.neuron_step(
            current, v, threshold, decay, **common
        )
    new.update(v=v, current=current)
    if recurrent is not None:
        new["spikes"] = spikes
    return spikes, u, new


# ---------------------------------------------------------------------------
# The integer arithmetic.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arithmetic:
    """The kernels and roundings one runner of `apply_integer` uses.

    Attributes:
        conv2d: `(x, kernel_q, strides, padding) -> acc`.
        dense: `(x, kernel_q) -> acc`.
        pool_sums: `(x, pool_size, strides, padding) -> window sums`.
        pool_counts: `(x, pool_size, strides, padding) -> (1, OH, OW, 1)`
            positions of each window inside the input.
        max_pool: `(x, pool_size, strides, padding) -> maxima`.
        flatten: `x -> (N, -1)`.
        integers: `x -> x` as the runner's integer type.
        requantize: `fixed_point.requantize` or its straight-through form.
        decay_multiply: `fixed_point.decay_multiply` or its
            straight-through form.
        rounded_average: `fixed_point.rounded_average` or its
            straight-through form.
        spike_fn: `node -> (u - theta -> spikes)`: `heaviside` for every
            node, or a node's surrogate in training.
    """

    conv2d: object
    dense: object
    pool_sums: object
    pool_counts: object
    max_pool: object
    flatten: object
    integers: object
    requantize: object = fixed_point.requantize
    decay_multiply: object = fixed_point.decay_multiply
    rounded_average: object = fixed_point.rounded_average
    spike_fn: object = None

    def spikes_of(self, node):
        """The spike function of `node`'s step."""
        if self.spike_fn is None:
            return functional.heaviside
        return self.spike_fn(node)


class FixedPointDecay:
    """The decay factor in Q15, multiplying like a number in `neuron_step`.

    `FixedPointDecay(d_q) * v == decay_multiply(v, d_q)`, so the shared
    `keras_snn.functional.neuron_step` runs unchanged on integer states.

    Args:
        d_q: int (or an array of them per channel or neuron), the even
            Q15 decay of `fixed_point.quantize_membrane_decay`.
        multiply: the `decay_multiply` to use (its straight-through form
            in training). Defaults to `fixed_point.decay_multiply`.
    """

    def __init__(self, d_q, multiply=fixed_point.decay_multiply):
        self.d_q = d_q if np.ndim(d_q) else int(d_q)
        self.multiply = multiply

    def __mul__(self, v):
        return self.multiply(v, self.d_q)

    __rmul__ = __mul__

    def __repr__(self):
        return f"FixedPointDecay({self.d_q} / 2**{fixed_point.DECAY_BITS})"


class FixedPointAdaptation(FixedPointDecay):
    """The ALIF adaptation decay `rho` in Q15, with its per-spike step.

    `rho * a` is `decay_multiply(a, rho_q)` and `(1 - rho) * o` is
    `step_q * o` (`fixed_point.quantize_adaptation_step`), so the shared
    `keras_snn.functional.alif_step`, given `adaptation = 1`, computes the
    integer adaptation `a = beta b` in the potential's scale.
    """

    def __init__(self, rho_q, step_q, multiply=fixed_point.decay_multiply):
        super().__init__(rho_q, multiply)
        self.step_q = int(step_q)

    def __rsub__(self, one):
        if one != 1:
            return NotImplemented
        return _Step(self.step_q)


class _Step:
    """An integer that multiplies spikes: `step_q * o`."""

    def __init__(self, step_q):
        self.step_q = step_q

    def __mul__(self, spikes):
        if isinstance(spikes, (np.ndarray, np.generic)):
            spikes = np.asarray(spikes, np.int64)
        return spikes * self.step_q

    __rmul__ = __mul__


def constants(node, multiply=fixed_point.decay_multiply):
    """The integer constants of a quantized neuron node for `neuron_step`.

    Args:
        node: a quantized `"neuron"` node (`threshold_q`, `decay_q`, ...).
        multiply: the `decay_multiply` of the runner.
    """
    p = node.params
    numbers = {
        "threshold": p["threshold_q"],
        "decay": FixedPointDecay(p["decay_q"], multiply),
    }
    if "current_decay_q" in p:
        numbers["current_decay"] = FixedPointDecay(
            p["current_decay_q"], multiply
        )
    if "adaptation_step_q" in p:
        numbers["adaptation"] = 1
        numbers["adaptation_decay"] = FixedPointAdaptation(
            p["adaptation_decay_q"], p["adaptation_step_q"], multiply
        )
    return numbers


def _recurrent(node, bits, arithmetic):
    """The recurrent current of a quantized neuron node, or `None`: a
    dense layer on the previous spikes, requantized into the potential's
    scale and saturated."""
    p = node.params
    if "recurrent_kernel_q" not in p:
        return None

    def current(spikes):
        acc = arithmetic.dense(
            arithmetic.integers(spikes), p["recurrent_kernel_q"]
        )
        y = arithmetic.requantize(
            acc, p["recurrent_multiplier"], p["recurrent_shift"]
        )
        return fixed_point.saturate(y, bits)

    return current


def _synaptic(node, x, bits, arithmetic):
    p = node.params
    if node.op == "conv2d":
        acc = arithmetic.conv2d(x, p["kernel_q"], p["strides"], p["padding"])
    elif node.op == "dense":
        acc = arithmetic.dense(x, p["kernel_q"])
    else:  # affine: a per-channel (diagonal) weight
        acc = arithmetic.integers(x) * p["kernel_q"]
    y = arithmetic.requantize(acc + p["bias_q"], p["multiplier"], p["shift"])
    return fixed_point.saturate(y, bits)


def apply_integer(node, inputs, state, bits, arithmetic):
    """One integer step of one node (the module docstring of
    `edge.integer` states the arithmetic).

    Args:
        node: a quantized node.
        inputs: the integer values of the nodes it reads.
        state: its state from the previous step (`None` at the first).
        bits: the width of currents and states.
        arithmetic: the runner's `Arithmetic`.

    Returns:
        `(value, new_state)` (`new_state` is `None` for stateless nodes).
    """
    p = node.params
    x = inputs[0]
    op = node.op
    saturate = fixed_point.saturate
    if op in ("conv2d", "dense", "affine"):
        return _synaptic(node, x, bits, arithmetic), None
    if op == "avg_pool":
        window = int(np.prod(p["pool_size"]))
        where = (p["pool_size"], p["strides"], p["padding"])
        sums = arithmetic.pool_sums(x, *where)
        counts = arithmetic.pool_counts(x, *where)
        return arithmetic.rounded_average(window * sums, counts), None
    if op == "max_pool":
        return arithmetic.max_pool(
            x, p["pool_size"], p["strides"], p["padding"]
        ), None
    if op == "flatten":
        return arithmetic.flatten(x), None
    if op == "add":
        return saturate(sum(inputs[1:], inputs[0]), bits), None
    multiply = arithmetic.decay_multiply

    def clip(u):
        return saturate(u, bits)

    if op == "neuron":
        spikes, _, state = neuron_step(
            node,
            arithmetic.integers(x),
            state,
            constants(node, multiply),
            recurrent=_recurrent(node, bits, arithmetic),
            clip_fn=clip,
            spike_fn=arithmetic.spikes_of(node),
        )
        return arithmetic.integers(spikes), state
    if op == "integrator":
        x = arithmetic.integers(x)
        v = _zeros_like(x) if state is None else state
        _, _, v = functional.neuron_step(
            x,
            v,
            0,
            FixedPointDecay(p["decay_q"], multiply),
            "none",
            clip_fn=clip,
        )
        return v, v
    raise ValueError(f"Unknown op {op!r} in node {node.name!r}")
