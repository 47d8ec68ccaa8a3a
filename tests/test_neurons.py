"""LIF/IF layers against the paper equations, options, gradients, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import layers
from keras_snn import surrogates


def reference(currents, threshold, decay, reset):
    """Paper form, time on axis 1: the reset uses the previous spike.

    hard: u[t] = k u[t-1] (1 - o[t-1]) + I[t]   (Wu et al. 2019, Eq. 5)
    soft: u[t] = k (u[t-1] - theta o[t-1]) + I[t] (Ledinauskas et al. 2.2)
    none: u[t] = k u[t-1] + I[t]
    o[t] = 1 if u[t] >= theta else 0              (Eq. 6)
    """
    u = np.zeros_like(currents[:, 0])
    o = np.zeros_like(u)
    spikes, potentials = [], []
    for t in range(currents.shape[1]):
        if reset == "hard":
            u = decay * u * (1 - o) + currents[:, t]
        elif reset == "soft":
            u = decay * (u - threshold * o) + currents[:, t]
        else:
            u = decay * u + currents[:, t]
        o = (u >= threshold).astype(u.dtype)
        spikes.append(o)
        potentials.append(u)
    return np.stack(spikes, 1), np.stack(potentials, 1)


SHAPES = {"dense": (3, 7, 5), "conv": (2, 6, 4, 4, 3)}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize(
    "threshold,decay", [(1.0, 0.5), (0.7, 0.9), (1.3, 0.2)]
)
@pytest.mark.parametrize("unroll", [None, False])
def test_lif_matches_equations(shape, reset, threshold, decay, unroll):
    rng = np.random.default_rng(1)
    currents = rng.uniform(-0.3, 1.6, SHAPES[shape]).astype("float64")
    layer = layers.LIF(
        threshold=threshold,
        decay=decay,
        reset=reset,
        return_potentials=True,
        unroll=unroll,
        dtype="float64",
    )
    spikes, potentials = layer(currents)
    ref_spikes, ref_potentials = reference(currents, threshold, decay, reset)
    np.testing.assert_array_equal(spikes.numpy(), ref_spikes)
    np.testing.assert_allclose(potentials.numpy(), ref_potentials, rtol=1e-12)
    assert ref_spikes.any() and not ref_spikes.all()


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["soft", "hard", "none"])
def test_if_matches_equations(shape, reset):
    rng = np.random.default_rng(2)
    currents = rng.uniform(-0.2, 0.8, SHAPES[shape]).astype("float64")
    layer = layers.IF(
        threshold=0.9, reset=reset, return_potentials=True, dtype="float64"
    )
    spikes, potentials = layer(currents)
    ref_spikes, ref_potentials = reference(currents, 0.9, 1.0, reset)
    np.testing.assert_array_equal(spikes.numpy(), ref_spikes)
    np.testing.assert_allclose(potentials.numpy(), ref_potentials, rtol=1e-12)


def test_if_defaults_to_soft_reset_and_lif_to_hard():
    assert layers.IF().reset == "soft" and layers.IF().decay == 1.0
    assert layers.LIF().reset == "hard" and layers.LIF().decay == 0.5


def test_threshold_equality_fires():
    currents = np.full((1, 4, 1), 0.25, dtype="float32")
    spikes = layers.IF(threshold=0.5, reset="hard")(currents).numpy()
    np.testing.assert_array_equal(spikes[0, :, 0], [0, 1, 0, 1])


def test_return_state_and_last_step():
    currents = np.random.default_rng(3).uniform(0, 1, (2, 5, 3))
    currents = currents.astype("float32")
    full = layers.LIF(return_potentials=True)(currents)
    last, state = layers.LIF(return_sequences=False, return_state=True)(
        currents
    )
    np.testing.assert_array_equal(last.numpy(), full[0].numpy()[:, -1])
    u_last = full[1].numpy()[:, -1]
    o_last = full[0].numpy()[:, -1]
    np.testing.assert_allclose(state.numpy(), u_last * (1 - o_last))


def test_all_outputs_order_and_symbolic_shapes():
    inputs = keras.Input((5, 4, 4, 2))
    outputs = layers.LIF(return_potentials=True, return_state=True)(inputs)
    assert [tuple(o.shape) for o in outputs] == [
        (None, 5, 4, 4, 2),
        (None, 5, 4, 4, 2),
        (None, 4, 4, 2),
    ]
    model = keras.Model(inputs, outputs)
    x = np.ones((3, 5, 4, 4, 2), "float32")
    spikes, potentials, state = model(x)
    assert spikes.shape == potentials.shape == (3, 5, 4, 4, 2)
    assert state.shape == (3, 4, 4, 2)


def test_initial_state_is_used():
    currents = np.zeros((1, 2, 1), "float32")
    spikes = layers.IF(threshold=1.0)(
        currents, initial_state=[np.ones((1, 1), "float32")]
    )
    np.testing.assert_array_equal(spikes.numpy()[0, :, 0], [1, 0])


def test_stateful_streaming_equals_whole_sequence():
    rng = np.random.default_rng(4)
    currents = rng.uniform(0, 1, (2, 8, 3)).astype("float32")
    whole = layers.LIF(decay=0.8)(currents).numpy()
    layer = layers.LIF(decay=0.8, stateful=True)
    model = keras.Sequential([keras.Input((4, 3), batch_size=2), layer])
    first = model(currents[:, :4]).numpy()
    second = model(currents[:, 4:]).numpy()
    np.testing.assert_array_equal(np.concatenate([first, second], 1), whole)
    layer.reset_states()
    np.testing.assert_array_equal(model(currents[:, :4]).numpy(), first)


def test_keras_rnn_with_cell_units():
    inputs = keras.Input((6, 3))
    outputs = keras.layers.RNN(layers.LIFCell(units=3), return_sequences=True)(
        inputs
    )
    model = keras.Model(inputs, outputs)
    currents = np.random.default_rng(5).uniform(0, 1, (2, 6, 3))
    ref, _ = reference(currents, 1.0, 0.5, "hard")
    np.testing.assert_array_equal(model(currents.astype("float32")), ref)


def surrogate_grad(x):
    return surrogates.Rectangular(1.0).grad(tf.constant(x)).numpy()


@pytest.mark.parametrize("detach_reset", [False, True])
def test_bptt_gradient_matches_hand_derivation(detach_reset):
    """d o[1] / d I[0] through the hard reset, worked out from Eq. 5-6.

    u0 = I0, o0 = H(u0 - th), u1 = k u0 (1 - o0) + I1, o1 = H(u1 - th):
    d o1/d I0 = h(u1 - th) * k * [(1 - o0) - u0 h(u0 - th)]; with
    detach_reset the second term vanishes.
    """
    k, th = 0.5, 1.0
    i0, i1 = np.float32(1.2), np.float32(0.6)
    currents = tf.constant([[[i0], [i1]]])
    layer = layers.LIF(threshold=th, decay=k, detach_reset=detach_reset)
    with tf.GradientTape() as tape:
        tape.watch(currents)
        spikes = layer(currents)
        o1 = spikes[0, 1, 0]
    grad = tape.gradient(o1, currents).numpy()[0, :, 0]
    u0 = i0
    o0 = 1.0
    u1 = k * u0 * (1 - o0) + i1
    reset_term = 0.0 if detach_reset else u0 * surrogate_grad(u0 - th)
    expected_d_i0 = surrogate_grad(u1 - th) * k * ((1 - o0) - reset_term)
    np.testing.assert_allclose(grad[0], expected_d_i0, rtol=1e-6)
    np.testing.assert_allclose(grad[1], surrogate_grad(u1 - th), rtol=1e-6)
    if not detach_reset:
        assert grad[0] != 0.0


@pytest.mark.parametrize("name", surrogates.NAMES)
def test_every_surrogate_trains_through_layer(name):
    currents = tf.constant(
        np.random.default_rng(6).uniform(0, 1.5, (2, 4, 3)), tf.float32
    )
    layer = layers.LIF(surrogate=name)
    with tf.GradientTape() as tape:
        tape.watch(currents)
        loss = tf.reduce_sum(layer(currents))
    grad = tape.gradient(loss, currents).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


def test_trainable_threshold_and_decay():
    layer = layers.LIF(trainable_threshold=True, trainable_decay=True)
    currents = tf.constant(
        np.random.default_rng(7).uniform(0, 1.5, (2, 6, 3)), tf.float32
    )
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(currents))
    names = sorted(w.name for w in layer.trainable_weights)
    assert names == ["decay", "threshold"]
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and float(g) != 0.0 for g in grads)
    # Constraints keep the parameters in range after an update.
    threshold = layer.cell.threshold_weight
    decay = layer.cell.decay_weight
    threshold.assign(-5.0)
    decay.assign(3.0)
    threshold.assign(threshold.constraint(threshold))
    decay.assign(decay.constraint(decay))
    assert float(threshold.numpy()) == pytest.approx(1e-3)
    assert float(decay.numpy()) == 1.0


def test_trainable_decay_values_follow_equations():
    currents = np.random.default_rng(8).uniform(0, 1, (2, 5, 3))
    layer = layers.LIF(
        decay=0.3,
        trainable_decay=True,
        return_potentials=True,
        dtype="float64",
    )
    layer(currents)
    layer.cell.decay_weight.assign(0.6)
    _, potentials = layer(currents)
    _, ref = reference(currents, 1.0, 0.6, "hard")
    np.testing.assert_allclose(potentials.numpy(), ref, rtol=1e-12)


def test_mixed_precision_output_dtype():
    currents = np.random.default_rng(9).uniform(0, 1, (2, 4, 3))
    out = layers.LIF(dtype="mixed_bfloat16")(currents.astype("float32"))
    assert out.dtype == tf.bfloat16


@pytest.mark.parametrize(
    "factory,error,pattern",
    [
        (lambda: layers.LIF(threshold=0), ValueError, "threshold=0"),
        (lambda: layers.LIF(threshold=-1.0), ValueError, "threshold=-1.0"),
        (lambda: layers.LIF(decay=1.2), ValueError, "decay=1.2"),
        (lambda: layers.LIF(decay=-0.1), ValueError, "decay=-0.1"),
        (lambda: layers.LIF(reset="zero"), ValueError, "reset='zero'"),
        (lambda: layers.IF(reset="x"), ValueError, "one of"),
        (
            lambda: layers.LIF(surrogate="gauss"),
            ValueError,
            "Valid names",
        ),
        (lambda: layers.IF(decay=0.5), ValueError, "decay=0.5"),
        (lambda: layers.LIF(unroll="yes"), ValueError, "unroll='yes'"),
        (lambda: layers.LIFCell(units=0), ValueError, "units=0"),
    ],
)
def test_invalid_arguments(factory, error, pattern):
    with pytest.raises(error, match=pattern):
        factory()


def test_rank_below_three_is_rejected():
    with pytest.raises(ValueError, match=r"rank >= 3.*\(4, 3\)"):
        layers.LIF()(np.zeros((4, 3), "float32"))


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="dtype=int32"):
        layers.LIF()(np.zeros((2, 3, 4), "int32"))


def test_unknown_feature_shape_is_rejected():
    with pytest.raises(ValueError, match="feature shape"):
        layers.LIF()(keras.Input((4, None, None, 3)))


def test_cell_units_mismatch_is_rejected():
    with pytest.raises(ValueError, match="units=3"):
        keras.layers.RNN(layers.LIFCell(units=3))(
            np.zeros((1, 2, 4), "float32")
        )
