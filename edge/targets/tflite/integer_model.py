"""The integer TFLite step model: `edge.integer`'s arithmetic as a .tflite.

`build_integer_model(qgraph)` writes, from a `QuantizedGraph`, a TFLite
flatbuffer in TFLite's 16x8 mode (int16 activations and states, int8
weights, int64 biases) whose every tensor declares the scale of the integer
reference and whose constants are the reference's integers, so that
LiteRT and TFLite-Micro compute, bit for bit, what `edge.integer.run_integer`
computes (and the C runtime with it). The TFLite converter is not used for
it: its post-training quantization picks its own scales (8-bit states, an
asymmetric input) and could only approximate the reference.

One step, as `edge.targets.tflite.step_model` names its inputs and outputs:

```
{"x": x_q[t], "v_<neuron>": v[t-1], ...}
    ->  {"y": y[t], "v_<neuron>": v[t], ...}
```

with the int8-range input `x_q = edge.integer.quantize_input(qgraph, x_t)`
in an int16 tensor and int16 states starting at 0.

Each node becomes the TFLite ops whose integer semantics are the
reference's (`keras_snn.fixed_point`):

- conv2d: CONV_2D with per-channel int8 weights and an int64 bias; the
  declared scales give the Q31 multiplier `m << 16`, on which LiteRT and
  TFLite-Micro both compute `fixed_point.requantize` (ties up).
- dense: RESHAPE to `(1, 1, 1, C)`, a 1x1 CONV_2D, RESHAPE back: LiteRT's
  int16 FULLY_CONNECTED rounds ties away from zero, TFLite-Micro's up.
- affine: DEPTHWISE_CONV_2D 1x1 (vectors reshaped as for dense).
- avg_pool: AVERAGE_POOL_2D of spikes worth `kh kw` each: the mean of
  the window is its spike count, exactly (the reference's window sum).
- max_pool, flatten: MAX_POOL_2D, RESHAPE (no arithmetic).
- add: ADD of currents in one scale, an exact saturating sum.
- neuron: MUL by the even Q15 decay in scale `2^-15`
  (`fixed_point.decay_multiply`), ADD of the current (saturating),
  CAST to int32 and GREATER_EQUAL (TFLite-Micro compares no int16),
  SUB of the threshold for a soft reset, SELECT_V2 for the reset and for
  the spikes (worth 1, or `kh kw` before an average pool).
- integrator: MUL and ADD as the neuron.

Every activation scale is a power of two (`edge.quantize`), so each
declared weight scale `m 2^-n s_y / s_x` is a float32 and TFLite derives
from the tensors exactly the multiplier of the reference. Tests run every
op in LiteRT (default and reference kernels) and TFLite-Micro against
`edge.integer` on the quickstart and on random networks.
"""

import numpy as np

from edge import integer
from edge import neuron_models
from edge import reference
from edge.errors import UnsupportedLayerError
from edge.targets.tflite.converter import _schema
from edge.targets.tflite.step_model import INPUT
from edge.targets.tflite.step_model import OUTPUT
from edge.targets.tflite.step_model import state_name

__all__ = [
    "STATE_BITS",
    "build_integer_model",
    "initial_states",
    "run_integer_steps",
    "run_integer_tflm",
]

STATE_BITS = 16
# The neuron features (`edge.neuron_models.FEATURES`) this target has.
NEURON_FEATURES = ()


class _Writer:
    """A TFLite model under construction: tensors, buffers, operators."""

    def __init__(self, name):
        schema = self.schema = _schema()
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = b"keras_snn integer step model (16x8)"
        self.model.buffers = [schema.BufferT()]
        self.model.operatorCodes = []
        self.graph = schema.SubGraphT()
        self.graph.name = name.encode()
        self.graph.tensors = []
        self.graph.operators = []
        self.codes = {}

    def tensor(self, name, shape, dtype, scale=None, data=None, axis=0):
        """Adds a tensor; `scale` (a number or one per channel of `axis`)
        makes it quantized with zero point 0, `data` a constant."""
        schema = self.schema
        types = {
            "int8": schema.TensorType.INT8,
            "int16": schema.TensorType.INT16,
            "int32": schema.TensorType.INT32,
            "int64": schema.TensorType.INT64,
            "bool": schema.TensorType.BOOL,
        }
        tensor = schema.TensorT()
        tensor.name = name.encode()
        tensor.shape = [int(d) for d in shape]
        tensor.type = types[dtype]
        tensor.buffer = 0
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(scale)]
            quantization = schema.QuantizationParametersT()
            quantization.scale = scales
            quantization.zeroPoint = [0] * len(scales)
            quantization.quantizedDimension = axis
            tensor.quantization = quantization
        if data is not None:
            buffer = schema.BufferT()
            array = np.ascontiguousarray(np.asarray(data).astype(dtype))
            buffer.data = array.tobytes()
            self.model.buffers.append(buffer)
            tensor.buffer = len(self.model.buffers) - 1
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def op(self, name, inputs, outputs, options=None):
        """Adds an operator `name` (a `BuiltinOperator` member); `options`
        is `(OptionsT instance)` whose class names its union type."""
        schema = self.schema
        code = getattr(schema.BuiltinOperator, name)
        if code not in self.codes:
            entry = schema.OperatorCodeT()
            entry.builtinCode = code
            entry.deprecatedBuiltinCode = min(code, 127)
            entry.version = 1
            self.model.operatorCodes.append(entry)
            self.codes[code] = len(self.model.operatorCodes) - 1
        operator = schema.OperatorT()
        operator.opcodeIndex = self.codes[code]
        operator.inputs = list(inputs)
        operator.outputs = list(outputs)
        if options is not None:
            union = type(options).__name__[: -len("T")]
            operator.builtinOptionsType = getattr(schema.BuiltinOptions, union)
            operator.builtinOptions = options
        self.graph.operators.append(operator)

    def options(self, name, **values):
        """A `<name>OptionsT` with the given fields."""
        options = getattr(self.schema, f"{name}OptionsT")()
        for key, value in values.items():
            setattr(options, key, value)
        return options

    def finish(self, inputs, outputs):
        """The flatbuffer, with a signature naming `inputs` and `outputs`
        (lists of `(name, tensor)`; a tensor may carry several names)."""
        import flatbuffers

        schema = self.schema
        self.graph.inputs = [index for _, index in inputs]
        self.graph.outputs = list(dict.fromkeys(i for _, i in outputs))
        self.model.subgraphs = [self.graph]

        def entries(pairs):
            result = []
            for name, index in pairs:
                entry = schema.TensorMapT()
                entry.name = name.encode()
                entry.tensorIndex = index
                result.append(entry)
            return result

        signature = schema.SignatureDefT()
        signature.signatureKey = b"serving_default"
        signature.subgraphIndex = 0
        signature.inputs = entries(inputs)
        signature.outputs = entries(outputs)
        self.model.signatureDefs = [signature]
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _unsupported(node, what):
    return UnsupportedLayerError(
        f"Node '{node.name}' (layer '{node.layer}', {node.op}): {what} has "
        "no form in the integer TFLite model."
    )


def _padding(writer, value):
    return getattr(writer.schema.Padding, value.upper())


class _Builder:
    """Turns the nodes of a quantized graph into tensors and operators."""

    def __init__(self, qgraph):
        self.qgraph = qgraph
        self.graph = qgraph.graph
        self.writer = _Writer(self.graph.name)
        self.values = {}  # (node name, unit) -> (tensor, declared scale)
        self.states = []  # (state name, input tensor, output tensor)
        self.state_inputs = {}
        self.fires = {}  # neuron name -> its bool spike tensor

    def const(self, name, value, dtype="int16", scale=1.0):
        return self.writer.tensor(name, (1,), dtype, scale, data=[value])

    def value(self, name, unit=1):
        """The tensor holding node `name`'s integers times `unit` (spikes
        worth `unit`: an average pool needs spikes worth its window)."""
        key = (name, unit)
        if key not in self.values:
            self.values[key] = self._build(self.graph.node(name), unit)
        return self.values[key]

    def _build(self, node, unit):
        p = node.params
        writer = self.writer
        shape = (1, *node.shape)
        if node.op == "input":
            if unit != 1:
                raise _unsupported(node, "average pooling of the input")
            scale = self.qgraph.input_scale
            return writer.tensor(INPUT, shape, "int16", scale), scale
        if node.op == "neuron":
            if node.name not in self.fires:
                self.fires[node.name] = self._neuron(node)
            fire = self.fires[node.name]
            one = self.const(f"{node.name}/spike", unit)
            zero = self.const(f"{node.name}/no_spike", 0)
            spikes = writer.tensor(f"{node.name}/spikes", shape, "int16", 1.0)
            writer.op("SELECT_V2", [fire, one, zero], [spikes])
            return spikes, 1.0
        if node.op in ("max_pool", "flatten"):
            source, scale = self.value(node.inputs[0], unit)
            if node.op == "flatten":
                return self._reshape(node.name, source, shape, scale), scale
            out = writer.tensor(node.name, shape, "int16", scale)
            self._pool("MAX_POOL_2D", node, source, out)
            return out, scale
        if node.op == "avg_pool":
            count = int(np.prod(p["pool_size"]))
            source, scale = self.value(node.inputs[0], unit * count)
            out = writer.tensor(node.name, shape, "int16", scale)
            self._pool("AVERAGE_POOL_2D", node, source, out)
            return out, scale
        if unit != 1:
            raise _unsupported(node, "average pooling of currents")
        if node.op == "integrator":
            u = self._potential(node)
            self._state(node, u)
            return u, p["scale"]
        if node.op == "add":
            inputs = [self.value(name)[0] for name in node.inputs]
            out = self._sum(node.name, inputs, shape, p["scale"])
            return out, p["scale"]
        if node.op in ("conv2d", "dense", "affine"):
            return self._synaptic(node), p["scale"]
        raise _unsupported(node, f"op {node.op!r}")

    def _sum(self, name, inputs, shape, scale):
        writer = self.writer
        out = inputs[0]
        for index, other in enumerate(inputs[1:]):
            total = writer.tensor(f"{name}/sum{index}", shape, "int16", scale)
            writer.op(
                "ADD",
                [out, other],
                [total],
                writer.options("Add", potScaleInt16=False),
            )
            out = total
        return out

    def _pool(self, op, node, source, out):
        p = node.params
        writer = self.writer
        writer.op(
            op,
            [source],
            [out],
            writer.options(
                "Pool2D",
                padding=_padding(writer, p["padding"]),
                strideH=int(p["strides"][0]),
                strideW=int(p["strides"][1]),
                filterHeight=int(p["pool_size"][0]),
                filterWidth=int(p["pool_size"][1]),
            ),
        )

    def _reshape(self, name, source, shape, scale):
        writer = self.writer
        out = writer.tensor(name, shape, "int16", scale)
        new_shape = writer.tensor(
            f"{name}/shape", (len(shape),), "int32", data=shape
        )
        writer.op(
            "RESHAPE",
            [source, new_shape],
            [out],
            writer.options("Reshape", newShape=list(shape)),
        )
        return out

    def _synaptic(self, node):
        """CONV_2D or DEPTHWISE_CONV_2D; a dense layer (and an affine map
        of vectors) is a 1x1 convolution on `(1, 1, 1, C)`: LiteRT's int16
        FULLY_CONNECTED rounds ties away from zero, unlike TFLite-Micro's
        and unlike both runtimes' convolutions (ties up, `rshift_round`)."""
        p = node.params
        writer = self.writer
        source, in_scale = self.value(node.inputs[0])
        # The declared weight scale: s_x * scale / s_y == m / 2^n exactly.
        ratio = np.ldexp(p["multiplier"].astype(np.float64), -p["shift"])
        weight_scale = ratio * p["scale"] / in_scale
        if not np.array_equal(weight_scale.astype(np.float32), weight_scale):
            raise _unsupported(node, "a weight scale that is not a float32")
        bias_scale = (weight_scale * in_scale).astype(np.float32)
        channels = len(ratio)
        kernel = np.asarray(p["kernel_q"])
        vector = len(node.shape) == 1
        if vector:
            source_shape = self.graph.node(node.inputs[0]).shape
            if len(source_shape) != 1:
                raise _unsupported(node, f"an input of shape {source_shape}")
            source = self._reshape(
                f"{node.name}/image",
                source,
                (1, 1, 1, source_shape[0]),
                in_scale,
            )
        if node.op == "dense":
            kernel = kernel[None, None]
        shape = (1, 1, 1, channels) if vector else (1, *node.shape)
        name = f"{node.name}/image" if vector else node.name
        out = writer.tensor(
            name + "_out" if vector else name, shape, "int16", p["scale"]
        )
        bias = writer.tensor(
            f"{node.name}/bias", (channels,), "int64", bias_scale, p["bias_q"]
        )
        if node.op == "affine":
            weights = writer.tensor(
                f"{node.name}/kernel",
                (1, 1, 1, channels),
                "int8",
                weight_scale,
                kernel.reshape(1, 1, 1, channels),
                axis=3,
            )
            options = writer.options(
                "DepthwiseConv2D",
                padding=writer.schema.Padding.VALID,
                strideH=1,
                strideW=1,
                depthMultiplier=1,
                dilationHFactor=1,
                dilationWFactor=1,
            )
            writer.op(
                "DEPTHWISE_CONV_2D", [source, weights, bias], [out], options
            )
        else:
            ohwi = np.transpose(kernel, (3, 0, 1, 2))
            weights = writer.tensor(
                f"{node.name}/kernel", ohwi.shape, "int8", weight_scale, ohwi
            )
            options = writer.options(
                "Conv2D",
                padding=_padding(writer, p.get("padding", "valid")),
                strideH=int(p.get("strides", (1, 1))[0]),
                strideW=int(p.get("strides", (1, 1))[1]),
                dilationHFactor=1,
                dilationWFactor=1,
            )
            writer.op("CONV_2D", [source, weights, bias], [out], options)
        if vector:
            out = self._reshape(node.name, out, (1, channels), p["scale"])
        return out

    def _potential(self, node):
        """`u = saturate(decay_multiply(v, d_q) + I)`; registers the state
        input and returns `u`."""
        p = node.params
        writer = self.writer
        shape = (1, *node.shape)
        scale = p["scale"]
        current, _ = self.value(node.inputs[0])
        v = writer.tensor(state_name(node), shape, "int16", scale)
        self.state_inputs[node.name] = v
        decayed = v
        if p["decay_q"] != 1 << 15:
            decay = self.const(
                f"{node.name}/decay", p["decay_q"], "int16", 2.0**-15
            )
            decayed = writer.tensor(
                f"{node.name}/decayed", shape, "int16", scale
            )
            writer.op("MUL", [v, decay], [decayed], writer.options("Mul"))
        return self._sum(f"{node.name}/u", [decayed, current], shape, scale)

    def _state(self, node, new_state):
        self.states.append(
            (state_name(node), self.state_inputs[node.name], new_state)
        )

    def _neuron(self, node):
        """The neuron's step; returns its bool spike tensor."""
        p = node.params
        writer = self.writer
        shape = (1, *node.shape)
        scale = p["scale"]
        u = self._potential(node)
        wide = writer.tensor(f"{node.name}/u32", shape, "int32")
        writer.op("CAST", [u], [wide])
        threshold = self.const(
            f"{node.name}/threshold32", p["threshold_q"], "int32", None
        )
        fire = writer.tensor(f"{node.name}/fire", shape, "bool")
        writer.op("GREATER_EQUAL", [wide, threshold], [fire])
        new_state = writer.tensor(f"{node.name}/v", shape, "int16", scale)
        if p["reset"] == "hard":
            zero = self.const(f"{node.name}/zero", 0, "int16", scale)
            writer.op("SELECT_V2", [fire, zero, u], [new_state])
        elif p["reset"] == "soft":
            threshold16 = self.const(
                f"{node.name}/threshold", p["threshold_q"], "int16", scale
            )
            lowered = writer.tensor(
                f"{node.name}/u_minus", shape, "int16", scale
            )
            writer.op(
                "SUB",
                [u, threshold16],
                [lowered],
                writer.options("Sub", potScaleInt16=False),
            )
            writer.op("SELECT_V2", [fire, lowered, u], [new_state])
        else:
            new_state = u
        self._state(node, new_state)
        return fire


def build_integer_model(qgraph):
    """Writes the integer TFLite step model of a quantized graph.

    Args:
        qgraph: an `edge.quantize.QuantizedGraph` with 16-bit states.

    Returns:
        The .tflite model as `bytes`: inputs `x` (int16 holding the int8
        input) and the int16 states, outputs `y` and the new states.

    Raises:
        UnsupportedLayerError: `state_bits` is not 16, or a node has no
            exact TFLite form (pooling of currents, a dense layer on a
            tensor of rank above one).

    Example:

    >>> qgraph = edge.quantize.quantize(fused, x_train[:256])
    >>> model_bytes = build_integer_model(qgraph)
    """
    neuron_models.require(qgraph.graph, "tflite-int16x8", NEURON_FEATURES)
    if qgraph.state_bits != STATE_BITS:
        raise UnsupportedLayerError(
            "The integer TFLite model has 16-bit states (TFLite's 16x8 "
            f"mode). Received: state_bits={qgraph.state_bits}"
        )
    builder = _Builder(qgraph)
    output, _ = builder.value(qgraph.graph.output)
    for node in qgraph.graph.state_nodes:
        builder.value(node.name)
    inputs = [(INPUT, builder.value(qgraph.graph.nodes[0].name)[0])]
    outputs = [(OUTPUT, output)]
    for name, tensor_in, tensor_out in builder.states:
        inputs.append((name, tensor_in))
        outputs.append((name, tensor_out))
    return builder.writer.finish(inputs, outputs)


def initial_states(qgraph, batch_size=1):
    """`{state name: zeros}` (int16) for the first step."""
    return {
        state_name(node): np.zeros((batch_size, *node.shape), np.int16)
        for node in qgraph.graph.state_nodes
    }


def run_integer_steps(step_fn, qgraph, x, timesteps=None):
    """Runs an integer step model over time, sample by sample.

    The input is quantized as the integer reference does
    (`edge.integer.quantize_input`), states start at 0 and are fed back.

    Args:
        step_fn: called with `{"x": ..., "v_<node>": ...}` (int16, batch
            1), returns the dict of outputs (a `LiteRTRunner`).
        qgraph: the `QuantizedGraph` the model was built from.
        x: float inputs as for `edge.integer.run_integer`.
        timesteps: overrides the graph's `T`.

    Returns:
        `(output, raw)` as `edge.integer.run_integer`: the dequantized
        aggregated output and the integer per-step outputs `(N, T, ...)`.
    """
    steps, x_at = reference.input_steps(qgraph.graph, x, timesteps)
    raws = []
    for i in range(len(np.asarray(x))):
        states = initial_states(qgraph)
        per_step = []
        for t in range(steps):
            x_t = integer.quantize_input(qgraph, x_at(t)[i : i + 1])
            result = step_fn({INPUT: x_t.astype(np.int16), **states})
            per_step.append(np.asarray(result[OUTPUT])[0])
            states = {key: result[key] for key in states}
        raws.append(np.stack(per_step))
    return _output(qgraph, np.stack(raws).astype(np.int64))


def run_integer_tflm(model_bytes, qgraph, x, timesteps=None):
    """Runs the integer step model in the TFLite-Micro host interpreter
    (in a subprocess with a time limit, see
    `edge.targets.tflite.converter.run_tflm_arrays`).

    Returns:
        `(output, raw)` as `run_integer_steps`.

    Raises:
        ConsumerError: TFLM failed, crashed or ran past its time limit.
    """
    from edge.targets.tflite import converter

    steps, x_at = reference.input_steps(qgraph.graph, x, timesteps)
    xq = np.stack(
        [integer.quantize_input(qgraph, x_at(t)) for t in range(steps)], 1
    ).astype(np.int16)[:, :, None]
    raw = converter.run_tflm_arrays(
        model_bytes, xq, initial_states(qgraph), qgraph.graph.name
    )
    return _output(qgraph, raw.astype(np.int64))


def _output(qgraph, raw):
    values = [step * qgraph.output_scale for step in raw.swapaxes(0, 1)]
    return reference.aggregate(values, qgraph.graph.aggregate), raw
