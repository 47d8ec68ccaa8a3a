"""Synaptic operations and memory of the C runtime.

A synaptic operation is one weight applied to one input: in an
event-driven layer (spiking input) one accumulate per input that is not
zero and per output it reaches, in a multiply-accumulate layer (the int8
encoding layer) one multiply-accumulate per input, output and kernel tap
that the layer computes, zeros included; recurrent synapses are
event-driven, one accumulate per unit that spiked at the previous step and
per unit. The counts are exact (padding and strides included) and come
from the integer reference's trace, whose activity the C runtime
reproduces bit for bit.

`memory_bytes` counts what the generated C holds: the instance's state
(every membrane potential, synaptic current, adaptation and previous
spikes), the scratch arena, and the int8 weights as generated (rows
padded to whole words), recurrent weights included.
"""

import numpy as np

from edge import integer
from edge.targets.c.nodes import row_stride
from edge.targets.c.plan import Plan
from edge.targets.c.plan import pads


def _fan_out(count, kernel, stride, pad, out):
    """Outputs along one axis that each input position reaches."""
    fan = np.zeros(count, np.int64)
    for i in range(count):
        for k in range(kernel):
            t = i + pad - k
            fan[i] += t >= 0 and t % stride == 0 and t // stride < out
    return fan


def _fan_out_map(node, src_shape):
    """Synaptic operations per input element of one node, input-shaped."""
    p = node.params
    if node.op == "dense":
        return np.full(src_shape, int(node.shape[-1]), np.int64)
    if node.op == "affine":
        return np.ones(src_shape, np.int64)
    kh, kw, _, co = np.asarray(p["kernel_q"]).shape
    h, w, ci = src_shape
    oh, ow, _ = node.shape
    pt, pl = pads(node, src_shape, (kh, kw))
    fy = _fan_out(h, kh, p["strides"][0], pt, oh)
    fx = _fan_out(w, kw, p["strides"][1], pl, ow)
    per_pixel = np.outer(fy, fx) * int(co)
    return np.repeat(per_pixel[:, :, None], ci, axis=2)


def synaptic_operations(qgraph, x):
    """Mean synaptic operations per inference (all steps) on `x`.

    Args:
        qgraph: the `QuantizedGraph`.
        x: float inputs as for `edge.integer.run_integer`.

    Returns:
        `{"accumulates": ..., "macs": ..., "total": ...}`, floats: the
        mean per sample of the event-driven accumulates, of the
        multiply-accumulates and of both.

    Example:

    >>> synaptic_operations(qgraph, x_test[:4])["total"]
    """
    plan = Plan(qgraph, "model")
    _, _, trace = integer.run_integer(qgraph, x, record=True)
    counts = {"accumulates": 0.0, "macs": 0.0}
    for node in qgraph.graph.nodes:
        if node.name in plan.recurrent:  # the previous step's spikes
            units = int(node.shape[-1])
            for spikes in trace[node.name][:-1]:
                ops = np.count_nonzero(spikes) * units / len(x)
                counts["accumulates"] += float(ops)
        if node.op not in ("conv2d", "dense", "affine"):
            continue
        src = plan.source(node)
        fan = _fan_out_map(node, tuple(src.node.shape))
        for values in trace[node.inputs[0]]:  # one array (N, ...) per step
            values = np.asarray(values).reshape(len(x), *fan.shape)
            if src.spiking:
                ops = np.sum((values != 0) * fan) / len(x)
                counts["accumulates"] += float(ops)
            else:
                counts["macs"] += float(fan.sum())
    counts["total"] = counts["accumulates"] + counts["macs"]
    return counts


def memory_bytes(qgraph, name="model"):
    """The memory the generated C of `qgraph` holds, in bytes.

    Args:
        qgraph: the `QuantizedGraph`.
        name: the C name given to `generate`.

    Returns:
        A dict: `state` (`sizeof(<name>_state_t)`, one instance: RAM the
        caller owns), `states` (trace key of each state field, as
        `edge.targets.c.read_states` -> its bytes), `scratch` (the
        activation arena, recurrent accumulators included), `weights`
        (every int8 weight array in flash, rows padded to whole words)
        and `recurrent_weights` (the part of `weights` that is recurrent
        synapses).

    Example:

    >>> memory_bytes(qgraph)["state"]
    """
    plan = Plan(qgraph, name)
    fields, state = plan.state_layout()
    weights = recurrent = 0
    for node in qgraph.graph.nodes:
        p = node.params
        if node.op in ("conv2d", "dense", "affine"):
            kernel = np.asarray(p["kernel_q"])
            # As nodes.NodeWriter.synaptic lays them out: rows padded to
            # words, but for a multiply-accumulate dense layer and affine.
            rows = node.op == "conv2d" or (
                node.op == "dense" and plan.source(node).spiking
            )
            out = kernel.shape[-1]
            weights += kernel.size // out * (row_stride(out) if rows else out)
        if node.name in plan.recurrent:
            units = int(node.shape[-1])
            recurrent += units * row_stride(units)
    return {
        "state": state,
        "states": {f.key: f.nbytes for f in fields},
        "scratch": max(plan.scratch_bytes, 4),
        "weights": weights + recurrent,
        "recurrent_weights": recurrent,
    }
