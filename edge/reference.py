"""Reference simulators of a step graph: float (NumPy) and the shared loop.

`run_float(graph, x)` runs an `edge.ir.Graph` in float64 NumPy, step by
step, with the neuron equations of `keras_snn.functional.neuron_step` (the
one definition used by the Keras layers too). It checks batch-norm fusion,
produces the calibration statistics for quantization and the
representative data for TFLite, and is the float model the integer models
are compared with.

`simulate(...)` is the time loop shared by the float and the integer
reference (`edge.quantize.run_integer`): per step, every node is applied in
order by an `apply(node, inputs, state)` function, and the per-step outputs
are combined as the graph's `aggregate` says.
"""

import numpy as np

from edge import kernels
from edge import neuron_models
from edge.errors import CalibrationError
from keras_snn import fixed_point
from keras_snn import functional

__all__ = ["aggregate", "input_steps", "run_float", "simulate"]


def input_steps(graph, x, timesteps=None):
    """Validates `x` and returns `(T, step_fn)` with `step_fn(t) -> x_t`.

    Args:
        graph: the `Graph`.
        x: `(N, *input_shape)` for a direct-encoding model (repeated over
            `T` steps) or `(N, T, *input_shape)` for a sequence model.
        timesteps: overrides `graph.timesteps` (a model with an encoder);
            a sequence model's `T` is the length of `x`'s time axis.

    Raises:
        CalibrationError: `x` has the wrong shape, or `T` is unknown.
    """
    x = np.asarray(x)
    shape = tuple(graph.input_shape)
    # A sequence model (no encoder: `graph.timesteps` is None) reads its
    # steps from `x`'s time axis, whatever `timesteps` says.
    direct = graph.timesteps is not None or (
        timesteps is not None and x.ndim == len(shape) + 1
    )
    if direct:
        steps = timesteps or graph.timesteps
        if x.shape[1:] != shape:
            raise CalibrationError(
                f"Model '{graph.name}' takes inputs of shape (batch, "
                f"{', '.join(map(str, shape))}). Received: x.shape="
                f"{x.shape}"
            )
        return int(steps), lambda t: x
    if x.ndim != len(shape) + 2 or x.shape[2:] != shape:
        raise CalibrationError(
            f"Model '{graph.name}' takes sequences of shape (batch, time, "
            f"{', '.join(map(str, shape))}). Received: x.shape={x.shape}"
        )
    return x.shape[1], lambda t: x[:, t]


def aggregate(outputs, how):
    """Combines per-step outputs `[(N, ...)] * T` as `Graph.aggregate`."""
    stacked = np.stack(outputs, axis=1)
    if how == "mean":
        return stacked.mean(axis=1)
    if how == "last":
        return stacked[:, -1]
    if how == "max":
        return stacked.max(axis=1)
    return stacked


def simulate(nodes, output, x_at, timesteps, apply, record=False):
    """Runs `nodes` for `timesteps` steps; the loop of every reference.

    Args:
        nodes: the graph's nodes; `nodes[0]` is the input.
        output: name of the output node.
        x_at: function `t -> (N, *input_shape)` input of step `t`.
        timesteps: int `T`.
        apply: function `(node, inputs, state) -> (value, new_state)`;
            `state` is `None` at the first step and for stateless nodes.
        record: also return every node's value at every step.

    Returns:
        `(outputs, trace)`: the list of per-step outputs, and (if `record`)
        a dict node name -> list of per-step values (else `None`); the
        states after each step are under `"<node name>:state"` (a neuron's
        membrane; its other states under `"<node name>:<key>"`, the keys
        of `edge.neuron_models.step`).
    """
    states = {}
    outputs = []
    trace = {node.name: [] for node in nodes} if record else None
    for t in range(timesteps):
        values = {nodes[0].name: x_at(t)}
        for node in nodes[1:]:
            inputs = [values[name] for name in node.inputs]
            value, state = apply(node, inputs, states.get(node.name))
            if state is not None:
                states[node.name] = state
                if record:
                    _record_state(trace, node.name, state)
            values[node.name] = value
        outputs.append(values[output])
        if record:
            for name, value in values.items():
                trace[name].append(value)
    return outputs, trace


def _record_state(trace, name, state):
    """`"<name>:state"` is the membrane; a neuron's dict state adds
    `"<name>:<key>"` for its other entries (`edge.neuron_models.step`)."""
    if not isinstance(state, dict):
        trace.setdefault(f"{name}:state", []).append(state)
        return
    for key, value in state.items():
        label = "state" if key == "v" else key
        trace.setdefault(f"{name}:{label}", []).append(value)


def apply_float(node, inputs, state):
    """One float64 step of one node (see `simulate`)."""
    p = node.params
    x = inputs[0]
    op = node.op
    if op == "conv2d":
        return kernels.conv2d(
            x, p["kernel"], p["bias"], p["strides"], p["padding"]
        ), None
    if op == "dense":
        return kernels.dense(x, p["kernel"], p["bias"]), None
    if op == "avg_pool":
        return kernels.avg_pool2d(
            x, p["pool_size"], p["strides"], p["padding"]
        ), None
    if op == "max_pool":
        return kernels.max_pool2d(
            x, p["pool_size"], p["strides"], p["padding"]
        ), None
    if op == "flatten":
        return x.reshape(len(x), -1), None
    if op == "add":
        return sum(inputs[1:], inputs[0]), None
    if op == "affine":
        return x * p["scale"] + p["offset"], None
    if op == "batch_norm":
        return batch_norm(x, p), None
    if op == "neuron":
        kernel = p.get("recurrent_kernel")
        spikes, _, state = neuron_models.step(
            node,
            np.asarray(x, np.float64),
            state,
            p,
            recurrent=None if kernel is None else lambda o: o @ kernel,
        )
        return spikes, state
    if op == "integrator":
        v = np.zeros_like(x, dtype=np.float64) if state is None else state
        _, u, v = functional.neuron_step(x, v, 0.0, p["decay"], "none")
        return u, v
    raise ValueError(f"Unknown op {op!r} in node {node.name!r}")


def batch_norm(x, p):
    """Inference batch norm `scale * gamma (x - mean)/sqrt(var+eps) + beta`
    (Zheng et al. 2021, Eq. 8 with the moving statistics)."""
    factor = fixed_point.batch_norm_factor(
        p["gamma"], p["variance"], p["epsilon"], p["scale"]
    )
    return fixed_point.batch_norm_affine(x, p["mean"], p["beta"], factor)


def run_float(graph, x, timesteps=None, record=False):
    """Runs `graph` in float64 NumPy.

    Args:
        graph: an `edge.ir.Graph` (fused or not).
        x: input batch: `(N, *input_shape)` for direct encoding, or
            `(N, T, *input_shape)`.
        timesteps: overrides `graph.timesteps`.
        record: also return the per-node, per-step values.

    Returns:
        The aggregated output (`(N, ...)`, or `(N, T, ...)` for
        `aggregate="sequence"`); with `record=True`, `(output, trace)`.

    Example:

    >>> scores = edge.reference.run_float(edge.fuse.fuse(graph), x_test)
    """
    steps, x_at = input_steps(graph, x, timesteps)

    def at(t):
        return np.asarray(x_at(t), np.float64)

    outputs, trace = simulate(
        graph.nodes, graph.output, at, steps, apply_float, record
    )
    result = aggregate(outputs, graph.aggregate)
    return (result, trace) if record else result
