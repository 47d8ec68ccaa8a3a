"""CubaLIF, ALIF, recurrent and per-channel neurons in TFLite and ONNX.

The integer (16x8) step model must compute, bit for bit, the outputs and
every state (membrane, synaptic current, adaptation, previous spikes) of
`edge.integer.run_integer` at every step, in LiteRT (default and
reference kernels) and TFLite-Micro; the float32 step model must follow
`edge.reference.run_float` in LiteRT and in onnxruntime (ONNX through
tf2onnx), states included. Tiny models: a dense (or a convolution) layer
into the neuron layer, a `Decoding` head, `T = 5`; the four models of the
features one by one, and two with all of them.
"""

import keras
import numpy as np
import pytest
from edge_models import randomize_neurons

import edge
from edge import fuse
from edge import integer
from edge import ir
from edge import neuron_models
from edge import quantize
from edge import reference
from edge.errors import UnsupportedLayerError
from edge.targets.onnx import converter as onnx_export
from edge.targets.tflite import converter as tflite
from edge.targets.tflite import integer_model
from edge.targets.tflite import step_model
from keras_snn import layers

STEPS = 5
INTEGER_OPS = {
    "ADD",
    "CAST",
    "CONV_2D",
    "GREATER_EQUAL",
    "MUL",
    "RESHAPE",
    "SELECT_V2",
    "SUB",
}
# The trace key of `edge.integer.run_integer(record=True)` of each state.
TRACE = {"v": "state", "current": "current", "adaptation": "adaptation"}
TRACE["spikes"] = "spikes"


def _neuron(kind):
    if kind == "cuba":
        return layers.CubaLIF(threshold=0.5, decay=0.8, current_decay=0.6)
    if kind == "alif_recurrent_soft":
        return layers.ALIF(
            threshold=0.4,
            decay=0.9,
            adaptation=0.7,
            adaptation_decay=0.8,
            recurrent=True,
            reset="soft",
        )
    if kind == "lif_recurrent_hard":
        return layers.LIF(threshold=0.5, decay=0.8, recurrent=True)
    # Every feature at once: per-channel and per-neuron constants broadcast
    # against recurrent, adaptive and current-based neurons.
    if kind == "alif_channel_recurrent":
        return layers.ALIF(
            threshold=0.4,
            decay=0.9,
            adaptation=0.7,
            adaptation_decay=0.8,
            recurrent=True,
            reset="soft",
            trainable_threshold="channel",
            trainable_decay="channel",
        )
    if kind == "cuba_neuron_recurrent":
        return layers.CubaLIF(
            threshold=0.5,
            decay=0.8,
            current_decay=0.6,
            recurrent=True,
            reset="soft",
            trainable_threshold="neuron",
            trainable_current_decay="neuron",
        )
    # The per-channel and per-neuron models of a PLIF layer.
    return layers.LIF(
        threshold=0.5,
        decay=0.8,
        reset="soft",
        trainable_threshold="channel",
        trainable_decay="neuron",
    )


def _model(kind, direct=False):
    """`(model, x)`: a dense (or, for `"plif_conv"`, a convolution) layer
    into the neuron layer, then a `Decoding` head; sequences in, or with
    `direct` (and for `"plif_conv"`) one input repeated `T` times."""
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(1)
    if kind == "plif_conv":
        inputs = keras.Input((4, 4, 1))
        x = layers.DirectEncoding(STEPS)(inputs)
        x = layers.TimeFolded(keras.layers.Conv2D(3, 3, padding="same"))(x)
        x = _neuron(kind)(x)
        x = layers.TimeFolded(keras.layers.Flatten())(x)
        data = rng.uniform(0, 1, (22, 4, 4, 1))
    else:
        inputs = keras.Input((6,) if direct else (STEPS, 6))
        x = layers.DirectEncoding(STEPS)(inputs) if direct else inputs
        x = layers.TimeFolded(keras.layers.Dense(8))(x)
        x = _neuron(kind)(x)
        data = rng.uniform(0, 1, (22, 6) if direct else (22, STEPS, 6))
    outputs = layers.Decoding(3)(x)
    model = keras.Model(inputs, outputs, name=kind)
    # A decay of exactly 1 (Q15 2^15, which int16 cannot hold) in some
    # neurons and not in others.
    randomize_neurons(model, rng, unit_decay_every=4)
    return model, data.astype("float32")


KINDS = (
    "alif_channel_recurrent",
    "alif_recurrent_soft",
    "cuba",
    "cuba_neuron_recurrent",
    "lif_recurrent_hard",
    "plif_channel",
    "plif_conv",
)


@pytest.fixture(scope="module", params=KINDS)
def built(request):
    """`(kind, fused graph, qgraph, evaluation inputs)`."""
    model, x = _model(request.param)
    graph = fuse.fuse(ir.extract(model))
    qgraph = quantize.quantize(graph, x[:16])
    return request.param, graph, qgraph, x[16:]


def _neuron_node(graph):
    (node,) = [n for n in graph.nodes if n.op == "neuron"]
    return node


def test_the_models_use_the_features(built):
    kind, graph, _, _ = built
    expected = {
        "alif_channel_recurrent": ["adaptation", "channel", "recurrent"],
        "alif_recurrent_soft": ["adaptation", "recurrent"],
        "cuba": ["current"],
        "cuba_neuron_recurrent": ["channel", "current", "recurrent"],
        "lif_recurrent_hard": ["recurrent"],
        "plif_channel": ["channel"],
        "plif_conv": ["channel"],
    }[kind]
    assert neuron_models.features(_neuron_node(graph)) == expected


# -- the integer (16x8) model, bit for bit -----------------------------------
def _expected_states(qgraph, trace):
    """`{state name: (N, T, ...)}` of the integer reference's trace."""
    node = _neuron_node(qgraph.graph)
    return {
        name: np.stack(trace[f"{node.name}:{TRACE[key]}"], 1)
        for key, name in step_model.state_names(node).items()
    }


def test_int16x8_outputs_and_states_equal_the_integer_reference(built):
    kind, _, qgraph, x = built
    model_bytes = integer_model.build_integer_model(qgraph)
    assert set(tflite.op_names(model_bytes)) <= INTEGER_OPS
    out, raw, trace = integer.run_integer(qgraph, x, record=True)
    states = _expected_states(qgraph, trace)
    assert raw.shape[:2] == (len(x), STEPS)
    # A real test: the neurons fire, but not always; the states move.
    node = _neuron_node(qgraph.graph)
    spikes = np.stack(trace[node.name])
    assert 0 < spikes.mean() < 1, kind
    assert len(np.unique(raw)) > 3, kind
    for name, value in states.items():
        assert np.any(value), (kind, name)
    runs = {
        "LiteRT": integer_model.run_integer_steps(
            tflite.LiteRTRunner(model_bytes), qgraph, x, record=True
        ),
        "LiteRT (reference kernels)": integer_model.run_integer_steps(
            tflite.LiteRTRunner(model_bytes, reference_kernels=True),
            qgraph,
            x,
            record=True,
        ),
        "TFLite-Micro": integer_model.run_integer_tflm(
            model_bytes, qgraph, x, record=True
        ),
    }
    for consumer, (output, got_raw, got_states) in runs.items():
        np.testing.assert_array_equal(got_raw, raw, err_msg=consumer)
        np.testing.assert_array_equal(output, out, err_msg=consumer)
        assert sorted(got_states) == sorted(states), consumer
        for name, value in states.items():
            np.testing.assert_array_equal(
                got_states[name], value, err_msg=f"{consumer}: {name}"
            )


def test_int16x8_states_declare_the_reference_scales(built):
    _, _, qgraph, _ = built
    model = tflite._unpack(integer_model.build_integer_model(qgraph))
    tensors = model.subgraphs[0].tensors
    signature = model.signatureDefs[0]
    node = _neuron_node(qgraph.graph)
    for items in (signature.inputs, signature.outputs):
        declared = {
            item.name.decode(): tensors[item.tensorIndex] for item in items
        }
        for key, name in step_model.state_names(node).items():
            scale = 1.0 if key == "spikes" else node.params["scale"]
            assert list(declared[name].quantization.scale) == [scale]
            assert declared[name].type == tflite._schema().TensorType.INT16


# -- the float32 step model ---------------------------------------------------
def _float_run(step_fn, graph, x):
    """`(per-step y (N, T, ...), {state name: (N, T, ...)})`, one sample
    at a time (the TFLite model has a batch of 1)."""
    ys, states = [], {}
    for i in range(len(x)):
        values = step_model.initial_states(graph, 1)
        steps, x_at = reference.input_steps(graph, x[i : i + 1])
        per_step = []
        for t in range(steps):
            result = step_fn({"x": x_at(t).astype(np.float32), **values})
            values = {key: np.asarray(result[key]) for key in values}
            per_step.append(np.asarray(result["y"])[0])
            for key, value in values.items():
                states.setdefault(key, [[] for _ in x])[i].append(value[0])
        ys.append(np.stack(per_step))
    return np.stack(ys), {k: np.stack(v) for k, v in states.items()}


@pytest.mark.parametrize("consumer", ["LiteRT", "onnxruntime"])
def test_float_step_model_follows_the_float_reference(built, consumer):
    kind, graph, _, x = built
    if consumer == "LiteRT":
        model_bytes = tflite.convert(graph)
        assert "CUSTOM" not in tflite.op_names(model_bytes)
        runner = tflite.LiteRTRunner(model_bytes)
    else:
        runner = onnx_export.OnnxRunner(onnx_export.convert(graph))
    output, trace = reference.run_float(graph, x, record=True)
    ys, states = _float_run(runner, graph, x)
    node = _neuron_node(graph)
    assert 0 < np.stack(trace[node.name]).mean() < 1, kind
    np.testing.assert_allclose(
        ys, np.stack(trace[graph.output], 1), atol=1e-5, err_msg=consumer
    )
    np.testing.assert_allclose(
        reference.aggregate(list(ys.swapaxes(0, 1)), graph.aggregate),
        output,
        atol=1e-5,
    )
    names = step_model.state_names(node)
    assert set(names.values()) <= set(states), consumer
    for key, name in names.items():
        np.testing.assert_allclose(
            states[name],
            np.stack(trace[f"{node.name}:{TRACE[key]}"], 1),
            atol=1e-5,
            err_msg=f"{consumer}: {name}",
        )


def test_step_model_state_names():
    model, _ = _model("alif_recurrent_soft")
    graph = fuse.fuse(ir.extract(model))
    node = _neuron_node(graph)
    names = step_model.state_names(node)
    assert names == {
        "v": f"v_{node.name}",
        "adaptation": f"a_{node.name}",
        "spikes": f"o_{node.name}",
    }
    step = step_model.build_step_model(graph)
    assert sorted(t.name for t in step.inputs) == sorted(["x", *names.values()])
    assert sorted(step.output) == sorted(["y", *names.values()])


# -- the export and the refusals ---------------------------------------------
def test_export_writes_the_three_targets(tmp_path):
    model, x = _model("alif_recurrent_soft", direct=True)
    report = edge.export(
        model,
        tmp_path,
        targets=("tflite", "tflite-int16x8", "onnx"),
        calibration_data=x[:16],
        eval_data=x[16:],
    )
    targets = [row.target for row in report.rows]
    assert targets.count("tflite-int16x8") == 3
    assert {"tflite-float32", "onnx"} <= set(targets)
    assert {
        "model.onnx",
        "model_float32.tflite",
        "model_int16x8.tflite",
    } <= {path.name for path in tmp_path.iterdir()}


def test_every_neuron_feature_is_implemented():
    features = tuple(sorted(neuron_models.FEATURES))
    assert tuple(sorted(step_model.NEURON_FEATURES)) == features
    assert tuple(sorted(integer_model.NEURON_FEATURES)) == features


@pytest.mark.parametrize(
    "target, module",
    [("tflite", step_model), ("onnx", step_model)],
)
def test_a_missing_feature_is_refused_naming_layer_and_target(
    monkeypatch, target, module
):
    # The one refusal path of every target (`neuron_models.require`), with
    # the feature taken out of the target's list.
    model, _ = _model("cuba")
    graph = fuse.fuse(ir.extract(model))
    layer = _neuron_node(graph).layer
    monkeypatch.setattr(module, "NEURON_FEATURES", ("adaptation",))
    with pytest.raises(UnsupportedLayerError) as info:
        if target == "onnx":
            onnx_export.convert(graph)
        else:
            tflite.convert(graph)
    message = str(info.value)
    assert f"'{layer}' (CubaLIF)" in message
    assert repr(target) in message
    assert "synaptic current" in message


def test_int16x8_refuses_a_missing_feature_naming_the_layer(monkeypatch):
    model, x = _model("lif_recurrent_hard")
    graph = fuse.fuse(ir.extract(model))
    qgraph = quantize.quantize(graph, x[:16])
    monkeypatch.setattr(integer_model, "NEURON_FEATURES", ("current",))
    with pytest.raises(UnsupportedLayerError) as info:
        integer_model.build_integer_model(qgraph)
    message = str(info.value)
    assert f"'{_neuron_node(graph).layer}' (LIF)" in message
    assert "'tflite-int16x8'" in message
    assert "recurrent synapses" in message
