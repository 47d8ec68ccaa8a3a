"""The fused time loop (the default) against the reference RNN path.

`LIF(fused=None)` runs `keras_snn.layers.fused.neuron_sequence`: one op over
the whole sequence with a hand-written reverse-time backward pass.
`LIF(fused=False)` runs `LIFCell` step by step through `keras.layers.RNN`
and is differentiated automatically. Both must give the same spikes,
states and gradients (inputs, initial state, threshold, decay).
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import layers
from keras_snn import surrogates
from keras_snn.layers import fused as fused_ops

SHAPES = {"dense": (3, 7, 5), "conv": (2, 6, 4, 4, 3)}
# The paths add the same terms in a different order. In float64 they agree
# to ~1e-15; in float32 the scalar gradients (threshold, decay: sums over
# every neuron and step) differ by float32 rounding, a few 1e-7 relative.
TOLERANCE = {"float64": 1e-6, "float32": 1e-5}


def assert_close(actual, expected, what):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(actual - expected))) / scale
    tolerance = TOLERANCE[str(expected.dtype)]
    assert error <= tolerance, f"{what}: relative error {error:.3g}"


def run(layer, currents, weights, initial_state=None):
    """Spikes, final state and the gradients of a weighted sum of both."""
    currents = tf.constant(currents)
    watched = [currents]
    if initial_state is not None:
        initial_state = tf.constant(initial_state)
        watched.append(initial_state)
    with tf.GradientTape() as tape:
        tape.watch(watched)
        spikes, state = layer(currents, initial_state=initial_state)
        loss = tf.reduce_sum(spikes * weights[0])
        loss += tf.reduce_sum(state * weights[1])
    variables = [w.value for w in layer.trainable_weights]
    gradients = tape.gradient(loss, watched + variables)
    return spikes.numpy(), state.numpy(), [g.numpy() for g in gradients]


def compare(shape, dtype="float32", initial=False, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    currents = rng.uniform(-0.5, 1.8, shape).astype(dtype)
    weights = (
        rng.standard_normal(shape).astype(dtype),
        rng.standard_normal((shape[0], *shape[2:])).astype(dtype),
    )
    state = None
    if initial:
        state = rng.uniform(-0.5, 1.0, (shape[0], *shape[2:])).astype(dtype)
    results = []
    for fused in (None, False):
        layer = layers.LIF(
            return_state=True, fused=fused, dtype=dtype, **kwargs
        )
        layer.build(currents.shape)
        assert layer.uses_fused_loop() is (fused is None)
        results.append(run(layer, currents, weights, state))
    (spikes, v, grads), (ref_spikes, ref_v, ref_grads) = results
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert ref_spikes.any() and not ref_spikes.all()
    assert_close(v, ref_v, "final state")
    names = ["inputs"] + (["initial state"] if initial else [])
    names += ["weight"] * (len(ref_grads) - len(names))
    for name, grad, ref in zip(names, grads, ref_grads, strict=True):
        assert np.any(ref != 0), name
        assert_close(grad, ref, f"gradient wrt {name}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", surrogates.NAMES)
def test_fused_equals_reference(shape, reset, detach_reset, surrogate, dtype):
    compare(
        SHAPES[shape],
        dtype=dtype,
        reset=reset,
        detach_reset=detach_reset,
        surrogate=surrogate,
        trainable_threshold=True,
        trainable_decay=True,
        threshold=0.9,
        decay=0.6,
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("unroll", [True, False])
def test_fused_loop_forms_and_initial_state(shape, reset, unroll):
    # The symbolic-loop form (unroll=False) and a given initial state.
    compare(
        SHAPES[shape],
        dtype="float64",
        initial=True,
        reset=reset,
        unroll=unroll,
        surrogate="atan",
        trainable_threshold=True,
        trainable_decay=True,
    )


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_fused_float64_and_constant_parameters(reset):
    compare(SHAPES["conv"], dtype="float64", reset=reset, seed=3)
    compare(SHAPES["dense"], reset=reset, seed=4, threshold=1.2, decay=0.3)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_if_fused_equals_reference(reset):
    rng = np.random.default_rng(5)
    currents = rng.uniform(-0.3, 0.9, SHAPES["dense"]).astype("float32")
    weights = (rng.standard_normal(currents.shape).astype("float32"),)
    weights += (np.ones((3, 5), "float32"),)
    results = [
        run(
            layers.IF(
                reset=reset,
                return_state=True,
                fused=fused,
                trainable_threshold=True,
            ),
            currents,
            weights,
        )
        for fused in (None, False)
    ]
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for grad, ref in zip(results[0][2], results[1][2], strict=True):
        assert_close(grad, ref, "IF gradient")


def test_fused_inside_xla_function_equals_reference():
    rng = np.random.default_rng(6)
    currents = tf.constant(rng.uniform(-0.5, 1.8, (4, 5, 6, 6, 2)), "float32")
    results = []
    for fused in (None, False):
        layer = layers.LIF(fused=fused, trainable_threshold=True)
        layer.build(currents.shape)

        @tf.function(jit_compile=True)
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(
                    layer(x) * tf.range(5.0)[:, None, None, None]
                )
            return tape.gradient(loss, [x, layer.trainable_weights[0].value])

        results.append([g.numpy() for g in step(currents)])
    for grad, ref in zip(*results, strict=True):
        assert_close(grad, ref, "XLA gradient")


def test_neuron_sequence_function():
    rng = np.random.default_rng(7)
    currents = tf.constant(rng.uniform(0, 1.5, (2, 4, 3)), "float32")
    spikes, v = fused_ops.neuron_sequence(
        currents,
        tf.zeros((2, 3)),
        threshold=1.0,
        decay=0.5,
        reset="hard",
        surrogate=surrogates.get("rectangular"),
    )
    reference = layers.LIF(fused=False, return_state=True)
    ref_spikes, ref_v = reference(currents)
    np.testing.assert_array_equal(spikes.numpy(), ref_spikes.numpy())
    np.testing.assert_allclose(v.numpy(), ref_v.numpy(), rtol=1e-6)

    @tf.function(input_signature=[tf.TensorSpec((2, None, 3))])
    def unrolled_over_unknown_length(x):
        return fused_ops.neuron_sequence(
            x, tf.zeros((2, 3)), 1.0, 0.5, "hard", surrogates.get("atan")
        )

    with pytest.raises(ValueError, match="static number of time steps"):
        unrolled_over_unknown_length.get_concrete_function()


def test_fallbacks_to_reference_path():
    assert layers.LIF().fused is None
    assert not layers.LIF(fused=False).uses_fused_loop()
    assert not layers.LIF(return_potentials=True).uses_fused_loop()
    layer = layers.LIF()
    assert layer.uses_fused_loop()
    assert not layer.uses_fused_loop(mask=tf.ones((2, 3), "bool"))
    # Masks and potentials still work through the reference path.
    x = np.random.default_rng(8).uniform(0, 1.5, (2, 3, 4)).astype("float32")
    mask = np.array([[True, True, False], [True, True, True]])
    out = layers.LIF()(x, mask=mask)
    ref = layers.LIF(fused=False)(x, mask=mask)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    spikes, potentials = layers.LIF(return_potentials=True)(x)
    assert spikes.shape == potentials.shape == x.shape


def test_invalid_fused_arguments():
    with pytest.raises(ValueError, match="Argument `fused` must be"):
        layers.LIF(fused="yes")
    with pytest.raises(ValueError, match="does not return potentials"):
        layers.LIF(fused=True, return_potentials=True)
    layer = layers.LIF(fused=True)
    with pytest.raises(ValueError, match="does not support masks"):
        layer(np.ones((2, 3, 4), "float32"), mask=np.ones((2, 3), "bool"))


@pytest.mark.parametrize("return_sequences", [True, False])
def test_stateful_and_last_step(return_sequences):
    x = np.random.default_rng(9).uniform(0, 1.5, (2, 3, 4)).astype("float32")
    outputs = []
    for fused in (None, False):
        layer = layers.LIF(
            stateful=True, return_sequences=return_sequences, fused=fused
        )
        first = layer(x).numpy()
        second = layer(x).numpy()  # continues from the carried state
        outputs.append((first, second, layer.states[0].numpy()))
    for got, want in zip(*outputs, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def model(fused):
    inputs = keras.Input((4, 6, 6, 1))
    x = layers.TimeFolded(keras.layers.Conv2D(4, 3, padding="same"))(inputs)
    x = layers.LIF(fused=fused, trainable_threshold=True)(x)
    x = layers.TimeFolded(keras.layers.Flatten())(x)
    x = layers.TimeFolded(keras.layers.Dense(3))(x)
    outputs = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("fused", [None, True, False])
def test_fit_and_keras_round_trip(tmp_path, fused):
    rng = np.random.default_rng(10)
    x = rng.uniform(0, 2, (16, 4, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, (16,))
    net = model(fused)
    net.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = net.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = os.path.join(tmp_path, "fused.keras")
    net.save(path)
    loaded = keras.saving.load_model(path)
    lif = [lay for lay in loaded.layers if isinstance(lay, layers.LIF)][0]
    assert lif.fused is fused
    assert lif.get_config()["fused"] is fused
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net(x), atol=1e-6)


def test_fit_gives_the_same_weights_as_reference_path():
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 2, (16, 4, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, (16,))
    weights = []
    for fused in (None, False):
        keras.utils.set_random_seed(0)
        net = model(fused)
        net.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        net.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        weights.append(net.get_weights())
    for got, want in zip(*weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_saved_model_export_of_fused_layer(tmp_path):
    # The fused op is plain TensorFlow (custom gradient only in training):
    # a whole-sequence model exports and serves the same spikes.
    net = model(None)
    x = np.random.default_rng(12).uniform(0, 2, (2, 4, 6, 6, 1))
    x = x.astype("float32")
    path = os.path.join(tmp_path, "saved")
    net.export(path, format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(path)  # keep it: it owns the variables
    served = loaded.serve(tf.constant(x))
    np.testing.assert_allclose(served.numpy(), net(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", surrogates.NAMES)
@pytest.mark.parametrize(
    "trainable_threshold,trainable_decay,decay_parameterization",
    [
        ("channel", "neuron", "clip"),
        ("neuron", "channel", "sigmoid"),
        ("layer", "channel", "sigmoid"),
    ],
)
def test_fused_per_channel_and_neuron_parameters(
    shape,
    reset,
    detach_reset,
    surrogate,
    trainable_threshold,
    trainable_decay,
    decay_parameterization,
):
    """Per-channel/per-neuron parameters broadcast in the fused op too.

    The fused loop is used for them (`compare` checks `uses_fused_loop`)
    and gives the reference path's spikes and gradients, which have the
    parameters' shapes, to 1e-6 in float64.
    """
    compare(
        SHAPES[shape],
        dtype="float64",
        reset=reset,
        detach_reset=detach_reset,
        surrogate=surrogate,
        trainable_threshold=trainable_threshold,
        trainable_decay=trainable_decay,
        decay_parameterization=decay_parameterization,
        threshold=0.9,
        decay=0.6,
    )


@pytest.mark.parametrize("unroll", [True, False])
def test_fused_per_channel_loop_forms(unroll):
    compare(
        SHAPES["conv"],
        dtype="float32",
        initial=True,
        unroll=unroll,
        trainable_threshold="channel",
        trainable_decay="neuron",
        decay_parameterization="sigmoid",
    )
