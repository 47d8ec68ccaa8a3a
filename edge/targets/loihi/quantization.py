"""Loihi 2's fixed point: the quantized network (`LoihiGraph`); its range
checks are in `edge.targets.loihi.ranges`.

See `edge.targets.loihi` for the conventions.
"""

import dataclasses
import math

import numpy as np

from edge import kernels
from edge import neuron_models
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from keras_snn import loihi_fixed_point
from keras_snn.fixed_point import quantize_decay
from keras_snn.loihi_fixed_point import ACT_SHIFT  # noqa: F401 (re-export)
from keras_snn.loihi_fixed_point import BIAS_MAX
from keras_snn.loihi_fixed_point import BIAS_MIN  # noqa: F401 (re-export)
from keras_snn.loihi_fixed_point import DECAY_SHIFT
from keras_snn.loihi_fixed_point import DECAY_UNITY
from keras_snn.loihi_fixed_point import STATE_BITS  # noqa: F401 (re-export)
from keras_snn.loihi_fixed_point import STATE_LIMIT  # noqa: F401 (re-export)
from keras_snn.loihi_fixed_point import WEIGHT_MANTISSA
from keras_snn.loihi_fixed_point import fold_average_pool

__all__ = [
    "LAVA_SAMPLES",
    "LoihiGraph",
    "LoihiLayer",
    "quantize_loihi",
]


# Loihi's fixed point (PyLifModelBitAcc and AbstractPyLifModelFixed): the
# arithmetic is `keras_snn.loihi_fixed_point`, shared with Loihi QAT.
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # NetX file weights (lava-dl #170)
WEIGHT_LIMIT = 2 * WEIGHT_MANTISSA  # |w| of the weights written here (even)
VTH_MAX = 131071  # 17-bit unsigned threshold mantissa
V_DECAY_MAX = 4095  # 12-bit dv
NETX_FILE = "model_loihi.net"
LAVA_SAMPLES = 16  # evaluation samples run in Lava by export_target
LAVA_TIMEOUT = 600
# The neuron features (`edge.neuron_models.FEATURES`) this target has.
# "current": CubaLIF's current is Loihi's `u` (`iDecay`); "recurrent": a
# NetX `dense_rec` layer; "channel": a per-channel threshold (one scale per
# output channel; per-channel decays are refused by `_uniform`). ALIF is
# refused: NetX's CUBA neuron has a fixed threshold.
NEURON_FEATURES = ("channel", "current", "recurrent")
LAVA_PYTHON_ENV = "KERAS_SNN_LAVA_PYTHON"
SYNAPTIC = ("conv2d", "dense")


# -- the quantized network -------------------------------------------------
@dataclasses.dataclass
class LoihiLayer:
    """One NetX CUBA layer: a synapse (`dense` or `conv`) and its neurons.

    Weights are stored in the reference's layout (Keras': conv
    `(kh, kw, in, out)`, dense `(in, out)` with the rows in the HWC flatten
    order of the input); `write_netx` converts them to NetX's.

    Attributes:
        name: the graph node(s) it came from.
        kind: `"dense"` or `"conv"`.
        weight: int64 weights in file units.
        bias: int64 bias mantissas, one per output channel.
        threshold: `vThMant` (fires when `v > threshold << 6`).
        v_decay: `vDecay` (0 to 4095).
        i_decay: `iDecay` (4096: the current is the instantaneous input;
            `round((1 - a) 4096)` for a CubaLIF's current decay `a`).
        weight_rec: `None`, or the int64 recurrent weights `(units,
            units)` in file units (`o[t-1] @ weight_rec`): a NetX
            `dense_rec` layer.
        strides: conv strides `(sh, sw)`.
        padding: symmetric conv padding `(ph, pw)`.
        input_shape: per-step shape of the input spikes (HWC, or `(n,)`).
        shape: per-step shape of the output spikes.
        flatten: the input is an HWC map that the layer flattens.
        scale: `S`, file units per float unit (`None` for an OR layer;
            one per output channel for a per-channel threshold).
        level: `n = S theta`, the threshold in file units (`None` for an
            OR layer).
        neuron: the neuron node (`None` for an OR layer).
        pool: the average pool node folded into the weights, or `None`.
        pool_size: that pool's (or the OR's max pool's) `(kh, kw)`.
        role: `"synaptic"`, or `"max_pool"` for the OR of a max pool.
    """

    name: str
    kind: str
    weight: np.ndarray
    bias: np.ndarray
    threshold: int
    v_decay: int
    input_shape: tuple
    shape: tuple
    i_decay: int = DECAY_UNITY
    weight_rec: np.ndarray = None
    strides: tuple = (1, 1)
    padding: tuple = (0, 0)
    flatten: bool = False
    scale: float = None
    level: int = None
    role: str = "synaptic"
    neuron: str = None
    pool: str = None
    pool_size: tuple = None


@dataclasses.dataclass
class LoihiGraph:
    """A fused step graph split into host encoder, chip layers and readout.

    Attributes:
        graph: the fused float `Graph`.
        encoder: graph nodes run on the host (input to the first neuron).
        layers: the chip's `LoihiLayer`s, in order.
        decoder: graph nodes after the last neuron (host readout).
        input_shape: per-step shape of the encoder's spikes.
        output_node: name of the last neuron node (the chip's output).
    """

    graph: object
    encoder: list
    layers: list
    decoder: list
    input_shape: tuple
    output_node: str

    @property
    def depth(self):
        """Steps of delay of the chip: one per layer."""
        return len(self.layers)

    @property
    def output_shape(self):
        return self.layers[-1].shape

    @staticmethod
    def reset_interval(timesteps):
        """`R`: the power of two >= `timesteps` (Loihi's reset interval)."""
        return 1 << max(0, math.ceil(math.log2(max(int(timesteps), 1))))

    def ranges(self):
        """Ranges of the integer parameters, for reports."""
        weights = np.concatenate(
            [
                np.ravel(w)
                for ly in self.layers
                for w in (ly.weight, ly.weight_rec)
                if w is not None
            ]
        )
        biases = np.concatenate([ly.bias.ravel() for ly in self.layers])
        return {
            "weight_range": [int(weights.min()), int(weights.max())],
            "bias_range": [int(biases.min()), int(biases.max())],
            "vThMant": [int(ly.threshold) for ly in self.layers],
            "vDecay": [int(ly.v_decay) for ly in self.layers],
            "iDecay": [int(ly.i_decay) for ly in self.layers],
        }


def _refuse(node, reason):
    kind = node.op
    if node.op == "neuron":  # the Keras class: LIF, IF, CubaLIF, ALIF
        kind = node.params.get("model", "neuron")
    return UnsupportedLayerError(
        f"Layer '{node.layer or node.name}' ({kind}) cannot be exported "
        f"to Loihi: {reason}"
    )


def _symmetric_padding(node, padding, size, kernel, stride):
    """NetX's `(ph, pw)` for Keras padding, or a refusal."""
    if padding == "valid":
        return (0, 0)
    pads = []
    for axis in range(2):
        before, after = kernels.same_padding(
            size[axis], kernel[axis], stride[axis]
        )
        if before != after:
            raise _refuse(
                node,
                f"padding='same' pads axis {axis} by ({before}, {after}), "
                "but NetX convolutions pad both sides equally; use "
                "padding='valid' or sizes that pad evenly",
            )
        pads.append(before)
    return tuple(pads)


def _columns(array):
    """`max |w|` per output channel (the last axis) of a weight array."""
    array = np.abs(np.asarray(array, np.float64))
    return np.max(array.reshape(-1, array.shape[-1]), axis=0)


def _layer_scale(node, weight, bias, threshold, recurrent=None):
    """The scale `S = n / theta` and `n` (see module docstring).

    `theta` may be one threshold per output channel: then `S` is one
    scale per channel (a neuron's potential may be scaled on its own, the
    spikes do not change) and `n` is common, Loihi's one `vThMant`.
    """
    largest = _columns(weight)
    if recurrent is not None:
        largest = np.maximum(largest, _columns(recurrent))
    if not np.any(largest > 0):
        raise _refuse(node, "all its weights are zero")
    theta = np.broadcast_to(np.asarray(threshold, np.float64), largest.shape)
    with np.errstate(divide="ignore"):
        limits = [theta * WEIGHT_LIMIT / largest, [VTH_MAX]]
        if np.any(bias != 0):
            limits.append(theta * BIAS_MAX / np.abs(np.asarray(bias)))
    n = max(1, math.floor(min(np.min(limit) for limit in limits)))
    return n / np.asarray(threshold, np.float64), n


def _uniform(neuron, name, default):
    """A decay of one value per layer (NetX's `vDecay`/`iDecay` are)."""
    value = neuron.params.get(name, default)
    values = np.unique(np.asarray(value, np.float64))
    if values.size > 1:
        raise _refuse(
            neuron,
            f"{name} differs between channels or neurons, but NetX's CUBA "
            "neuron (lava-dl 0.6.0, lava-nc 0.10.0 LIF: scalar du and dv) "
            "has one vDecay and one iDecay per layer; train it with one "
            f"{name} per layer",
        )
    return float(values[0])


def _channel_threshold(neuron, channels):
    """The threshold: a float, or one per output channel."""
    threshold = np.asarray(neuron.params["threshold"], np.float64)
    if threshold.ndim == 0:
        return float(threshold)
    per_channel = threshold.reshape(-1, channels)
    if np.any(per_channel != per_channel[:1]):
        raise _refuse(
            neuron,
            "its threshold differs between the positions of a channel "
            "(trainable_threshold='neuron' on a conv layer): NetX has one "
            "vThMant per layer, and a per-channel threshold is mapped by "
            "scaling each output channel, which a convolution's shared "
            "weights cannot do per position; use trainable_threshold="
            "'channel'",
        )
    return per_channel[0]


def _check_neuron(node, neuron, bias, current_decay):
    """Refusals of the neuron models Loihi's CUBA neuron cannot run."""
    p = neuron.params
    if p["reset"] != "hard":
        raise _refuse(
            neuron,
            f"reset={p['reset']!r}: Loihi's CUBA neuron resets to zero "
            "(reset='hard'); retrain with hard reset",
        )
    if current_decay != 0 and np.any(np.asarray(bias) != 0):
        raise _refuse(
            neuron,
            f"a CubaLIF (current_decay={current_decay:g}) filters the bias "
            f"of '{node.layer or node.name}' with its synaptic current "
            "(i = a i + W x + b), but Loihi's CUBA neuron adds the bias to "
            "the membrane (v = ... + u + bias), unfiltered; the two differ "
            "whenever a > 0. Build the synaptic layer with use_bias=False "
            "(and no batch norm folded into it), or use current_decay=0",
        )
    if "recurrent_kernel" in p and node.op != "dense":
        raise _refuse(neuron, "recurrent synapses need a dense layer")


def _quantize_layer(node, neuron, weight, bias, **fields):
    p = neuron.params
    decay = _uniform(neuron, "decay", 1.0)
    current_decay = _uniform(neuron, "current_decay", 0.0)
    _check_neuron(node, neuron, bias, current_decay)
    threshold = _channel_threshold(neuron, np.shape(weight)[-1])
    if not np.all(np.asarray(threshold) > 0):
        raise _refuse(neuron, f"threshold {threshold} is not > 0")
    # vDecay = round((1 - k) 2^12), iDecay = round((1 - a) 2^12): Loihi's
    # 12-bit decay fractions (Lava's du is iDecay - 1, plus ds_offset 1).
    v_decay = quantize_decay(1.0 - decay, DECAY_SHIFT)
    if not 0 <= v_decay <= V_DECAY_MAX:
        raise _refuse(
            neuron,
            f"decay {decay} gives vDecay={v_decay}, outside Loihi's 12-bit "
            f"range [0, {V_DECAY_MAX}]",
        )
    i_decay = quantize_decay(1.0 - current_decay, DECAY_SHIFT)
    if not 1 <= i_decay <= DECAY_UNITY:
        raise _refuse(
            neuron,
            f"current_decay {current_decay} gives iDecay={i_decay}, outside "
            f"NetX's range [1, {DECAY_UNITY}] (Lava's du = iDecay - 1 is "
            "12-bit unsigned): a current that never decays (a > 1 - 2^-13) "
            "cannot be expressed",
        )
    recurrent = p.get("recurrent_kernel")
    preset = fields.pop("preset", None)
    if preset is None:
        scale, n = _layer_scale(node, weight, bias, threshold, recurrent)
    else:  # a Loihi QAT model's scales: clip as its forward pass did
        scale, n = np.asarray(preset[0], np.float64), int(preset[1])

    def integer(values):
        return loihi_fixed_point.weight_integers(
            values, scale, clip=preset is not None
        )

    weight_q = integer(weight)
    weight_rec = None if recurrent is None else integer(recurrent)
    bias_q = loihi_fixed_point.bias_integers(bias, scale)
    largest = int(np.max(np.abs(weight_q)))
    if weight_rec is not None:
        largest = max(largest, int(np.max(np.abs(weight_rec))))
    if largest > WEIGHT_LIMIT:
        step = float(np.max(_columns(weight) / threshold)) / WEIGHT_LIMIT
        raise _refuse(
            node,
            f"weights out of range after scaling: the threshold "
            f"{np.min(threshold):g} of '{neuron.layer or neuron.name}' is "
            f"below one weight step ({step:.4g} = max |w| / "
            f"{WEIGHT_LIMIT}, in thresholds), so the scale that makes it "
            f"one integer ({np.max(scale):.4g}) puts weights at "
            f"{largest}, outside [{WEIGHT_MIN}, {WEIGHT_MAX}]; retrain with "
            "smaller weights or a larger threshold",
        )
    # `theta` in steps of `theta / n` is `n`. Loihi compares
    # `v > vThMant << 6`; with integer potentials (vDecay = 0 and iDecay =
    # 4096: no decay truncates) u >= n  <=>  v > (n - 1) << 6.
    strict = v_decay == 0 and i_decay == DECAY_UNITY
    return LoihiLayer(
        name=node.name,
        kind="conv" if node.op == "conv2d" else "dense",
        weight=weight_q,
        bias=bias_q,
        threshold=n - 1 if strict else n,
        level=n,
        neuron=neuron.name,
        v_decay=v_decay,
        i_decay=i_decay,
        weight_rec=weight_rec,
        scale=float(scale) if np.ndim(scale) == 0 else scale,
        **fields,
    )


def _or_layer(node, shape):
    """Max pooling of spikes as an OR: a conv with an IF neuron, 1 spike."""
    p = node.params
    if len(shape) != 3:
        raise _refuse(node, f"needs an (H, W, C) input; got {shape}")
    kh, kw = p["pool_size"]
    channels = shape[2]
    weight = np.zeros((kh, kw, channels, channels), np.int64)
    weight[:, :, np.arange(channels), np.arange(channels)] = 1
    padding = _symmetric_padding(
        node, p["padding"], shape[:2], (kh, kw), p["strides"]
    )
    return LoihiLayer(
        name=node.name,
        kind="conv",
        weight=weight,
        bias=np.zeros(channels, np.int64),
        threshold=0,
        v_decay=0,
        strides=tuple(p["strides"]),
        padding=padding,
        input_shape=tuple(shape),
        shape=tuple(node.shape),
        role="max_pool",
        pool_size=(kh, kw),
    )


def _fold_average(pool, shape):
    """Checks that an average pool can be folded; returns its factors."""
    p = pool.params
    size, strides = tuple(p["pool_size"]), tuple(p["strides"])
    evenly = all(shape[i] % size[i] == 0 for i in range(2))
    if size != strides or not evenly:
        raise _refuse(
            pool,
            "NetX cannot load pooling layers, and this average pool cannot "
            "be folded into the next layer exactly: it needs "
            "strides == pool_size and an input size divisible by it "
            f"(pool_size={size}, strides={strides}, input {shape})",
        )
    return size


def _synaptic_layer(group, neuron, shape, preset=None):
    """A `LoihiLayer` from `[avg_pool]? [flatten]? conv2d|dense` + neuron."""
    ops = [n.op for n in group]
    node = group[-1]
    pool = group[0] if ops[0] == "avg_pool" else None
    rest = ops[1:] if pool else ops
    if rest not in (["conv2d"], ["dense"], ["flatten", "dense"]):
        raise _refuse(
            group[0],
            "NetX layers are [average pool] [flatten] conv|dense followed "
            f"by a spiking layer; found {' -> '.join(ops)} -> neuron",
        )
    p = node.params
    weight, bias = np.asarray(p["kernel"]), np.asarray(p["bias"])
    extra = {"preset": preset}
    if pool is not None:
        kh, kw = _fold_average(pool, shape)
        extra.update(pool=pool.name, pool_size=(kh, kw))
        if node.op == "conv2d":
            pooled = (shape[0] // kh, shape[1] // kw)
            ph, pw = _symmetric_padding(
                node, p["padding"], pooled, weight.shape[:2], p["strides"]
            )
            weight = fold_average_pool(weight, "conv", (kh, kw), shape)
            strides = (p["strides"][0] * kh, p["strides"][1] * kw)
            return _quantize_layer(
                node,
                neuron,
                weight,
                bias,
                **extra,
                strides=strides,
                padding=(ph * kh, pw * kw),
                input_shape=tuple(shape),
                shape=tuple(node.shape),
            )
        weight = fold_average_pool(weight, "dense", (kh, kw), shape)
    if node.op == "conv2d":
        if len(shape) != 3:
            raise _refuse(node, f"needs an (H, W, C) input; got {shape}")
        padding = _symmetric_padding(
            node, p["padding"], shape[:2], weight.shape[:2], p["strides"]
        )
        return _quantize_layer(
            node,
            neuron,
            weight,
            bias,
            **extra,
            strides=tuple(p["strides"]),
            padding=padding,
            input_shape=tuple(shape),
            shape=tuple(node.shape),
        )
    return _quantize_layer(
        node,
        neuron,
        weight,
        bias,
        **extra,
        input_shape=tuple(shape),
        shape=tuple(node.shape),
        flatten=len(shape) > 1,
    )


def _check_chain(nodes, first):
    """Every node reads only the node before it (no branches, no adds)."""
    for node in nodes:
        if node.op == "add":
            raise _refuse(
                node,
                "residual adds (skip connections) cannot be expressed: "
                "NetX networks are a chain of layers",
            )
    previous = first
    for node in nodes:
        if node.op == "affine":
            raise _refuse(
                node,
                "a batch norm that cannot be folded into a conv/dense "
                "layer (a per-channel affine of spikes) has no Loihi "
                "equivalent",
            )
        if node.inputs != [previous]:
            raise _refuse(
                node,
                f"it reads {node.inputs}, not the layer before it "
                f"('{previous}'): NetX networks are a chain of layers",
            )
        previous = node.name


def quantize_loihi(graph, scales=None):
    """Maps a fused step graph to Loihi's fixed point (see module docstring).

    Args:
        graph: a fused `edge.ir.Graph` (`edge.fuse.fuse`).
        scales: `None` (choose each layer's scale from its weights), or
            `{synaptic node name: (S, n)}`, the scales and threshold
            levels of a Loihi QAT model (`edge.qat`): kept as they are,
            and weights and biases clipped to their ranges as its forward
            pass clips them.

    Returns:
        A `LoihiGraph`.

    Raises:
        UnsupportedLayerError: a construct Loihi/NetX cannot express (soft
            reset, residual add, unfoldable batch norm, an average pool
            that does not fold, asymmetric padding, fewer than two spiking
            layers, a threshold below one weight step (weights out of
            range after scaling), ...); the message names the layer and
            the reason.
        ExportError: the graph is not fused.

    Example:

    >>> lgraph = quantize_loihi(edge.fuse.fuse(edge.ir.extract(model)))
    """
    for node in graph.nodes:
        if node.op == "neuron" and "adaptation" in node.params:
            raise _refuse(
                node,
                "an ALIF's adaptive threshold has no NetX equivalent: "
                "lava-dl 0.6.0's NetX loads CUBA neurons with a fixed "
                "vThMant (Loihi 2's adaptive neurons are not in its HDF5 "
                "format); use LIF or CubaLIF for Loihi",
            )
    neuron_models.require(graph, "loihi", NEURON_FEATURES)
    nodes = graph.nodes
    if any(node.op == "batch_norm" for node in nodes):
        raise ExportError(
            "quantize_loihi needs a fused graph: call edge.fuse.fuse first."
        )
    neurons = [i for i, node in enumerate(nodes) if node.op == "neuron"]
    if len(neurons) < 2:
        raise UnsupportedLayerError(
            f"Model '{graph.name}' cannot be exported to Loihi: it needs "
            "at least two spiking layers (the first one encodes the analog "
            "input on the host; the later ones run on the chip)."
        )
    first, last = neurons[0], neurons[-1]
    encoder, chip, decoder = (
        nodes[: first + 1],
        nodes[first + 1 : last + 1],
        nodes[last + 1 :],
    )
    _check_chain(chip + decoder, nodes[first].name)
    shape = tuple(nodes[first].shape)
    layers = []
    group = []
    for node in chip:
        if node.op == "max_pool" and not group:
            layers.append(_or_layer(node, shape))
            shape = tuple(node.shape)
        elif node.op == "neuron":
            preset = None if scales is None else scales[group[-1].name]
            layers.append(_synaptic_layer(group, node, shape, preset))
            shape = tuple(node.shape)
            group = []
        elif node.op in ("avg_pool", "flatten", *SYNAPTIC):
            group.append(node)
        else:
            raise _refuse(
                node,
                "only conv2d, dense, flatten, pooling of spikes and hard-"
                "reset spiking layers can run on Loihi",
            )
    return LoihiGraph(
        graph=graph,
        encoder=encoder,
        layers=layers,
        decoder=decoder,
        input_shape=tuple(nodes[first].shape),
        output_node=nodes[last].name,
    )
