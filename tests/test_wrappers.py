"""TimeFolded equals TimeDistributed for per-sample layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import layers


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: keras.layers.Conv2D(4, 3, padding="same"), (2, 3, 6, 6, 2)),
        (lambda: keras.layers.Dense(5), (2, 3, 7)),
        (lambda: keras.layers.AveragePooling2D(2), (2, 3, 4, 4, 2)),
        (lambda: keras.layers.Flatten(), (2, 3, 4, 4, 2)),
    ],
)
def test_equals_time_distributed(make, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    inner = make()
    folded = layers.TimeFolded(inner)(x)
    reference = keras.layers.TimeDistributed(inner)(x)
    np.testing.assert_allclose(folded, reference, rtol=1e-5, atol=1e-6)


def test_batch_norm_uses_batch_and_time_statistics():
    x = np.random.default_rng(1).normal(2.0, 3.0, (4, 5, 6)).astype("f4")
    bn = keras.layers.BatchNormalization(momentum=0.0)
    y = layers.TimeFolded(bn)(x, training=True).numpy()
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), x.reshape(-1, 6).mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(y.reshape(-1, 6).mean(0), 0, atol=1e-5)


def test_symbolic_shape_and_serialization(tmp_path):
    inputs = keras.Input((3, 8, 8, 1))
    outputs = layers.TimeFolded(keras.layers.Conv2D(2, 3))(inputs)
    assert tuple(outputs.shape) == (None, 3, 6, 6, 2)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.ones((1, 3, 8, 8, 1), "float32")
    np.testing.assert_allclose(
        keras.models.load_model(path)(x), model(x), rtol=1e-6
    )


def test_errors():
    with pytest.raises(ValueError, match="must be a keras Layer"):
        layers.TimeFolded("conv")
    with pytest.raises(ValueError, match=r"rank >= 3.*\(2, 4\)"):
        layers.TimeFolded(keras.layers.Dense(2))(np.ones((2, 4), "float32"))
    with pytest.raises(ValueError, match="time_invariant.*'yes'"):
        layers.TimeFolded(keras.layers.Dense(2), time_invariant="yes")


# --------------------------------------------------------------------------
# Inputs repeated along time (DirectEncoding): the layer runs once.
# --------------------------------------------------------------------------


def _direct_model(time_invariant, dtype="float64"):
    """DirectEncoding - Conv - BN - LIF - Flatten - Dense, mean over time."""
    keras.utils.set_random_seed(3)
    keras_layers = keras.layers

    def folded(layer):
        return layers.TimeFolded(
            layer, time_invariant=time_invariant, dtype=dtype
        )

    inputs = keras.Input((6, 6, 1), dtype=dtype)
    x = layers.DirectEncoding(3, dtype=dtype)(inputs)
    x = folded(keras_layers.Conv2D(4, 3, padding="same", dtype=dtype))(x)
    x = folded(keras_layers.BatchNormalization(momentum=0.5, dtype=dtype))(x)
    x = layers.LIF(threshold=0.3, dtype=dtype)(x)
    x = folded(keras_layers.Flatten(dtype=dtype))(x)
    x = folded(keras_layers.Dense(3, dtype=dtype))(x)
    outputs = keras_layers.GlobalAveragePooling1D(dtype=dtype)(x)
    return keras.Model(inputs, outputs)


def _traced_ops(model, shape):
    fn = tf.function(lambda x: model(x, training=True))
    graph = fn.get_concrete_function(tf.TensorSpec(shape, model.dtype)).graph
    return [
        (op.type, tuple(op.inputs[0].shape))
        for op in graph.get_operations()
        if op.inputs
    ]


def _train_step(model, x):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_sum(y * tf.range(1.0, 4.0, dtype=y.dtype))
        return y, tape.gradient(loss, model.trainable_variables)

    y, grads = step(x)
    return (
        y.numpy(),
        [g.numpy() for g in grads],
        [v.numpy() for v in model.non_trainable_variables],
    )


def test_repeated_input_runs_time_invariant_layers_once():
    ops_once = _traced_ops(_direct_model(None), (5, 6, 6, 1))
    ops_folded = _traced_ops(_direct_model(False), (5, 6, 6, 1))
    # Conv and BN see the 5 samples, not 5 x 3 folded steps.
    assert ("Conv2D", (5, 6, 6, 1)) in ops_once
    assert ("Conv2D", (15, 6, 6, 1)) in ops_folded
    assert ("Conv2D", (15, 6, 6, 1)) not in ops_once
    # The BN output is repeated for the LIF: one broadcast per layer run
    # once (Conv, BN) after the encoder's.
    broadcasts = [s for t, s in ops_once if t == "BroadcastTo"]
    assert broadcasts == [(5, 1, 6, 6, 1), (5, 1, 6, 6, 4), (5, 1, 6, 6, 4)]
    # After the spiking layer the input varies over time: folded again.
    assert ("MatMul", (15, 144)) in ops_once


def test_repeated_input_gives_the_folded_values_and_gradients():
    x = np.random.default_rng(0).random((5, 6, 6, 1))
    once, folded = _direct_model(None), _direct_model(False)
    y1, g1, s1 = _train_step(once, x)
    y2, g2, s2 = _train_step(folded, x)
    np.testing.assert_allclose(y1, y2, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # BN moving statistics: the mean and biased variance of T identical
    # copies equal those of one.
    for a, b in zip(s1, s2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # Inference (moving statistics) through predict's traced function.
    np.testing.assert_allclose(
        once.predict(x, verbose=0), folded.predict(x, verbose=0), rtol=1e-10
    )


@pytest.mark.parametrize(
    "layer,time_invariant,once",
    [
        (keras.layers.Dense(2), None, True),
        (keras.layers.Dense(2), False, False),
        (keras.layers.Dropout(0.5), None, False),  # random: per-step draws
        (keras.layers.Dropout(0.5), True, True),  # the user asserts it
        (keras.layers.Lambda(lambda t: t * 2), None, False),
    ],
)
def test_which_layers_run_once(layer, time_invariant, once):
    wrapper = layers.TimeFolded(layer, time_invariant=time_invariant)
    assert wrapper.runs_once_on_repeated_input is once

    @tf.function
    def run(x):
        return wrapper(layers.DirectEncoding(4)(x), training=True)

    graph = run.get_concrete_function(tf.TensorSpec((3, 5))).graph
    broadcasts = [
        op for op in graph.get_operations() if op.type == "BroadcastTo"
    ]
    assert len(broadcasts) == (2 if once else 1)


def test_dropout_draws_differ_between_steps():
    x = np.ones((2, 400), "float32")
    encode = layers.DirectEncoding(2)
    dropout = layers.TimeFolded(keras.layers.Dropout(0.5))

    @tf.function
    def run(x):
        return dropout(encode(x), training=True)

    y = run(x).numpy()
    assert not np.array_equal(y[:, 0], y[:, 1])


def test_time_invariant_round_trips(tmp_path):
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = layers.TimeFolded(keras.layers.Conv2D(2, 3), time_invariant=False)(x)
    model = keras.Model(inputs, x)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[2].time_invariant is False
    x = np.random.default_rng(0).random((2, 6, 6, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
