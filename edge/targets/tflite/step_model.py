"""A one-timestep Keras model with explicit state, built from a step graph.

`build_step_model(graph)` returns a `keras.Model` that computes one time step
of the (fused) graph: inputs `x` (the step's input) and one state per
stateful node, outputs `y` (the step's output) and the new states, all
named, as a dict:

```
{"x": x_t, "v_lif": v[t-1], ...}  ->  {"y": y_t, "v_lif": v[t], ...}
```

The caller runs the time loop, feeding each new state back, and combines
the outputs as `graph.aggregate` says. This is the shape of model that
TFLite-Micro and ONNX runtimes can run (no loop or variable inside), and the
TFLite converter and tf2onnx take it as is. The neuron is written with a
comparison and selections (`keras_snn.functional.neuron_step` with
`select_ops=keras.ops`), which converts to GREATER_EQUAL and SELECT_V2.
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
    "state_name",
    "run_steps",
]

INPUT = "x"
OUTPUT = "y"
# The neuron features (`edge.neuron_models.FEATURES`) the step models have.
NEURON_FEATURES = ()


def state_name(node):
    """The input/output name of a stateful node's state."""
    return f"v_{node.name}"


class _NeuronStep(keras.layers.Layer):
    """`(current, v) -> (output, v')` of a neuron or leaky integrator."""

    def __init__(
        self,
        threshold,
        decay,
        reset,
        output_potential,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.decay = decay
        self.reset = reset
        self.output_potential = output_potential

    def call(self, current, v):
        spikes, u, v_new = functional.neuron_step(
            current,
            v,
            self.threshold,
            self.decay,
            self.reset,
            select_ops=ops,
        )
        return (u if self.output_potential else spikes), v_new


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
        `state_name(node)` for every node in `graph.state_nodes` in, `"y"`
        and the same state names out.

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
            name = state_name(node)
            inputs[name] = keras.Input(node.shape, batch_size, name=name)
            p = node.params
            layer = _NeuronStep(
                p.get("threshold", 0.0),
                p["decay"],
                p.get("reset", "none"),
                output_potential=node.op == "integrator",
                name=node.name,
            )
            values[node.name], states[name] = layer(args[0], inputs[name])
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
    """Zero states `{name: (batch, *shape)}` of every stateful node."""
    return {
        state_name(node): np.zeros((batch_size, *node.shape), "float32")
        for node in graph.state_nodes
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
