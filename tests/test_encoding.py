"""Encoders: shapes, rates, seeding, errors."""

import keras
import numpy as np
import pytest

from keras_snn import layers


def test_direct_encoding_repeats_input():
    x = np.random.default_rng(0).uniform(size=(2, 3, 3, 1)).astype("f4")
    y = layers.DirectEncoding(5)(x).numpy()
    assert y.shape == (2, 5, 3, 3, 1)
    for t in range(5):
        np.testing.assert_array_equal(y[:, t], x)


def test_symbolic_shape():
    y = layers.PoissonEncoding(7)(keras.Input((4, 2)))
    assert tuple(y.shape) == (None, 7, 4, 2)


def test_bernoulli_rate_matches_intensity():
    x = np.array([[0.0, 0.2, 0.5, 0.9, 1.0, 1.7]], "float32")
    spikes = layers.BernoulliEncoding(4000, seed=3)(x).numpy()
    assert set(np.unique(spikes)) <= {0.0, 1.0}
    rate = spikes.mean(axis=1)[0]
    np.testing.assert_allclose(rate, np.clip(x[0], 0, 1), atol=0.03)


def test_poisson_rate_is_one_minus_exp():
    x = np.array([[0.0, 0.3, 1.0, 2.0]], "float32")
    spikes = layers.PoissonEncoding(4000, max_rate=1.5, seed=4)(x).numpy()
    np.testing.assert_allclose(
        spikes.mean(axis=1)[0], 1 - np.exp(-1.5 * x[0]), atol=0.03
    )


@pytest.mark.parametrize(
    "cls", [layers.BernoulliEncoding, layers.PoissonEncoding]
)
def test_seeded_inference_is_deterministic(cls):
    x = np.full((2, 10), 0.5, "float32")
    a = cls(8, seed=11)
    b = cls(8, seed=11)
    first = a(x, training=False).numpy()
    np.testing.assert_array_equal(first, a(x, training=False).numpy())
    np.testing.assert_array_equal(first, b(x, training=False).numpy())
    # Training draws new spikes on each call.
    assert not np.array_equal(a(x, training=True), a(x, training=True))


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (lambda: layers.DirectEncoding(0), "timesteps=0"),
        (lambda: layers.DirectEncoding(2.5), "timesteps=2.5"),
        (lambda: layers.BernoulliEncoding(4, seed="a"), "seed='a'"),
        (lambda: layers.PoissonEncoding(4, max_rate=0), "max_rate=0"),
    ],
)
def test_invalid_arguments(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


def test_integer_images_are_rejected():
    with pytest.raises(TypeError, match="Rescaling"):
        layers.DirectEncoding(2)(np.zeros((1, 4), "uint8"))


def test_config_round_trip():
    layer = layers.PoissonEncoding(6, max_rate=2.0, seed=5)
    clone = layers.PoissonEncoding.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_latency_and_delta_symbolic_shapes():
    from keras_snn.layers.encoding import DeltaEncoding
    from keras_snn.layers.encoding import LatencyEncoding

    y = LatencyEncoding(7)(keras.Input((4, 2)))
    assert tuple(y.shape) == (None, 7, 4, 2)
    y = DeltaEncoding(0.2, polarity="both")(keras.Input((9, 4, 2)))
    assert tuple(y.shape) == (None, 9, 4, 2)


def test_latency_and_delta_config_round_trip():
    from keras_snn.layers.encoding import DeltaEncoding
    from keras_snn.layers.encoding import LatencyEncoding

    for layer in (
        LatencyEncoding(6, threshold=0.25, check_finite=False),
        DeltaEncoding(0.3, polarity="on_off", first_step="skip"),
    ):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
