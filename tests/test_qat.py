"""Quantization-aware training: the QAT model computes the deployed integers.

`edge.qat.quantize_model` wraps a quantized step graph in one Keras layer
(`keras_snn.quantization.IntegerGraph`) that runs
`keras_snn.graph_step.apply_integer` on tensors: its per-step outputs must
equal the integer reference's (`edge.integer.run_integer`) bit for bit, at
creation (the integers `edge.export` would deploy) and after training (the
integers of the trained weights), while gradients reach the first layer.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from edge_models import conv_model
from edge_models import dense_model
from edge_models import images
from edge_models import randomize_neurons
from edge_models import residual_model

import edge
from edge import fuse
from edge import integer
from edge import ir
from edge import qat
from edge import quantize
from edge.fuzz import networks
from keras_snn import layers
from keras_snn.quantization import IntegerGraph


def _sequence_model(neuron):
    inputs = keras.Input((5, 6))
    x = layers.TimeFolded(keras.layers.Dense(8))(inputs)
    x = neuron(x)
    model = keras.Model(inputs, layers.Decoding(3)(x))
    return randomize_neurons(model, np.random.default_rng(2))


MODELS = {
    "conv_decoding_hard": lambda: conv_model(head="decoding"),
    "conv_membrane_soft": lambda: conv_model(head="membrane", reset="soft"),
    "conv_voting": lambda: conv_model(head="voting"),
    "conv_rate": lambda: conv_model(head="rate"),
    "dense_soft": lambda: dense_model(),
    "residual": lambda: residual_model(),
    "cuba_channel": lambda: _sequence_model(
        layers.CubaLIF(
            threshold=0.4, current_decay=0.5, trainable_decay="channel"
        )
    ),
    "alif_recurrent": lambda: _sequence_model(
        layers.ALIF(threshold=0.4, recurrent=True, reset="soft")
    ),
}


def _data(model, count=24):
    shape = model.input_shape[1:]
    if len(shape) == 3:
        return images(count, shape)
    return (
        np.random.default_rng(3)
        .uniform(0, 1, (count, *shape))
        .astype("float32")
    )


def _raw(qat_model, x):
    layer = qat.find_integer_graph(qat_model)
    return np.stack([np.asarray(o) for o in layer.integer_outputs(x)], 1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_equals_the_integer_reference(name):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    x = _data(model)
    qat_model = qat.quantize_model(model, x)
    raw = _raw(qat_model, x)
    # The integers edge.export deploys for the float model...
    graph = fuse.fuse(ir.extract(model))
    _, expected = integer.run_integer(quantize.quantize(graph, x), x)
    np.testing.assert_array_equal(raw, expected)
    # ...are the QAT model's own, and its output their dequantized mean.
    output, own = integer.run_integer(qat.to_qgraph(qat_model), x)
    np.testing.assert_array_equal(own, expected)
    np.testing.assert_allclose(qat_model(x), output, rtol=1e-6, atol=1e-6)
    assert np.any(raw != 0)


# Draws of edge.fuzz's random networks: conv, residual and dense blocks,
# LIF and IF, hard and soft reset, the voting, decoding and membrane heads,
# batch norms and tdBN to fold, outlier weights.
SEEDS = (100, 101, 102, 103, 109, 117, 125, 137)


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_equals_the_integer_reference_on_random_networks(seed):
    spec = networks.draw_spec(
        networks.RandomChooser(np.random.default_rng(seed))
    )
    model = networks.build(spec)
    x = networks.inputs_for(spec, 16, seed)
    qgraph = quantize.quantize(fuse.fuse(ir.extract(model)), x)
    _, expected = integer.run_integer(qgraph, x)
    np.testing.assert_array_equal(
        _raw(qat.quantize_model(model, x), x), expected
    )


def test_gradients_reach_the_first_layer_and_training_keeps_exactness():
    keras.utils.set_random_seed(1)
    model = conv_model(head="decoding")
    x, y = images(48), np.arange(48) % 10
    qat_model = qat.quantize_model(model, x)
    layer = qat.find_integer_graph(qat_model)
    first = layer.float_weights[(layer.graph_nodes[1].name, "kernel")]
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, qat_model(x)
        )
    gradient = tape.gradient(loss, first)
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    before = np.array(first)
    qat_model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    qat_model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.any(np.array(first) != before)
    # After training, still the integer reference of the new integers.
    _, expected = integer.run_integer(qat.to_qgraph(qat_model), x)
    np.testing.assert_array_equal(_raw(qat_model, x), expected)


def test_saves_and_loads_without_custom_objects(tmp_path):
    keras.utils.set_random_seed(2)
    model = MODELS["alif_recurrent"]()
    x = _data(model, 8)
    qat_model = qat.quantize_model(model, x)
    path = tmp_path / "qat.keras"
    qat_model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], IntegerGraph)
    np.testing.assert_array_equal(loaded(x), qat_model(x))
    np.testing.assert_array_equal(_raw(loaded, x), _raw(qat_model, x))


def test_export_deploys_the_qat_integers(tmp_path):
    keras.utils.set_random_seed(3)
    model = dense_model()
    x, y = images(32), np.arange(32) % 10
    qat_model = qat.quantize_model(model, x)
    layer = qat.find_integer_graph(qat_model)
    # Move the weights so that a new calibration would choose otherwise.
    kernel = layer.float_weights[(layer.graph_nodes[2].name, "kernel")]
    kernel.assign(np.array(kernel) * 1.5)
    report = edge.export(
        qat_model,
        tmp_path / "out",
        targets=["tflite-int16x8"],
        calibration_data=x * 0.5,
        eval_data=(x, y),
        verbose=0,
    )
    keras_row = report.row("keras")
    assert report.row("reference-int").agreement == 1.0
    assert report.row("tflite-int16x8").checks["tflm_equals_integer_reference"]
    assert keras_row.agreement == 1.0
    qgraph = qat.to_qgraph(qat_model)
    _, raw = integer.run_integer(qgraph, x)
    np.testing.assert_array_equal(_raw(qat_model, x), raw)


def test_a_model_without_spiking_layers_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(edge.ExportError, match="not a keras_snn model"):
        qat.quantize_model(model, np.zeros((4, 4), "float32"))
    with pytest.raises(edge.ExportError, match="not a QAT model"):
        qat.to_qgraph(model)
