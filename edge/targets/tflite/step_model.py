"""A one-timestep Keras model with explicit state, built from a step graph.

`build_step_model(graph)` returns a `keras.Model` that computes one time step
of the (fused) graph: inputs `x` (the step's input) and one state per
stateful node, outputs `y` (the step's output) and the new states, all
named, as a dict:

```
{"x": x_t, "v_lif": v[t-1], ...}  ->  {"y": y_t, "v_lif": v[t], ...}
```

A neuron node has one state per entry of its `edge.neuron_models.step`
state (`state_names`): `v_<node>` the membrane and, as its model needs,
`i_<node>` the synaptic current (CubaLIF), `a_<node>` the adaptation
(ALIF) and `o_<node>` the previous step's spikes (recurrent synapses).

The caller runs the time loop, feeding each new state back, and combines
the outputs as `graph.aggregate` says. This is the shape of model that
TFLite-Micro and ONNX runtimes can run (no loop or variable inside), and the
TFLite converter and tf2onnx take it as is. A neuron is
`edge.neuron_models.step`, the code of the float reference, on float32
tensors (`keras_snn.functional`'s `neuron_step`, `cuba_step` and
`alif_step`; the recurrent synapses a MATMUL on the previous spikes); it
and a leaky integrator (`neuron_step`) fire and reset with a comparison
and selections (`select_ops=keras.ops`: GREATER_EQUAL and SELECT_V2).
The integer TFLite model is not built from it (see
`edge.targets.tflite.integer_model`).
"""

import keras
import numpy as np
from keras import ops

from edge import neuron_models
from edge.errors import UnsupportedLayerError
from keras_snn import functional

__all__ = [
    "OUTPUT",
    "INPUT",
    "build_step_model",
    "initial_states",
    "run_steps",
    "state_keys",
    "state_name",
    "state_names",
]

INPUT = "x"
OUTPUT = "y"
# The neuron features (`edge.neuron_models.FEATURES`) the step models have.
NEURON_FEATURES = ("adaptation", "channel", "current", "recurrent")
# The prefix of each state of `edge.neuron_models.step` in the names.
PREFIXES = {"v": "v", "current": "i", "adaptation": "a", "spikes": "o"}


def state_name(node, key="v"):
    """The input/output name of a stateful node's state `key` (`"v"`, the
    membrane, or another key of `edge.neuron_models.step`'s state)."""
    return f"{PREFIXES[key]}_{node.name}"


# The keys of `edge.neuron_models.step`'s state a node carries.
state_keys = neuron_models.state_keys


def state_names(node):
    """`{key: name}` of a stateful node's states (`state_keys`)."""
    return {key: state_name(node, key) for key in state_keys(node)}


def _float32(value):
    """A constant as the step model holds it: float32 (arrays broadcast
    on the channels, the last axis, or are the node's shape)."""
    if np.ndim(value) == 0:
        return float(np.float32(value))
    return np.asarray(value, np.float32)


class _NeuronStep(keras.layers.Layer):
    """`(current, states) -> (spikes, states')` of a neuron node: the
    float reference's `edge.neuron_models.step` on float32 tensors."""

    def __init__(self, node, **kwargs):
        super().__init__(**kwargs)
        self.node = node
        p = node.params
        self.constants = {
            key: _float32(p[key])
            for key in (
                "threshold",
                "decay",
                "current_decay",
                "adaptation",
                "adaptation_decay",
            )
            if key in p
        }
        kernel = p.get("recurrent_kernel")
        self.kernel = None if kernel is None else _float32(kernel)

    def _recurrent(self, spikes):
        return ops.matmul(spikes, self.kernel)

    def call(self, current, states):
        spikes, _, new = neuron_models.step(
            self.node,
            current,
            dict(states),
            self.constants,
            recurrent=None if self.kernel is None else self._recurrent,
            select_ops=ops,
        )
        return spikes, {key: new[key] for key in states}


class _IntegratorStep(keras.layers.Layer):
    """`(current, v) -> (u, v')` of a leaky integrator."""

    def __init__(self, decay, **kwargs):
        super().__init__(**kwargs)
        self.decay = _float32(decay)

    def call(self, current, v):
        _, u, v_new = functional.neuron_step(
            current, v, 0.0, self.decay, "none", select_ops=ops
        )
        return u, v_new


class _Affine(keras.layers.Layer):
    """Per-channel `x * scale + offset` with constant parameters."""

    def __init__(self, scale, offset, **kwargs):
        super().__init__(**kwargs)
        self.scale_value = np.asarray(scale, "float32")
        self.offset_value = np.asarray(offset, "float32")

    def call(self, x):
        return x * self.scale_value + self.offset_value


class _Flatten(keras.layers.Layer):
    """Reshape to `(-1, *shape)` with a constant shape: one RESHAPE op
    (Keras' Flatten and Reshape compute the batch size at run time, which
    adds SHAPE, STRIDED_SLICE and PACK ops to a TFLite graph)."""

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.target = tuple(int(d) for d in shape)

    def call(self, x):
        return ops.reshape(x, (-1, *self.target))


def _layer(node):
    """A Keras layer for a stateless node (weights set after build)."""
    p = node.params
    if node.op == "conv2d":
        kernel = p["kernel"]
        return keras.layers.Conv2D(
            kernel.shape[-1],
            kernel.shape[:2],
            strides=p["strides"],
            padding=p["padding"],
            name=node.name,
        ), [kernel, p["bias"]]
    if node.op == "dense":
        return keras.layers.Dense(p["kernel"].shape[-1], name=node.name), [
            p["kernel"],
            p["bias"],
        ]
    if node.op in ("avg_pool", "max_pool"):
        cls = (
            keras.layers.AveragePooling2D
            if node.op == "avg_pool"
            else keras.layers.MaxPooling2D
        )
        return cls(
            p["pool_size"], p["strides"], p["padding"], name=node.name
        ), None
    if node.op == "flatten":
        return _Flatten(node.shape, name=node.name), None
    if node.op == "add":
        return keras.layers.Add(name=node.name), None
    if node.op == "affine":
        return _Affine(p["scale"], p["offset"], name=node.name), None
    raise UnsupportedLayerError(
        f"Node '{node.name}' (op {node.op!r}, from layer '{node.layer}') has "
        "no step-model form; fold batch norms first (edge.fuse.fuse)."
    )


def build_step_model(graph, batch_size=1, target="tflite"):
    """Builds the one-step Keras model of a fused graph.

    Args:
        graph: a fused `edge.ir.Graph` (no `batch_norm` nodes).
        batch_size: static batch size of the inputs (1 for TFLite and the
            microcontroller runtimes), or `None` for a dynamic one.
        target: the target's name for the refusal of a neuron model the
            step model lacks (`edge.neuron_models.require`).

    Returns:
        A float32 `keras.Model` with dict inputs and outputs: `"x"` and
        the `state_names(node)` of every node in `graph.state_nodes` in,
        `"y"` and the same state names out.

    Raises:
        UnsupportedLayerError: a node has no step-model form, or a neuron
            uses a feature outside `NEURON_FEATURES`.

    Example:

    >>> step = edge.targets.tflite.step_model.build_step_model(fused)
    >>> out = step({"x": x_t, **states})
    """
    neuron_models.require(graph, target, NEURON_FEATURES)
    inputs = {
        INPUT: keras.Input(graph.input_shape, batch_size, name=INPUT),
    }
    values = {graph.nodes[0].name: inputs[INPUT]}
    states = {}
    weights = []
    for node in graph.nodes[1:]:
        args = [values[name] for name in node.inputs]
        if node.op in ("neuron", "integrator"):
            names = state_names(node)
            for name in names.values():
                inputs[name] = keras.Input(node.shape, batch_size, name=name)
            if node.op == "integrator":
                layer = _IntegratorStep(node.params["decay"], name=node.name)
                values[node.name], states[names["v"]] = layer(
                    args[0], inputs[names["v"]]
                )
                continue
            layer = _NeuronStep(node, name=node.name)
            values[node.name], new = layer(
                args[0], {key: inputs[name] for key, name in names.items()}
            )
            states.update({names[key]: value for key, value in new.items()})
            continue
        layer, layer_weights = _layer(node)
        values[node.name] = layer(args if node.op == "add" else args[0])
        if layer_weights is not None:
            weights.append((layer, layer_weights))
    for layer, layer_weights in weights:
        layer.set_weights([np.asarray(w, "float32") for w in layer_weights])
    outputs = {OUTPUT: values[graph.output], **states}
    # Identity layers give the outputs their dict names in every converter.
    outputs = {
        key: keras.layers.Identity(name=f"out_{key}")(value)
        for key, value in outputs.items()
    }
    return keras.Model(inputs, outputs, name=f"{graph.name}_step")


def initial_states(graph, batch_size):
    """Zero states `{name: (batch, *shape)}`: every state of every
    stateful node (`state_names`)."""
    return {
        name: np.zeros((batch_size, *node.shape), "float32")
        for node in graph.state_nodes
        for name in state_names(node).values()
    }


def run_steps(step_fn, graph, x, timesteps=None, states=None):
    """Runs a step function over time and aggregates its outputs.

    Args:
        step_fn: function `dict -> dict` (inputs as in `build_step_model`,
            NumPy in and out), e.g. a Keras step model's `predict_on_batch`
            or a runtime wrapper.
        graph: the step graph (for shapes, `T` and `aggregate`).
        x: input batch as for `edge.reference.run_float`.
        timesteps: overrides `graph.timesteps`.
        states: optional initial states (default zeros).

    Returns:
        `(output, per_step_outputs)`: the aggregated output and the list of
        per-step `y`.
    """
    from edge import reference

    steps, x_at = reference.input_steps(graph, x, timesteps)
    batch = len(np.asarray(x))
    states = dict(states or initial_states(graph, batch))
    outputs = []
    for t in range(steps):
        result = step_fn({INPUT: np.asarray(x_at(t), "float32"), **states})
        outputs.append(np.asarray(result[OUTPUT]))
        states = {key: result[key] for key in states}
    return reference.aggregate(outputs, graph.aggregate), outputs
