"""The integer TFLite step model (`edge.targets.tflite.integer_model`).

LiteRT (default and reference kernels) and TFLite-Micro must compute, bit
for bit, the integers of the integer reference `edge.integer.run_integer`
on the 16x8 model written from the quantized graph; the model declares the
reference's power-of-two activation scales, uses only the ops of the
module's op mapping, and refuses states of other widths. A one-neuron
network checks the whole chain against integers derived by hand from the
equations of `edge.quantize`, `edge.integer` and `keras_snn.fixed_point`.
"""

import math
import re

import keras
import numpy as np
import pytest
from edge_models import conv_model
from edge_models import dense_model
from edge_models import fold
from edge_models import images
from edge_models import residual_model

from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge.errors import UnsupportedLayerError
from edge.targets.tflite import converter as tflite
from edge.targets.tflite import integer_model
from edge.targets.tflite.step_model import state_name
from keras_snn import layers

# The op mapping of `integer_model`'s docstring; FULLY_CONNECTED is named
# there only as the op it avoids.
INTEGER_OPS = {
    "ADD",
    "AVERAGE_POOL_2D",
    "CAST",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "GREATER_EQUAL",
    "MAX_POOL_2D",
    "MUL",
    "RESHAPE",
    "SELECT_V2",
    "SUB",
}

# (name, model factory, input shape): conv with average pooling, dense
# with soft and hard reset, a residual block with an affine (tdBN of
# spikes) shortcut, and the membrane, voting and rate heads.
MODELS = {
    "conv_decoding_soft": (
        lambda: conv_model(timesteps=2, reset="soft"), (8, 8, 1)
    ),
    "dense_soft": (lambda: dense_model(timesteps=2, reset="soft"), (8, 8, 1)),
    "dense_hard": (lambda: dense_model(timesteps=2, reset="hard"), (8, 8, 1)),
    "residual": (lambda: residual_model(timesteps=2), (8, 8, 2)),
    "conv_membrane": (
        lambda: conv_model(timesteps=2, head="membrane"), (8, 8, 1)
    ),
    "conv_voting": (lambda: conv_model(timesteps=2, head="voting"), (8, 8, 1)),
    "conv_rate": (lambda: conv_model(timesteps=2, head="rate"), (8, 8, 1)),
}


def _quantized(name, state_bits=16):
    keras.utils.set_random_seed(3)
    make, shape = MODELS[name]
    graph = fuse.fuse(ir.extract(make()))
    x = images(40, shape, seed=1)
    return quantize.quantize(graph, x[:32], state_bits), x[32:38]


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request):
    """`(name, qgraph, integer model bytes, evaluation inputs)`."""
    qgraph, x = _quantized(request.param)
    return request.param, qgraph, integer_model.build_integer_model(qgraph), x


def _is_power_of_two(value):
    mantissa, _ = math.frexp(value)
    return value > 0 and mantissa == 0.5


# -- bit for bit -------------------------------------------------------------
def test_litert_and_tflm_equal_the_integer_reference(built):
    name, qgraph, model_bytes, x = built
    expected_out, expected, trace = integer.run_integer(qgraph, x, record=True)
    assert expected.shape[:2] == (len(x), 2)
    # A real test: outputs vary and some neuron fires.
    assert len(np.unique(expected)) > 1, name
    assert any(
        np.any(np.stack(trace[node.name]))
        for node in qgraph.graph.nodes
        if node.op == "neuron"
    ), name
    runs = {
        "LiteRT": integer_model.run_integer_steps(
            tflite.LiteRTRunner(model_bytes), qgraph, x
        ),
        "LiteRT (reference kernels)": integer_model.run_integer_steps(
            tflite.LiteRTRunner(model_bytes, reference_kernels=True),
            qgraph,
            x,
        ),
        "TFLite-Micro": integer_model.run_integer_tflm(model_bytes, qgraph, x),
    }
    for consumer, (output, raw) in runs.items():
        assert raw.dtype == np.int64, consumer
        np.testing.assert_array_equal(raw, expected, err_msg=consumer)
        np.testing.assert_array_equal(output, expected_out, err_msg=consumer)


def test_every_state_output_equals_the_reference_state(built):
    # The states fed back are the reference's states, not only `y`.
    _, qgraph, model_bytes, x = built
    # (The models' DirectEncoding feeds the same input at every step.)
    _, _, trace = integer.run_integer(qgraph, x[:2], record=True)
    for reference_kernels in (False, True):
        runner = tflite.LiteRTRunner(model_bytes, reference_kernels)
        for i in range(2):
            states = integer_model.initial_states(qgraph)
            x_t = integer.quantize_input(qgraph, x[i : i + 1])
            for t in range(qgraph.graph.timesteps):
                result = runner({"x": x_t.astype(np.int16), **states})
                states = {key: result[key] for key in states}
                for node in qgraph.graph.state_nodes:
                    np.testing.assert_array_equal(
                        states[state_name(node)][0],
                        trace[f"{node.name}:state"][t][i],
                        err_msg=f"{node.name} at t={t}",
                    )


# -- what the model declares -------------------------------------------------
def test_model_uses_only_the_documented_ops(built):
    _, _, model_bytes, _ = built
    ops = set(tflite.op_names(model_bytes))
    assert ops <= INTEGER_OPS
    assert "FULLY_CONNECTED" not in ops


def test_the_documented_ops_are_in_the_docstring_and_all_used():
    doc = integer_model.__doc__
    for op in INTEGER_OPS:
        assert re.search(rf"\b{op}\b", doc), op
    used = set()
    for name in MODELS:
        qgraph, _ = _quantized(name)
        used |= set(
            tflite.op_names(integer_model.build_integer_model(qgraph))
        )
    assert used == INTEGER_OPS


def test_tensors_declare_the_reference_scales_and_types(built):
    _, qgraph, model_bytes, _ = built
    schema = tflite._schema()
    model = tflite._unpack(model_bytes)
    tensors = model.subgraphs[0].tensors
    by_name = {t.name.decode(): t for t in tensors}
    types = {t.type for t in tensors}
    assert schema.TensorType.FLOAT32 not in types
    for tensor in tensors:
        q = tensor.quantization
        scales = [] if q is None or q.scale is None else list(q.scale)
        if scales:
            assert list(q.zeroPoint) == [0] * len(scales)
        if tensor.type == schema.TensorType.INT16:
            # Activations, states and int16 constants: one power-of-two
            # scale each (the decay constant's is 2^-15).
            assert len(scales) == 1, tensor.name
            assert _is_power_of_two(scales[0]), (tensor.name, scales)
    # The input and the states carry the reference's scales.
    x = by_name["x"]
    assert x.type == schema.TensorType.INT16
    assert list(x.quantization.scale) == [qgraph.input_scale]
    for node in qgraph.graph.state_nodes:
        state = by_name[state_name(node)]
        assert list(state.quantization.scale) == [node.params["scale"]]
    # Each convolution: int8 per-channel weights whose declared scales
    # give `s_x s_w[c] / s_y == m[c] / 2^n[c]` exactly (TFLite derives the
    # reference's multiplier from them), an int64 bias in the
    # accumulator's scale `s_x s_w[c]`.
    convolutions = 0
    for name, operator in tflite._operators(model):
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        convolutions += 1
        source, kernel, bias = (tensors[i] for i in operator.inputs)
        (out,) = (tensors[i] for i in operator.outputs)
        node = qgraph.node(kernel.name.decode().split("/")[0])
        p = node.params
        assert kernel.type == schema.TensorType.INT8
        assert bias.type == schema.TensorType.INT64
        assert source.type == out.type == schema.TensorType.INT16
        np.testing.assert_array_equal(
            np.frombuffer(bytes(model.buffers[kernel.buffer].data), np.int8),
            _kernel_ohwi(node).ravel(),
        )
        np.testing.assert_array_equal(
            np.frombuffer(bytes(model.buffers[bias.buffer].data), np.int64),
            p["bias_q"],
        )
        (s_x,), (s_y,) = source.quantization.scale, out.quantization.scale
        assert s_y == p["scale"]
        weight_scale = np.array(kernel.quantization.scale, np.float64)
        ratio = np.ldexp(p["multiplier"].astype(np.float64), -p["shift"])
        np.testing.assert_array_equal(weight_scale * s_x / s_y, ratio)
        np.testing.assert_array_equal(
            np.array(bias.quantization.scale, np.float32),
            (weight_scale * s_x).astype(np.float32),
        )
        m = p["multiplier"]
        assert np.all((m >= 1 << 14) & (m < 1 << 15))
        assert np.all((p["shift"] >= 1) & (p["shift"] <= 46))
    assert convolutions == sum(
        n.op in ("conv2d", "dense", "affine") for n in qgraph.graph.nodes
    )


def _kernel_ohwi(node):
    """The int8 weights as the model stores them."""
    kernel = np.asarray(node.params["kernel_q"])
    if node.op == "affine":
        return kernel
    if node.op == "dense":
        kernel = kernel[None, None]
    return np.transpose(kernel, (3, 0, 1, 2))


# -- refusals ----------------------------------------------------------------
@pytest.mark.parametrize("bits", [12, 24])
def test_states_of_other_widths_are_refused(bits):
    qgraph, _ = _quantized("dense_soft", state_bits=bits)
    with pytest.raises(UnsupportedLayerError, match=f"state_bits={bits}"):
        integer_model.build_integer_model(qgraph)


# -- one neuron, by hand -----------------------------------------------------
def _one_neuron(reset):
    """x (1,) -> Dense(1), w = 0.75, b = 0.125 -> LIF(1.0, 0.5), T = 4."""
    inputs = keras.Input((1,))
    x = layers.DirectEncoding(4)(inputs)
    dense = keras.layers.Dense(1)
    x = fold(dense)(x)
    outputs = layers.LIF(threshold=1.0, decay=0.5, reset=reset)(x)
    model = keras.Model(inputs, outputs, name=f"one_neuron_{reset}")
    dense.set_weights([np.float32([[0.75]]), np.float32([0.125])])
    return model


def _ties_away(numerator, denominator):
    """round(numerator / denominator), ties away from zero, on ints."""
    sign = -1 if numerator * denominator < 0 else 1
    a, b = abs(numerator), abs(denominator)
    return sign * ((2 * a + b) // (2 * b))


# Inputs: 1 (fires), -3 (clipped to -127, saturates the potential),
# -11/64 (odd negative potentials: the decay's ties go away from zero).
HAND_X = np.float32([[1.0], [-3.0], [-11 / 64]])


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_one_neuron_by_hand(reset):
    model = _one_neuron(reset)
    graph = fuse.fuse(ir.extract(model))
    # Calibration on x = 1.5 and 0. On 1.5, I = 1.25 and the float states
    # are 0.25, 0.375, 0.4375, 0.46875 (soft) or 0 (hard, firing at every
    # step); on 0, I = 0.125 and the states reach 0.234375. R = max|I| +
    # max|v| = 1.71875 (soft) or 1.484375 (hard), in (1, 2) either way.
    qgraph = quantize.quantize(graph, np.float32([[1.5], [0.0]]))
    dense, lif = graph.nodes[1], graph.nodes[2]
    d, n = qgraph.node(dense.name).params, qgraph.node(lif.name).params
    # s_in: 2^-6 (1.5 / 2^-6 = 96 <= 127; 1.5 / 2^-7 = 192 would saturate
    # a third of the range, beyond the top 1/65 that edge.quantize allows).
    assert qgraph.input_scale == 2.0**-6
    # s_v: the power of two at or above R / 32767 with 1 < R < 2: 2^-14.
    assert n["scale"] == d["scale"] == 2.0**-14
    # Multiplier: s_in max|W| / (127 s_v) = 2^8 * 0.75 / 127 = 192 / 127
    # = (96 / 127) 2^1; m = round(96 2^15 / 127) = round(24769.51) =
    # 24770, n = 15 - 1 = 14.
    assert (int(d["multiplier"][0]), int(d["shift"][0])) == (24770, 14)
    assert _ties_away(96 << 15, 127) == 24770
    # s_w = 24770 2^-14 s_v / s_in = 24770 2^-22; W_q = round(0.75 2^22 /
    # 24770) = round(126.998) = 127; b_q = round(0.125 / (s_w s_in)) =
    # round(2^25 / 24770) = round(1354.64) = 1355.
    assert int(d["kernel_q"][0, 0]) == 127 == _ties_away(3 << 20, 24770)
    assert int(d["bias_q"][0]) == 1355 == _ties_away(1 << 25, 24770)
    # th_q = 1 / 2^-14 = 16384; d_q = 2 round(0.5 2^14) = 16384 (even).
    assert n["threshold_q"] == 16384 and n["decay_q"] == 16384

    # The equations of edge.integer on Python ints, step by step.
    def current(x):
        x_q = max(-127, min(127, int(x * 64)))  # x / s_in: whole here
        acc = 1355 + 127 * x_q  # bias in the accumulator
        return (acc * 24770 + (1 << 13)) >> 14  # rshift_round, ties up

    def trajectory(x):
        i, v, spikes, states = current(x), 0, [], []
        for _ in range(4):
            u = _ties_away(v * 16384, 1 << 15) + i  # decay_multiply
            u = max(-32768, min(32767, u))  # saturated before comparing
            fired = int(u >= 16384)
            if reset == "soft":
                v = u - 16384 * fired
            else:
                v = 0 if fired else u
            spikes.append(fired)
            states.append(v)
        return spikes, states

    # x = 1: x_q = 64, acc = 1355 + 8128 = 9483, I = rshift_round(9483 *
    # 24770, 14) = 14337. u1 = 14337; u2 = round(14337 / 2) + 14337 =
    # 7169 + 14337 = 21506 fires (soft: v = 5122; hard: 0); soft u3 =
    # 2561 + 14337 = 16898 fires, v = 514, u4 = 257 + 14337 = 14594;
    # hard u3 = 14337, u4 = 7169 + 14337 = 21506 fires.
    # x = -3: x_q = -127, acc = 1355 - 16129 = -14774, I = -22336;
    # u2 = -11168 - 22336 = -33504 saturates to -32768, then -16384 -
    # 22336 -> -32768 again.
    # x = -11/64: x_q = -11, acc = -42, I = rshift_round(-1040340, 14) =
    # -63; u2 = round(-31.5) - 63 = -32 - 63 = -95 (ties up would give
    # -94), u3 = -48 - 63 = -111, u4 = -56 - 63 = -119.
    hand = [trajectory(float(x)) for x in HAND_X[:, 0]]
    if reset == "soft":
        assert hand[0] == ([0, 1, 1, 0], [14337, 5122, 514, 14594])
    else:
        assert hand[0] == ([0, 1, 0, 1], [14337, 0, 14337, 0])
    assert hand[1] == ([0] * 4, [-22336, -32768, -32768, -32768])
    assert hand[2] == ([0] * 4, [-63, -95, -111, -119])
    spikes = np.array([h[0] for h in hand])
    states = np.array([h[1] for h in hand])

    # edge.integer.
    _, raw, trace = integer.run_integer(qgraph, HAND_X, record=True)
    np.testing.assert_array_equal(raw[..., 0], spikes)
    np.testing.assert_array_equal(
        np.stack(trace[f"{lif.name}:state"], 1)[..., 0], states
    )
    # The integer TFLite model: spikes and states in LiteRT, both kernel
    # sets; spikes in TFLite-Micro.
    model_bytes = integer_model.build_integer_model(qgraph)
    for reference_kernels in (False, True):
        runner = tflite.LiteRTRunner(model_bytes, reference_kernels)
        for i, x in enumerate(HAND_X):
            v = np.zeros((1, 1), np.int16)
            x_q = integer.quantize_input(qgraph, x[None]).astype(np.int16)
            for t in range(4):
                result = runner({"x": x_q, state_name(lif): v})
                v = result[state_name(lif)]
                assert int(result["y"][0, 0]) == spikes[i, t]
                assert int(v[0, 0]) == states[i, t]
    _, tflm = integer_model.run_integer_tflm(model_bytes, qgraph, HAND_X)
    np.testing.assert_array_equal(tflm[..., 0], spikes)
    # The float model agrees on this case.
    np.testing.assert_array_equal(
        model.predict(HAND_X, verbose=0)[..., 0], spikes
    )


def test_spike_outputs_dequantize_to_spikes():
    # A graph whose output is a neuron's spikes has the output scale 1
    # (it had the potential's scale, so spikes read as s_v).
    model = _one_neuron("soft")
    graph = fuse.fuse(ir.extract(model))
    qgraph = quantize.quantize(graph, np.float32([[1.5], [0.0]]))
    expected = model.predict(HAND_X, verbose=0)
    output, raw = integer.run_integer(qgraph, HAND_X)
    np.testing.assert_array_equal(raw, expected)  # the integers are right
    assert qgraph.output_scale == 1.0
    np.testing.assert_array_equal(output, expected)
    model_bytes = integer_model.build_integer_model(qgraph)
    output, _ = integer_model.run_integer_steps(
        tflite.LiteRTRunner(model_bytes), qgraph, HAND_X
    )
    np.testing.assert_array_equal(output, expected)
