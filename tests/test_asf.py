"""ASF-BP: accumulated flows (Eq. 7-8), scale factor (Eq. 12) and the
equivalent-network gradients (Eq. 9-11) on small hand-computed inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import asf
from keras_snn import functional
from keras_snn import layers
from keras_snn import models


def test_accumulated_flows_eq7():
    x = np.array([[[0.6], [0.6], [0.6], [0.6]]])
    # IF, threshold 1, hard reset, via the one definition of the equations.
    v = np.zeros((1, 1))
    spikes = []
    for t in range(4):
        o, _, v = functional.neuron_step(x[:, t], v, 1.0, 1.0, "hard")
        spikes.append(o)
    o = np.stack(spikes, 1)
    np.testing.assert_array_equal(o[0, :, 0], [0, 1, 0, 1])
    flow_in, flow_out = asf.accumulated_flows(x, o)
    np.testing.assert_allclose(flow_in, [[2.4]])
    np.testing.assert_allclose(flow_out, [[2.0]])


def test_scale_factor_eq12():
    flow_in = np.array([[2.0, 4.0], [-3.0, 2.0]])
    flow_out = np.array([[1.0, 2.0], [0.0, 1.0]])
    # Literal Eq. 12: (1 + 2 + 0 + 1) / (2 + 4 - 3 + 2) = 4 / 5.
    assert asf.scale_factor(flow_in, flow_out, active_only=False) == 0.8
    # Over the neurons with FI > 0: 4 / 8.
    assert asf.scale_factor(flow_in, flow_out) == 0.5
    assert asf.scale_factor([[0.0, -1.0]], [[0.0, 0.0]], default=7) == 7
    with pytest.raises(ValueError, match="same shape"):
        asf.scale_factor([1.0, 2.0], [1.0])


def _dense_model(timesteps=5, bias=False):
    inputs = keras.Input((timesteps, 3))
    x = layers.TimeFolded(keras.layers.Dense(4, use_bias=bias), name="fc0")(
        inputs
    )
    x = layers.IF(threshold=1.0, reset="hard", name="fc0_if")(x)
    x = layers.MembraneReadout(2, use_bias=False, name="readout")(x)
    return keras.Model(inputs, x)


def test_equivalent_network_gradients_eq9_to_11():
    rng = np.random.default_rng(0)
    timesteps = 5
    model = _dense_model(timesteps)
    w1 = rng.uniform(-0.5, 1.0, (3, 4)).astype("float32")
    w2 = rng.normal(size=(4, 2)).astype("float32")
    model.get_layer("fc0").set_weights([w1])
    model.get_layer("readout").set_weights([w2])
    wrapped = asf.ASFModel(model, active_only=False)
    wrapped.scales[0].assign(0.5)
    x = rng.uniform(0, 1, (6, timesteps, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 6)]
    _, flows = wrapped.spiking_forward(x)
    with tf.GradientTape() as tape:
        y_pred, pairs = wrapped.equivalent_forward(flows, timesteps)
        loss = 0.5 * tf.reduce_sum(tf.square(y - y_pred))
    g1, g2 = tape.gradient(
        loss,
        [
            model.get_layer("fc0").layer.kernel,
            model.get_layer("readout").kernel,
        ],
    )
    # Hand computation with NumPy.
    fo0 = x.sum(1)  # FO of the input
    fi1 = fo0 @ w1  # Eq. 8
    currents = x @ w1
    v = np.zeros((6, 4), "float32")
    spikes = []
    for t in range(timesteps):
        o, _, v = functional.neuron_step(currents[:, t], v, 1.0, 1.0, "hard")
        spikes.append(o)
    fo1 = np.stack(spikes, 1).sum(1)  # Eq. 7
    mem = fo1 @ w2  # u[T, N] = FI[N]
    np.testing.assert_allclose(y_pred, mem, rtol=1e-5)
    np.testing.assert_allclose(pairs[0][0], fi1, rtol=1e-5)
    np.testing.assert_allclose(pairs[0][1], fo1)
    dmem = mem - y
    dfo1 = dmem @ w2.T  # Eq. 9
    np.testing.assert_allclose(g2, fo1.T @ dmem, rtol=1e-5)
    # Eq. 11: dL/dw1 = FO[0]^T (S dL/dFO[1]).
    np.testing.assert_allclose(g1, fo0.T @ (0.5 * dfo1), rtol=1e-4)


def test_active_only_gates_negative_inputs():
    model = _dense_model(timesteps=2)
    w1 = np.array([[1.0, -1.0, 0.5, 0.0]] * 3, "float32")
    model.get_layer("fc0").set_weights([w1])
    wrapped = asf.ASFModel(model)
    wrapped.scales[0].assign(0.25)
    x = np.ones((1, 2, 3), "float32")
    _, flows = wrapped.spiking_forward(x)
    kernel = model.get_layer("fc0").layer.kernel
    with tf.GradientTape() as tape:
        y_pred, pairs = wrapped.equivalent_forward(flows, 2)
        loss = tf.reduce_sum(y_pred)
    grad = tape.gradient(loss, kernel).numpy()
    # FI = [6, -6, 3, 0]: only the first and third neurons are active, so
    # only their columns of the kernel get a gradient (slope S = 0.25).
    np.testing.assert_allclose(pairs[0][0], [[6.0, 0.0, 3.0, 0.0]])
    readout = model.get_layer("readout").kernel.numpy().sum(1)
    expected = np.zeros((3, 4), "float32")
    expected[:, [0, 2]] = 2.0 * 0.25 * readout[[0, 2]]
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_scales_first_batch_then_refresh_every_k_epochs():
    rng = np.random.default_rng(1)
    model = _dense_model(timesteps=4, bias=True)
    wrapped = asf.ASFModel(model, scale_update_every=2)
    assert wrapped.scale_factors == {"fc0_if": 1.0}  # 1 / threshold
    wrapped.compile("sgd", "mse")
    x = rng.uniform(0.5, 1, (8, 4, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model.get_layer("fc0").set_weights(
        [np.full((3, 4), 0.5, "float32"), np.zeros(4, "float32")]
    )
    _, flows = wrapped.spiking_forward(x)
    _, pairs = wrapped.equivalent_forward(flows, 4)
    expected = asf.scale_factor(pairs[0][0], pairs[0][1])
    wrapped.optimizer.learning_rate = 0.0  # keep the flows fixed
    history = wrapped.fit(x, y, batch_size=8, epochs=3, verbose=0)
    np.testing.assert_allclose(
        wrapped.scale_factors["fc0_if"], expected, rtol=1e-5
    )
    assert "scale_fc0_if" in history.history
    assert len(history.history["scale_fc0_if"]) == 1  # after epoch 2 only


def test_fit_from_spec_learns_and_roundtrips(tmp_path):
    rng = np.random.default_rng(2)
    snn = models.from_spec(
        "4C3(Encoding)-AP2-8FC-Readout",
        input_shape=(4, 4, 1),
        num_classes=2,
        timesteps=4,
        neuron="if",
        neuron_kwargs={"reset": "hard"},
    )
    wrapped = asf.ASFModel(snn)
    wrapped.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = rng.uniform(0, 1, (32, 4, 4, 1)).astype("float32")
    y = (x.mean((1, 2, 3)) > 0.5).astype("int32")
    history = wrapped.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    np.testing.assert_allclose(
        wrapped.predict(x, verbose=0), snn.predict(x, verbose=0)
    )
    path = tmp_path / "asf.keras"
    wrapped.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, asf.ASFModel)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-5
    )


@pytest.mark.parametrize(
    "norm,match", [("bn", "conv0_bn"), ("tdbn", "conv0_tdbn")]
)
def test_unsupported_layers_are_named(norm, match):
    snn = models.from_spec(
        "4C3(Encoding)-8FC-Readout", (4, 4, 1), 2, timesteps=2, norm=norm
    )
    with pytest.raises(ValueError, match=match):
        asf.ASFModel(snn)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale_update_every"):
        asf.ASFModel(_dense_model(), scale_update_every=0)
    inputs = keras.Input((3, 4))
    x = layers.LIF(trainable_threshold=True, name="lif")(inputs)
    x = layers.Decoding(2)(x)
    with pytest.raises(ValueError, match="'lif'.*trainable threshold"):
        asf.ASFModel(keras.Model(inputs, x))
    inputs = keras.Input((3, 4))
    x = layers.LIF(name="lif")(inputs)
    with pytest.raises(ValueError, match="head that removes the time axis"):
        asf.ASFModel(keras.Model(inputs, x))
    with pytest.raises(ValueError, match="keras.Model"):
        asf.ASFModel("not a model")
