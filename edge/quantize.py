"""Post-training quantization of a fused step graph for the integer reference.

`quantize(fused_graph, calibration_data)` runs the float reference on the
calibration data, picks the scales, and returns a `QuantizedGraph` whose
nodes carry the integer parameters that `edge.integer` defines the
arithmetic of:

- int8 weights, symmetric, one scale per output channel:
  `s_w[c] = max|W[..., c]| / 127`, `W_q = round(W / s_w)`;
- an int8 input, symmetric: `s_in` the smallest power of two with
  `max|x| / s_in <= 127 (1 + 1/64)` over the calibration data (the top
  1/65 of the range saturates rather than losing a bit);
- one fixed-point scale per neuron layer, `s_v`, the power of two at or
  above `R / (2^(B-1) - 1)`, where `R` bounds `|u|` on the calibration
  data (largest current plus largest state, and at least the threshold)
  and `B = state_bits` (16 by default): the currents into the neuron, its
  threshold (`th_q = round(theta / s_v)`) and its state live in that scale;
- the decay as an even Q15 integer (`d_q = 2 round(decay * 2^14)`), and
  so a CubaLIF's current decay and an ALIF's adaptation decay; an ALIF's
  per-spike threshold rise `step_q` in the potential's scale, and
  recurrent synapses as a dense layer on spikes into that scale
  (`edge.neuron_models` lists the models);
- per output channel `c` a requantization multiplier `m[c]` of 15 bits and
  a shift `n[c]` with `m[c] / 2^n[c] ~= s_x max|W[..., c]| / (127 s_y)`;
  the weight scale is then `s_w[c] = m[c] 2^-n[c] s_y / s_x`, so that the
  ratio `s_x s_w[c] / s_y` is `m[c] / 2^n[c]` exactly;
- the bias in the accumulator's scale, `b_q[c] = round(b[c] / (s_x s_w[c]))`
  (added before the requantization, as TFLite and CMSIS-NN do);
- the output in its own scale, the power of two at or above
  `max|y| / (2^(B-1) - 1)`.

Power-of-two activation scales make every ratio a float32 that TFLite
turns into the same multiplier (`keras_snn.fixed_point.requantize`): the
integer TFLite model (`edge.targets.tflite.integer_model`) declares these
scales and computes these integers.

`round` is `keras_snn.fixed_point.round_half_away` (ties away from zero)
everywhere, the scales are `fixed_point.power_of_two_scale`, the decay is
`fixed_point.quantize_membrane_decay`, and the multiplier is
`fixed_point.quantize_multiplier_shift`
(re-exported here as `quantize_multiplier`): the constants are rounded by
the functions of `keras_snn.fixed_point`, their one definition.

Spikes are the integers 0/1 (scale 1); an average pool outputs its window's
spike count in units of `1 / (kh kw)` (the count itself for a window inside
the input; `rounded_average(kh kw sum, n)` for a window with `n` positions
inside it, as TFLite averages spikes worth `kh kw`), so the next layer's
input scale is `1 / (kh kw)`.

Refusals (`UnsupportedLayerError`) concern the integer targets only; the
float targets never run this module.
"""

import dataclasses

import numpy as np

from edge import reference
from edge.errors import CalibrationError
from edge.errors import UnsupportedLayerError
from edge.ir import Node
from keras_snn import fixed_point
from keras_snn.fixed_point import (
    quantize_multiplier_shift as quantize_multiplier,
)

__all__ = [
    "QuantizedGraph",
    "check_numbers",
    "integer_form",
    "quantize",
    "quantize_multiplier",
]

SYNAPTIC = ("conv2d", "dense", "affine")
# The input may saturate in the top 1/65 of its calibration range (an input
# in [0, 1] keeps all 7 bits: 1.0 becomes 127/128).
INPUT_CLIP = 1.0 / 64
STATEFUL = ("neuron", "integrator")


@dataclasses.dataclass
class QuantizedGraph:
    """A step graph with integer parameters for `edge.integer.run_integer`.

    Attributes:
        graph: the fused `Graph`; the params of its synaptic and stateful
            nodes also hold the integer parameters (`kernel_q`, `bias_q`,
            `multiplier`, `shift`, `threshold_q`, `decay_q`) and `scale`
            (the scale of the node's output values).
        input_scale: `s_in` of the int8 input.
        output_scale: scale of the integer outputs.
        state_bits: width `B` of currents and membrane states.

    Example:

    >>> qgraph = quantize(edge.fuse.fuse(edge.ir.extract(model)), x_cal)
    >>> qgraph.node("lif").params["threshold_q"]
    """

    graph: object
    input_scale: float
    output_scale: float
    state_bits: int = 16

    @property
    def nodes(self):
        return self.graph.nodes

    def node(self, name):
        """The node called `name`."""
        return self.graph.node(name)


def check_numbers(data, name="calibration_data"):
    """`data` as a float32 array of finite numbers.

    Args:
        data: an array-like of inputs (calibration or evaluation data).
        name: the argument's name for the messages.

    Returns:
        A float32 NumPy array.

    Raises:
        CalibrationError: `data` is not an array of numbers (strings,
            objects, ragged lists) or holds NaN or infinity.
    """
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:
        raise CalibrationError(
            f"Argument `{name}` must be an array of numbers. Received: "
            f"{type(data).__name__} that NumPy cannot read as one ({error})"
        ) from None
    if array.dtype.kind not in "biuf":
        raise CalibrationError(
            f"Argument `{name}` must hold numbers (bool, int or float). "
            f"Received: an array of dtype {array.dtype}"
        )
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        rows = finite.reshape(len(array), -1).all(axis=1) if array.ndim else []
        bad = np.flatnonzero(~np.asarray(rows, bool))
        where = (
            f"in {len(bad)} of {len(array)} samples (the first at index "
            f"{int(bad[0])})"
            if len(bad)
            else "in the data"
        )
        raise CalibrationError(
            f"Argument `{name}` must hold finite numbers. Received: NaN or "
            f"infinity {where}"
        )
    return array


def _silent_layers(graph, trace):
    """Neuron nodes that never fire in `trace`: `["'node' (layer 'x')"]`."""
    return [
        f"'{node.name}' (layer '{node.layer}')"
        for node in graph.nodes
        if node.op == "neuron"
        and not any(np.any(step) for step in trace[node.name])
    ]


def _channel_max(kernel):
    """`max |W[..., c]|` per output channel (1 for an all-zero channel)."""
    kernel = np.asarray(kernel, np.float64)
    flat = np.abs(kernel).reshape(-1, kernel.shape[-1])
    largest = flat.max(axis=0)
    return np.where(largest > 0, largest, 1.0)


def _max_abs(values):
    return max(float(np.max(np.abs(v))) if np.size(v) else 0.0 for v in values)


def quantize(graph, calibration_data, state_bits=16):
    """Quantizes a fused graph with calibration data.

    Args:
        graph: a fused `edge.ir.Graph`.
        calibration_data: a batch of inputs as for
            `edge.reference.run_float` (a few hundred training samples).
        state_bits: width of currents and membrane states (8 to 32).
            Defaults to 16.

    Returns:
        A `QuantizedGraph`.

    Raises:
        CalibrationError: no or empty calibration data.
        UnsupportedLayerError: a structure the integer arithmetic does not
            express (e.g. pooling of currents instead of spikes).

    Example:

    >>> qgraph = edge.quantize.quantize(fused, x_train[:256])
    """
    if calibration_data is None or np.size(calibration_data) == 0:
        raise CalibrationError(
            "Quantization needs calibration data: pass a batch of training "
            "inputs (a few hundred samples)."
        )
    calibration_data = check_numbers(calibration_data)
    if not isinstance(state_bits, int) or not 8 <= state_bits <= 32:
        raise ValueError(
            "Argument `state_bits` must be an integer in [8, 32]. Received: "
            f"state_bits={state_bits!r}"
        )
    if any(node.op == "batch_norm" for node in graph.nodes):
        raise UnsupportedLayerError(
            "Fold the batch norms first (edge.fuse.fuse): the graph still "
            "has batch_norm nodes."
        )
    graph = integer_form(graph)
    _, trace = reference.run_float(graph, calibration_data, record=True)
    levels = (1 << (state_bits - 1)) - 1
    by_name = {node.name: node for node in graph.nodes}
    # Scales of the values each node outputs.
    input_scale = fixed_point.power_of_two_scale(
        _max_abs(trace[graph.nodes[0].name]), 127, INPUT_CLIP
    )
    domains = {}  # synaptic/add node -> scale it must output in

    def assign(name, scale, reader):
        node = by_name[name]
        if node.op == "add":
            domains[name] = scale
            for source in node.inputs:
                assign(source, scale, name)
        elif node.op in SYNAPTIC:
            domains[name] = scale
        else:
            raise UnsupportedLayerError(
                f"Node '{reader}' (layer '{by_name[reader].layer}') reads "
                f"'{name}' ({node.op}); the integer reference needs the "
                "input of a neuron, an add or the output to come from a "
                "conv/dense/affine layer or an add of them."
            )

    for node in graph.nodes:
        if node.op in STATEFUL:
            node.params["scale"] = fixed_point.power_of_two_scale(
                _state_bound(node, trace), levels
            )
            assign(node.inputs[0], node.params["scale"], node.name)
    output = by_name[graph.output]
    if output.op in SYNAPTIC or output.op == "add":
        output_scale = fixed_point.power_of_two_scale(
            _max_abs(trace[output.name]), levels
        )
        assign(output.name, output_scale, output.name)
    elif output.op == "integrator":
        output_scale = output.params["scale"]
    else:
        output_scale = 1.0  # spikes (or pooled spike counts)
        if output.op == "avg_pool":
            output_scale = 1.0 / int(np.prod(output.params["pool_size"]))

    scales = {graph.nodes[0].name: input_scale}
    for node in graph.nodes[1:]:
        p = node.params
        source_scale = scales.get(node.inputs[0])
        if node.op in SYNAPTIC:
            if node.name not in domains:
                raise UnsupportedLayerError(
                    f"Node '{node.name}' (layer '{node.layer}', {node.op}) "
                    "feeds neither a neuron, an add nor the output; the "
                    "integer reference cannot place its result."
                )
            try:
                _quantize_synaptic(node, source_scale, domains[node.name])
            except ValueError as error:
                raise _scale_error(graph, trace, node, error) from None
            scales[node.name] = domains[node.name]
        elif node.op == "add":
            p["scale"] = scales[node.name] = domains[node.name]
        elif node.op in STATEFUL:
            p["decay_q"] = fixed_point.quantize_membrane_decay(p["decay"])
            if node.op == "neuron":
                _quantize_neuron(node)
                scales[node.name] = 1.0
            else:
                scales[node.name] = p["scale"]
        elif node.op == "avg_pool":
            if source_scale != 1.0:
                raise UnsupportedLayerError(
                    f"Node '{node.name}' (layer '{node.layer}') pools "
                    "currents; the integer reference pools spikes only."
                )
            scales[node.name] = 1.0 / int(np.prod(p["pool_size"]))
        else:  # max_pool, flatten
            scales[node.name] = source_scale
    return QuantizedGraph(graph, input_scale, output_scale, state_bits)


def _state_bound(node, trace):
    """`R`, the bound of `|u|` that sets a stateful node's scale: the
    largest current into the membrane (a CubaLIF's filtered current, with
    the recurrent current) plus the largest state, and at least the
    largest threshold (with an ALIF's full adaptation `beta`)."""
    p = node.params
    key = f"{node.name}:current"
    current = _max_abs(trace[key] if key in trace else trace[node.inputs[0]])
    state = _max_abs(trace[f"{node.name}:state"])
    threshold = float(np.max(p.get("threshold", 0.0)))
    return max(current + state, threshold + p.get("adaptation", 0.0))


def _quantize_neuron(node):
    """The integer constants of a neuron node in its scale `p["scale"]`:
    `threshold_q`, and as the model needs `current_decay_q` (CubaLIF),
    `adaptation_decay_q` and `adaptation_step_q` (ALIF,
    `fixed_point.quantize_adaptation_step`), and the recurrent synapses as
    a dense layer on spikes (`recurrent_kernel_q`, `recurrent_multiplier`,
    `recurrent_shift`)."""
    p = node.params
    scale = p["scale"]
    p["threshold_q"] = fixed_point.quantize_threshold(p["threshold"], scale)
    if "current_decay" in p:
        p["current_decay_q"] = fixed_point.quantize_membrane_decay(
            p["current_decay"]
        )
    if "adaptation" in p:
        p["adaptation_decay_q"] = fixed_point.quantize_membrane_decay(
            p["adaptation_decay"]
        )
        p["adaptation_step_q"] = fixed_point.quantize_adaptation_step(
            p["adaptation"], p["adaptation_decay"], scale
        )
    if "recurrent_kernel" in p:
        kernel = p["recurrent_kernel"]
        synapses = Node(
            f"{node.name}_recurrent",
            "dense",
            [],
            node.shape,
            {"kernel": kernel, "bias": np.zeros(kernel.shape[-1])},
            layer=node.layer,
        )
        _quantize_synaptic(synapses, 1.0, scale)
        q = synapses.params
        p["recurrent_kernel_q"] = q["kernel_q"]
        p["recurrent_weight_scale"] = q["weight_scale"]
        p["recurrent_multiplier"] = q["multiplier"]
        p["recurrent_shift"] = q["shift"]


def integer_form(graph):
    """The fused graph rewritten into the form the integer arithmetic needs.

    Two rewrites compute the same values in float:

    - an `affine` node (a batch norm on spikes) whose only reader is a
      dense layer (also through a flatten) or a "valid" convolution is
      folded into that layer:
      `W (s x + o) + b = (W s) x + (W o + b)` (a "same" convolution pads
      the affine's output with zeros, not with `o`, so it keeps the node
      and is refused);
    - an input of an `add` that is not a current (the spikes of an
      identity shortcut) gets an identity `affine` node, which puts it in
      the add's scale like any current.

    Args:
        graph: a fused `edge.ir.Graph`.

    Returns:
        A new `Graph` (the input is not changed).
    """
    nodes = [
        dataclasses.replace(n, params=dict(n.params), inputs=list(n.inputs))
        for n in graph.nodes
    ]
    folded = set()

    def only_reader(name):
        readers = [n for n in nodes if name in n.inputs]
        return readers[0] if len(readers) == 1 else None

    for node in nodes:
        if node.op != "affine" or node.name == graph.output:
            continue
        reader = only_reader(node.name)
        scale = np.asarray(node.params["scale"], np.float64)
        offset = np.asarray(node.params["offset"], np.float64)
        layer = reader
        if reader is not None and reader.op == "flatten":
            # Flattening (H, W, C) repeats the channels' scale and offset.
            layer = only_reader(reader.name)
            repeat = int(np.prod(node.shape[:-1]))
            scale, offset = np.tile(scale, repeat), np.tile(offset, repeat)
        if layer is None or not _folds_affine(layer):
            continue
        p = layer.params
        kernel = np.asarray(p["kernel"], np.float64)
        taps = kernel.sum(axis=tuple(range(kernel.ndim - 2)))
        bias = 0.0 if p.get("bias") is None else np.asarray(p["bias"])
        p["bias"] = bias + offset @ taps
        p["kernel"] = kernel * scale[:, None]
        reader.inputs = [
            node.inputs[0] if name == node.name else name
            for name in reader.inputs
        ]
        folded.add(node.name)
    by_name = {n.name: n for n in nodes}
    result = []
    for node in nodes:
        if node.name in folded:
            continue
        if node.op == "add":
            for index, name in enumerate(node.inputs):
                if by_name[name].op in SYNAPTIC or by_name[name].op == "add":
                    continue
                channels = by_name[name].shape[-1]
                identity = Node(
                    f"{node.name}_identity{index}",
                    "affine",
                    [name],
                    by_name[name].shape,
                    {"scale": np.ones(channels), "offset": np.zeros(channels)},
                    layer=node.layer,
                )
                result.append(identity)
                node.inputs[index] = identity.name
        result.append(node)
    return graph.replace(result)


def _folds_affine(reader):
    return reader.op == "dense" or (
        reader.op == "conv2d" and reader.params.get("padding") == "valid"
    )


def _scale_error(graph, trace, node, error):
    """The error for a layer whose scales cannot be expressed; it names
    the layers that never fire in calibration, the usual cause."""
    message = (
        f"Node '{node.name}' (layer '{node.layer}') cannot be quantized: "
        f"{error}"
    )
    silent = _silent_layers(graph, trace)
    if not silent:
        return CalibrationError(
            message + " Check that the calibration data are training "
            "inputs, scaled as in training."
        )
    samples = len(trace[graph.nodes[0].name][0])
    return CalibrationError(
        f"{message} The spiking layer(s) {', '.join(silent)} never fire on "
        f"the {samples} calibration samples, so the layers after them get "
        "no input. Train the model (an untrained one is often silent), "
        "lower the threshold, or check that the calibration data are "
        "training inputs scaled as in training."
    )


def _quantize_synaptic(node, input_scale, output_scale):
    """Integer parameters of a conv/dense/affine node (module docstring)."""
    p = node.params
    if node.op == "affine":
        kernel = np.asarray(p["scale"], np.float64)[None]
        bias = p["offset"]
    else:
        kernel = np.asarray(p["kernel"], np.float64)
        bias = p["bias"]
    channels = kernel.shape[-1]
    multipliers = [
        quantize_multiplier(input_scale * largest / 127.0 / output_scale)
        for largest in _channel_max(kernel)
    ]
    multiplier = np.array([m for m, _ in multipliers], np.int64)
    shift = np.array([n for _, n in multipliers], np.int64)
    ratio = np.ldexp(multiplier.astype(np.float64), -shift)
    weight_scale = ratio * output_scale / input_scale
    kernel_q = np.clip(
        fixed_point.round_half_away(kernel / weight_scale), -127, 127
    )
    bias_q = fixed_point.round_half_away(
        np.broadcast_to(np.asarray(bias, np.float64), (channels,))
        / (weight_scale * input_scale)
    )
    if np.max(np.abs(bias_q)) >= 1 << 30:
        raise ValueError(
            f"its bias needs {int(np.max(np.abs(bias_q)))} steps of the "
            "accumulator, more than 2^30"
        )
    p["kernel_q"] = (kernel_q[0] if node.op == "affine" else kernel_q).astype(
        np.int64
    )
    p["weight_scale"] = weight_scale
    p["input_scale"] = input_scale
    p["multiplier"] = multiplier
    p["shift"] = shift
    p["bias_q"] = bias_q.astype(np.int64)
    p["scale"] = output_scale
