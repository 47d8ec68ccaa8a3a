"""The Loihi reference: Lava's bit-accurate LIF and its host encoder/readout."""

import numpy as np

from edge import ir
from edge import kernels
from edge import reference
from keras_snn import loihi_fixed_point
from keras_snn.loihi_fixed_point import LoihiDecay

__all__ = [
    "LoihiDecay",
    "decode",
    "encode",
    "loihi_neuron_step",
    "recurrent_input",
    "run_loihi",
    "run_loihi_reference",
]


# -- the Loihi reference ---------------------------------------------------
def _int32(x):
    """Two's-complement wrap to int32 (Lava's int32 arithmetic)."""
    return loihi_fixed_point.wrap(x, 32)


def _synapse(layer, x):
    """The layer's accumulated input `a` for the spikes `x` (int64)."""
    x = np.asarray(x, np.int64)
    if layer.kind == "dense":
        a = kernels.dense(x.reshape(len(x), -1), layer.weight)
        return loihi_fixed_point.synapse_wrap(a, "dense")
    ph, pw = layer.padding
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    a = kernels.conv2d(x, layer.weight, None, layer.strides, "valid")
    # Lava's fixed_pt Conv clamps its output as a signed 24-bit value
    # (`signed_clamp`, a modular wrap).
    return loihi_fixed_point.synapse_wrap(a, "conv")


def recurrent_input(layer, spikes):
    """The `dense_rec` synapse's input: `spikes @ weight_rec` (int64).

    Lava's recurrent `Dense` sends at step `t` what the layer's spikes of
    `t - 1` gave (zero at the first step), like the feed-forward one.

    Args:
        layer: the `LoihiLayer` (with `weight_rec`).
        spikes: the layer's spikes of the previous step, `(N, units)`.
    """
    x = np.asarray(spikes, np.int64)
    return _int32(kernels.dense(x.reshape(len(x), -1), layer.weight_rec))


def loihi_neuron_step(layer, a, u, v):
    """One step of Lava's bit-accurate CUBA neuron for `layer`'s constants:
    `keras_snn.loihi_fixed_point.neuron_step` (the equations are there).

    Args:
        layer: the `LoihiLayer`.
        a: the synaptic input of this step (int64).
        u, v: the states after the previous step.

    Returns:
        `(spikes, u, v)`, int64.
    """
    spikes, u, v = loihi_fixed_point.neuron_step(
        np.asarray(a, np.int64),
        np.asarray(u, np.int64),
        np.asarray(v, np.int64),
        layer.threshold,
        layer.v_decay,
        layer.i_decay,
        layer.bias,
    )
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
    then `loihi_neuron_step`. A `dense_rec` layer adds `recurrent_input`
    of its spikes of `t - 1` to `a`; the reset does not clear them (Lava's
    `LIFReset` zeroes `u` and `v`, not the recurrent synapse's buffer), so
    a spike at a sample's last step reaches the next sample's first.

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
            state = (np.zeros_like(a), np.zeros_like(a), np.zeros_like(a))
        u, v, previous = state
        if reset_interval:
            phase = (reset_offset + 1 + j) % reset_interval
            if (clock["t"] + 1) % reset_interval == phase:
                u, v = np.zeros_like(a), np.zeros_like(a)
        if layer.weight_rec is not None:
            a = _int32(a + recurrent_input(layer, previous))
        out, u, v = loihi_neuron_step(layer, a, u, v)
        return out, (u, v, out)

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
