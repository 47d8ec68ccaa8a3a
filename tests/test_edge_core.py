"""edge core: graph extraction, BN fusion, float and integer references."""

import keras
import numpy as np
import pytest
from edge_models import conv_model
from edge_models import dense_model
from edge_models import fold
from edge_models import images
from edge_models import residual_model

import edge
from edge import fuse
from edge import integer
from edge import ir
from edge import quantize
from edge import reference
from keras_snn import fixed_point
from keras_snn import functional
from keras_snn import layers


# -- extraction ------------------------------------------------------------
def test_extract_conv_model_ops_shapes_and_parameters():
    model = conv_model(timesteps=3)
    graph = ir.extract(model)
    assert [n.op for n in graph.nodes] == [
        "input",
        "conv2d",
        "batch_norm",
        "neuron",
        "avg_pool",
        "conv2d",
        "batch_norm",
        "neuron",
        "max_pool",
        "flatten",
        "dense",
        "neuron",
        "dense",
    ]
    assert graph.timesteps == 3 and graph.aggregate == "mean"
    assert graph.input_shape == (8, 8, 1)
    shapes = [n.shape for n in graph.nodes]
    assert shapes[1] == (8, 8, 6) and shapes[5] == (2, 2, 8)
    assert shapes[8] == (1, 1, 8) and shapes[9] == (8,)
    neurons = graph.state_nodes
    assert [(n.params["threshold"], n.params["decay"]) for n in neurons] == [
        (0.6, 0.5),
        (0.8, 1.0),
        (0.5, 0.75),
    ]
    tdbn = graph.nodes[6].params
    assert tdbn["scale"] == pytest.approx(0.8)  # alpha * V_th, Eq. 8
    conv = graph.nodes[5]
    np.testing.assert_array_equal(conv.params["bias"], np.zeros(8))
    assert conv.params["padding"] == "valid"


@pytest.mark.parametrize(
    "head, aggregate, last_ops",
    [
        ("decoding", "mean", ["dense"]),
        ("voting", "mean", ["neuron", "dense"]),
        ("membrane", "last", ["dense", "integrator"]),
        ("rate", "mean", ["dense"]),
    ],
)
def test_extract_readout_heads(head, aggregate, last_ops):
    graph = ir.extract(conv_model(head=head))
    assert graph.aggregate == aggregate
    assert [n.op for n in graph.nodes[-len(last_ops) :]] == last_ops
    assert graph.output == graph.nodes[-1].name
    if head == "voting":
        kernel = graph.nodes[-1].params["kernel"]
        np.testing.assert_array_equal(
            kernel, functional.voting_matrix(10, 2, "float64").T
        )


def test_extract_from_keras_file(tmp_path):
    model = dense_model()
    path = tmp_path / "m.keras"
    model.save(path)
    graph = ir.extract(str(path))
    assert [n.op for n in graph.nodes][:3] == ["input", "flatten", "dense"]


def _model_with(layer_fn, name="bad"):
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = layer_fn(x)
    x = layers.LIF()(x)
    x = fold(keras.layers.Flatten())(x)
    return keras.Model(inputs, layers.Decoding(3)(x), name=name)


@pytest.mark.parametrize(
    "layer_fn, fragment",
    [
        (
            lambda x: fold(
                keras.layers.Conv2D(2, 3, activation="relu", name="relu_conv")
            )(x),
            "relu_conv",
        ),
        (
            lambda x: fold(keras.layers.DepthwiseConv2D(3, name="depthwise"))(
                x
            ),
            "depthwise",
        ),
        (
            lambda x: layers.NeuNorm(name="neunorm")(
                fold(keras.layers.Conv2D(2, 3))(x)
            ),
            "neunorm",
        ),
    ],
)
def test_unsupported_layers_are_named(layer_fn, fragment):
    with pytest.raises(edge.UnsupportedLayerError) as info:
        ir.extract(_model_with(layer_fn))
    message = str(info.value)
    assert fragment in message
    assert "Supported layers:" in message and "LIF" in message


def test_stochastic_encoder_is_refused():
    inputs = keras.Input((8, 8, 1))
    x = layers.PoissonEncoding(3, name="poisson")(inputs)
    x = layers.LIF()(fold(keras.layers.Flatten())(x))
    model = keras.Model(inputs, layers.Decoding(2)(x))
    with pytest.raises(edge.UnsupportedLayerError, match="poisson"):
        ir.extract(model)


def test_non_spiking_model_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="ann")
    with pytest.raises(edge.ExportError, match="not a keras_snn model"):
        ir.extract(model)


@pytest.mark.parametrize("bad", [42, "no/such/model.keras"])
def test_non_model_arguments_are_refused(bad):
    with pytest.raises(edge.ExportError, match="model"):
        ir.extract(bad)


def test_return_sequences_false_is_refused():
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = layers.LIF(return_sequences=False, name="last_only")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(edge.UnsupportedLayerError, match="last_only"):
        ir.extract(model)


# -- fusion ----------------------------------------------------------------
def test_fusion_folds_every_batch_norm_and_matches_keras_currents():
    model = conv_model()
    graph = ir.extract(model)
    fused = fuse.fuse(graph)
    assert "batch_norm" not in fused.ops()
    assert len(fused.nodes) == len(graph.nodes) - 2
    x = images(16)
    assert fuse.check_fusion(graph, fused, x) < 1e-6
    # The fused first convolution equals Keras' conv + BN (inference) on the
    # same input: no spike lies in between, so this compares real currents.
    bn_layer = model.layers[3]
    probe = keras.Model(model.input, bn_layer.output)
    keras_current = probe.predict(x, verbose=0)[:, 0]
    conv = fused.nodes[1]
    ours = reference.apply_float(conv, [x.astype("float64")], None)[0]
    np.testing.assert_allclose(ours, keras_current, atol=1e-5, rtol=0)


def test_float_reference_equals_keras():
    for model in (conv_model(), dense_model(), conv_model(head="membrane")):
        fused = fuse.fuse(ir.extract(model))
        x = images(32)
        np.testing.assert_allclose(
            reference.run_float(fused, x),
            model.predict(x, verbose=0),
            atol=1e-5,
        )


def test_unfoldable_batch_norm_becomes_affine():
    model = residual_model()
    graph = ir.extract(model)
    fused = fuse.fuse(graph)
    assert "affine" in fused.ops() and "add" in fused.ops()
    assert "batch_norm" not in fused.ops()
    x = images(8, (8, 8, 2))
    assert fuse.check_fusion(graph, fused, x) < 1e-6
    np.testing.assert_allclose(
        reference.run_float(fused, x), model.predict(x, verbose=0), atol=1e-5
    )


def test_check_fusion_detects_a_wrong_fold():
    graph = ir.extract(conv_model())
    fused = fuse.fuse(graph)
    fused.nodes[1].params["bias"] = fused.nodes[1].params["bias"] + 1e-3
    with pytest.raises(edge.ExportError, match="fusion"):
        fuse.check_fusion(graph, fused, images(4))


# -- integer arithmetic ----------------------------------------------------
def test_rshift_round_rounds_halves_up_and_shifts_arithmetically():
    z = np.array([5, 6, 7, -5, -6, -7, -3])
    np.testing.assert_array_equal(
        integer.rshift_round(z, 1), [3, 3, 4, -2, -3, -3, -1]
    )
    np.testing.assert_array_equal(
        integer.rshift_round(np.array([100, 100]), np.array([2, 3])), [25, 13]
    )


@pytest.mark.parametrize("real", [1e-6, 0.00391, 0.5, 0.75, 1.0, 3.3, 517.0])
def test_quantize_multiplier(real):
    m, n = quantize.quantize_multiplier(real)
    assert 1 << 14 <= m < 1 << 15  # 15 bits
    assert abs(m / 2**n - real) <= real * 2**-15


def test_quantize_multiplier_rejects():
    with pytest.raises(ValueError, match="> 0"):
        quantize.quantize_multiplier(0.0)
    with pytest.raises(ValueError, match="shift"):
        quantize.quantize_multiplier(2.0**14)  # shift 0


def _one_neuron_graph(reset, decay=0.5, threshold_q=10000):
    """input (1,) -> dense 1x1 -> neuron, quantized by hand."""
    nodes = [
        ir.Node("input", "input", [], (1,)),
        ir.Node(
            "fc",
            "dense",
            ["input"],
            (1,),
            {
                "kernel_q": np.array([[100]]),
                "multiplier": np.array([1 << 14]),
                "shift": np.array([15]),  # x 0.5
                "bias_q": np.array([6]),  # in the accumulator's scale
            },
        ),
        ir.Node(
            "lif",
            "neuron",
            ["fc"],
            (1,),
            {
                "threshold_q": threshold_q,
                "decay_q": fixed_point.quantize_membrane_decay(decay),
                "reset": reset,
            },
        ),
    ]
    graph = ir.Graph(nodes, "lif", aggregate="sequence", timesteps=4)
    return quantize.QuantizedGraph(graph, 1 / 127, 1.0, state_bits=16)


def test_integer_neuron_hand_computed_trajectory():
    # x = 1.0 -> x_q = 127; acc = 6 + 12700 = 12706 (the bias before the
    # requantization); current = rshift_round(12706 * 2^14, 15) = 6353.
    # d_q = 2 round(0.5 * 2^14) = 16384; decay_multiply(v, d) = v d / 2^15
    # rounded half away from zero.
    # u1 = 6353                            -> no spike, v = 6353
    # u2 = round(6353 * 16384 / 2^15) + 6353 = 3177 + 6353 = 9530
    # u3 = round(9530 * 16384 / 2^15) + 6353 = 4765 + 6353 = 11118: fire
    #      hard: v = 0;  soft: v = 1118
    # u4 hard: 0 + 6353 = 6353;  soft: 559 + 6353 = 6912
    x = np.ones((1, 1))
    for reset, fourth in (("hard", 6353), ("soft", 6912)):
        qgraph = _one_neuron_graph(reset)
        _, raw, trace = integer.run_integer(qgraph, x, record=True)
        np.testing.assert_array_equal(raw[0, :, 0], [0, 0, 1, 0])
        states = [int(s[0, 0]) for s in trace["lif:state"]]
        assert states[:2] == [6353, 9530]
        assert states[2] == (0 if reset == "hard" else 1118)
        assert states[3] == fourth


def test_integer_if_neuron_is_exact_and_saturates():
    # State limit 2^13 - 1 = 8191. u = saturate(v + I) before the
    # comparison: u1 = 6353; u2 = 6353 + 6353 = 12706 -> 8191, which fires
    # against 8000 and is kept (no reset); then 8191 + 6353 -> 8191.
    # decay 1 (d_q = 2^15) is exact.
    qgraph = _one_neuron_graph("none", decay=1.0, threshold_q=8000)
    qgraph.state_bits = 14
    _, raw, trace = integer.run_integer(qgraph, np.ones((1, 1)), record=True)
    states = [int(s[0, 0]) for s in trace["lif:state"]]
    assert states == [6353, 8191, 8191, 8191]
    np.testing.assert_array_equal(raw[0, :, 0], [0, 1, 1, 1])
    # A threshold above the saturated range is never reached (12706 would
    # have fired against 10000 before saturation).
    qgraph = _one_neuron_graph("hard", decay=1.0, threshold_q=10000)
    qgraph.state_bits = 14
    _, raw, trace = integer.run_integer(qgraph, np.ones((1, 1)), record=True)
    np.testing.assert_array_equal(raw[0, :, 0], [0, 0, 0, 0])
    assert [int(s[0, 0]) for s in trace["lif:state"]] == [6353] + [8191] * 3


def test_integer_neuron_decay_rounds_ties_away_from_zero():
    # x = -1.0 -> x_q = -127; acc = 6 - 12700 = -12694; current =
    # rshift_round(-12694 * 2^14, 15) = -6347. u2 = round(-6347 / 2) -
    # 6347 = -3174 - 6347 = -9521 (ties up would give -3173 and -9520).
    qgraph = _one_neuron_graph("hard")
    _, _, trace = integer.run_integer(qgraph, -np.ones((1, 1)), record=True)
    assert [int(s[0, 0]) for s in trace["lif:state"]][:2] == [-6347, -9521]


def test_integer_reference_tracks_float_on_conv_model():
    model = conv_model()
    fused = fuse.fuse(ir.extract(model))
    x_cal, x = images(64, seed=1), images(64, seed=2)
    qgraph = quantize.quantize(fused, x_cal)
    float_out, float_trace = reference.run_float(fused, x, record=True)
    int_out, raw, int_trace = integer.run_integer(qgraph, x, record=True)
    assert raw.dtype == np.int64 and raw.shape == (64, 3, 10)
    for node in fused.state_nodes:
        a, b = np.stack(float_trace[node.name]), np.stack(int_trace[node.name])
        assert np.mean(a == b) > 0.93, node.name
    assert np.mean(int_out.argmax(1) == float_out.argmax(1)) >= 0.8
    # Parameters are integers in range.
    for node in qgraph.nodes:
        p = node.params
        if "kernel_q" in p:
            assert np.abs(p["kernel_q"]).max() <= 127
            assert p["multiplier"].min() >= 1 << 14
            assert p["multiplier"].max() < 1 << 15
        if node.op == "neuron":
            assert 0 < p["threshold_q"] < 1 << 15


def test_quantize_errors():
    fused = fuse.fuse(ir.extract(dense_model()))
    with pytest.raises(edge.CalibrationError, match="calibration"):
        quantize.quantize(fused, None)
    with pytest.raises(edge.CalibrationError, match="shape"):
        quantize.quantize(fused, images(4, (9, 9, 1)))
    with pytest.raises(ValueError, match="state_bits"):
        quantize.quantize(fused, images(4), state_bits=4)
    with pytest.raises(edge.UnsupportedLayerError, match="Fold"):
        quantize.quantize(ir.extract(dense_model()), images(4))


def test_select_form_of_the_neuron_equals_the_arithmetic_form():
    rng = np.random.default_rng(0)
    current = rng.normal(0, 1, (50,)).astype("float32")
    v = rng.normal(0, 1, (50,)).astype("float32")
    v[:5] = [0.5, 1.0, 1.5, 2.0, 0.0]  # dyadic: u is exactly the threshold
    current[:5] = 1.0 - 0.5 * v[:5]
    for reset in functional.RESET_MODES:
        expected = functional.neuron_step(current, v, 1.0, 0.5, reset)
        for namespace in (np, keras.ops):
            got = functional.neuron_step(
                current, v, 1.0, 0.5, reset, select_ops=namespace
            )
            for a, b in zip(expected, got, strict=True):
                np.testing.assert_allclose(np.asarray(b), a, atol=1e-6)
        assert expected[0][:5].tolist() == [1.0] * 5
