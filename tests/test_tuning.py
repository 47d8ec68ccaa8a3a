"""Surrogate-width tuning (Ledinauskas et al. 2020, Sec. 2.5) and the
per-layer gradient-norm diagnostic (Zheng et al. 2021, Fig. 2)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import layers
from keras_snn import surrogates
from keras_snn import tuning


def profile_for(gamma0, depth=6):
    """Each layer towards the input multiplies the gradient by gamma0/gamma
    (Eq. 13 with <f^2> ~ 1/gamma, Eq. 12): balanced exactly at gamma0."""

    def profile(gamma):
        return [(gamma0 / gamma) ** (depth - 1 - k) for k in range(depth)]

    return profile


def test_balance_halves():
    assert tuning.balance([1.0, 1.0, 1.0]) == 0.0
    # First half [4] vs second half [1]; the middle layer of 3 is ignored.
    assert math.isclose(tuning.balance([4.0, 100.0, 1.0]), math.log(4.0))
    assert tuning.balance({"a": 1.0, "b": 2.0, "c": 3.0, "d": 6.0}) == (
        math.log(1.5) - math.log(4.5)
    )
    assert tuning.balance([0.0, 1.0]) == -math.inf
    with pytest.raises(ValueError, match="magnitudes"):
        tuning.balance([1.0])


@pytest.mark.parametrize("gamma0", [0.8, 4.0, 37.0])
def test_bisection_converges_to_known_gamma(gamma0):
    result = tuning.bisect_balance(
        profile_for(gamma0), 0.5, 200.0, atol=1e-6, rtol=1e-6
    )
    assert result.converged
    assert math.isclose(result.value, gamma0, rel_tol=1e-5)
    # Bisection halves the log-bracket at every step.
    assert (
        len(result.history)
        <= 2 + math.ceil(math.log2(math.log(400.0) / math.log1p(1e-6))) + 1
    )


def test_bisection_works_for_increasing_balance():
    # A width (not an inverse width): the balance grows with the value.
    result = tuning.bisect_balance(
        lambda w: [w / 2.0, 1.0], 0.1, 10.0, atol=1e-9, rtol=1e-9
    )
    assert math.isclose(result.value, 2.0, rel_tol=1e-6)


def test_bisection_errors():
    with pytest.raises(ValueError, match="low=2.0, high=1.0"):
        tuning.bisect_balance(profile_for(1.0), 2.0, 1.0)
    with pytest.raises(ValueError, match="low=0"):
        tuning.bisect_balance(profile_for(1.0), 0, 1.0)
    with pytest.raises(ValueError, match="same sign"):
        tuning.bisect_balance(profile_for(1000.0), 0.5, 200.0)
    with pytest.raises(ValueError, match="max_iter"):
        tuning.bisect_balance(profile_for(1.0), 0.5, 2.0, max_iter=0)


def _model(gamma=10.0, depth=4, timesteps=4):
    inputs = keras.Input((timesteps, 12))
    x = inputs
    for k in range(depth):
        x = layers.TimeFolded(keras.layers.Dense(12), name=f"fc{k}")(x)
        x = layers.TimeFolded(keras.layers.BatchNormalization())(x)
        x = layers.IF(
            surrogate=surrogates.FastSigmoid(gamma=gamma), name=f"if{k}"
        )(x)
    x = layers.Decoding(3, name="readout")(x)
    return keras.Model(inputs, x)


def _data(n=64, timesteps=4):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, timesteps, 12)).astype("float32")
    y = rng.integers(0, 3, n).astype("int32")
    return x, y


def test_gradient_norms_match_tape():
    model = _model()
    x, y = _data(32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    norms = tuning.gradient_norms(model, (x, y), loss=loss, batch_size=32)
    assert list(norms) == ["fc0", "fc1", "fc2", "fc3", "readout"]
    kernels = [model.get_layer(name).trainable_weights for name in norms]
    kernels = [[w for w in ws if len(w.shape) >= 2] for ws in kernels]
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss(y, model(x, training=True)))
    grads = tape.gradient(value, [ws[0] for ws in kernels])
    expected = [float(tf.norm(g)) for g in grads]
    np.testing.assert_allclose(list(norms.values()), expected, rtol=1e-4)


def test_tune_surrogate_width_balances_and_sets_gamma():
    model = _model(gamma=10.0)
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    data = _data()
    result = tuning.tune_surrogate_width(
        model, data, low=0.1, high=1000.0, atol=0.05, batches=1
    )
    assert result.parameter == "gamma"
    assert 0.1 < result.value < 1000.0
    assert abs(result.balance) <= 0.05 or result.converged
    for k in range(4):
        assert model.get_layer(f"if{k}").surrogate.gamma == result.value
    after = tuning.layer_gradient_magnitudes(model, data, batches=1)
    assert math.isclose(tuning.balance(after), result.balance, abs_tol=1e-6)


def test_tuning_errors():
    model = _model()
    with pytest.raises(ValueError, match="Argument `loss` is required"):
        tuning.gradient_norms(model, _data())
    with pytest.raises(ValueError, match="`data`"):
        tuning.gradient_norms(model, 3, loss="mse")
    with pytest.raises(ValueError, match="statistic"):
        tuning.layer_gradient_magnitudes(
            model, _data(), loss="mse", statistic="max"
        )
    with pytest.raises(ValueError, match="no parameter `width`"):
        tuning.set_surrogate_parameter(model, "width", 1.0)
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no spiking layers"):
        tuning.tune_surrogate_width(dense, (np.ones((2, 3)), np.ones((2, 2))))


def test_plot_gradient_norms(tmp_path):
    pytest.importorskip("matplotlib")
    path = tuning.plot_gradient_norms(
        {"before": {"a": 1.0, "b": 0.1}, "after": {"a": 0.5, "b": 0.4}},
        tmp_path / "norms.png",
    )
    assert (tmp_path / "norms.png").stat().st_size > 0
    assert str(path).endswith("norms.png")
    with pytest.raises(ValueError, match="norms"):
        tuning.plot_gradient_norms({}, tmp_path / "x.png")
