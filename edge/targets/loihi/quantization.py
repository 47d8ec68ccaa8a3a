"""Loihi: a lava-dl NetX HDF5 file, its fixed-point reference and a Lava run.

`export_target(context)` is the `"loihi"` target of `edge.export`:
quantize the fused step graph to Loihi's fixed point (`quantize_loihi`),
write the NetX file (`write_netx`), run it in Lava's bit-accurate CPU models
(`run_lava`: `lava.lib.dl.netx.hdf5.Network` with
`Loihi2SimCfg(select_tag="fixed_pt")`, in the Python 3.10 environment
`.venv-lava` made by `.ci/install_lava.sh`) and require its output spikes to
equal the Loihi reference (`run_loihi_reference`) spike for spike.

Partition of the model (one decision, documented here once):

- **Host encoder**: the input, the first synaptic layer and the first
  spiking layer run on the host in float64 (`edge.reference.apply_float`),
  exactly as the float reference does. A keras_snn model's first layer
  takes analog input (`DirectEncoding` repeats the image `T` times); NetX
  input ports carry binary spikes, so the first spiking layer is the
  encoder and **its spikes are the NetX input**. This is what a Loihi
  deployment does with analog data (the host or an embedded CPU encodes),
  and it keeps the chip's input binary and the check exact.
- **Chip**: every later layer up to the last spiking layer: `conv`/`dense`
  CUBA layers, one neuron group each.
- **Host readout**: what follows the last spiking layer (`Decoding`,
  `Voting`, `MembraneReadout`, mean rate + `Dense`) runs on the host in
  float64 from the chip's output spikes. Its result is a deterministic
  function of those spikes, so spike-for-spike equality of the chip output
  proves the whole output.

Mapping (fused float graph -> file units; see Lava's `PyLifModelBitAcc`,
`lava/proc/lif/models.py`, and lava-dl's `netx/hdf5.py`, `netx/utils.py`):

- One integer scale `S` per layer: `w = 2 round(S W / 2)` (even integers in
  [-254, 254]: an 8-bit mantissa times 2, the form slayer writes and that
  NetX's `optimize_weight_bits` and Lava's `clip_weights` /
  `truncate_weights` leave unchanged, checked by `netx_weights_exact`),
  `bias = round(S b)` (13-bit signed mantissa, `bias_exp = 6`), and the
  threshold `n = S theta` an integer: `S = n / theta` with
  `n = floor(theta * min(254 / max|W|, 4095 / max|b|, 131071 / theta))`.
- Current: `iDecay = 4096`, so `u` is the instantaneous synaptic input (our
  neurons have no current state). Voltage: `vDecay = round((1 - k) 4096)`
  for the decay `k` (Lava decays by `trunc(v (4096 - vDecay) / 4096)`,
  toward zero, where keras_snn multiplies by `k`).
- Threshold: keras_snn fires at `u >= theta`, Loihi at `v > vThMant << 6`.
  With `vDecay = 0` (IF neurons) the potential is always a multiple of 64
  (weights and biases are integers), so `u >= n` equals `v > (n - 1) << 6`
  and `vThMant = n - 1` is exact. A leaky neuron's potential carries
  Loihi's 6 fractional bits; `vThMant = n` then fires at `v > n << 6`,
  differing from `u >= n` only at the single value `v == n << 6`.
- Hard reset to 0 only (Loihi's reset); soft reset, `reset="none"`, residual
  `add` and per-channel `affine` (an unfoldable batch norm) are refused.
- Flatten: NetX feeds a dense layer after a conv in CHW order; the dense
  rows are permuted from Keras' HWC order. Conv kernels are written OIHW
  (cross-correlation, not flipped: NetX flips and Lava flips back).
- Average pooling of spikes is linear: it is folded into the next synaptic
  layer (a conv with a `k`-times larger kernel and stride, or a dense layer
  with repeated rows), exact for the spike counts feeding it. Max pooling
  of spikes is an OR: a conv layer of its own (ones on the channel
  diagonal, stride = pool stride) with an IF neuron of threshold 1 spike
  (`vThMant = 0`), exact. NetX cannot load `pool`/`average` layers.
- Conv padding must be symmetric (NetX has one padding per axis);
  TensorFlow's `"same"` with an odd total padding is refused.

Timing: each chip layer adds one step of delay (a Lava `Dense`/`Conv`
sends at step `t` what it accumulated at `t - 1`), so the `T` output steps
of a sample appear `depth = len(layers)` steps late. Samples are separated
by Lava's reset (`Network(reset_interval=R, reset_offset=1)`, `LIFReset`):
layer `j` (0-based) zeroes `u` and `v` at the step its first input of a
sample arrives (0-based step `t` with `t % R == j + 1`). A sample occupies
`R` input steps (`R` = the power of two >= `T`, what Loihi hardware needs),
its spikes in the first `T`; its output is read in the window
`[depth, depth + T)` after its start, which then equals the undelayed
integer network's output exactly. `run_loihi_reference` reproduces the
whole stream, delays and resets included.

Example:

>>> lgraph = edge.loihi.quantize_loihi(edge.fuse.fuse(edge.ir.extract(m)))
>>> edge.loihi.write_netx(lgraph, "model.net")
>>> out, spikes = edge.loihi.run_loihi(lgraph, x_test)

Reference:
    Davies et al. 2018, "Loihi: A Neuromorphic Manycore Processor with
    On-Chip Learning", IEEE Micro 38(1). lava-nc 0.10.0
    (`lava/proc/lif/models.py`, `lava/proc/dense/models.py`,
    `lava/proc/conv/models.py`, `lava/utils/weightutils.py`) and lava-dl
    0.6.0 (`lava/lib/dl/netx/hdf5.py`, `netx/utils.py`).
"""

import dataclasses
import math
import os
import signal
import subprocess
import tempfile

import numpy as np

from edge import ir
from edge import kernels
from edge import reference
from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from keras_snn import fileio
from keras_snn import functional
from keras_snn.fixed_point import quantize_decay
from keras_snn.fixed_point import quantize_threshold
from keras_snn.fixed_point import round_half_away

__all__ = [
    "LAVA_SAMPLES",
    "LoihiDecay",
    "LoihiGraph",
    "LoihiLayer",
    "check_ranges",
    "decode",
    "encode",
    "export_target",
    "lava_python",
    "loihi_neuron_step",
    "make_stream",
    "netx_bytes",
    "netx_weights_exact",
    "quantize_loihi",
    "run_lava",
    "run_loihi",
    "run_loihi_reference",
    "write_netx",
]

# Loihi's fixed point (PyLifModelBitAcc and AbstractPyLifModelFixed).
DECAY_UNITY = 4096  # decays are 12-bit fractions of 4096
DECAY_SHIFT = 12
ACT_SHIFT = 6  # synaptic input, bias (bias_exp) and threshold are << 6
STATE_BITS = 24  # u and v
STATE_LIMIT = (1 << (STATE_BITS - 1)) - 1  # v is clipped to +-(2^23 - 1)
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # NetX file weights (lava-dl #170)
WEIGHT_LIMIT = 254  # |w| of the weights written here (even integers)
BIAS_MIN, BIAS_MAX = -4096, 4095  # 13-bit signed bias mantissa
VTH_MAX = 131071  # 17-bit unsigned threshold mantissa
V_DECAY_MAX = 4095  # 12-bit dv
NETX_FILE = "model_loihi.net"
LAVA_SAMPLES = 16  # evaluation samples run in Lava by export_target
LAVA_TIMEOUT = 600
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
        i_decay: `iDecay` (4096: the current is the instantaneous input).
        strides: conv strides `(sh, sw)`.
        padding: symmetric conv padding `(ph, pw)`.
        input_shape: per-step shape of the input spikes (HWC, or `(n,)`).
        shape: per-step shape of the output spikes.
        flatten: the input is an HWC map that the layer flattens.
        scale: `S`, file units per float unit (`None` for an OR layer).
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
    strides: tuple = (1, 1)
    padding: tuple = (0, 0)
    flatten: bool = False
    scale: float = None
    role: str = "synaptic"


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
        weights = np.concatenate([ly.weight.ravel() for ly in self.layers])
        biases = np.concatenate([ly.bias.ravel() for ly in self.layers])
        return {
            "weight_range": [int(weights.min()), int(weights.max())],
            "bias_range": [int(biases.min()), int(biases.max())],
            "vThMant": [int(ly.threshold) for ly in self.layers],
            "vDecay": [int(ly.v_decay) for ly in self.layers],
            "iDecay": [int(ly.i_decay) for ly in self.layers],
        }


def _refuse(node, reason):
    return UnsupportedLayerError(
        f"Layer '{node.layer or node.name}' ({node.op}) cannot be exported "
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


def _layer_scale(node, weight, bias, threshold):
    """The per-layer scale `S = n / theta` and `n` (see module docstring)."""
    largest = float(np.max(np.abs(weight)))
    if largest == 0.0:
        raise _refuse(node, "all its weights are zero")
    limits = [WEIGHT_LIMIT / largest, VTH_MAX / threshold]
    if np.any(bias != 0):
        limits.append(BIAS_MAX / float(np.max(np.abs(bias))))
    n = max(1, math.floor(threshold * min(limits)))
    return n / threshold, n


def _quantize_layer(node, neuron, weight, bias, **fields):
    p = neuron.params
    threshold, decay = float(p["threshold"]), float(p["decay"])
    if p["reset"] != "hard":
        raise _refuse(
            neuron,
            f"reset={p['reset']!r}: Loihi's CUBA neuron resets to zero "
            "(reset='hard'); retrain with hard reset",
        )
    if not threshold > 0:
        raise _refuse(neuron, f"threshold {threshold} is not > 0")
    # vDecay = round((1 - k) 2^12): Loihi's 12-bit decay fraction.
    v_decay = quantize_decay(1.0 - decay, DECAY_SHIFT)
    if not 0 <= v_decay <= V_DECAY_MAX:
        raise _refuse(
            neuron,
            f"decay {decay} gives vDecay={v_decay}, outside Loihi's 12-bit "
            f"range [0, {V_DECAY_MAX}]",
        )
    scale, n = _layer_scale(node, weight, bias, threshold)
    weight_q = 2 * round_half_away(scale * np.asarray(weight, np.float64) / 2)
    bias_q = round_half_away(scale * np.asarray(bias, np.float64))
    largest = int(np.max(np.abs(weight_q)))
    if largest > WEIGHT_LIMIT:
        step = float(np.max(np.abs(weight))) / WEIGHT_LIMIT
        raise _refuse(
            node,
            f"weights out of range after scaling: the threshold "
            f"{threshold:g} of '{neuron.layer or neuron.name}' is below one "
            f"weight step ({step:.4g} = max |w| / {WEIGHT_LIMIT}), so the "
            f"scale that makes it one integer ({scale:.4g}) puts weights at "
            f"{largest}, outside [{WEIGHT_MIN}, {WEIGHT_MAX}]; retrain with "
            "smaller weights or a larger threshold",
        )
    # `theta` in steps of `theta / n` is `n`. Loihi compares
    # `v > vThMant << 6`; with integer potentials (vDecay = 0)
    # u >= n  <=>  v > (n - 1) << 6.
    threshold_q = quantize_threshold(
        threshold, threshold / n, strict=v_decay == 0
    )
    return LoihiLayer(
        name=node.name,
        kind="conv" if node.op == "conv2d" else "dense",
        weight=weight_q,
        bias=bias_q,
        threshold=int(threshold_q),
        v_decay=v_decay,
        scale=scale,
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


def _synaptic_layer(group, neuron, shape):
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
    if pool is not None:
        kh, kw = _fold_average(pool, shape)
        if node.op == "conv2d":
            pooled = (shape[0] // kh, shape[1] // kw)
            ph, pw = _symmetric_padding(
                node, p["padding"], pooled, weight.shape[:2], p["strides"]
            )
            weight = np.repeat(np.repeat(weight, kh, 0), kw, 1) / (kh * kw)
            strides = (p["strides"][0] * kh, p["strides"][1] * kw)
            return _quantize_layer(
                node,
                neuron,
                weight,
                bias,
                strides=strides,
                padding=(ph * kh, pw * kw),
                input_shape=tuple(shape),
                shape=tuple(node.shape),
            )
        h, w, c = shape
        rows = weight.reshape(h // kh, w // kw, c, -1)
        rows = np.repeat(np.repeat(rows, kh, 0), kw, 1) / (kh * kw)
        weight = rows.reshape(h * w * c, -1)
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


def quantize_loihi(graph):
    """Maps a fused step graph to Loihi's fixed point (see module docstring).

    Args:
        graph: a fused `edge.ir.Graph` (`edge.fuse.fuse`).

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
            layers.append(_synaptic_layer(group, node, shape))
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


# -- range checks ----------------------------------------------------------
def netx_weights_exact(weight):
    """Whether NetX and Lava's `Dense` keep the integer weights exactly.

    NetX (`optimize_weight_bits`) scales the file weights by `2^shift` into
    an 8-bit mantissa and sets `weight_exp = -shift`; Lava's bit-accurate
    `Dense` clips (`clip_weights`) and drops low bits (`truncate_weights`),
    accumulates and shifts back. This re-derives that chain and returns
    `True` when the accumulated sum equals `sum(w * s)` for every input.

    Args:
        weight: integer array of file weights.

    Returns:
        bool.

    Reference:
        lava-dl 0.6.0 `lava/lib/dl/netx/utils.py`; lava-nc 0.10.0
        `lava/utils/weightutils.py`, `lava/proc/dense/models.py`.
    """
    w = np.asarray(weight, np.int64)
    if w.size == 0 or not np.any(w):
        return False
    high, low = int(w.max()), int(w.min())
    if low < WEIGHT_MIN or high > (255 if low >= 0 else WEIGHT_MAX):
        return False
    # NetX's sign mode, headroom and exponent.
    if high < 0:
        signed, room = 0, -256 / low
    elif low >= 0:
        signed, room = 0, 255 / high
    else:
        signed = 1
        room = min(127 / high if high > 0 else math.inf, -128 / low)
    shift = math.floor(math.log2(room)) + signed
    zeros = 0  # trailing zero bits shared by all weights (at most 8)
    while zeros < 8 and not np.any(w % (1 << (zeros + 1))):
        zeros += 1
    bits = 8 - shift - (zeros - signed)
    if shift < 0:
        return False
    scaled = w << shift
    # Lava's Dense: its own sign mode of the scaled weights, 8-bit clip,
    # then the low `8 - bits (+1 if mixed)` bits dropped.
    inhibitory = int(scaled.min()) < 0 and int(scaled.max()) <= 0
    mixed = int(scaled.min()) < 0 < int(scaled.max())
    dropped = 8 - bits + int(mixed)
    if dropped < 0:
        return False
    kept = -scaled if inhibitory else scaled
    kept = np.clip(kept, -(1 << 8) if mixed else 0, (1 << 8) - 1)
    kept = (kept >> dropped) << dropped
    kept = -kept if inhibitory else kept
    return bool(np.array_equal(kept, scaled))


def check_ranges(lgraph):
    """Checks every integer parameter against what NetX and Loihi hold.

    Args:
        lgraph: a `LoihiGraph`.

    Raises:
        ExportError: a weight outside [-256, 254] or not kept exactly by
            NetX's 8-bit weight format, a bias outside 13 bits, a threshold
            outside [0, 131071], a decay outside 12 bits, or padding that
            is not symmetric; the message names the layer.
    """

    def fail(layer, what):
        raise ExportError(
            f"Loihi layer '{layer.name}' cannot be written: {what}"
        )

    for layer in lgraph.layers:
        w = np.asarray(layer.weight)
        if not np.issubdtype(w.dtype, np.integer):
            fail(layer, "weights must be integers")
        if w.min() < WEIGHT_MIN or w.max() > WEIGHT_MAX:
            fail(
                layer,
                f"weights out of range: [{w.min()}, {w.max()}] is not "
                f"within [{WEIGHT_MIN}, {WEIGHT_MAX}]",
            )
        if not netx_weights_exact(w):
            fail(
                layer,
                "weights that NetX's 8-bit mantissa and exponent do not "
                "hold exactly (use even weights in [-256, 254])",
            )
        b = np.asarray(layer.bias)
        if b.min() < BIAS_MIN or b.max() > BIAS_MAX:
            fail(
                layer,
                f"bias out of range [{BIAS_MIN}, {BIAS_MAX}] (13 bits): "
                f"[{b.min()}, {b.max()}]",
            )
        if not 0 <= layer.threshold <= VTH_MAX:
            fail(layer, f"vThMant={layer.threshold} not in [0, {VTH_MAX}]")
        if not 0 <= layer.v_decay <= V_DECAY_MAX:
            fail(layer, f"vDecay={layer.v_decay} not in [0, {V_DECAY_MAX}]")
        if not 1 <= layer.i_decay <= DECAY_UNITY:
            fail(layer, f"iDecay={layer.i_decay} not in [1, {DECAY_UNITY}]")
        if layer.kind not in ("conv", "dense"):
            fail(layer, f"unknown kind {layer.kind!r}")
        if min(layer.padding) < 0:
            fail(layer, f"negative padding {layer.padding}")


# -- the Loihi reference ---------------------------------------------------
class LoihiDecay:
    """Loihi's decay `trunc(x (4096 - d) / 4096)`, multiplying like a number.

    `LoihiDecay(d) * x` is `sign(x) ((|x| (4096 - d)) >> 12)`, rounding
    toward zero as Lava's `PyLifModelBitAcc.subthr_dynamics` does, so the
    shared `keras_snn.functional.neuron_step` runs on Loihi's integers.
    """

    def __init__(self, d):
        self.d = int(d)

    def __mul__(self, x):
        x = np.asarray(x, np.int64)
        magnitude = (np.abs(x) * (DECAY_UNITY - self.d)) >> DECAY_SHIFT
        return _int32(np.sign(x) * magnitude)

    __rmul__ = __mul__

    def __repr__(self):
        return f"LoihiDecay((4096 - {self.d}) / 4096, toward zero)"


def _int32(x):
    """Two's-complement wrap to int32 (NumPy int32 arithmetic)."""
    return (np.asarray(x, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)


def _wrap_current(u):
    """Lava's 24-bit wrap of the current (one correction, as in
    `subthr_dynamics`: above `2^23` subtract `2^24`, at or below `-2^23`
    add it)."""
    limit = 1 << (STATE_BITS - 1)
    u = np.where(u > limit, u - 2 * limit, u)
    return np.where(u <= -limit, u + 2 * limit, u)


def _synapse(layer, x):
    """The layer's accumulated input `a` for the spikes `x` (int64)."""
    x = np.asarray(x, np.int64)
    if layer.kind == "dense":
        a = kernels.dense(x.reshape(len(x), -1), layer.weight)
        return _int32(a)
    ph, pw = layer.padding
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    a = kernels.conv2d(x, layer.weight, None, layer.strides, "valid")
    # Lava's fixed_pt Conv clamps its output as a signed 24-bit value
    # (`signed_clamp`, a modular wrap).
    limit = 1 << (STATE_BITS - 1)
    return (a + limit) % (2 * limit) - limit


def loihi_neuron_step(layer, a, u, v):
    """One step of Lava's bit-accurate CUBA neuron (`PyLifModelBitAcc`).

    `u = wrap24(trunc(u (4096 - iDecay) / 4096) + (a << 6))`,
    `v = clip24(trunc(v (4096 - vDecay) / 4096) + u + (bias << 6))`, spike
    where `v > vThMant << 6`, then `v = 0` there. The voltage equation and
    the hard reset are `keras_snn.functional.neuron_step` with the current
    `u + (bias << 6)`, the decay `LoihiDecay(vDecay)` and the threshold
    `(vThMant << 6) + 1` (on integers, `v > t` is `v >= t + 1`); clipping
    after the reset is the same as before it, since a clipped positive `v`
    still exceeds every threshold and a negative one never fires.

    Args:
        layer: the `LoihiLayer`.
        a: the synaptic input of this step (int64).
        u, v: the states after the previous step.

    Returns:
        `(spikes, u, v)`.
    """
    u = _wrap_current(
        _int32(LoihiDecay(layer.i_decay) * u + _int32(a << ACT_SHIFT))
    )
    bias = np.asarray(layer.bias, np.int64) << ACT_SHIFT
    spikes, _, v = functional.neuron_step(
        u + bias,
        v,
        (int(layer.threshold) << ACT_SHIFT) + 1,
        LoihiDecay(layer.v_decay),
        "hard",
    )
    v = np.clip(v, -STATE_LIMIT, STATE_LIMIT)
    return spikes.astype(np.int64), u, v


def run_loihi_reference(
    lgraph, spikes, reset_interval=None, reset_offset=1, record=False
):
    """Lava's fixed-point CUBA network, bit for bit, on input spikes.

    Per step `t` (0-based) and layer `j`: the synapse sends what it
    accumulated at `t - 1` (zero at `t = 0`) and accumulates this step's
    input spikes; with a reset interval `R` the neurons zero `u` and `v`
    when `(t + 1) % R == (reset_offset + 1 + j) % R` (NetX numbers the
    layers' reset phases from `reset_offset + 1`, Lava's time from 1);
    then `loihi_neuron_step`.

    Args:
        lgraph: a `LoihiGraph`.
        spikes: `(N, steps, *lgraph.input_shape)` input spikes (0/1).
        reset_interval: `R`, or `None` for no reset (plain `LIF`).
        reset_offset: NetX's `reset_offset` (1 aligns each layer's reset
            with the arrival of a sample; see the module docstring).
        record: also return the per-step values of every layer.

    Returns:
        `(N, steps, *output_shape)` int8 output spikes of the last layer;
        with `record`, `(spikes, trace)` where `trace` maps
        `"<layer>:a"`, `"<layer>"` (spikes), `"<layer>:u"`, `"<layer>:v"`
        to `(N, steps, ...)` arrays.

    Example:

    >>> out = run_loihi_reference(lgraph, encode(lgraph, x_test)[:, :])
    """
    spikes = np.asarray(spikes)
    steps = spikes.shape[1]
    clock = {"t": 0}
    nodes = [ir.Node("input", "input", [], lgraph.input_shape)]
    by_name = {}
    for j, layer in enumerate(lgraph.layers):
        synapse = f"{layer.name}:a"
        nodes.append(ir.Node(synapse, "synapse", [nodes[-1].name], ()))
        nodes.append(ir.Node(layer.name, "cuba", [synapse], layer.shape))
        by_name[synapse] = by_name[layer.name] = (j, layer)

    def at(t):
        clock["t"] = t
        return np.asarray(spikes[:, t], np.int64)

    def apply(node, inputs, state):
        j, layer = by_name[node.name]
        if node.op == "synapse":
            a = _synapse(layer, inputs[0])
            return (np.zeros_like(a) if state is None else state), a
        a = inputs[0]
        if state is None:
            state = (np.zeros_like(a), np.zeros_like(a))
        u, v = state
        if reset_interval:
            phase = (reset_offset + 1 + j) % reset_interval
            if (clock["t"] + 1) % reset_interval == phase:
                u, v = np.zeros_like(a), np.zeros_like(a)
        out, u, v = loihi_neuron_step(layer, a, u, v)
        return out, (u, v)

    outputs, trace = reference.simulate(
        nodes, nodes[-1].name, at, steps, apply, record
    )
    result = np.stack(outputs, axis=1).astype(np.int8)
    if not record:
        return result
    stacked = {}
    for name, values in trace.items():
        if name == "input":
            continue
        if name.endswith(":state"):
            base = name[: -len(":state")]
            if base.endswith(":a"):  # the synapse's buffer: next step's a
                continue
            stacked[f"{base}:u"] = np.stack([s[0] for s in values], 1)
            stacked[f"{base}:v"] = np.stack([s[1] for s in values], 1)
        else:
            stacked[name] = np.stack(values, 1)
    return result, stacked


# -- host encoder and readout ----------------------------------------------
def encode(lgraph, x, timesteps=None):
    """The host encoder's spikes: the chip's input, `(N, T, *input_shape)`.

    Args:
        lgraph: a `LoihiGraph`.
        x: model inputs, as for `edge.reference.run_float`.
        timesteps: overrides the model's `T`.

    Returns:
        int8 spikes of the first spiking layer (float64 reference).
    """
    graph = lgraph.graph
    steps, x_at = reference.input_steps(graph, x, timesteps)
    outputs, _ = reference.simulate(
        lgraph.encoder,
        lgraph.encoder[-1].name,
        lambda t: np.asarray(x_at(t), np.float64),
        steps,
        reference.apply_float,
    )
    return np.stack(outputs, axis=1).astype(np.int8)


def decode(lgraph, spikes):
    """The host readout on the chip's output spikes `(N, T, ...)`.

    Returns:
        The model's output, aggregated as `graph.aggregate` says.
    """
    spikes = np.asarray(spikes, np.float64)
    head = ir.Node(lgraph.output_node, "input", [], lgraph.output_shape)
    nodes = [head, *lgraph.decoder]
    outputs, _ = reference.simulate(
        nodes,
        lgraph.graph.output,
        lambda t: spikes[:, t],
        spikes.shape[1],
        reference.apply_float,
    )
    return reference.aggregate(outputs, lgraph.graph.aggregate)


def run_loihi(lgraph, x, timesteps=None):
    """The model on Loihi, by the reference: encode, chip, readout.

    Each sample runs alone from a zero state for `T + depth` steps with the
    chip's resets (interval `R`); its output spikes are read in the window
    `[depth, depth + T)`, as `run_lava` reads them from Lava.

    Args:
        lgraph: a `LoihiGraph`.
        x: model inputs, as for `edge.reference.run_float`.
        timesteps: overrides the model's `T`.

    Returns:
        `(output, spikes)`: the model's output (host readout) and the
        chip's output spikes `(N, T, *output_shape)`.
    """
    inputs = encode(lgraph, x, timesteps)
    count, steps = inputs.shape[:2]
    depth = lgraph.depth
    padded = np.zeros((count, steps + depth, *inputs.shape[2:]), np.int8)
    padded[:, :steps] = inputs
    out = run_loihi_reference(
        lgraph, padded, lgraph.reset_interval(steps), reset_offset=1
    )
    window = out[:, depth : depth + steps]
    return decode(lgraph, window), window


# -- the NetX file ---------------------------------------------------------
def _ascii(text):
    return np.array([text.encode("ascii")], dtype="S10")


def _chw(shape):
    return [shape[2], shape[0], shape[1]] if len(shape) == 3 else list(shape)


def _netx_input_shape(lgraph):
    first = lgraph.layers[0]
    if first.flatten:
        return [int(np.prod(first.input_shape))]
    return [int(d) for d in _chw(first.input_shape)]


def _netx_weight(layer):
    """The weight in NetX's layout: conv OIHW, dense `(out, in)` with the
    inputs in CHW flatten order."""
    w = np.asarray(layer.weight)
    if layer.kind == "conv":
        return w.transpose(3, 2, 0, 1)
    if layer.flatten and len(layer.input_shape) == 3:
        h, wd, c = layer.input_shape
        w = (
            w.reshape(h, wd, c, -1)
            .transpose(2, 0, 1, 3)
            .reshape(h * wd * c, -1)
        )
    return w.T


def _write(file, lgraph):
    file.attrs["producer"] = "keras_snn edge.loihi"
    file.attrs["model"] = lgraph.graph.name
    file.attrs["host_encoder"] = lgraph.encoder[-1].name
    file.attrs["reset_offset"] = 1
    group = file.create_group("layer")
    entry = group.create_group("0")
    entry["type"] = _ascii("input")
    entry["shape"] = np.array(_netx_input_shape(lgraph), np.int64)
    index = 1
    for number, layer in enumerate(lgraph.layers):
        if layer.flatten and number > 0 and len(layer.input_shape) == 3:
            entry = group.create_group(str(index))
            entry["type"] = _ascii("flatten")
            entry["shape"] = np.array(
                [int(np.prod(layer.input_shape)), 1, 1], np.int64
            )
            index += 1
        entry = group.create_group(str(index))
        index += 1
        weight = _netx_weight(layer).astype(np.float32)
        entry["weight"] = weight
        entry["bias"] = np.asarray(layer.bias, np.float32)
        if layer.kind == "conv":
            entry["type"] = _ascii("conv")
            entry["shape"] = np.array(_chw(layer.shape), np.int64)
            entry["inChannels"] = weight.shape[1]
            entry["outChannels"] = weight.shape[0]
            entry["kernelSize"] = np.array(weight.shape[2:], np.int64)
            entry["stride"] = np.array(layer.strides, np.int64)
            entry["padding"] = np.array(layer.padding, np.int64)
            entry["dilation"] = np.array([1, 1], np.int64)
            entry["groups"] = np.int64(1)
        else:
            entry["type"] = _ascii("dense")
            entry["shape"] = np.array(layer.shape, np.int64)
            entry["inFeatures"] = weight.shape[1]
            entry["outFeatures"] = weight.shape[0]
        neuron = entry.create_group("neuron")
        neuron["type"] = _ascii("CUBA")
        neuron["iDecay"] = np.int64(layer.i_decay)
        neuron["vDecay"] = np.int64(layer.v_decay)
        neuron["vThMant"] = np.int64(layer.threshold)
        neuron["refDelay"] = np.int64(1)
        neuron["gradedSpike"] = np.bool_(False)


def write_netx(lgraph, path):
    """Writes the NetX HDF5 file (to a temporary name, then renamed).

    Layer `0` is `input` (no neuron: the spikes enter the first layer), then
    one `conv` or `dense` group per chip layer with a `CUBA` neuron group
    (`iDecay`, `vDecay`, `vThMant`, `refDelay`, `gradedSpike`), and a
    `flatten` group before a dense layer that follows a conv.

    Args:
        lgraph: a `LoihiGraph`.
        path: the file to write.

    Raises:
        ExportError: a parameter out of NetX's or Loihi's range
            (`check_ranges`), before anything is written.
    """
    check_ranges(lgraph)
    import h5py

    with fileio.atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as file:
            _write(file, lgraph)


def netx_bytes(lgraph):
    """The NetX file's bytes (written in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="keras-snn-loihi-") as folder:
        path = os.path.join(folder, NETX_FILE)
        write_netx(lgraph, path)
        with open(path, "rb") as file:
            return file.read()


# -- running the file in Lava ----------------------------------------------
def _repository_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lava_python():
    """The Python of the Lava environment, or `None` if it is missing.

    `$KERAS_SNN_LAVA_PYTHON` if set, else `.venv-lava/bin/python` at the
    repository root (made by `.ci/install_lava.sh`).
    """
    path = os.environ.get(LAVA_PYTHON_ENV) or os.path.join(
        _repository_root(), ".venv-lava", "bin", "python"
    )
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def make_stream(lgraph, spikes):
    """Concatenates samples for one Lava run.

    Args:
        lgraph: a `LoihiGraph`.
        spikes: `(N, T, *input_shape)` encoder spikes.

    Returns:
        `(stream, R)`: `(N R + depth, *input_shape)` int8 spikes (sample `s`
        in steps `[s R, s R + T)`, zeros elsewhere) and the reset interval.
    """
    spikes = np.asarray(spikes, np.int8)
    count, steps = spikes.shape[:2]
    interval = lgraph.reset_interval(steps)
    stream = np.zeros(
        (count * interval + lgraph.depth, *spikes.shape[2:]), np.int8
    )
    for s in range(count):
        stream[s * interval : s * interval + steps] = spikes[s]
    return stream, interval


def _to_lava(lgraph, stream):
    """`(steps, *input_shape)` -> Lava's `(*net.inp.shape, steps)`."""
    first = lgraph.layers[0]
    if len(stream.shape) == 4:  # (steps, H, W, C)
        if first.flatten:  # CHW flatten order
            flat = stream.transpose(0, 3, 1, 2).reshape(len(stream), -1)
            return flat.T
        return stream.transpose(2, 1, 3, 0)  # (W, H, C, steps)
    return stream.T


def _from_lava(lgraph, data):
    """Lava's `(*net.out.shape, steps)` -> `(steps, *output_shape)`."""
    if len(lgraph.output_shape) == 3:  # (W, H, C, steps)
        return data.transpose(3, 1, 0, 2)
    return data.T


def run_lava(lgraph, path, stream, reset_interval, timeout=LAVA_TIMEOUT):
    """Runs a NetX file in Lava (`fixed_pt`) on a stream of input spikes.

    The file is loaded by `lava.lib.dl.netx.hdf5.Network(net_config=path,
    reset_interval=R, reset_offset=1)`, fed by a `RingBuffer` source and
    read by a `RingBuffer` sink, in `edge/_lava_worker.py` under the
    `.venv-lava` Python, in a process group of its own that is killed on
    timeout.

    Args:
        lgraph: the `LoihiGraph` the file was written from (for layouts).
        path: the NetX file.
        stream: `(steps, *lgraph.input_shape)` input spikes (`make_stream`).
        reset_interval: `R` (or `None`).
        timeout: seconds.

    Returns:
        `(steps, *lgraph.output_shape)` int8 output spikes.

    Raises:
        ConsumerError: no Lava environment, Lava failed, or timed out.
    """
    python = lava_python()
    if python is None:
        raise ConsumerError(
            "The Lava environment is missing: run .ci/install_lava.sh "
            "(it creates .venv-lava with lava-nc 0.10.0 and lava-dl 0.6.0), "
            f"or set ${LAVA_PYTHON_ENV}."
        )
    stream = np.asarray(stream, np.int8)
    here = os.path.dirname(os.path.abspath(__file__))
    worker = os.path.join(here, "_lava_worker.py")
    with tempfile.TemporaryDirectory(prefix="keras-snn-lava-") as folder:
        request = os.path.join(folder, "request.npz")
        result = os.path.join(folder, "result.npz")
        np.savez(
            request,
            net=os.path.abspath(os.fspath(path)),
            data=_to_lava(lgraph, stream),
            steps=len(stream),
            reset_interval=int(reset_interval or 0),
            reset_offset=1,
        )
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        process = subprocess.Popen(
            [python, worker, request, result],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ConsumerError(
                f"Lava did not finish running {path} within {timeout} s."
            ) from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        text = output.decode(errors="replace")[-3000:]
        if process.returncode != 0 or not os.path.exists(result):
            raise ConsumerError(
                f"Lava failed to run {path} (exit status "
                f"{process.returncode}):\n{text}"
            )
        with np.load(result) as loaded:
            data = loaded["spikes"]
    return _from_lava(lgraph, data).astype(np.int8)


# -- the export target -----------------------------------------------------
def export_target(context):
    """`edge.export`'s `"loihi"` target: a NetX file proven in Lava.

    Quantizes `context.graph` (`quantize_loihi`), writes the NetX file,
    runs the first `LAVA_SAMPLES` evaluation samples through it in Lava in
    one run (samples separated by resets) and compares the whole output
    stream with `run_loihi_reference` on the same stream, spike for spike.
    Accuracy and agreement are the Loihi reference's on every evaluation
    sample (`run_loihi`).

    Args:
        context: an `edge.exporter.ExportContext`.

    Returns:
        A list with one `ArtefactReport` (`loihi-netx`); its file
        `model_loihi.net` is put into `context.files`.

    Raises:
        UnsupportedLayerError: a construct Loihi cannot express.
        ExportError: parameters out of range.
        ConsumerError: Lava is missing or failed, or its spikes differ
            from the reference's.
    """
    graph = context.graph
    lgraph = quantize_loihi(graph)
    check_ranges(lgraph)
    output, window = run_loihi(lgraph, context.x, context.timesteps)
    subset = context.x[:LAVA_SAMPLES]
    stream, interval = make_stream(
        lgraph, encode(lgraph, subset, context.timesteps)
    )
    expected = run_loihi_reference(lgraph, stream[None], interval)[0]
    with tempfile.TemporaryDirectory(prefix="keras-snn-loihi-") as folder:
        path = os.path.join(folder, NETX_FILE)
        write_netx(lgraph, path)
        with open(path, "rb") as file:
            data = file.read()
        got = run_lava(lgraph, path, stream, interval)
    exact = bool(np.array_equal(got, expected))
    if not exact:
        differ = int(np.sum(got != expected))
        raise ConsumerError(
            f"The NetX file of '{graph.name}' does not run in Lava as the "
            f"Loihi reference: {differ} of {expected.size} output spikes "
            f"differ over {len(stream)} steps."
        )
    checks = {
        "spike_exact": exact,
        "samples_checked": len(subset),
        "steps_checked": len(stream),
        "layers": lgraph.depth,
        "delay_steps": lgraph.depth,
        "reset_interval": interval,
        **lgraph.ranges(),
    }
    float_trace = getattr(context, "float_trace", None)
    if float_trace and lgraph.output_node in float_trace:
        expected_float = np.stack(float_trace[lgraph.output_node], 1)
        checks["float_spike_agreement"] = float(
            np.mean(expected_float == window)
        )
    context.files[NETX_FILE] = data
    kinds = [
        "conv(or)" if ly.role == "max_pool" else ly.kind for ly in lgraph.layers
    ]
    return [
        context.row(
            "loihi-netx",
            "Lava fixed_pt (CPU)",
            output,
            path=NETX_FILE,
            ops=kinds,
            checks=checks,
        )
    ]
