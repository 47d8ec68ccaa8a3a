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

With `profile="loihi"` the model is one
`keras_snn.quantization_loihi.LoihiIntegerGraph` layer instead: the chip
layers on Loihi's fixed point (`edge.targets.loihi.quantize_loihi`'s
scales, Lava's neuron), the host encoder and readout in float;
`to_lgraph(qat_model)` gives the `LoihiGraph` of its trained weights, what
the `"loihi"` target deploys.
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
from keras_snn.quantization_loihi import LoihiIntegerGraph

__all__ = [
    "PROFILES",
    "find_integer_graph",
    "find_loihi_graph",
    "float_graph",
    "loihi_float_graph",
    "loihi_scales",
    "quantize_model",
    "to_lgraph",
    "to_qgraph",
]

PROFILES = ("int8", "loihi")


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
    return _node_dict(node, params)


def _node_dict(node, params):
    """A node as the QAT layers take it (`nodes` of their configs)."""
    return {
        "name": node.name,
        "op": node.op,
        "inputs": list(node.inputs),
        "shape": list(node.shape),
        "layer": node.layer,
        "params": params,
    }


def quantize_model(
    model,
    calibration_data=None,
    state_bits=16,
    surrogate="sigmoid",
    name=None,
    profile="int8",
):
    """A model that trains against the deployed integer arithmetic.

    Args:
        model: a trained keras_snn model (or the path of a `.keras` file)
            that `edge.export` accepts.
        calibration_data: a few hundred training inputs, as for
            `edge.export` (they choose the activation scales); required
            for `"int8"`, not used by `"loihi"` (its scales come from the
            weights).
        state_bits: width of currents and states (16, as exported;
            `"loihi"` has 24).
        surrogate: the spike surrogate of training. Defaults to
            `"sigmoid"`.
        name: the new model's name. Defaults to `"<model>_qat"`.
        profile: `"int8"`, the integer targets (TFLite int16x8, C), or
            `"loihi"`, the NetX file run by Lava.

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
    if profile not in PROFILES:
        raise ValueError(
            f"Argument `profile` must be one of {PROFILES}. Received: "
            f"profile={profile!r}"
        )
    if not hasattr(model, "layers"):
        from keras_snn import saving

        model = saving.load_model(model)
    graph = fuse.fuse(ir.extract(model))
    if profile == "loihi":
        return _loihi_model(graph, surrogate, name)
    if calibration_data is None:
        raise ExportError(
            "Argument `calibration_data` is required for profile='int8': "
            "a few hundred training inputs choose the activation scales."
        )
    calibration = quantize.check_numbers(calibration_data)
    qgraph = quantize.quantize(graph, calibration, state_bits)
    floats = {n.name: n for n in quantize.integer_form(graph).nodes}
    nodes = [_node_config(n, floats.get(n.name)) for n in qgraph.nodes]
    steps, _ = reference.input_steps(graph, calibration)
    inputs = _input(graph, steps)
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


def _input(graph, steps=None):
    shape = tuple(graph.input_shape)
    if graph.timesteps is None:
        shape = (steps, *shape)
    return keras.Input(shape, name="x")


def _loihi_model(graph, surrogate, name):
    from edge.targets.loihi import quantize_loihi
    from edge.targets.loihi.ranges import check_ranges

    lgraph = quantize_loihi(graph)
    check_ranges(lgraph)
    nodes = [_node_dict(n, dict(n.params)) for n in graph.nodes]
    keys = (
        "name kind role neuron pool pool_size scale level threshold "
        "v_decay i_decay strides padding input_shape shape flatten"
    ).split()
    layers = [{key: getattr(ly, key) for key in keys} for ly in lgraph.layers]
    layer = LoihiIntegerGraph(
        nodes,
        layers,
        output=graph.output,
        aggregate=graph.aggregate,
        timesteps=graph.timesteps,
        surrogate=surrogate,
        name="loihi_integer_graph",
    )
    inputs = _input(graph)
    return keras.Model(inputs, layer(inputs), name=name or f"{graph.name}_qat")


def _find(model, cls):
    layers = [layer for layer in model.layers if isinstance(layer, cls)]
    if len(layers) > 1:
        raise ExportError(
            f"Model '{model.name}' has {len(layers)} {cls.__name__} layers; "
            "a QAT model made by edge.qat.quantize_model has one."
        )
    return layers[0] if layers else None


def find_loihi_graph(model):
    """The `LoihiIntegerGraph` layer of a Loihi QAT model, or `None`."""
    return _find(model, LoihiIntegerGraph)


def loihi_float_graph(model):
    """The fused float graph of a Loihi QAT model's trained weights.

    Args:
        model: a model made by `quantize_model(..., profile="loihi")`.

    Returns:
        An `edge.ir.Graph`: the chip layers' kernels and biases as
        trained, the host encoder and readout as they were.
    """
    layer = find_loihi_graph(model)
    if layer is None:
        raise ExportError(
            f"Model '{model.name}' is not a Loihi QAT model (it has no "
            "LoihiIntegerGraph layer; make one with edge.qat.quantize_model"
            "(model, profile='loihi'))."
        )
    trained = layer.float_params()
    nodes = []
    for config, node in zip(layer.node_configs, layer.graph_nodes, strict=True):
        params = dict(node.params)
        params.pop("folded", None)  # its batch norms are long folded
        for (name, key), value in trained.items():
            if name == node.name:
                params[key] = value
        nodes.append(
            ir.Node(
                node.name,
                node.op,
                list(node.inputs),
                tuple(node.shape),
                params,
                config.get("layer", ""),
            )
        )
    return ir.Graph(
        nodes=nodes,
        output=layer.output_name,
        aggregate=layer.aggregate,
        timesteps=layer.timesteps,
        name=model.name,
    )


def loihi_scales(model):
    """`{synaptic node: (S, n)}` of a Loihi QAT model: its scales."""
    layer = find_loihi_graph(model)
    return {
        ly["name"]: (ly["scale"], ly["level"])
        for ly in layer.chip
        if ly["role"] == "synaptic"
    }


def to_lgraph(model):
    """The `LoihiGraph` of a Loihi QAT model's trained weights, with its
    scales as they are: what the `"loihi"` target deploys, and what its
    forward pass computes with (`run_loihi` of it equals the model's
    chip spikes)."""
    from edge.targets.loihi import quantize_loihi

    return quantize_loihi(loihi_float_graph(model), loihi_scales(model))


def find_integer_graph(model):
    """The `IntegerGraph` layer of a QAT model, or `None`."""
    return _find(model, IntegerGraph)


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
