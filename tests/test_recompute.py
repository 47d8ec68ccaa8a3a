"""Recompute: the same outputs and gradients, statistics updated once."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_snn
from keras_snn import layers


def _block(seed=0, momentum=0.5):
    keras.utils.set_random_seed(seed)
    block = keras.Sequential(
        [
            layers.TimeFolded(keras.layers.Conv2D(4, 3, padding="same")),
            layers.TimeFolded(
                keras.layers.BatchNormalization(momentum=momentum)
            ),
            layers.LIF(decay=0.5, threshold=0.5),
            layers.TimeFolded(keras.layers.AveragePooling2D(2)),
        ]
    )
    block.build((None, 3, 6, 6, 2))
    return block


def _data(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3, 6, 6, 2)).astype("float32")
    weights = rng.normal(size=(2, 3, 3, 3, 4)).astype("float32")
    return tf.constant(x), tf.constant(weights)


def _gradients(layer, block, x, weights, graph):
    def compute(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=True)
            loss = tf.reduce_sum(outputs * weights)
        sources = [x, *(v.value for v in block.trainable_variables)]
        return outputs, tape.gradient(loss, sources)

    return (tf.function(compute) if graph else compute)(x)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_outputs_and_gradients_equal_the_wrapped_block(graph):
    x, weights = _data()
    block = _block()
    expected, expected_grads = _gradients(block, block, x, weights, graph)
    wrapped = layers.Recompute(block)
    outputs, grads = _gradients(wrapped, block, x, weights, graph)
    assert float(tf.reduce_max(expected)) > 0  # some neuron fires
    np.testing.assert_allclose(outputs, expected, rtol=1e-6, atol=1e-7)
    assert len(grads) == 1 + len(block.trainable_variables) == 5
    for got, want in zip(grads, expected_grads, strict=True):
        assert float(tf.reduce_max(tf.abs(want))) > 0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_inference_runs_the_block_as_it_is():
    x, _ = _data()
    block = _block()
    np.testing.assert_array_equal(
        layers.Recompute(block)(x, training=False), block(x, training=False)
    )


def _model(recompute, seed=0):
    block = _block(seed)
    inputs = keras.Input((3, 6, 6, 2))
    outputs = (layers.Recompute(block) if recompute else block)(inputs)
    outputs = layers.TimeFolded(keras.layers.Flatten())(outputs)
    outputs = keras.layers.GlobalAveragePooling1D()(outputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(outputs))
    return model, block


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf", "xla"])
def test_training_step_updates_statistics_once(jit_compile):
    """One `train_on_batch`: same loss, weights and BN moving statistics."""
    x, _ = _data()
    y = np.array([0, 2])
    results = []
    for recompute in (False, True):
        model, block = _model(recompute)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        loss = model.train_on_batch(x, y)
        bn = block.layers[1].layer
        results.append((loss, model.get_weights(), bn.moving_mean.numpy()))
    (loss, weights, mean), (loss_rc, weights_rc, mean_rc) = results
    np.testing.assert_allclose(loss_rc, loss, rtol=1e-6)
    np.testing.assert_allclose(mean_rc, mean, rtol=1e-6, atol=1e-7)
    assert np.abs(mean).max() > 0
    for got, want in zip(weights_rc, weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_saved_and_loaded_without_custom_objects(tmp_path):
    model, _ = _model(recompute=True)
    x, _ = _data()
    path = str(tmp_path / "recompute.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[1], layers.Recompute)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model(x), rtol=1e-6)


@pytest.mark.parametrize(
    "make,name,reason",
    [
        (lambda: keras.layers.Dropout(0.5, name="drop"), "drop", "random"),
        (lambda: layers.LIF(stateful=True, name="mem"), "mem", "stateful"),
    ],
)
def test_refuses_a_block_that_does_not_repeat(make, name, reason):
    block = keras.Sequential([keras.layers.Dense(3), make()])
    with pytest.raises(ValueError, match=f"'{name}'.*{reason}"):
        layers.Recompute(block)


def test_refuses_a_non_layer():
    with pytest.raises(ValueError, match="must be a keras Layer.*Received"):
        layers.Recompute(lambda x: x)


def test_spiking_resnet_recompute_has_the_flat_networks_weights():
    """`recompute=True` wraps each block; the weights copy to a flat model
    (the export path) and give the same outputs."""
    kwargs = dict(input_shape=(8, 8, 3), num_classes=4, timesteps=2)
    keras.utils.set_random_seed(0)
    wrapped = keras_snn.models.spiking_resnet(17, recompute=True, **kwargs)
    flat = keras_snn.models.spiking_resnet(17, **kwargs)
    blocks = [x for x in wrapped.layers if isinstance(x, layers.Recompute)]
    assert len(blocks) == 7  # Table 4: 3 + 4 blocks
    assert wrapped.count_params() == flat.count_params()
    flat.set_weights(wrapped.get_weights())
    x = np.random.default_rng(2).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        flat.predict_on_batch(x), wrapped.predict_on_batch(x), rtol=1e-5
    )


def test_export_names_the_recompute_block_and_the_way_out():
    from edge import ir

    model, _ = _model(recompute=True)
    with pytest.raises(
        ir.UnsupportedLayerError, match="Recompute.*set_weights"
    ):
        ir.extract(model)
