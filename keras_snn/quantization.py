"""Quantization-aware training: a Keras layer that computes the deployed
integers.

`IntegerGraph` runs a quantized step graph (what `edge.quantize` makes of a
trained keras_snn model: batch norms folded, every scale chosen) with the
integer arithmetic of `keras_snn.graph_step.apply_integer`, the function
the integer reference `edge.integer` runs, on Keras tensors that hold the
integers in float64. Its forward pass therefore gives the deployed
integers bit for bit, and `fit` trains the float weights behind them:

- weights are fake-quantized per output channel,
  `W_q = clip(round(W / s_w), -127, 127)`, biases
  `b_q = round(b / (s_w s_x))`, the input `clip(round(x / s_in), -127, 127)`
  (`fixed_point.round_half_away`, ties away from zero), with
  straight-through gradients (`keras_snn.fixed_point_ops`);
- currents are requantized and saturated to `state_bits`
  (`requantize_ste`, `saturate`), membranes decay by `decay_multiply_ste`,
  thresholds and decays are the integers of the quantized graph;
- spikes are Heaviside forward, a surrogate gradient backward (on the real
  potential, `(u - th_q) s_v`).

The activation scales, the per-channel weight scales and the requantization
multipliers stay as they were quantized (the standard fold-and-freeze QAT
recipe: batch norms are folded before training, their statistics frozen);
thresholds and decays are not trained. Build it with
`edge.qat.quantize_model(model, calibration_data)`; `edge.export` then
takes the trained weights with these scales as they are.

References: Wu et al. 2019, Eq. 5-6 (the neuron), Zheng et al. 2021,
Eq. 8-10 (the folded tdBN).
"""

import keras
import numpy as np
from keras import ops

from keras_snn import fixed_point
from keras_snn import fixed_point_ops
from keras_snn import graph_step
from keras_snn import saving
from keras_snn import surrogates

__all__ = ["IntegerGraph", "kernel_integers", "bias_integers"]

SYNAPTIC = ("conv2d", "dense", "affine")
AGGREGATES = ("mean", "last", "max", "sequence")


def kernel_integers(kernel, weight_scale):
    """`clip(round(W / s_w), -127, 127)`: int8 weights per output channel.

    On NumPy arrays the exact integers (as `edge.quantize` computes them),
    on tensors with a straight-through gradient.
    """
    if fixed_point._is_numpy(kernel):
        q = fixed_point.round_half_away(np.asarray(kernel) / weight_scale)
        return np.clip(q, -127, 127)
    q = fixed_point_ops.round_half_away_ste(
        kernel / ops.cast(weight_scale, kernel.dtype)
    )
    return ops.clip(q, -127, 127)


def bias_integers(bias, bias_scale):
    """`round(b / (s_w s_x))`: the bias in the accumulator's scale."""
    if fixed_point._is_numpy(bias):
        return fixed_point.round_half_away(np.asarray(bias) / bias_scale)
    return fixed_point_ops.round_half_away_ste(
        bias / ops.cast(bias_scale, bias.dtype)
    )


def aggregate_steps(outputs, aggregate):
    """Per-step outputs `[(N, ...)] * T` made one output, as
    `edge.reference.aggregate` does: `"mean"`, `"last"`, `"max"` over the
    steps, or the `(N, T, ...)` `"sequence"`."""
    stacked = ops.stack(outputs, axis=1)
    if aggregate == "mean":
        return ops.mean(stacked, axis=1)
    if aggregate == "last":
        return stacked[:, -1]
    if aggregate == "max":
        return ops.max(stacked, axis=1)
    return stacked


def _pack(value):
    """A param as JSON: arrays keep their dtype."""
    if isinstance(value, (np.ndarray, np.generic)):
        return {"array": np.asarray(value).tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return list(value)
    return value


def _unpack(value):
    if isinstance(value, dict) and "array" in value:
        return np.asarray(value["array"], value["dtype"])
    return value


class _Node:
    """A node of the graph: `name`, `op`, `inputs`, `shape`, `params`."""

    def __init__(self, name, op, inputs, shape, params):
        self.name, self.op, self.inputs = name, op, list(inputs)
        self.shape, self.params = tuple(shape), dict(params)


def _tensor_arithmetic(surrogate):
    """`graph_step.Arithmetic` on float64 tensors with straight-through
    roundings and `surrogate` spikes."""

    def conv2d(x, kernel, strides, padding):
        return ops.conv(x, kernel, strides=tuple(strides), padding=padding)

    def pool_sums(x, pool_size, strides, padding):
        ones = ops.ones((*pool_size, x.shape[-1], 1), x.dtype)
        return ops.depthwise_conv(
            x, ones, strides=tuple(strides), padding=padding
        )

    def pool_counts(x, pool_size, strides, padding):
        inside = ops.ones((1, *x.shape[1:3], 1), x.dtype)
        ones = ops.ones((*pool_size, 1, 1), x.dtype)
        return ops.conv(inside, ones, strides=tuple(strides), padding=padding)

    def max_pool(x, pool_size, strides, padding):
        return ops.max_pool(x, tuple(pool_size), tuple(strides), padding)

    def spikes_of(node):
        p = node.params
        scale = p["scale"]

        def spike_fn(x):  # x = u - theta on the integer grid
            return surrogate(x * scale, p["threshold_q"] * scale)

        return spike_fn

    return graph_step.Arithmetic(
        conv2d=conv2d,
        dense=ops.matmul,
        pool_sums=pool_sums,
        pool_counts=pool_counts,
        max_pool=max_pool,
        flatten=lambda x: ops.reshape(x, (-1, int(np.prod(x.shape[1:])))),
        integers=lambda x: ops.cast(x, "float64"),
        requantize=fixed_point_ops.requantize_ste,
        decay_multiply=fixed_point_ops.decay_multiply_ste,
        rounded_average=fixed_point_ops.rounded_average_ste,
        spike_fn=spikes_of,
    )


class StepGraphLayer(keras.layers.Layer):
    """The part of the QAT layers that holds a step graph (not registered:
    `IntegerGraph` and `keras_snn.quantization_loihi.LoihiIntegerGraph`
    derive from it).

    Args:
        nodes: list of dicts `{"name", "op", "inputs", "shape", "params"}`
            in execution order, `nodes[0]` the input (params packed by
            `get_config`: arrays keep their dtype).
        output: the name of the output node.
        aggregate: how per-step outputs make the output: `"mean"`,
            `"last"`, `"max"` or `"sequence"`.
        timesteps: `T` of a direct-encoding model (inputs `(N, ...)`), or
            `None` (inputs `(N, T, ...)`).
        surrogate: the spike surrogate (name, config or object).
    """

    def __init__(
        self, nodes, output, aggregate, timesteps, surrogate, **kwargs
    ):
        super().__init__(**kwargs)
        if aggregate not in AGGREGATES:
            raise ValueError(
                f"Argument `aggregate` must be one of {AGGREGATES}. "
                f"Received: aggregate={aggregate!r}"
            )
        self.node_configs = [dict(node) for node in nodes]
        self.graph_nodes = [
            _Node(
                n["name"],
                n["op"],
                n["inputs"],
                n["shape"],
                {k: _unpack(v) for k, v in n["params"].items()},
            )
            for n in self.node_configs
        ]
        self.output_name = output
        self.aggregate = aggregate
        self.timesteps = None if timesteps is None else int(timesteps)
        self.surrogate = surrogates.get(surrogate)
        self.arithmetic = _tensor_arithmetic(self.surrogate)
        self.float_weights = {}

    def compute_output_shape(self, input_shape):
        shape = next(
            n.shape for n in self.graph_nodes if n.name == self.output_name
        )
        if self.aggregate == "sequence":
            steps = self.timesteps or input_shape[1]
            return (input_shape[0], steps, *shape)
        return (input_shape[0], *shape)

    def get_config(self):
        config = super().get_config()
        nodes = []
        for node in self.node_configs:
            params = {k: _pack(v) for k, v in node["params"].items()}
            nodes.append({**node, "params": params})
        config.update(
            nodes=nodes,
            output=self.output_name,
            aggregate=self.aggregate,
            timesteps=self.timesteps,
            surrogate=surrogates.serialize(self.surrogate),
        )
        return config


@saving.register
class IntegerGraph(StepGraphLayer):
    """A quantized step graph that trains: quantization-aware training.

    The forward pass is the integer reference's (`edge.integer`), bit for
    bit; gradients pass by straight-through estimators and the spike
    surrogate. Made by `edge.qat.quantize_model`; see the module docstring.

    Args:
        nodes: list of dicts `{"name", "op", "inputs", "shape", "params"}`
            in execution order, `nodes[0]` the input: the quantized
            graph's nodes. A synaptic node's float `kernel` and `bias`
            (and a recurrent neuron's `recurrent_kernel`) become the
            layer's trainable weights, initialized from them.
        output: the name of the output node.
        aggregate: how per-step outputs make the output: `"mean"`,
            `"last"`, `"max"` or `"sequence"`.
        timesteps: `T` of a direct-encoding model (inputs `(N, ...)`), or
            `None` (inputs `(N, T, ...)`).
        input_scale: `s_in` of the int8 input.
        output_scale: the scale of the integer outputs.
        state_bits: width of currents and states.
        surrogate: the spike surrogate (name, config or object). Defaults
            to `"sigmoid"`.

    Call arguments:
        inputs: float inputs as the float model takes them.

    Returns:
        The dequantized output (per step with `aggregate="sequence"`).
    """

    def __init__(
        self,
        nodes,
        output,
        aggregate="mean",
        timesteps=None,
        input_scale=1.0,
        output_scale=1.0,
        state_bits=16,
        surrogate="sigmoid",
        **kwargs,
    ):
        super().__init__(
            nodes, output, aggregate, timesteps, surrogate, **kwargs
        )
        self.input_scale = float(input_scale)
        self.output_scale = float(output_scale)
        self.state_bits = int(state_bits)

    def build(self, input_shape):
        for node in self.graph_nodes:
            p = node.params
            names = [("recurrent_kernel", "recurrent_kernel")]
            if node.op in SYNAPTIC:
                names = [("kernel", "kernel"), ("bias", "bias")]
            for key, label in names:
                if key not in p:
                    continue
                value = np.asarray(p[key], "float64")
                self.float_weights[(node.name, key)] = self.add_weight(
                    shape=value.shape,
                    dtype="float64",
                    initializer=keras.initializers.Constant(value),
                    name=f"{node.name}_{label}",
                )

    def integer_params(self, node):
        """The node's integer params from the current weights (tensors in
        the forward pass; `quantized_params` gives NumPy)."""
        return self._integers(node, lambda key: self.float_weights[key])

    def quantized_params(self):
        """`{node name: params}` with the integers of the trained weights
        (NumPy int64): what `edge.export` deploys."""

        def weight(key):
            value = ops.convert_to_numpy(self.float_weights[key])
            return np.asarray(value, np.float64)

        return {
            node.name: self._integers(node, weight) for node in self.graph_nodes
        }

    @staticmethod
    def _integers(node, weight):
        p = dict(node.params)
        if node.op in SYNAPTIC:
            kernel = weight((node.name, "kernel"))
            bias = weight((node.name, "bias"))
            if not fixed_point._is_numpy(kernel):
                kernel, bias = (ops.cast(w, "float64") for w in (kernel, bias))
            p["kernel_q"] = kernel_integers(kernel, p["weight_scale"])
            p["bias_q"] = bias_integers(
                bias, p["weight_scale"] * p["input_scale"]
            )
        elif "recurrent_kernel" in p:
            kernel = weight((node.name, "recurrent_kernel"))
            if not fixed_point._is_numpy(kernel):
                kernel = ops.cast(kernel, "float64")
            p["recurrent_kernel_q"] = kernel_integers(
                kernel, p["recurrent_weight_scale"]
            )
        return p

    def integer_outputs(self, inputs):
        """The output node's integers at every step: a list of `T`
        float64 tensors `(N, ...)` (what `edge.integer.run_integer`
        returns as `raw`, step by step)."""
        x = ops.cast(inputs, "float64")
        x = ops.clip(
            fixed_point_ops.round_half_away_ste(x / self.input_scale),
            -127,
            127,
        )
        steps = self.timesteps or x.shape[1]
        nodes = [
            _Node(n.name, n.op, n.inputs, n.shape, self.integer_params(n))
            for n in self.graph_nodes
        ]
        states, outputs = {}, []
        for t in range(steps):
            values = {nodes[0].name: x if self.timesteps else x[:, t]}
            for node in nodes[1:]:
                args = [values[name] for name in node.inputs]
                value, state = graph_step.apply_integer(
                    node,
                    args,
                    states.get(node.name),
                    self.state_bits,
                    self.arithmetic,
                )
                if state is not None:
                    states[node.name] = state
                values[node.name] = value
            outputs.append(values[self.output_name])
        return outputs

    def call(self, inputs):
        outputs = [o * self.output_scale for o in self.integer_outputs(inputs)]
        stacked = aggregate_steps(outputs, self.aggregate)
        return ops.cast(stacked, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_scale=self.input_scale,
            output_scale=self.output_scale,
            state_bits=self.state_bits,
        )
        return config
