"""TimeFolded equals TimeDistributed for per-sample layers."""

import keras
import numpy as np
import pytest

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
