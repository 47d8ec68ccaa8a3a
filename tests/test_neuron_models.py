"""CubaLIF, ALIF and per-channel/per-neuron learnable parameters (PLIF).

Each model's trajectory is checked against a NumPy version of its
equations written here, on hand-checkable cases and random ones; with
`current_decay=0` (CUBA) or `adaptation=0` (ALIF) the layers must give
LIF's spikes, potentials and gradients exactly.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import edge
from edge import ir
from keras_snn import functional
from keras_snn import layers


def fire_and_reset(u, theta, reset):
    o = (u >= theta).astype(u.dtype)
    if reset == "hard":
        return o, u * (1 - o)
    if reset == "soft":
        return o, u - theta * o
    return o, u


def cuba_reference(currents, threshold, decay, current_decay, reset):
    """i[t] = a i[t-1] + I[t]; u[t] = k v[t-1] + i[t]; fire; reset."""
    v = np.zeros_like(currents[:, 0])
    i = np.zeros_like(v)
    spikes, potentials = [], []
    for t in range(currents.shape[1]):
        i = current_decay * i + currents[:, t]
        u = decay * v + i
        o, v = fire_and_reset(u, threshold, reset)
        spikes.append(o)
        potentials.append(u)
    return np.stack(spikes, 1), np.stack(potentials, 1), (v, i)


def alif_reference(currents, threshold, decay, beta, rho, reset):
    """theta[t] = theta0 + beta b[t], b[t] = rho b[t-1] + (1-rho) o[t-1]."""
    v = np.zeros_like(currents[:, 0])
    b = np.zeros_like(v)
    o = np.zeros_like(v)
    spikes, potentials = [], []
    for t in range(currents.shape[1]):
        b = rho * b + (1 - rho) * o  # b[t] from o[t-1]; b[0] = 0
        theta = threshold + beta * b
        u = decay * v + currents[:, t]
        o, v = fire_and_reset(u, theta, reset)
        spikes.append(o)
        potentials.append(u)
    b_next = rho * b + (1 - rho) * o
    return np.stack(spikes, 1), np.stack(potentials, 1), (v, b_next)


SHAPES = {"dense": (3, 9, 5), "conv": (2, 7, 3, 3, 2)}


def test_cuba_hand_checked():
    # a = k = 0.5, I = 0.5: i = 0.5, 0.75, 0.875; u = 0.5, 1.0 (fires,
    # hard reset), 0.875.
    currents = np.full((1, 3, 1), 0.5)
    layer = layers.CubaLIF(
        decay=0.5, current_decay=0.5, return_potentials=True, dtype="float64"
    )
    spikes, potentials = layer(currents)
    np.testing.assert_array_equal(spikes.numpy()[0, :, 0], [0, 1, 0])
    np.testing.assert_allclose(potentials.numpy()[0, :, 0], [0.5, 1.0, 0.875])


def test_alif_hand_checked():
    # theta0 = 1, beta = 1, rho = 0.5, k = 0.5, I = 1:
    # t0 theta 1 u 1 fires; b 0.5; t1 theta 1.5 u 1 silent;
    # b 0.25; t2 theta 1.25 u 1.5 fires; b 0.625; t3 theta 1.625 u 1.
    currents = np.ones((1, 4, 1))
    layer = layers.ALIF(
        decay=0.5,
        adaptation=1.0,
        adaptation_decay=0.5,
        return_potentials=True,
        return_state=True,
        dtype="float64",
    )
    spikes, potentials, v, b = layer(currents)
    np.testing.assert_array_equal(spikes.numpy()[0, :, 0], [1, 0, 1, 0])
    np.testing.assert_allclose(potentials.numpy()[0, :, 0], [1, 1, 1.5, 1])
    np.testing.assert_allclose(v.numpy()[0, 0], 1.0)
    np.testing.assert_allclose(b.numpy()[0, 0], 0.3125)  # 0.5 * 0.625


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("unroll", [None, False])
def test_cuba_matches_equations(shape, reset, unroll):
    currents = np.random.default_rng(1).uniform(-0.3, 1.0, SHAPES[shape])
    layer = layers.CubaLIF(
        threshold=0.9,
        decay=0.7,
        current_decay=0.6,
        reset=reset,
        return_potentials=True,
        return_state=True,
        unroll=unroll,
        dtype="float64",
    )
    spikes, potentials, v, i = layer(currents)
    ref_spikes, ref_potentials, (ref_v, ref_i) = cuba_reference(
        currents, 0.9, 0.7, 0.6, reset
    )
    np.testing.assert_array_equal(spikes.numpy(), ref_spikes)
    np.testing.assert_allclose(potentials.numpy(), ref_potentials, rtol=1e-12)
    np.testing.assert_allclose(v.numpy(), ref_v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(i.numpy(), ref_i, rtol=1e-12)
    assert ref_spikes.any() and not ref_spikes.all()


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("unroll", [None, False])
def test_alif_matches_equations(shape, reset, unroll):
    currents = np.random.default_rng(2).uniform(-0.2, 1.4, SHAPES[shape])
    layer = layers.ALIF(
        threshold=0.8,
        decay=0.6,
        adaptation=0.7,
        adaptation_decay=0.75,
        reset=reset,
        return_potentials=True,
        return_state=True,
        unroll=unroll,
        dtype="float64",
    )
    spikes, potentials, v, b = layer(currents)
    ref_spikes, ref_potentials, (ref_v, ref_b) = alif_reference(
        currents, 0.8, 0.6, 0.7, 0.75, reset
    )
    np.testing.assert_array_equal(spikes.numpy(), ref_spikes)
    np.testing.assert_allclose(potentials.numpy(), ref_potentials, rtol=1e-12)
    np.testing.assert_allclose(v.numpy(), ref_v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b.numpy(), ref_b, rtol=1e-12)
    assert ref_spikes.any() and not ref_spikes.all()


def test_adaptation_lowers_the_firing_rate():
    currents = np.full((1, 40, 1), 0.6)
    lif = layers.LIF(decay=0.9, dtype="float64")(currents).numpy().sum()
    alif = layers.ALIF(
        decay=0.9, adaptation=2.0, adaptation_decay=0.95, dtype="float64"
    )(currents)
    assert 0 < alif.numpy().sum() < lif


@settings(max_examples=25, deadline=None)
@given(
    reset=st.sampled_from(["hard", "soft", "none"]),
    decay=st.floats(0.0, 1.0),
    current_decay=st.floats(0.0, 1.0),
    adaptation=st.floats(0.0, 3.0),
    adaptation_decay=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_functional_steps_match_references(
    reset, decay, current_decay, adaptation, adaptation_decay, seed
):
    """`cuba_step`/`alif_step` on NumPy against the references."""
    currents = np.random.default_rng(seed).uniform(-1.0, 2.0, (2, 6, 3))
    v = i = np.zeros((2, 3))
    spikes = []
    for t in range(6):
        o, _, v, i = functional.cuba_step(
            currents[:, t], v, i, 1.0, decay, current_decay, reset
        )
        spikes.append(o)
    ref, _, _ = cuba_reference(currents, 1.0, decay, current_decay, reset)
    np.testing.assert_array_equal(np.stack(spikes, 1), ref)
    v = b = np.zeros((2, 3))
    spikes = []
    for t in range(6):
        o, _, v, b = functional.alif_step(
            currents[:, t],
            v,
            b,
            1.0,
            decay,
            adaptation,
            adaptation_decay,
            reset,
        )
        spikes.append(o)
    ref, _, _ = alif_reference(
        currents, 1.0, decay, adaptation, adaptation_decay, reset
    )
    np.testing.assert_array_equal(np.stack(spikes, 1), ref)


def run_with_gradients(layer, currents, weights):
    currents = tf.constant(currents)
    with tf.GradientTape() as tape:
        tape.watch(currents)
        spikes, potentials = layer(currents)
        loss = tf.reduce_sum(spikes * weights)
    variables = [w.value for w in layer.trainable_weights]
    grads = tape.gradient(loss, [currents, *variables])
    return spikes.numpy(), potentials.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("model", ["cuba", "alif"])
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", ["rectangular", "atan", "triangle"])
def test_equals_lif_when_extension_is_off(
    model, reset, detach_reset, surrogate
):
    """a = 0 (CUBA) and beta = 0 (ALIF) give LIF's numbers exactly."""
    rng = np.random.default_rng(3)
    currents = rng.uniform(-0.4, 1.6, (3, 8, 4))
    weights = rng.standard_normal(currents.shape)
    common = dict(
        threshold=0.9,
        decay=0.6,
        reset=reset,
        detach_reset=detach_reset,
        surrogate=surrogate,
        trainable_threshold=True,
        trainable_decay=True,
        return_potentials=True,
        dtype="float64",
    )
    if model == "cuba":
        other = layers.CubaLIF(current_decay=0.0, **common)
    else:
        other = layers.ALIF(adaptation=0.0, adaptation_decay=0.5, **common)
    lif = layers.LIF(fused=False, **common)
    spikes, potentials, grads = run_with_gradients(other, currents, weights)
    ref_spikes, ref_potentials, ref_grads = run_with_gradients(
        lif, currents, weights
    )
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(potentials, ref_potentials)
    assert len(grads) == len(ref_grads) == 3
    # The input gradients are the same numbers; the scalar parameters'
    # gradients are sums over every neuron and step, which ALIF (whose
    # threshold is a tensor) adds in another order: equal to rounding.
    np.testing.assert_array_equal(grads[0], ref_grads[0])
    for grad, ref in zip(grads, ref_grads, strict=True):
        assert np.any(ref != 0)
        np.testing.assert_allclose(grad, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "neuron",
    [
        lambda: layers.CubaLIF(current_decay=0.5),
        lambda: layers.ALIF(adaptation=0.5),
        lambda: layers.LIF(trainable_threshold="channel"),
    ],
)
def test_gradient_reaches_the_first_dense_layer(neuron):
    inputs = keras.Input((6, 4))
    first = keras.layers.Dense(8, name="first")
    x = neuron()(first(inputs))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    data = tf.constant(np.random.default_rng(4).uniform(0, 1, (5, 6, 4)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.cast(data, "float32")) ** 2)
    grad = tape.gradient(loss, first.kernel.value)
    assert np.abs(grad.numpy()).sum() > 0


def test_new_layers_run_their_fused_loop():
    for layer in (layers.CubaLIF(), layers.ALIF()):
        layer.build((2, 3, 4))
        assert layer.uses_fused_loop() is True
        assert layers.CubaLIF(recurrent=True).cell.fusable is False
    lif = layers.LIF(trainable_threshold="neuron", trainable_decay="channel")
    lif.build((2, 3, 4))
    assert lif.uses_fused_loop() is True


def test_stateful_cuba_streaming_equals_whole_sequence():
    currents = np.random.default_rng(5).uniform(0, 1, (2, 8, 3))
    currents = currents.astype("float32")
    whole = layers.CubaLIF(decay=0.8, current_decay=0.7)(currents).numpy()
    layer = layers.CubaLIF(decay=0.8, current_decay=0.7, stateful=True)
    model = keras.Sequential([keras.Input((4, 3), batch_size=2), layer])
    first = model(currents[:, :4]).numpy()
    second = model(currents[:, 4:]).numpy()
    np.testing.assert_array_equal(np.concatenate([first, second], 1), whole)


def test_symbolic_state_outputs():
    inputs = keras.Input((5, 4, 4, 2))
    outputs = layers.ALIF(return_potentials=True, return_state=True)(inputs)
    assert [tuple(o.shape) for o in outputs] == [
        (None, 5, 4, 4, 2),
        (None, 5, 4, 4, 2),
        (None, 4, 4, 2),
        (None, 4, 4, 2),
    ]


@pytest.mark.parametrize(
    "learnable,shape",
    [
        (True, ()),
        ("layer", ()),
        ("channel", (2,)),
        ("neuron", (3, 3, 2)),
    ],
)
def test_parameter_shapes(learnable, shape):
    layer = layers.CubaLIF(
        trainable_threshold=learnable,
        trainable_decay=learnable,
        trainable_current_decay=learnable,
    )
    layer(np.zeros((1, 2, 3, 3, 2), "float32"))
    names = {w.name: tuple(w.shape) for w in layer.trainable_weights}
    assert names == {"threshold": shape, "decay": shape, "current_decay": shape}
    config = layer.get_config()
    expected = "layer" if learnable is True else learnable
    assert config["trainable_threshold"] == expected


def test_per_channel_threshold_follows_equations():
    currents = np.random.default_rng(6).uniform(0, 1.2, (2, 7, 3))
    layer = layers.LIF(
        trainable_threshold="channel",
        trainable_decay="neuron",
        return_potentials=True,
        dtype="float64",
    )
    layer(currents)
    thresholds = np.array([0.5, 1.0, 1.5])
    decays = np.array([0.2, 0.5, 0.9])
    layer.cell.threshold_weight.assign(thresholds)
    layer.cell.decay_weight.assign(decays)
    spikes, potentials = layer(currents)
    ref_spikes, ref_potentials, _ = cuba_reference(
        currents, thresholds, decays, 0.0, "hard"
    )
    np.testing.assert_array_equal(spikes.numpy(), ref_spikes)
    np.testing.assert_allclose(potentials.numpy(), ref_potentials, rtol=1e-12)


def test_sigmoid_parameterization_is_fang_et_al():
    """The weight is `a` with 1/tau = sigmoid(a) and k = 1 - 1/tau."""
    layer = layers.LIF(
        decay=0.8,
        trainable_decay="channel",
        decay_parameterization="sigmoid",
        return_potentials=True,
        dtype="float64",
    )
    currents = np.random.default_rng(7).uniform(0, 0.6, (2, 6, 2))
    layer(currents)
    weight = layer.cell.decay_weight
    assert weight.name == "decay_parameter" and weight.constraint is None
    a = weight.numpy()
    np.testing.assert_allclose(1 - 1 / (1 + np.exp(-a)), [0.8, 0.8])
    weight.assign([-2.0, 3.0])
    decays = 1 - 1 / (1 + np.exp([2.0, -3.0]))
    _, potentials = layer(currents)
    _, ref, _ = cuba_reference(currents, 1.0, decays, 0.0, "hard")
    np.testing.assert_allclose(potentials.numpy(), ref, rtol=1e-12)


def test_constraints_keep_per_channel_values_valid():
    layer = layers.ALIF(trainable_threshold="channel", trainable_decay="neuron")
    layer(np.zeros((1, 2, 3), "float32"))
    threshold = layer.cell.threshold_weight
    decay = layer.cell.decay_weight
    threshold.assign(threshold.constraint(tf.constant([-1.0, 0.5, 2.0])))
    decay.assign(decay.constraint(tf.constant([-1.0, 0.5, 2.0])))
    np.testing.assert_allclose(threshold.numpy(), [1e-3, 0.5, 2.0])
    np.testing.assert_allclose(decay.numpy(), [0.0, 0.5, 1.0])


def test_old_boolean_configs_still_load():
    config = layers.LIF(trainable_decay=True).get_config()
    config["trainable_decay"] = True  # as written before the shapes existed
    del config["decay_parameterization"]
    layer = layers.LIF.from_config(config)
    assert layer.trainable_decay == "layer"
    layer(np.zeros((1, 2, 3), "float32"))
    assert tuple(layer.cell.decay_weight.shape) == ()


def test_configs_are_flat_and_json():
    layer = layers.CubaLIF(
        current_decay=0.3,
        trainable_current_decay="neuron",
        decay_parameterization="sigmoid",
    )
    config = layer.get_config()
    json.dumps(config)
    assert config["current_decay"] == 0.3
    assert config["trainable_current_decay"] == "neuron"
    assert layers.CubaLIF.from_config(config).get_config() == config
    config = layers.ALIF(adaptation=0.4, adaptation_decay=0.6).get_config()
    assert (config["adaptation"], config["adaptation_decay"]) == (0.4, 0.6)
    assert "decay_parameterization" not in layers.IF().get_config()


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (lambda: layers.CubaLIF(current_decay=1.5), "current_decay=1.5"),
        (lambda: layers.CubaLIF(current_decay=-0.1), r"in \[0, 1\]"),
        (lambda: layers.ALIF(adaptation=-1.0), r">= 0.*adaptation=-1.0"),
        (lambda: layers.ALIF(adaptation_decay=2), "adaptation_decay=2"),
        (lambda: layers.ALIF(adaptation=float("nan")), "adaptation=nan"),
        (
            lambda: layers.LIF(trainable_decay="pixel"),
            r"trainable_decay.*'layer', 'channel', 'neuron'.*'pixel'",
        ),
        (
            lambda: layers.IF(trainable_threshold="row"),
            "trainable_threshold='row'",
        ),
        (
            lambda: layers.LIF(decay_parameterization="exp"),
            r"\('clip', 'sigmoid'\).*decay_parameterization='exp'",
        ),
        (
            lambda: layers.LIF(
                decay=0.0,
                trainable_decay=True,
                decay_parameterization="sigmoid",
            ),
            r"\(0, 1\).*decay=0.0",
        ),
        (
            lambda: layers.CubaLIF(
                current_decay=1.0,
                trainable_current_decay=True,
                decay_parameterization="sigmoid",
            ),
            "current_decay=1.0",
        ),
        (
            lambda: layers.IF(decay_parameterization="sigmoid"),
            "no leak",
        ),
        (
            lambda: layers.ALIF(fused=True, recurrent=True),
            "no recurrent synapses",
        ),
    ],
)
def test_invalid_arguments(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


def _model(neuron):
    inputs = keras.Input((6, 4))
    x = layers.TimeFolded(keras.layers.Dense(5))(inputs)
    x = neuron(x)
    return keras.Model(inputs, layers.Decoding(2)(x))


@pytest.mark.parametrize(
    "neuron,fragments",
    [
        (layers.CubaLIF(name="cuba"), ["'cuba' (CubaLIF)", "synaptic current"]),
        (layers.ALIF(name="alif"), ["'alif' (ALIF)", "adaptive threshold"]),
        (
            layers.LIF(trainable_threshold="channel", name="plif"),
            ["'plif' (LIF)", "per channel or per neuron"],
        ),
        (
            layers.IF(trainable_threshold="neuron", name="pif"),
            ["'pif' (IF)", "per channel or per neuron"],
        ),
        (
            layers.LIF(recurrent=True, name="rec"),
            ["'rec' (LIF)", "recurrent synapses"],
        ),
    ],
)
def test_a_target_refuses_the_features_it_lacks(neuron, fragments):
    graph = ir.extract(_model(neuron))
    edge.neuron_models.require(
        graph, "demo", ("current", "adaptation", "recurrent", "channel")
    )
    with pytest.raises(edge.UnsupportedLayerError) as info:
        edge.neuron_models.require(graph, "demo", ())
    for fragment in [*fragments, "'demo' target"]:
        assert fragment in str(info.value)
