"""Latency and delta encoders, spike-count and first-spike losses, and the
firing-rate regularizer (issue 17, item 5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from layer_harness import LayerCase
from layer_harness import harness_tests

from keras_snn import layers
from keras_snn import losses
from keras_snn import regularizers
from keras_snn.layers.encoding import DeltaEncoding
from keras_snn.layers.encoding import LatencyEncoding


def _first_steps(spikes):
    """First spike step per feature of `(batch, T, ...)`, -1 if none."""
    fired = spikes.any(axis=1)
    return np.where(fired, spikes.argmax(axis=1), -1)


# --- LatencyEncoding ------------------------------------------------------


def test_latency_times_on_hand_checked_inputs():
    x = np.array([[1.0, 0.5, 0.0, 0.3, 0.875]], "float32")
    spikes = LatencyEncoding(5)(x).numpy()
    assert spikes.shape == (1, 5, 5)
    # (1 - x) * 4 = 0, 2, 4, 2.8, 0.5 -> rounded half up: 0, 2, 4, 3, 1
    np.testing.assert_array_equal(_first_steps(spikes), [[0, 2, 4, 3, 1]])
    assert spikes.sum() == 5


def test_latency_rounds_half_up_and_clips():
    x = np.array([[0.5, -0.5, 1.5]], "float32")
    # (1 - 0.5) * 3 = 1.5 -> 2; -0.5 is clipped to 0, 1.5 to 1.
    steps = _first_steps(LatencyEncoding(4)(x).numpy())
    np.testing.assert_array_equal(steps, [[2, 3, 0]])


def test_latency_threshold_silences_small_inputs():
    x = np.array([[0.05, 0.1, 0.2, 0.0]], "float32")
    spikes = LatencyEncoding(11, threshold=0.1)(x).numpy()
    np.testing.assert_array_equal(_first_steps(spikes), [[-1, 9, 8, -1]])


def test_latency_one_step_and_images():
    x = np.random.default_rng(0).uniform(size=(2, 3, 3, 1)).astype("f4")
    assert np.all(LatencyEncoding(1)(x).numpy() == 1.0)
    y = LatencyEncoding(6)(x).numpy()
    assert y.shape == (2, 6, 3, 3, 1)
    np.testing.assert_array_equal(y.sum(axis=1), np.ones_like(x))


def test_latency_nan_is_an_error_naming_the_layer():
    with pytest.raises(tf.errors.InvalidArgumentError, match="'lat'"):
        LatencyEncoding(4, name="lat")(np.array([[0.2, np.nan]], "f4"))


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 1.0, width=32), min_size=1, max_size=12),
    timesteps=st.integers(1, 40),
    threshold=st.floats(0.0, 1.0),
)
def test_latency_property(values, timesteps, threshold):
    x = np.array([values], "float32")
    layer = LatencyEncoding(timesteps, threshold=threshold)
    spikes = layer(x).numpy()[0]
    active = x[0] >= np.float32(threshold)
    np.testing.assert_array_equal(spikes.sum(axis=0), active.astype("f4"))
    steps = spikes.argmax(axis=0)
    order = np.argsort(x[0][active], kind="stable")
    # A larger value never fires later.
    assert np.all(np.diff(steps[active][order]) <= 0)


# --- DeltaEncoding --------------------------------------------------------

SEQUENCE = np.array(
    [[[0.0, 1.0], [1.0, 1.0], [1.0, 0.5], [0.25, 0.5], [0.75, 2.0]]],
    "float32",
)  # (1, 5, 2); steps of 1, 0.5 and 0.25 are exact in float32


def test_delta_on_spikes():
    spikes = DeltaEncoding(0.5)(SEQUENCE).numpy()[0]
    # feature 0: deltas 0, 1, 0, -0.75, 0.5; feature 1: 1, 0, -0.5, 0, 1.5
    np.testing.assert_array_equal(
        spikes, [[0, 1], [1, 0], [0, 0], [0, 0], [1, 1]]
    )


def test_delta_both_and_skip_first_step():
    spikes = DeltaEncoding(0.5, polarity="both", first_step="skip")(
        SEQUENCE
    ).numpy()[0]
    np.testing.assert_array_equal(
        spikes, [[0, 0], [1, 0], [0, 1], [1, 0], [1, 1]]
    )


def test_delta_on_off_channels_on_the_last_axis():
    spikes = DeltaEncoding(0.5, polarity="on_off")(SEQUENCE).numpy()[0]
    assert spikes.shape == (5, 4)  # ON of both features, then OFF
    np.testing.assert_array_equal(
        spikes[:, :2], [[0, 1], [1, 0], [0, 0], [0, 0], [1, 1]]
    )
    np.testing.assert_array_equal(
        spikes[:, 2:], [[0, 0], [0, 0], [0, 1], [1, 0], [0, 0]]
    )
    y = DeltaEncoding(polarity="on_off")(keras.Input((None, 4, 4, 3)))
    assert tuple(y.shape) == (None, None, 4, 4, 6)


def test_delta_needs_a_time_axis():
    with pytest.raises(ValueError, match=r"rank >= 3.*shape=\(2, 5\)"):
        DeltaEncoding()(np.zeros((2, 5), "float32"))


# --- losses ---------------------------------------------------------------


def _spikes(shape, seed):
    return (np.random.default_rng(seed).uniform(size=shape) < 0.3).astype(
        "float32"
    )


def test_spike_count_mse_matches_numpy():
    spikes = _spikes((3, 6, 4), 0)
    labels = np.array([2, 0, 3])
    loss = losses.SpikeCountMSE(correct_rate=0.75, incorrect_rate=0.25)
    counts = spikes.sum(axis=1)
    target = np.where(np.eye(4)[labels] == 1, 0.75 * 6, 0.25 * 6)
    expected = np.mean(np.mean((counts - target) ** 2, axis=-1))
    np.testing.assert_allclose(loss(labels, spikes), expected, rtol=1e-6)
    np.testing.assert_allclose(
        loss(np.eye(4)[labels], spikes), expected, rtol=1e-6
    )


def _numpy_first_times(spikes):
    batch, steps, classes = spikes.shape
    times = np.full((batch, classes), float(steps))
    for b in range(batch):
        for c in range(classes):
            fired = np.flatnonzero(spikes[b, :, c])
            if fired.size:
                times[b, c] = fired[0]
    return times


def test_first_spike_cross_entropy_matches_numpy():
    spikes = _spikes((4, 7, 3), 1)
    spikes[0, :, 1] = 0.0  # a neuron that never fires: time T
    labels = np.array([1, 0, 2, 2])
    logits = -0.5 * _numpy_first_times(spikes)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected = -np.mean(logp[np.arange(4), labels])
    loss = losses.FirstSpikeCrossEntropy(scale=0.5)
    np.testing.assert_allclose(loss(labels, spikes), expected, rtol=1e-6)


def test_soft_first_spike_time_formula_on_graded_values():
    o = np.random.default_rng(2).uniform(size=(2, 5, 3))
    steps = o.shape[1]
    survive = np.concatenate(
        [np.ones((2, 1, 3)), np.cumprod(1 - o, axis=1)], axis=1
    )
    tau = (np.arange(steps)[None, :, None] * o * survive[:, :-1]).sum(1)
    tau += steps * survive[:, -1]
    logits = -tau
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    loss = losses.FirstSpikeCrossEntropy(dtype="float64")
    np.testing.assert_allclose(
        loss([0, 2], o), -np.mean(logp[[0, 1], [0, 2]]), rtol=1e-10
    )


@pytest.mark.parametrize(
    "loss",
    [losses.SpikeCountMSE(), losses.FirstSpikeCrossEntropy()],
    ids=["SpikeCountMSE", "FirstSpikeCrossEntropy"],
)
def test_loss_gradient_reaches_the_layer_before_the_spiking_layer(loss):
    keras.utils.set_random_seed(3)
    dense = keras.layers.Dense(3)
    model = keras.Sequential(
        [keras.Input((8, 5)), dense, layers.LIF(threshold=0.5, decay=0.8)]
    )
    x = np.random.default_rng(4).uniform(size=(6, 8, 5)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=True))
    grads = tape.gradient(value, dense.trainable_weights)
    assert np.isfinite(float(value))
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))
        assert np.abs(grad.numpy()).max() > 0


def test_soft_first_spike_time_scan_equals_the_unrolled_loop():
    from keras_snn.losses import _soft_first_spike_time

    o = tf.constant(np.random.default_rng(6).uniform(size=(2, 7, 3)))
    dynamic = tf.function(
        _soft_first_spike_time,
        input_signature=[tf.TensorSpec((None, None, 3), tf.float64)],
    )
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(o)
        unrolled = _soft_first_spike_time(o)
        scanned = dynamic(o)
    np.testing.assert_allclose(scanned, unrolled, rtol=1e-12)
    np.testing.assert_allclose(
        tape.gradient(scanned, o), tape.gradient(unrolled, o), rtol=1e-12
    )


@pytest.mark.parametrize(
    "loss",
    [losses.SpikeCountMSE(), losses.FirstSpikeCrossEntropy()],
    ids=["SpikeCountMSE", "FirstSpikeCrossEntropy"],
)
def test_losses_train_under_xla(loss):
    inputs = keras.Input((6, 3))
    spikes = layers.LIF(threshold=0.3)(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, spikes)
    model.compile("adam", loss, jit_compile=True)
    x = np.random.default_rng(9).uniform(size=(8, 6, 3)).astype("float32")
    history = model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_losses_check_the_spike_shape_and_labels():
    with pytest.raises(ValueError, match=r"\(batch, time, classes\)"):
        losses.SpikeCountMSE()([0], np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="FirstSpikeCrossEntropy expects"):
        losses.FirstSpikeCrossEntropy()(
            np.zeros((1, 2, 2)), np.zeros((1, 3, 2), "float32")
        )


# --- firing-rate regularizer ----------------------------------------------


def test_firing_rate_penalty_matches_numpy():
    spikes = _spikes((3, 5, 4), 5)
    rates = spikes.mean(axis=(1, 2))
    per_sample = 0.5 * (rates - 0.1) ** 2
    reg = regularizers.FiringRate(target=0.1, weight=0.5)
    np.testing.assert_allclose(reg(spikes), per_sample.sum(), rtol=1e-6)
    layer = regularizers.FiringRateRegularization(target=0.1, weight=0.5)
    np.testing.assert_array_equal(layer(spikes), spikes)
    np.testing.assert_allclose(layer.losses[0], per_sample.mean(), rtol=1e-6)
    # As an activity regularizer Keras divides by the batch size.
    lif = layers.LIF(activity_regularizer=reg)
    out = lif(spikes).numpy()
    expected = (0.5 * (out.mean(axis=(1, 2)) - 0.1) ** 2).mean()
    np.testing.assert_allclose(lif.losses[0], expected, rtol=1e-6)


def _rate_model(kind, target):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((10, 6))
    currents = keras.layers.Dense(
        8, kernel_initializer=keras.initializers.Constant(0.4)
    )(inputs)
    if kind == "activity":
        spikes = layers.LIF(
            threshold=0.5,
            activity_regularizer=regularizers.FiringRate(target, 10.0),
        )(currents)
    else:
        spikes = layers.LIF(threshold=0.5)(currents)
        spikes = regularizers.FiringRateRegularization(target, 10.0)(spikes)
    return keras.Model(inputs, spikes)


@pytest.mark.parametrize("kind", ["activity", "layer"])
def test_training_moves_the_rate_towards_the_target(kind):
    target = 0.1
    model = _rate_model(kind, target)
    x = np.random.default_rng(8).uniform(size=(16, 10, 6)).astype("f4")
    before = float(model(x).numpy().mean())
    optimizer = keras.optimizers.Adam(0.05)
    for _ in range(30):
        with tf.GradientTape() as tape:
            model(x, training=True)
            penalty = keras.ops.sum(model.losses)
        grads = tape.gradient(penalty, model.trainable_weights)
        optimizer.apply_gradients(
            zip(grads, model.trainable_weights, strict=True)
        )
    after = float(model(x).numpy().mean())
    assert before > 0.5  # a busy layer
    assert abs(after - target) < 0.5 * abs(before - target), (before, after)


# --- serialization and saving ---------------------------------------------

SERIALIZABLE = [
    losses.SpikeCountMSE(correct_rate=0.9, incorrect_rate=0.05),
    losses.FirstSpikeCrossEntropy(scale=2.0),
    regularizers.FiringRate(target=0.2, weight=0.3),
]


@pytest.mark.parametrize(
    "obj", SERIALIZABLE, ids=lambda obj: type(obj).__name__
)
def test_serialize_round_trip(obj):
    config = keras.saving.serialize_keras_object(obj)
    assert config["registered_name"] == f"keras_snn>{type(obj).__name__}"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()


@pytest.mark.parametrize(
    "loss",
    [losses.SpikeCountMSE(0.7, 0.1), losses.FirstSpikeCrossEntropy(0.5)],
    ids=["SpikeCountMSE", "FirstSpikeCrossEntropy"],
)
def test_model_with_loss_and_regularizer_saves_and_loads(loss, tmp_path):
    inputs = keras.Input((4, 3))
    spikes = layers.LIF(
        threshold=0.3,
        activity_regularizer=regularizers.FiringRate(0.1, 0.01),
    )(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, spikes)
    model.compile(optimizer="adam", loss=loss)
    x = np.random.default_rng(0).uniform(size=(4, 4, 3)).astype("f4")
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()
    reg = loaded.layers[-1].activity_regularizer
    assert isinstance(reg, regularizers.FiringRate)
    assert (reg.target, reg.weight) == (0.1, 0.01)
    np.testing.assert_array_equal(loaded(x), model(x))


# --- argument errors ------------------------------------------------------


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (lambda: LatencyEncoding(0), "timesteps=0"),
        (lambda: LatencyEncoding(4, threshold=1.5), r"\[0, 1\].*threshold=1.5"),
        (lambda: LatencyEncoding(4, threshold=np.nan), "threshold=nan"),
        (lambda: DeltaEncoding(threshold=0), r"> 0.*threshold=0"),
        (
            lambda: DeltaEncoding(polarity="off"),
            r"'on', 'both'.*polarity='off'",
        ),
        (lambda: DeltaEncoding(first_step=1), "first_step=1"),
        (
            lambda: losses.SpikeCountMSE(correct_rate=2),
            r"`correct_rate`.*\[0, 1\].*correct_rate=2",
        ),
        (
            lambda: losses.SpikeCountMSE(incorrect_rate=-0.1),
            "incorrect_rate=-0.1",
        ),
        (lambda: losses.FirstSpikeCrossEntropy(scale=0), r"> 0.*scale=0"),
        (lambda: regularizers.FiringRate(target=1.2), r"`target`.*target=1.2"),
        (lambda: regularizers.FiringRate(weight=-1), r">= 0.*weight=-1"),
        (
            lambda: regularizers.FiringRateRegularization(target="a"),
            "target='a'",
        ),
    ],
)
def test_invalid_arguments(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


# --- the shared layer harness ---------------------------------------------

CASES = {
    # LatencyEncoding and DeltaEncoding(polarity="on_off") are cases of
    # tests/layer_harness.py, with every public layer.
    "DeltaEncodingSkip": LayerCase(
        lambda **kw: DeltaEncoding(
            0.3, polarity="both", first_step="skip", **kw
        ),
        (2, 4, 2, 2),
    ),
    "FiringRateRegularization": LayerCase(
        lambda **kw: regularizers.FiringRateRegularization(0.2, 0.5, **kw),
        (2, 4, 6),
        data="spikes",
    ),
    "LIFWithFiringRate": LayerCase(
        lambda **kw: layers.LIF(
            threshold=0.5,
            activity_regularizer=regularizers.FiringRate(0.1, 0.5),
            **kw,
        ),
        (2, 6, 5),
    ),
}


(
    test_config_round_trip,
    test_xla_gives_the_eager_outputs,
    test_mixed_precision,
    harness_archives,
    test_keras_archive_loads_in_a_fresh_process,
) = harness_tests(CASES, "encoders")
