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
in an int16 tensor and int16 states starting at 0. A neuron has one state
per state of `edge.neuron_models.step` (`step_model.state_names`): the
membrane `v_<neuron>`, and as its model needs the synaptic current
`i_<neuron>` (CubaLIF), the adaptation `a_<neuron>` (ALIF, the
threshold's rise) and the previous spikes `o_<neuron>` (recurrent
synapses), each in the neuron's scale (spikes: 1).

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
  Recurrent synapses: the previous spikes through a 1x1 CONV_2D as a
  dense layer (int8 weights, zero bias) into the neuron's scale, then a
  saturating ADD to the current. CubaLIF: MUL of the synaptic current by
  its decay, ADD of the input. ALIF: the threshold `th_q + a` is an int32
  ADD (unsaturated, as in the reference) of the CAST adaptation; the
  soft reset SUBtracts its saturating int16 sum (exact where the neuron
  fires); `a` is then MUL by `rho_q`, ADD of a SELECT_V2 of the step.
  Per-channel or per-neuron thresholds and decays are constants of
  shape `(C,)` or the node's shape, broadcast by MUL, ADD, SUB and
  GREATER_EQUAL in LiteRT and TFLite-Micro alike; a decay of exactly 1
  (`2^15`, which int16 cannot hold) in some channels only is a MUL by 0
  there and a SELECT_V2 of the undecayed value.
- integrator: MUL and ADD as the neuron.

Every activation scale is a power of two (`edge.quantize`), so each
declared weight scale `m 2^-n s_y / s_x` is a float32 and TFLite derives
from the tensors exactly the multiplier of the reference. Tests run every
op in LiteRT (default and reference kernels) and TFLite-Micro against
`edge.integer` on the quickstart and on random networks, and every
neuron model's outputs and states at every step
(tests/test_edge_tflite_neuron_models.py).
"""

import numpy as np

from edge import integer
from edge import neuron_models
from edge import reference
from edge.errors import UnsupportedLayerError
from edge.targets.tflite.flatbuffer import Writer as _Writer
from edge.targets.tflite.step_model import INPUT
from edge.targets.tflite.step_model import OUTPUT
from edge.targets.tflite.step_model import state_name
from edge.targets.tflite.step_model import state_names

__all__ = [
    "STATE_BITS",
    "build_integer_model",
    "initial_states",
    "run_integer_steps",
    "run_integer_tflm",
]

STATE_BITS = 16
# The neuron features (`edge.neuron_models.FEATURES`) this target has.
NEURON_FEATURES = ("adaptation", "channel", "current", "recurrent")


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
        self.state_inputs = {}  # (node name, state key) -> input tensor
        self.fires = {}  # neuron name -> its bool spike tensor

    def const(self, name, value, dtype="int16", scale=1.0):
        """A constant: shape `(1,)` for a number, else the array's own
        shape (one per channel, or the node's shape), broadcast by the
        op."""
        value = np.asarray(value)
        shape = (1,) if value.ndim == 0 else value.shape
        return self.writer.tensor(
            name, shape, dtype, scale, data=value.reshape(shape)
        )

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
            suffix = "" if unit == 1 else f"_x{unit}"
            one = self.const(f"{node.name}/spike{suffix}", unit)
            zero = self.const(f"{node.name}/no_spike{suffix}", 0)
            spikes = writer.tensor(
                f"{node.name}/spikes{suffix}", shape, "int16", 1.0
            )
            writer.op("SELECT_V2", [fire, one, zero], [spikes])
            if unit == 1 and "recurrent_kernel_q" in p:
                self._state(node, spikes, "spikes")
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
            current, _ = self.value(node.inputs[0])
            u = self._potential(node, current)
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
        """A conv2d, dense or affine node (`_convolution`)."""
        source, in_scale = self.value(node.inputs[0])
        source_shape = self.graph.node(node.inputs[0]).shape
        return self._convolution(
            node, node.name, node.params, (source, source_shape, in_scale)
        )

    def _convolution(self, node, name, p, source, op=None):
        """CONV_2D or DEPTHWISE_CONV_2D of `source` (`(tensor, shape,
        scale)`) with the quantized weights `p` into `p["scale"]` and
        `node`'s shape; a dense layer (and an affine map of vectors) is a
        1x1 convolution on `(1, 1, 1, C)`: LiteRT's int16 FULLY_CONNECTED
        rounds ties away from zero, unlike TFLite-Micro's and unlike both
        runtimes' convolutions (ties up, `rshift_round`)."""
        writer = self.writer
        op = op or node.op
        source, source_shape, in_scale = source
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
            if len(source_shape) != 1:
                raise _unsupported(node, f"an input of shape {source_shape}")
            source = self._reshape(
                f"{name}/image",
                source,
                (1, 1, 1, source_shape[0]),
                in_scale,
            )
        if op == "dense":
            kernel = kernel[None, None]
        shape = (1, 1, 1, channels) if vector else (1, *node.shape)
        out = writer.tensor(
            f"{name}/image_out" if vector else name, shape, "int16", p["scale"]
        )
        bias = writer.tensor(
            f"{name}/bias", (channels,), "int64", bias_scale, p["bias_q"]
        )
        if op == "affine":
            weights = writer.tensor(
                f"{name}/kernel",
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
                f"{name}/kernel", ohwi.shape, "int8", weight_scale, ohwi
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
            out = self._reshape(name, out, (1, channels), p["scale"])
        return out

    def _state_input(self, node, key="v", scale=None):
        """The int16 input of a state (`state_name(node, key)`), in the
        node's scale (spikes: 1)."""
        tensor = self.writer.tensor(
            state_name(node, key),
            (1, *node.shape),
            "int16",
            node.params["scale"] if scale is None else scale,
        )
        self.state_inputs[(node.name, key)] = tensor
        return tensor

    def _state(self, node, new_state, key="v"):
        self.states.append(
            (
                state_name(node, key),
                self.state_inputs[(node.name, key)],
                new_state,
            )
        )

    def _decay(self, node, name, source, decay_q):
        """`decay_multiply(source, decay_q)`: MUL by the even Q15 decay in
        scale `2^-15` (none where it is `2^15`, the identity, which int16
        cannot hold: a SELECT_V2 keeps `source` there)."""
        writer = self.writer
        shape = (1, *node.shape)
        identity = np.asarray(decay_q) == 1 << 15
        if np.all(identity):
            return source
        factor = self.const(
            f"{name}_factor", np.where(identity, 0, decay_q), "int16", 2.0**-15
        )
        out = writer.tensor(name, shape, "int16", node.params["scale"])
        writer.op("MUL", [source, factor], [out], writer.options("Mul"))
        if not np.any(identity):
            return out
        keep = self.const(f"{name}_identity", identity, "bool", None)
        kept = writer.tensor(
            f"{name}_kept", shape, "int16", node.params["scale"]
        )
        writer.op("SELECT_V2", [keep, source, out], [kept])
        return kept

    def _potential(self, node, current):
        """`u = saturate(decay_multiply(v, d_q) + current)`; registers the
        state input `v` and returns `u`."""
        p = node.params
        v = self._state_input(node)
        decayed = self._decay(node, f"{node.name}/decayed", v, p["decay_q"])
        return self._sum(
            f"{node.name}/u", [decayed, current], (1, *node.shape), p["scale"]
        )

    def _current(self, node):
        """The current that reaches the membrane: the input, plus the
        recurrent synapses' current (a 1x1 CONV_2D of the previous spikes,
        then a saturating ADD), filtered by a CubaLIF's synaptic current
        (MUL by its decay, ADD)."""
        p = node.params
        shape = (1, *node.shape)
        scale = p["scale"]
        current, _ = self.value(node.inputs[0])
        if "recurrent_kernel_q" in p:
            spikes = self._state_input(node, "spikes", 1.0)
            synapses = {
                "kernel_q": p["recurrent_kernel_q"],
                "multiplier": p["recurrent_multiplier"],
                "shift": p["recurrent_shift"],
                "bias_q": np.zeros(node.shape[-1], np.int64),
                "scale": scale,
            }
            recurrent = self._convolution(
                node,
                f"{node.name}/recurrent",
                synapses,
                (spikes, node.shape, 1.0),
                op="dense",
            )
            current = self._sum(
                f"{node.name}/input", [current, recurrent], shape, scale
            )
        if "current_decay_q" in p:
            previous = self._state_input(node, "current")
            decayed = self._decay(
                node,
                f"{node.name}/current_decayed",
                previous,
                p["current_decay_q"],
            )
            current = self._sum(
                f"{node.name}/current", [decayed, current], shape, scale
            )
            self._state(node, current, "current")
        return current

    def _neuron(self, node):
        """The neuron's step; returns its bool spike tensor.

        `u` is compared in int32 (CAST) with the threshold, an ALIF's
        `th_q + a` (ADD of int32, unsaturated as in the reference); the
        soft reset subtracts the int16 threshold (an ALIF's saturated: it
        fires only where `th_q + a <= u` fits int16)."""
        p = node.params
        writer = self.writer
        name = node.name
        shape = (1, *node.shape)
        scale = p["scale"]
        u = self._potential(node, self._current(node))
        wide = writer.tensor(f"{name}/u32", shape, "int32")
        writer.op("CAST", [u], [wide])
        threshold32 = self.const(
            f"{name}/threshold32", p["threshold_q"], "int32", None
        )
        threshold16 = None
        if p["reset"] == "soft":
            threshold16 = self.const(
                f"{name}/threshold", p["threshold_q"], "int16", scale
            )
        adaptive = "adaptation_step_q" in p
        if adaptive:
            a = self._state_input(node, "adaptation")
            a32 = writer.tensor(f"{name}/a32", shape, "int32")
            writer.op("CAST", [a], [a32])
            theta32 = writer.tensor(f"{name}/theta32", shape, "int32")
            writer.op(
                "ADD", [threshold32, a32], [theta32], writer.options("Add")
            )
            threshold32 = theta32
            if threshold16 is not None:
                threshold16 = self._sum(
                    f"{name}/theta", [threshold16, a], shape, scale
                )
        fire = writer.tensor(f"{name}/fire", shape, "bool")
        writer.op("GREATER_EQUAL", [wide, threshold32], [fire])
        new_state = writer.tensor(f"{name}/v", shape, "int16", scale)
        if p["reset"] == "hard":
            zero = self.const(f"{name}/zero", 0, "int16", scale)
            writer.op("SELECT_V2", [fire, zero, u], [new_state])
        elif p["reset"] == "soft":
            lowered = writer.tensor(f"{name}/u_minus", shape, "int16", scale)
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
        if adaptive:
            self._adaptation(node, fire, a)
        return fire

    def _adaptation(self, node, fire, a):
        """`a = saturate(decay_multiply(a, rho_q) + step_q o)`: MUL, a
        SELECT_V2 of the step (held in int16: `a >= 0`, so a larger step
        saturates the same), ADD."""
        p = node.params
        name = node.name
        shape = (1, *node.shape)
        scale = p["scale"]
        decayed = self._decay(
            node, f"{name}/a_decayed", a, p["adaptation_decay_q"]
        )
        step = self.const(
            f"{name}/a_step",
            min(int(p["adaptation_step_q"]), (1 << 15) - 1),
            "int16",
            scale,
        )
        zero = self.const(f"{name}/a_no_step", 0, "int16", scale)
        rise = self.writer.tensor(f"{name}/a_rise", shape, "int16", scale)
        self.writer.op("SELECT_V2", [fire, step, zero], [rise])
        self._state(
            node,
            self._sum(f"{name}/a", [decayed, rise], shape, scale),
            "adaptation",
        )


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
    """`{state name: zeros}` (int16) for the first step: every state of
    every stateful node (`step_model.state_names`)."""
    return {
        name: np.zeros((batch_size, *node.shape), np.int16)
        for node in qgraph.graph.state_nodes
        for name in state_names(node).values()
    }


def run_integer_steps(step_fn, qgraph, x, timesteps=None, record=False):
    """Runs an integer step model over time, sample by sample.

    The input is quantized as the integer reference does
    (`edge.integer.quantize_input`), states start at 0 and are fed back.

    Args:
        step_fn: called with `{"x": ..., "v_<node>": ...}` (int16, batch
            1), returns the dict of outputs (a `LiteRTRunner`).
        qgraph: the `QuantizedGraph` the model was built from.
        x: float inputs as for `edge.integer.run_integer`.
        timesteps: overrides the graph's `T`.
        record: also return every state after every step.

    Returns:
        `(output, raw)` as `edge.integer.run_integer`: the dequantized
        aggregated output and the integer per-step outputs `(N, T, ...)`;
        with `record=True`, `(output, raw, states)`, `states` mapping each
        state name to its integers after every step, `(N, T, ...)` int64.
    """
    steps, x_at = reference.input_steps(qgraph.graph, x, timesteps)
    runs = {}
    for i in range(len(np.asarray(x))):
        states = initial_states(qgraph)
        per_step = {}
        for t in range(steps):
            x_t = integer.quantize_input(qgraph, x_at(t)[i : i + 1])
            result = step_fn({INPUT: x_t.astype(np.int16), **states})
            states = {key: result[key] for key in states}
            for key in (OUTPUT, *states):
                per_step.setdefault(key, []).append(np.asarray(result[key])[0])
        for key, values in per_step.items():
            runs.setdefault(key, []).append(np.stack(values))
    runs = {
        key: np.stack(value).astype(np.int64) for key, value in runs.items()
    }
    output, raw = _output(qgraph, runs.pop(OUTPUT))
    return (output, raw, runs) if record else (output, raw)


def run_integer_tflm(model_bytes, qgraph, x, timesteps=None, record=False):
    """Runs the integer step model in the TFLite-Micro host interpreter
    (in a subprocess with a time limit, see
    `edge.targets.tflite.converter.run_tflm_arrays`).

    Args:
        model_bytes: the model of `build_integer_model(qgraph)`.
        qgraph: the `QuantizedGraph`.
        x: float inputs as for `edge.integer.run_integer`.
        timesteps: overrides the graph's `T`.
        record: also return every state after every step.

    Returns:
        `(output, raw)` as `run_integer_steps`; with `record=True`,
        `(output, raw, states)`, `states` mapping each state name to its
        integers after every step, `(N, T, ...)` int64.

    Raises:
        ConsumerError: TFLM failed, crashed or ran past its time limit.
    """
    from edge.targets.tflite import converter

    steps, x_at = reference.input_steps(qgraph.graph, x, timesteps)
    xq = np.stack(
        [integer.quantize_input(qgraph, x_at(t)) for t in range(steps)], 1
    ).astype(np.int16)[:, :, None]
    raw = converter.run_tflm_arrays(
        model_bytes,
        xq,
        initial_states(qgraph),
        qgraph.graph.name,
        record=record,
    )
    if not record:
        return _output(qgraph, raw.astype(np.int64))
    raw, states = raw
    output, raw = _output(qgraph, raw.astype(np.int64))
    states = {key: value.astype(np.int64) for key, value in states.items()}
    return output, raw, states


def _output(qgraph, raw):
    values = [step * qgraph.output_scale for step in raw.swapaxes(0, 1)]
    return reference.aggregate(values, qgraph.graph.aggregate), raw
