"""Folding batch normalization into the synaptic weights (Zheng et al. 2021,
Eq. 9-10), with a numerical check.

`fuse(graph)` replaces every `batch_norm` node that follows a convolution or
dense node (and is that node's only reader) by new weights and biases of
the synaptic node, `W' = f W`, `B' = f (B - mean) + beta` with
`f = scale * gamma / sqrt(var + eps)` (`keras_snn.functional.fold_batch_norm`,
the one implementation of Eq. 9-10). A batch norm that cannot be folded
(for example on a residual shortcut of spikes) becomes a per-channel
`affine` node `y = scale * x + offset`, which every exporter can express.
Both use `keras_snn.fixed_point.batch_norm_factor` and
`batch_norm_affine`, the one definition of `f` and of the folded bias.

`check_fusion(graph, fused, x)` proves the fused graph computes the same
currents as the original: it runs the original graph, feeds each fused
synaptic node the very input its original saw, and compares with what the
original batch norm produced (teacher forcing, so a spike that flips by
rounding cannot hide or fake an error).
"""

import numpy as np

from edge import reference
from edge.errors import ExportError
from keras_snn import fixed_point
from keras_snn import functional

__all__ = ["FUSION_TOLERANCE", "check_fusion", "fuse"]

FUSION_TOLERANCE = 1e-5
SYNAPTIC_OPS = ("conv2d", "dense")


def _foldable(graph, node):
    if len(node.inputs) != 1:
        return None
    producer = graph.node(node.inputs[0])
    if producer.op not in SYNAPTIC_OPS:
        return None
    if len(graph.consumers(producer.name)) != 1:
        return None
    return producer


def fuse(graph):
    """Returns a copy of `graph` with the batch norms folded away.

    Args:
        graph: an `edge.ir.Graph` from `edge.ir.extract`.

    Returns:
        A new `Graph` with no `batch_norm` node: folded into the preceding
        `conv2d`/`dense` node (same node name), or turned into an `affine`
        node. Readers of a removed node read the synaptic node instead.

    Example:

    >>> fused = edge.fuse.fuse(edge.ir.extract(model))
    """
    import dataclasses

    nodes = [dataclasses.replace(n, params=dict(n.params)) for n in graph.nodes]
    by_name = {n.name: n for n in nodes}
    renamed = {}
    kept = []
    for node in nodes:
        node.inputs = [renamed.get(name, name) for name in node.inputs]
        if node.op != "batch_norm":
            kept.append(node)
            continue
        p = node.params
        producer = _foldable(graph, graph.node(node.name))
        if producer is not None:
            target = by_name[producer.name]
            kernel, bias = functional.fold_batch_norm(
                target.params["kernel"],
                target.params["bias"],
                p["gamma"],
                p["beta"],
                p["mean"],
                p["variance"],
                p["epsilon"],
                p["scale"],
            )
            target.params.update(kernel=kernel, bias=bias)
            target.params.setdefault("folded", []).append(node.name)
            renamed[node.name] = target.name
            continue
        factor = fixed_point.batch_norm_factor(
            p["gamma"], p["variance"], p["epsilon"], p["scale"]
        )
        offset = fixed_point.batch_norm_affine(
            0.0, np.asarray(p["mean"], "float64"), p["beta"], factor
        )
        node.op = "affine"
        node.params = {
            "scale": np.asarray(factor, "float64"),
            "offset": np.asarray(offset, "float64"),
        }
        kept.append(node)
    fused = graph.replace(kept)
    fused.output = renamed.get(graph.output, graph.output)
    return fused


def check_fusion(graph, fused, x, tolerance=FUSION_TOLERANCE):
    """Checks that `fused` computes the currents of `graph` to `tolerance`.

    Every folded synaptic node is run on the input its original node saw
    while the original graph ran on `x`, and compared with the original
    batch norm's output, at every step; `affine` nodes likewise.

    Args:
        graph: the graph before fusion.
        fused: `fuse(graph)`.
        x: a batch of inputs (a few calibration samples suffice).
        tolerance: largest accepted absolute difference, relative to the
            largest current (at least 1).

    Returns:
        The largest relative difference found.

    Raises:
        ExportError: the difference exceeds `tolerance`.
    """
    _, trace = reference.run_float(graph, x, record=True)
    worst = 0.0
    for node in fused.nodes:
        bns = node.params.get("folded", [])
        if node.op == "affine":
            bns, source = [node.name], graph.node(node.name).inputs[0]
        elif bns:
            source = graph.node(node.name).inputs[0]
        else:
            continue
        expected_steps = trace[bns[-1]]
        for step, expected in enumerate(expected_steps):
            got, _ = reference.apply_float(node, [trace[source][step]], None)
            scale = max(1.0, float(np.max(np.abs(expected))))
            error = float(np.max(np.abs(got - expected))) / scale
            worst = max(worst, error)
    if worst > tolerance:
        raise ExportError(
            f"Batch-norm fusion of model '{graph.name}' changed the currents "
            f"by {worst:.3g} (relative), more than the tolerance "
            f"{tolerance:g}."
        )
    return worst
