"""The fused time loops of CubaLIF and ALIF against the step-by-step path.

`CubaLIF(fused=None)` and `ALIF(fused=None)` run
`keras_snn.layers.fused_models` (one op over the sequence, hand-written
reverse-time backward pass); `fused=False` runs the cell step by step
through `keras.layers.RNN`, differentiated automatically. Both must give
the same spikes, final states and gradients (inputs, initial states,
every trainable parameter) for every surrogate and reset.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_snn import functional
from keras_snn import layers
from keras_snn import surrogates
from keras_snn.layers import fused_models

SHAPES = {"dense": (3, 7, 5), "conv": (2, 6, 4, 4, 3)}
TOLERANCE = {"float64": 1e-6, "float32": 1e-5}
LAYERS = {"cuba": layers.CubaLIF, "alif": layers.ALIF}
# Each model's own arguments; ALIF's adaptation is strong enough that the
# adaptive threshold changes which neurons fire.
EXTRA = {
    "cuba": {"current_decay": 0.7, "trainable_current_decay": True},
    "alif": {"adaptation": 0.6, "adaptation_decay": 0.8},
}


def assert_close(actual, expected, what):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(actual - expected))) / scale
    tolerance = TOLERANCE[str(expected.dtype)]
    assert error <= tolerance, f"{what}: relative error {error:.3g}"


def run(layer, currents, weights, initial_state=None):
    """Spikes, final states and gradients of a weighted sum of all three."""
    currents = tf.constant(currents)
    watched = [currents]
    if initial_state is not None:
        initial_state = [tf.constant(s) for s in initial_state]
        watched.extend(initial_state)
    with tf.GradientTape() as tape:
        tape.watch(watched)
        spikes, *states = layer(currents, initial_state=initial_state)
        loss = tf.reduce_sum(spikes * weights[0])
        for state, weight in zip(states, weights[1:], strict=True):
            loss += tf.reduce_sum(state * weight)
    variables = [w.value for w in layer.trainable_weights]
    gradients = tape.gradient(loss, watched + variables)
    return (
        spikes.numpy(),
        [s.numpy() for s in states],
        [g.numpy() for g in gradients],
    )


def compare(model, shape, dtype="float64", initial=False, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    currents = rng.uniform(-0.5, 1.8, shape).astype(dtype)
    state_shape = (shape[0], *shape[2:])
    weights = [rng.standard_normal(shape).astype(dtype)]
    weights += [rng.standard_normal(state_shape).astype(dtype)] * 2
    state = None
    if initial:
        state = [
            rng.uniform(-0.5, 1.0, state_shape).astype(dtype),
            rng.uniform(0.0, 1.0, state_shape).astype(dtype),
        ]
    arguments = {**EXTRA[model], **kwargs}
    results = []
    for fused in (None, False):
        layer = LAYERS[model](
            return_state=True, fused=fused, dtype=dtype, **arguments
        )
        layer.build(currents.shape)
        assert layer.uses_fused_loop() is (fused is None)
        results.append(run(layer, currents, weights, state))
    (spikes, states, grads), (ref_spikes, ref_states, ref_grads) = results
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert ref_spikes.any() and not ref_spikes.all()
    for got, want in zip(states, ref_states, strict=True):
        assert_close(got, want, "final state")
    names = ["inputs"] + (["initial v", "initial state 2"] if initial else [])
    names += ["weight"] * (len(ref_grads) - len(names))
    for name, grad, ref in zip(names, grads, ref_grads, strict=True):
        assert np.any(ref != 0), name
        assert_close(grad, ref, f"gradient wrt {name}")


@pytest.mark.parametrize("model", sorted(LAYERS))
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", surrogates.NAMES)
def test_fused_equals_reference(model, shape, reset, detach_reset, surrogate):
    compare(
        model,
        SHAPES[shape],
        reset=reset,
        detach_reset=detach_reset,
        surrogate=surrogate,
        trainable_threshold=True,
        trainable_decay=True,
        threshold=0.9,
        decay=0.6,
    )


@pytest.mark.parametrize("model", sorted(LAYERS))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("unroll", [True, False])
def test_loop_forms_and_initial_state(model, reset, unroll):
    compare(
        model,
        SHAPES["conv"],
        initial=True,
        reset=reset,
        unroll=unroll,
        surrogate="atan",
        trainable_threshold=True,
        trainable_decay=True,
        seed=1,
    )


@pytest.mark.parametrize("model", sorted(LAYERS))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize(
    "trainable_threshold,trainable_decay,decay_parameterization",
    [("channel", "neuron", "clip"), ("neuron", "channel", "sigmoid")],
)
def test_per_channel_and_neuron_parameters(
    model,
    reset,
    detach_reset,
    trainable_threshold,
    trainable_decay,
    decay_parameterization,
):
    extra = {}
    if model == "cuba":
        extra["trainable_current_decay"] = trainable_decay
    compare(
        model,
        SHAPES["conv"],
        reset=reset,
        detach_reset=detach_reset,
        surrogate="fast_sigmoid"
        if reset == "hard"
        else "lif_pseudo_derivative",
        trainable_threshold=trainable_threshold,
        trainable_decay=trainable_decay,
        decay_parameterization=decay_parameterization,
        threshold=0.9,
        decay=0.6,
        seed=2,
        **extra,
    )


@pytest.mark.parametrize("model", sorted(LAYERS))
def test_float32_and_constant_parameters(model):
    compare(model, SHAPES["dense"], dtype="float32", reset="soft", seed=3)
    # Constant parameters only: the op computes no parameter gradient.
    extra = {"trainable_current_decay": False} if model == "cuba" else {}
    compare(
        model, SHAPES["conv"], dtype="float32", reset="hard", seed=4, **extra
    )


def reference_alif(currents, states, parameters, reset, surrogate):
    """`alif_step` over the sequence, differentiated automatically."""
    v, b = states
    spikes = []
    for t in range(currents.shape[1]):
        o, _, v, b = functional.alif_step(
            currents[:, t],
            v,
            b,
            *parameters,
            reset=reset,
            spike_fn=lambda x: surrogate(x, parameters[0]),
        )
        spikes.append(o)
    return tf.stack(spikes, axis=1), [v, b]


@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("unroll", [True, False])
def test_alif_gradients_wrt_adaptation_parameters(reset, unroll):
    # The layer keeps beta and rho constant; the op differentiates them
    # too when they are tensors (per channel here).
    rng = np.random.default_rng(5)
    currents = tf.constant(rng.uniform(-0.3, 1.5, (3, 6, 4)))
    states = [tf.constant(rng.uniform(0, 0.5, (3, 4))) for _ in range(2)]
    parameters = [
        tf.constant(0.8, "float64"),
        tf.constant(rng.uniform(0.3, 0.9, (4,))),
        tf.constant(rng.uniform(0.2, 0.8, (4,))),
        tf.constant(rng.uniform(0.5, 0.95, (4,))),
    ]
    weights = [rng.standard_normal(s) for s in ((3, 6, 4), (3, 4), (3, 4))]
    surrogate = surrogates.get("triangle")
    results = []
    for fused in (True, False):
        with tf.GradientTape() as tape:
            tape.watch([currents, *states, *parameters])
            if fused:
                spikes, final = fused_models.alif_sequence(
                    currents,
                    states,
                    *parameters,
                    reset,
                    surrogate,
                    False,
                    unroll,
                )
            else:
                spikes, final = reference_alif(
                    currents, states, parameters, reset, surrogate
                )
            loss = tf.reduce_sum(spikes * weights[0])
            loss += sum(
                tf.reduce_sum(s * w)
                for s, w in zip(final, weights[1:], strict=True)
            )
        grads = tape.gradient(loss, [currents, *states, *parameters])
        results.append((spikes.numpy(), [g.numpy() for g in grads]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for got, want in zip(results[0][1], results[1][1], strict=True):
        assert_close(got, want, "ALIF gradient")


@pytest.mark.parametrize("model", sorted(LAYERS))
@pytest.mark.parametrize("return_sequences", [True, False])
def test_stateful_and_last_step(model, return_sequences):
    x = np.random.default_rng(6).uniform(0, 1.5, (2, 3, 4)).astype("float32")
    outputs = []
    for fused in (None, False):
        layer = LAYERS[model](
            stateful=True, return_sequences=return_sequences, fused=fused
        )
        first = layer(x).numpy()
        second = layer(x).numpy()
        outputs.append((first, second, *[s.numpy() for s in layer.states]))
    for got, want in zip(*outputs, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("model", sorted(LAYERS))
def test_when_the_fused_loop_applies(model):
    layer_class = LAYERS[model]
    layer = layer_class(fused=True)
    layer.build((2, 3, 4))
    assert layer.uses_fused_loop()
    assert not layer_class(fused=False).uses_fused_loop()
    assert not layer_class(return_potentials=True).uses_fused_loop()
    assert not layer_class(recurrent=True).cell.fusable
    with pytest.raises(ValueError, match="no recurrent synapses"):
        layer_class(recurrent=True, fused=True)
    with pytest.raises(ValueError, match="does not support masks"):
        layer(np.ones((2, 3, 4), "float32"), mask=np.ones((2, 3), "bool"))
    x = np.random.default_rng(7).uniform(0, 1.5, (2, 3, 4)).astype("float32")
    mask = np.array([[True, True, False], [True, True, True]])
    np.testing.assert_array_equal(
        layer_class()(x, mask=mask).numpy(),
        layer_class(fused=False)(x, mask=mask).numpy(),
    )


@pytest.mark.parametrize("model", sorted(LAYERS))
@pytest.mark.parametrize("recurrent", [False, True])
def test_training_step_under_xla(model, recurrent):
    """The fused op, and the recurrent (unfused, unrolled) loop, compile."""
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 2, (8, 5, 6)).astype("float32")
    y = rng.integers(0, 2, (8,))
    results = []
    for fused in (None, False):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((5, 6))
        h = layers.TimeFolded(keras.layers.Dense(4))(inputs)
        neuron = LAYERS[model](
            fused=fused,
            recurrent=recurrent,
            unroll=True,
            trainable_threshold=True,
        )
        h = neuron(h)
        outputs = keras.layers.GlobalAveragePooling1D()(h)
        net = keras.Model(inputs, keras.layers.Dense(2)(outputs))
        assert neuron.uses_fused_loop() is (fused is None and not recurrent)
        net.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        net.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        results.append(net.get_weights())
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_unrolled_over_unknown_length_is_refused():
    @tf.function(input_signature=[tf.TensorSpec((2, None, 3))])
    def cuba(x):
        zeros = tf.zeros((2, 3))
        return fused_models.cuba_sequence(
            x, [zeros, zeros], 1.0, 0.5, 0.5, "hard", surrogates.get("atan")
        )

    with pytest.raises(ValueError, match="static number of time steps"):
        cuba.get_concrete_function()
