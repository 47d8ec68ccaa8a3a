"""Recurrent synapses of the neuron layers (issue #17 item 3).

`recurrent=True` adds `o[t-1] W_rec` to the current of every neuron model
(LIF, IF, CubaLIF, ALIF). The trajectories are checked against NumPy
loops written here; Keras' RNN features (stateful, masks, return_state)
and the shared layer harness are checked too.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_harness import LayerCase
from layer_harness import _rnn
from layer_harness import harness_tests

from keras_snn import layers


def numpy_recurrent(
    currents,
    kernel,
    model,
    threshold=1.0,
    decay=0.5,
    current_decay=0.0,
    adaptation=0.0,
    adaptation_decay=0.9,
    reset="hard",
):
    """The equations, one step at a time, in float64."""
    batch, steps, units = currents.shape
    v = np.zeros((batch, units))
    i = np.zeros((batch, units))
    b = np.zeros((batch, units))
    o = np.zeros((batch, units))
    spikes = []
    for t in range(steps):
        current = currents[:, t] + o @ kernel  # I[t] + o[t-1] W_rec
        if model == "cuba":
            i = current_decay * i + current
            current = i
        theta = threshold + adaptation * b if model == "alif" else threshold
        u = decay * v + current
        o = (u >= theta).astype(float)
        v = u * (1 - o) if reset == "hard" else u - theta * o
        if model == "alif":
            b = adaptation_decay * b + (1 - adaptation_decay) * o
        spikes.append(o)
    return np.stack(spikes, axis=1), v


def make(model, **kwargs):
    kinds = {
        "lif": layers.LIF,
        "if": layers.IF,
        "cuba": layers.CubaLIF,
        "alif": layers.ALIF,
    }
    return kinds[model](recurrent=True, **kwargs)


def set_kernel(layer, kernel):
    layer.recurrent_kernel.assign(kernel.astype(layer.recurrent_kernel.dtype))


def test_hand_checked_two_neurons():
    # Neuron 0 is driven to fire at step 0; its spike reaches neuron 1
    # through W_rec[0, 1] = 1.5 at step 1, which then fires with no input.
    layer = make("lif", threshold=1.0, decay=0.5)
    currents = np.array([[[1.2, 0.0], [0.0, 0.0], [0.0, 0.0]]], "float32")
    layer(currents)
    set_kernel(layer, np.array([[0.0, 1.5], [0.0, 0.0]]))
    spikes = np.asarray(layer(currents))
    np.testing.assert_array_equal(spikes[0], [[1, 0], [0, 1], [0, 0]])


@pytest.mark.parametrize(
    "model, kwargs",
    [
        ("lif", {"decay": 0.7}),
        ("lif", {"decay": 0.7, "reset": "soft"}),
        ("if", {}),
        ("cuba", {"decay": 0.6, "current_decay": 0.4}),
        ("alif", {"decay": 0.8, "adaptation": 0.5, "adaptation_decay": 0.7}),
    ],
)
def test_trajectory_equals_numpy(model, kwargs):
    rng = np.random.default_rng(1)
    currents = rng.normal(0.4, 0.6, (3, 9, 5))
    kernel = rng.normal(0.0, 0.7, (5, 5))
    layer = make(model, dtype="float64", return_state=True, **kwargs)
    layer(currents)
    set_kernel(layer, kernel)
    spikes, *states = layer(currents)
    reference_kwargs = dict(kwargs)
    if model == "if":
        reference_kwargs.update(decay=1.0, reset="soft")
    expected, v = numpy_recurrent(currents, kernel, model, **reference_kwargs)
    np.testing.assert_array_equal(np.asarray(spikes), expected)
    assert expected.sum() > 0 and (1 - expected).sum() > 0
    # The states: the neuron's own (v first), then the last spikes.
    np.testing.assert_allclose(np.asarray(states[0]), v, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(states[-1]), expected[:, -1])


@pytest.mark.parametrize("model", ["lif", "cuba", "alif"])
def test_zero_kernel_is_the_feed_forward_layer(model):
    currents = np.random.default_rng(2).normal(0.5, 0.5, (2, 6, 4))
    recurrent = make(model, recurrent_initializer="zeros")
    plain = type(recurrent)(recurrent=False)
    np.testing.assert_array_equal(
        np.asarray(recurrent(currents)), np.asarray(plain(currents))
    )


def test_gradient_reaches_the_kernel_and_the_layer_before():
    inputs = keras.Input((6, 3))
    dense = layers.TimeFolded(keras.layers.Dense(4))
    neuron = layers.LIF(recurrent=True, threshold=0.5, surrogate="sigmoid")
    model = keras.Model(inputs, layers.Decoding(2)(neuron(dense(inputs))))
    x = np.random.default_rng(3).random((4, 6, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    gradients = tape.gradient(loss, [neuron.recurrent_kernel, *dense.weights])
    for gradient in gradients:
        assert gradient is not None
        assert float(tf.reduce_max(tf.abs(gradient))) > 0


def test_stateful_halves_equal_the_whole_sequence():
    currents = np.random.default_rng(4).normal(0.5, 0.7, (2, 8, 3))
    whole = make("alif")
    expected = np.asarray(whole(currents))
    streaming = make("alif", stateful=True)
    streaming(currents[:, :4])
    streaming.cell.recurrent_kernel.assign(whole.recurrent_kernel)
    streaming.reset_states()
    halves = [np.asarray(streaming(currents[:, s : s + 4])) for s in (0, 4)]
    np.testing.assert_array_equal(np.concatenate(halves, axis=1), expected)


def test_mask_carries_the_state_over_masked_steps():
    # The last step masked: the final states (including the spikes fed
    # back) are those after step T-2, as for any Keras RNN.
    currents = np.random.default_rng(5).normal(0.6, 0.7, (2, 5, 3))
    layer = make("lif", return_state=True, return_sequences=False)
    mask = np.ones((2, 5), bool)
    mask[:, -1] = False
    _, *masked = layer(currents, mask=mask)
    _, *shorter = layer(currents[:, :-1])
    for a, b in zip(masked, shorter, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_uses_are_clear_errors():
    with pytest.raises(ValueError, match="recurrent=True, which needs flat"):
        make("lif", name="conv_lif")(np.zeros((1, 2, 3, 3, 2), "float32"))
    with pytest.raises(ValueError, match="no recurrent synapses"):
        layers.LIF(recurrent=True, fused=True)
    with pytest.raises(ValueError, match="recurrent=1"):
        layers.LIFCell(recurrent=1)


def test_trains_under_xla():
    inputs = keras.Input((5, 3))
    x = layers.TimeFolded(keras.layers.Dense(8))(inputs)
    x = layers.ALIF(recurrent=True, threshold=0.5)(x)
    model = keras.Model(inputs, layers.Decoding(2)(x))
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    x_data = np.random.default_rng(6).random((16, 5, 3)).astype("float32")
    history = model.fit(x_data, np.arange(16) % 2, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


CASES = {
    "LIFRecurrent": LayerCase(
        lambda **kw: layers.LIF(recurrent=True, threshold=0.5, **kw),
        (2, 6, 5),
    ),
    "ALIFRecurrent": LayerCase(
        lambda **kw: layers.ALIF(
            recurrent=True,
            recurrent_initializer="orthogonal",
            recurrent_regularizer="l2",
            threshold=0.5,
            **kw,
        ),
        (2, 6, 5),
    ),
    "CubaLIFCellRecurrent": LayerCase(
        lambda **kw: layers.CubaLIFCell(recurrent=True, units=5, **kw),
        (2, 6, 5),
        wrap=_rnn,
    ),
}


(
    test_config_round_trip,
    test_xla_gives_the_eager_outputs,
    test_mixed_precision,
    harness_archives,
    test_keras_archive_loads_in_a_fresh_process,
) = harness_tests(CASES, "recurrent")
