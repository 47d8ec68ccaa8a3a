"""Quantization-aware training for Loihi: a Keras layer that computes what
Lava's bit-accurate CUBA neurons compute.

`LoihiIntegerGraph` runs a fused step graph split as the Loihi target
splits it (`edge.targets.loihi`): the host encoder (the input, the first
synaptic layer and the first spiking layer) and the host readout (what
follows the last spiking layer) in float64, and every chip layer in Loihi's
fixed point, `keras_snn.loihi_fixed_point` (the functions the Loihi
reference runs):

- weights `w = 2 clip(round(S W / 2), -127, 127)` (NetX's even 8-bit
  mantissas), biases `clip(round(S b), -4096, 4095)`, an average pool
  before the layer folded into its weights, with `S` the layer's scale
  (one per layer, or per output channel) kept as the exporter chose it;
- 24-bit currents and potentials with Lava's decays (toward zero) and
  wraps, the strict threshold `v > n << 6` and the hard reset;
- straight-through gradients (`loihi_fixed_point.decay_toward_zero_ste`,
  `fixed_point_ops.round_half_away_ste`) and the spike surrogate on the
  real potential `v / (64 S)`.

Each sample runs from a zero state for its `T` steps. On the chip each
layer adds one step of delay and the samples are separated by resets;
`edge.targets.loihi.reference.run_loihi` reads the output spikes in the
window where the sample's `T` steps arrive, which is this layer's
delay-free run shifted in time, spike for spike.

The chip layers' float weights (kernels, biases, recurrent kernels) train;
the host encoder and readout are frozen (they run in float on the host, so
quantization does not touch them). Build it with
`edge.qat.quantize_model(model, profile="loihi")`; `edge.export` deploys
its weights with its scales as they are.

References: Wu et al. 2019, Eq. 5-6 (the neuron).
"""

import keras
import numpy as np
from keras import ops

from keras_snn import functional
from keras_snn import graph_step
from keras_snn import loihi_fixed_point as lfp
from keras_snn import saving
from keras_snn.quantization import StepGraphLayer
from keras_snn.quantization import _pack
from keras_snn.quantization import _unpack
from keras_snn.quantization import aggregate_steps

__all__ = ["LoihiIntegerGraph"]


def _float_step(arithmetic, node, inputs, state):
    """One float64 step of a host node on tensors (what
    `edge.reference.apply_float` computes on NumPy)."""
    p = node.params
    x = inputs[0]
    op = node.op
    if op == "conv2d":
        y = arithmetic.conv2d(x, p["kernel"], p["strides"], p["padding"])
        return y + p["bias"], None
    if op == "dense":
        return ops.matmul(x, p["kernel"]) + p["bias"], None
    if op == "avg_pool":
        where = (p["pool_size"], p["strides"], p["padding"])
        sums = arithmetic.pool_sums(x, *where)
        return sums / arithmetic.pool_counts(x, *where), None
    if op == "max_pool":
        where = (p["pool_size"], p["strides"], p["padding"])
        return arithmetic.max_pool(x, *where), None
    if op == "flatten":
        return arithmetic.flatten(x), None
    if op == "affine":
        return x * p["scale"] + p["offset"], None
    if op == "neuron":
        kernel = p.get("recurrent_kernel")
        spikes, _, state = graph_step.neuron_step(
            node,
            x,
            state,
            p,
            recurrent=None if kernel is None else lambda o: o @ kernel,
        )
        return spikes, state
    if op == "integrator":
        v = ops.zeros_like(x) if state is None else state
        _, u, v = functional.neuron_step(x, v, 0.0, p["decay"], "none")
        return u, v
    raise ValueError(
        f"Node '{node.name}' ({op}) cannot run on the host of a Loihi QAT "
        "model."
    )


def _run_host(arithmetic, nodes, values, states):
    """Runs `nodes` in order, reading and writing `values` by name."""
    for node in nodes:
        args = [values[name] for name in node.inputs]
        value, state = _float_step(
            arithmetic, node, args, states.get(node.name)
        )
        if state is not None:
            states[node.name] = state
        values[node.name] = value


def _or_weight(channels, pool_size):
    """The max pool's OR layer: ones on the channel diagonal."""
    kh, kw = pool_size
    weight = np.zeros((kh, kw, channels, channels), np.float64)
    weight[:, :, np.arange(channels), np.arange(channels)] = 1
    return weight


@saving.register
class LoihiIntegerGraph(StepGraphLayer):
    """A fused step graph on Loihi's fixed point that trains (Loihi QAT).

    Made by `edge.qat.quantize_model(model, profile="loihi")`; see the
    module docstring.

    Args:
        nodes: the fused float graph's nodes, dicts `{"name", "op",
            "inputs", "shape", "params"}` in execution order, `nodes[0]`
            the input.
        layers: the chip layers in order, dicts with `name` (the synaptic
            node, or the max pool of an OR layer), `role` (`"synaptic"` or
            `"max_pool"`), `kind` (`"conv"` or `"dense"`), `neuron` (the
            neuron node), `pool` (the folded average pool node or `None`),
            `scale` (`S`), `level` (`n`), `threshold` (`vThMant`),
            `v_decay`, `i_decay`, `strides`, `padding`, `input_shape`,
            `flatten`.
        output: the graph's output node.
        aggregate: `"mean"`, `"last"`, `"max"` or `"sequence"`.
        timesteps: `T` of a direct-encoding model, or `None`.
        surrogate: the spike surrogate. Defaults to `"sigmoid"`.

    Call arguments:
        inputs: float inputs as the float model takes them.

    Returns:
        The host readout of the chip's spikes, aggregated.
    """

    def __init__(
        self,
        nodes,
        layers,
        output,
        aggregate="mean",
        timesteps=None,
        surrogate="sigmoid",
        **kwargs,
    ):
        super().__init__(
            nodes, output, aggregate, timesteps, surrogate, **kwargs
        )
        self.chip = [
            {k: _unpack(v) for k, v in layer.items()} for layer in layers
        ]
        names = [n.name for n in self.graph_nodes]
        first = [n.op for n in self.graph_nodes].index("neuron")
        last = names.index(self.chip[-1]["neuron"])
        self.encoder = self.graph_nodes[1 : first + 1]  # the host encoder
        self.decoder = self.graph_nodes[last + 1 :]  # the host readout
        self.encoder_output = names[first]
        self.chip_output = names[last]

    def build(self, input_shape):
        nodes = {n.name: n for n in self.graph_nodes}
        for layer in self.chip:
            if layer["role"] != "synaptic":
                continue
            keys = [(layer["name"], "kernel")]
            if layer["i_decay"] == lfp.DECAY_UNITY:
                # A decaying current (CubaLIF) would filter a bias that
                # Loihi adds to the membrane: the exporter refuses a bias
                # there, so it stays zero.
                keys.append((layer["name"], "bias"))
            if "recurrent_kernel" in nodes[layer["neuron"]].params:
                keys.append((layer["neuron"], "recurrent_kernel"))
            for name, key in keys:
                value = np.asarray(nodes[name].params[key], "float64")
                self.float_weights[(name, key)] = self.add_weight(
                    shape=value.shape,
                    dtype="float64",
                    initializer=keras.initializers.Constant(value),
                    name=f"{name}_{key}",
                )

    def float_params(self):
        """`{(node, key): NumPy float64}`: the trained float weights."""
        return {
            key: np.asarray(ops.convert_to_numpy(w), np.float64)
            for key, w in self.float_weights.items()
        }

    def _integers(self, layer):
        """`(weight, bias, recurrent weight)` integers of a chip layer."""
        if layer["role"] != "synaptic":
            channels = layer["input_shape"][-1]
            weight = _or_weight(channels, layer["pool_size"])
            return ops.convert_to_tensor(weight), np.zeros(channels), None
        weight = self.float_weights[(layer["name"], "kernel")]
        bias = self.float_weights.get((layer["name"], "bias"))
        if bias is None:
            bias = np.zeros(layer["shape"][-1])
        weight, bias = ops.cast(weight, "float64"), ops.cast(bias, "float64")
        if layer["pool"] is not None:
            weight = lfp.fold_average_pool(
                weight,
                layer["kind"],
                layer["pool_size"],
                layer["input_shape"],
                xp=ops,
            )
        scale = np.asarray(layer["scale"], np.float64)
        recurrent = self.float_weights.get(
            (layer["neuron"], "recurrent_kernel")
        )
        if recurrent is not None:
            recurrent = lfp.weight_integers(
                ops.cast(recurrent, "float64"), scale
            )
        return (
            lfp.weight_integers(weight, scale),
            lfp.bias_integers(bias, scale),
            recurrent,
        )

    def _synapse(self, layer, weight, x):
        if layer["kind"] == "dense":
            a = ops.matmul(self.arithmetic.flatten(x), weight)
        else:
            ph, pw = layer["padding"]
            x = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
            a = ops.conv(x, weight, strides=tuple(layer["strides"]))
        return lfp.synapse_wrap(a, layer["kind"])

    def _spike_fn(self, layer):
        if layer["role"] != "synaptic":  # the OR: threshold 1 spike
            unit, threshold = 1.0 / (1 << lfp.ACT_SHIFT), 1.0
        else:
            scale = np.asarray(layer["scale"], np.float64)
            unit = 1.0 / ((1 << lfp.ACT_SHIFT) * scale)
            threshold = layer["level"] / scale

        def spike_fn(x):  # x = v - ((vThMant << 6) + 1), file units
            return self.surrogate(x * unit, threshold)

        return spike_fn

    def chip_spikes(self, inputs):
        """The chip's input and output spikes at every step: two lists of
        `T` float64 tensors, the host encoder's spikes and the last chip
        layer's (what `edge.targets.loihi.reference.run_loihi` returns as
        its window, step by step)."""
        x = ops.cast(inputs, "float64")
        steps = self.timesteps or x.shape[1]
        integers = [self._integers(layer) for layer in self.chip]
        spike_fns = [self._spike_fn(layer) for layer in self.chip]
        host, chip = {}, [None] * len(self.chip)
        encoded, outputs = [], []
        for t in range(steps):
            values = {
                self.graph_nodes[0].name: x if self.timesteps else x[:, t]
            }
            _run_host(self.arithmetic, self.encoder, values, host)
            s = ops.stop_gradient(values[self.encoder_output])
            encoded.append(s)
            for j, layer in enumerate(self.chip):
                weight, bias, recurrent = integers[j]
                a = self._synapse(layer, weight, s)
                if chip[j] is None:
                    chip[j] = (ops.zeros_like(a),) * 3
                u, v, previous = chip[j]
                if recurrent is not None:
                    a = lfp.wrap(a + ops.matmul(previous, recurrent), 32)
                s, u, v = lfp.neuron_step(
                    a,
                    u,
                    v,
                    layer["threshold"],
                    layer["v_decay"],
                    layer["i_decay"],
                    bias,
                    decay=lfp.decay_toward_zero_ste,
                    spike_fn=spike_fns[j],
                )
                chip[j] = (u, v, s)
            outputs.append(s)
        return encoded, outputs

    def call(self, inputs):
        _, spikes = self.chip_spikes(inputs)
        host, outputs = {}, []
        for s in spikes:
            values = {self.chip_output: s}
            _run_host(self.arithmetic, self.decoder, values, host)
            outputs.append(values[self.output_name])
        stacked = aggregate_steps(outputs, self.aggregate)
        return ops.cast(stacked, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["layers"] = [
            {k: _pack(v) for k, v in layer.items()} for layer in self.chip
        ]
        return config
