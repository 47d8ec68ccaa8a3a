"""Readout heads and losses against the papers' equations, training, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import functional
from keras_snn import layers
from keras_snn import losses


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    # Leave Keras' automatic layer names ("time_folded", ...) as they were
    # for the test modules that run after this one.
    yield
    keras.backend.clear_session()


def random_spikes(shape, seed=0, rate=0.4):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=shape) < rate).astype("float64")


def paper_voting_matrix(num_classes, population):
    """M of Wu et al. 2019 Eq. 11: each voting neuron connects to one class.

    Population c is neurons c*P .. c*P + P - 1; M averages it.
    """
    m = np.zeros((num_classes, num_classes * population))
    for c in range(num_classes):
        for j in range(c * population, (c + 1) * population):
            m[c, j] = 1.0 / population
    return m


# ---------------------------------------------------------------- Voting


@pytest.mark.parametrize(
    "num_classes,population,given",
    [(10, 3, True), (10, 3, False), (4, 1, False), (1, 5, True)],
)
def test_voting_matches_paper_matrix(num_classes, population, given):
    spikes = random_spikes((6, 5, num_classes * population), seed=1)
    layer = layers.Voting(
        num_classes, population=population if given else None, dtype="float64"
    )
    m = paper_voting_matrix(num_classes, population)
    # (1/T) sum_t M o[t]
    expected = np.mean(np.einsum("cj,btj->btc", m, spikes), axis=1)
    out = layer(spikes).numpy()
    assert out.shape == (6, num_classes)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_array_equal(
        functional.voting_matrix(num_classes, population, "float64"), m
    )


def test_voting_is_weightless_and_built():
    layer = layers.Voting(3)
    assert layer.built
    layer(np.ones((2, 4, 6), "float32"))
    assert layer.weights == [] and layer.non_trainable_weights == []


def test_voting_accepts_integer_spikes():
    spikes = random_spikes((2, 3, 4), seed=2)
    out = layers.Voting(2)(spikes.astype("int32"))
    np.testing.assert_allclose(
        out.numpy(), spikes.mean(1).reshape(2, 2, 2).mean(-1), rtol=1e-6
    )


def test_voting_gradient_is_the_transposed_matrix():
    spikes = tf.constant(random_spikes((1, 4, 6), seed=3), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(spikes)
        out = layers.Voting(3)(spikes)
        loss = out[0, 1]
    grad = tape.gradient(loss, spikes).numpy()[0]
    m = paper_voting_matrix(3, 2)
    np.testing.assert_allclose(grad, np.tile(m[1] / 4, (4, 1)), rtol=1e-6)


@pytest.mark.parametrize(
    "layer,shape,pattern",
    [
        (layers.Voting(10), (2, 3, 25), "units=25, num_classes=10"),
        (
            layers.Voting(4, population=3),
            (2, 3, 10),
            "units=10, num_classes=4, population=3",
        ),
    ],
)
def test_voting_width_mismatch(layer, shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        layer(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match=pattern):
        layer(keras.Input(shape[1:]))


# ------------------------------------------------------------- VotingMSE


def eq11(labels_one_hot, votes):
    """L = ||Y - y||_2^2 per sample (Eq. 11), averaged over the batch."""
    return np.mean(np.sum((labels_one_hot - votes) ** 2, axis=-1))


@pytest.mark.parametrize("label_form", ["int", "int_column", "one_hot"])
def test_voting_mse_matches_eq11(label_form):
    rng = np.random.default_rng(4)
    votes = rng.uniform(size=(8, 5)).astype("float32")
    labels = rng.integers(0, 5, size=8)
    one_hot = np.eye(5, dtype="float32")[labels]
    y_true = {
        "int": labels,
        "int_column": labels[:, None],
        "one_hot": one_hot,
    }[label_form]
    loss = float(losses.VotingMSE()(y_true, votes))
    np.testing.assert_allclose(loss, eq11(one_hot, votes), rtol=1e-6)
    # The squared norm sums over classes: num_classes x Keras' MSE.
    keras_mse = float(keras.losses.MeanSquaredError()(one_hot, votes))
    np.testing.assert_allclose(loss, 5 * keras_mse, rtol=1e-6)


def test_voting_mse_on_voting_output_and_sample_weight():
    spikes = random_spikes((4, 6, 6), seed=5)
    votes = layers.Voting(3, dtype="float64")(spikes).numpy()
    m = paper_voting_matrix(3, 2)
    labels = np.array([0, 2, 1, 1])
    y = np.eye(3)[labels]
    expected = np.sum((y - np.einsum("cj,btj->bc", m, spikes) / 6) ** 2, -1)
    weights = np.array([1.0, 0.0, 2.0, 1.0])
    loss = losses.VotingMSE(reduction="sum")(labels, votes, weights)
    np.testing.assert_allclose(float(loss), np.sum(weights * expected), 1e-6)
    none = losses.VotingMSE(reduction=None)(labels, votes)
    np.testing.assert_allclose(none.numpy(), expected, rtol=1e-6)


def test_voting_mse_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"y_true shape=\(4, 3\)"):
        losses.VotingMSE()(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"y_pred shape=\(4, 2, 5\)"):
        losses.VotingMSE()(np.zeros((4,)), np.zeros((4, 2, 5)))


def test_voting_mse_config_round_trip():
    loss = losses.VotingMSE(reduction="sum", name="votes")
    config = keras.losses.serialize(loss)
    clone = keras.losses.deserialize(config)
    assert isinstance(clone, losses.VotingMSE)
    assert clone.get_config() == loss.get_config()
    assert clone.reduction == "sum" and clone.name == "votes"


# -------------------------------------------------------------- Decoding


def test_decoding_equals_per_step_dense_then_mean():
    spikes = random_spikes((5, 7, 12), seed=6).astype("float32")
    layer = layers.Decoding(
        4, bias_initializer=keras.initializers.RandomNormal(seed=1)
    )
    out = layer(spikes).numpy()
    kernel, bias = (w.numpy() for w in layer.weights)
    # Eq. 11 step by step: Q = (1/T) sum_t (M o[t] + b).
    per_step = np.mean([spikes[:, t] @ kernel + bias for t in range(7)], axis=0)
    np.testing.assert_allclose(out, per_step, atol=1e-6)
    dense = keras.layers.Dense(4)
    folded = layers.TimeFolded(dense)
    folded.build((None, 7, 12))
    dense.set_weights([kernel, bias])
    per_step_keras = np.mean(folded(spikes).numpy(), axis=1)
    np.testing.assert_allclose(out, per_step_keras, atol=1e-6)


def test_decoding_without_bias_has_one_weight():
    layer = layers.Decoding(3, use_bias=False)
    layer(np.zeros((1, 2, 4), "float32"))
    assert [w.name for w in layer.weights] == ["kernel"]
    assert layer.bias is None


def test_decoding_regularizer_adds_loss():
    layer = layers.Decoding(3, kernel_regularizer="l2")
    layer(np.ones((2, 3, 4), "float32"))
    assert len(layer.losses) == 1 and float(layer.losses[0]) > 0


# ------------------------------------------------------- MembraneReadout


def membrane_reference(spikes, kernel, bias, decay, mode):
    """Eq. 5 with no firing, step by step with `functional.neuron_step`."""
    v = np.zeros((spikes.shape[0], kernel.shape[1]))
    potentials = []
    for t in range(spikes.shape[1]):
        current = spikes[:, t] @ kernel + bias
        o, u, v = functional.neuron_step(
            current, v, threshold=np.inf, decay=decay, reset="none"
        )
        assert not o.any()
        potentials.append(u)
    u = np.stack(potentials, axis=1)
    return {"last": u[:, -1], "mean": u.mean(1), "max": u.max(1)}[mode]


def plain_recurrence(spikes, kernel, bias, decay):
    u = np.zeros((spikes.shape[0], kernel.shape[1]))
    out = []
    for t in range(spikes.shape[1]):
        u = decay * u + spikes[:, t] @ kernel + bias
        out.append(u)
    return np.stack(out, 1)


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
@pytest.mark.parametrize("decay", [0.0, 0.3, 0.9, 1.0])
def test_membrane_readout_matches_loop(mode, decay):
    spikes = random_spikes((4, 6, 5), seed=7)
    layer = layers.MembraneReadout(
        3,
        decay=decay,
        mode=mode,
        bias_initializer=keras.initializers.RandomNormal(seed=2),
        dtype="float64",
    )
    out = layer(spikes).numpy()
    kernel, bias = (w.numpy() for w in layer.weights)
    expected = membrane_reference(spikes, kernel, bias, decay, mode)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    u = plain_recurrence(spikes, kernel, bias, decay)
    read = {"last": u[:, -1], "mean": u.mean(1), "max": u.max(1)}[mode]
    np.testing.assert_allclose(out, read, rtol=1e-10, atol=1e-12)


def test_membrane_readout_summed_currents_is_t_times_decoding():
    spikes = random_spikes((3, 8, 6), seed=8).astype("float32")
    readout = layers.MembraneReadout(
        4, bias_initializer=keras.initializers.RandomNormal(seed=3)
    )
    summed = readout(spikes).numpy()
    decoding = layers.Decoding(4)
    decoding.build((None, 8, 6))
    decoding.set_weights(readout.get_weights())
    kernel, bias = readout.get_weights()
    np.testing.assert_allclose(
        summed, spikes.sum(1) @ kernel + 8 * bias, rtol=1e-5
    )
    np.testing.assert_allclose(
        summed, 8 * decoding(spikes).numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_membrane_readout_unknown_sequence_length(mode):
    spikes = random_spikes((2, 5, 4), seed=9).astype("float32")
    layer = layers.MembraneReadout(3, decay=0.6, mode=mode)
    eager = layer(spikes).numpy()
    graph = tf.function(
        layer, input_signature=[tf.TensorSpec((None, None, 4), tf.float32)]
    )
    np.testing.assert_allclose(graph(spikes).numpy(), eager, rtol=1e-6)


def test_leaky_integration_matrix_solves_recurrence():
    c = np.random.default_rng(10).normal(size=(7, 2))
    for decay in (0.0, 0.4, 1.0):
        leak = functional.leaky_integration_matrix(7, decay, "float64")
        u, expected = np.zeros(2), []
        for t in range(7):
            u = decay * u + c[t]
            expected.append(u)
        np.testing.assert_allclose(leak @ c, np.stack(expected), rtol=1e-12)


@pytest.mark.parametrize(
    "layer",
    [
        layers.Decoding(3, dtype="mixed_bfloat16"),
        layers.MembraneReadout(3, mode="max", dtype="mixed_bfloat16"),
        layers.Voting(3, dtype="mixed_bfloat16"),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_mixed_precision_output_dtype(layer):
    out = layer(random_spikes((2, 4, 6), seed=11).astype("float32"))
    assert out.dtype == tf.bfloat16


# -------------------------------------------------------------- Training


def toy_dataset(num_classes=3, per_class=64, features=8, seed=12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, size=(num_classes, features))
    x = np.concatenate(
        [c + rng.normal(0.0, 0.5, (per_class, features)) for c in centres]
    )
    y = np.repeat(np.arange(num_classes), per_class)
    order = rng.permutation(len(y))
    return x[order].astype("float32"), y[order]


def head_model(head, num_classes=3, timesteps=4, features=8):
    inputs = keras.Input((features,))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = layers.TimeFolded(keras.layers.Dense(32))(x)
    x = layers.LIF()(x)
    if head == "voting":
        x = layers.TimeFolded(keras.layers.Dense(num_classes * 4))(x)
        x = layers.LIF()(x)
        outputs = layers.Voting(num_classes)(x)
        loss = losses.VotingMSE()
    else:
        if head == "decoding":
            outputs = layers.Decoding(num_classes)(x)
        else:
            outputs = layers.MembraneReadout(
                num_classes, decay=0.9, mode="mean"
            )(x)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=["accuracy"])
    return model


@pytest.mark.parametrize("head", ["decoding", "voting", "membrane"])
def test_head_trains_with_fit(head):
    x, y = toy_dataset()
    model = head_model(head)
    history = model.fit(x, y, epochs=12, batch_size=32, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("head", ["decoding", "voting", "membrane"])
def test_save_and_load_round_trip(head, tmp_path):
    x, y = toy_dataset(per_class=8)
    model = head_model(head)
    model.train_on_batch(x, y)
    path = tmp_path / f"{head}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    if head == "voting":
        assert isinstance(loaded.loss, losses.VotingMSE)
    assert type(loaded.layers[-1]) is type(model.layers[-1])
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()


# ---------------------------------------------------- Arguments, shapes


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (lambda: layers.Voting(0), "num_classes=0"),
        (lambda: layers.Voting(2.0), "num_classes=2.0"),
        (lambda: layers.Voting(10, population=0), "population=0"),
        (lambda: layers.Decoding(-1), "num_classes=-1"),
        (lambda: layers.MembraneReadout(0), "units=0"),
        (lambda: layers.MembraneReadout(True), "units=True"),
        (lambda: layers.MembraneReadout(3, decay=1.5), "decay=1.5"),
        (lambda: layers.MembraneReadout(3, decay=-0.1), "decay=-0.1"),
        (
            lambda: layers.MembraneReadout(3, mode="sum"),
            r"one of \('last', 'mean', 'max'\). Received: mode='sum'",
        ),
    ],
)
def test_invalid_arguments(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


HEADS = {
    "Voting": lambda: layers.Voting(2),
    "Decoding": lambda: layers.Decoding(2),
    "MembraneReadout": lambda: layers.MembraneReadout(2),
}


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 4, 2)])
def test_wrong_rank_is_rejected(name, shape):
    pattern = (
        rf"\({name}\) expects spikes of shape \(batch, time, units\), "
        rf"rank 3.*Received: input shape={re_shape(shape)}"
    )
    with pytest.raises(ValueError, match=pattern):
        HEADS[name]()(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match=r"\(batch, time, units\)"):
        HEADS[name]()(keras.Input(shape[1:]))


def re_shape(shape):
    return r"\(" + r", ".join(str(d) for d in shape) + r"\)"


@pytest.mark.parametrize("name", sorted(HEADS))
def test_symbolic_output_shape(name):
    layer = HEADS[name]()
    out = layer(keras.Input((5, 6)))
    assert tuple(out.shape) == (None, 2)
    assert layer.compute_output_shape((None, 5, 6)) == (None, 2)
