"""Quantization-aware training of keras_snn models against edge's integers.

`quantize_model(model, calibration_data)` quantizes a trained keras_snn
model as `edge.export` does (`edge.ir`, `edge.fuse`, `edge.quantize`: batch
norms folded, every scale chosen on the calibration data) and returns a
Keras model made of one `keras_snn.quantization.IntegerGraph` layer, whose
forward pass is the integer reference's (`edge.integer`) bit for bit and
which fine-tunes with `fit` (straight-through gradients, the spike
surrogate). `to_qgraph(qat_model)` gives back the `QuantizedGraph` of its
trained weights, with its scales as they are: what the integer targets
deploy.
"""

import keras
import numpy as np

from edge import fuse
from edge import ir
from edge import quantize
from edge import reference
from edge.errors import ExportError
from keras_snn.quantization import SYNAPTIC
from keras_snn.quantization import IntegerGraph

__all__ = ["find_integer_graph", "float_graph", "quantize_model", "to_qgraph"]


def _node_config(node, float_node):
    params = dict(node.params)
    if node.op in SYNAPTIC:
        if node.op == "affine":  # the quantizer keeps the factor as "scale"
            params["kernel"] = np.asarray(float_node.params["scale"])
            params["bias"] = np.asarray(float_node.params["offset"])
            params["scale"] = node.params["scale"]
        params.pop("kernel_q", None)
        params.pop("bias_q", None)
    params.pop("recurrent_kernel_q", None)
    return {
        "name": node.name,
        "op": node.op,
        "inputs": list(node.inputs),
        "shape": list(node.shape),
        "layer": node.layer,
        "params": params,
    }


def quantize_model(
    model, calibration_data, state_bits=16, surrogate="sigmoid", name=None
):
    """A model that trains against the deployed integer arithmetic.

    Args:
        model: a trained keras_snn model (or the path of a `.keras` file)
            that `edge.export` accepts.
        calibration_data: a few hundred training inputs, as for
            `edge.export` (they choose the activation scales).
        state_bits: width of currents and states (16, as exported).
        surrogate: the spike surrogate of training. Defaults to
            `"sigmoid"`.
        name: the new model's name. Defaults to `"<model>_qat"`.

    Returns:
        A `keras.Model` with one `IntegerGraph` layer: same inputs and
        output shape as `model`; compile and `fit` it to fine-tune.

    Raises:
        UnsupportedLayerError, CalibrationError: as `edge.export`.

    Example:

    >>> qat = edge.qat.quantize_model(model, x_train[:500])
    >>> qat.compile("adam", loss)
    >>> qat.fit(x_train, y_train, epochs=2)
    >>> edge.export(qat, "out", calibration_data=x_train[:500])
    """
    graph = fuse.fuse(ir.extract(model))
    calibration = quantize.check_numbers(calibration_data)
    qgraph = quantize.quantize(graph, calibration, state_bits)
    floats = {n.name: n for n in quantize.integer_form(graph).nodes}
    nodes = [_node_config(n, floats.get(n.name)) for n in qgraph.nodes]
    steps, _ = reference.input_steps(graph, calibration)
    shape = tuple(graph.input_shape)
    if graph.timesteps is None:
        shape = (steps, *shape)
    inputs = keras.Input(shape, name="x")
    layer = IntegerGraph(
        nodes,
        output=graph.output,
        aggregate=graph.aggregate,
        timesteps=graph.timesteps,
        input_scale=qgraph.input_scale,
        output_scale=qgraph.output_scale,
        state_bits=qgraph.state_bits,
        surrogate=surrogate,
        name="integer_graph",
    )
    return keras.Model(inputs, layer(inputs), name=name or f"{graph.name}_qat")


def find_integer_graph(model):
    """The `IntegerGraph` layer of a QAT model, or `None`."""
    layers = [
        layer for layer in model.layers if isinstance(layer, IntegerGraph)
    ]
    if len(layers) > 1:
        raise ExportError(
            f"Model '{model.name}' has {len(layers)} IntegerGraph layers; a "
            "QAT model made by edge.qat.quantize_model has one."
        )
    return layers[0] if layers else None


def to_qgraph(model):
    """The `QuantizedGraph` of a QAT model's trained weights.

    Args:
        model: a model made by `quantize_model` (or its `IntegerGraph`).

    Returns:
        An `edge.quantize.QuantizedGraph` with the integers the model's
        forward pass computes with, and its scales as they are.
    """
    layer = model if isinstance(model, IntegerGraph) else None
    if layer is None:
        layer = find_integer_graph(model)
    if layer is None:
        raise ExportError(
            f"Model '{model.name}' is not a QAT model (it has no "
            "IntegerGraph layer; make one with edge.qat.quantize_model)."
        )
    params = layer.quantized_params()
    nodes = [
        ir.Node(
            config["name"],
            config["op"],
            list(config["inputs"]),
            tuple(config["shape"]),
            params[config["name"]],
            config.get("layer", ""),
        )
        for config in layer.node_configs
    ]
    graph = ir.Graph(
        nodes=nodes,
        output=layer.output_name,
        aggregate=layer.aggregate,
        timesteps=layer.timesteps,
        name=getattr(model, "name", layer.name),
    )
    return quantize.QuantizedGraph(
        graph, layer.input_scale, layer.output_scale, layer.state_bits
    )


def float_graph(qgraph):
    """The float step graph whose weights are the QAT model's integers
    times their scales: what the float targets (and the float reference)
    run for a QAT model.

    Args:
        qgraph: `to_qgraph(model)`.

    Returns:
        An `edge.ir.Graph` without batch norms.
    """
    nodes = []
    for node in qgraph.nodes:
        p = dict(node.params)
        p.pop("folded", None)  # its batch norms are long folded
        if node.op in SYNAPTIC:
            kernel = p["kernel_q"] * p["weight_scale"]
            bias = p["bias_q"] * p["weight_scale"] * p["input_scale"]
            if node.op == "affine":
                p["scale"], p["offset"] = kernel, bias
            else:
                p["kernel"], p["bias"] = kernel, bias
        elif "recurrent_kernel_q" in p:
            p["recurrent_kernel"] = (
                p["recurrent_kernel_q"] * p["recurrent_weight_scale"]
            )
        nodes.append(
            ir.Node(node.name, node.op, node.inputs, node.shape, p, node.layer)
        )
    return qgraph.graph.replace(nodes)
