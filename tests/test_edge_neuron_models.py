"""The neuron models beyond LIF in the step graph and both references.

CubaLIF, ALIF, recurrent synapses and per-channel parameters: the float
reference equals the Keras layers, the integer reference follows the
fixed-point equations of `edge.integer` (checked against loops written here
and small cases worked by hand), and quantization sizes the scales for the
extra states.
"""

import keras
import numpy as np
import pytest
from edge_models import randomize_neurons

import edge
from edge import fuse
from edge import integer
from edge import ir
from edge import neuron_models
from edge import quantize
from edge import reference
from edge.ir import Node
from keras_snn import fixed_point
from keras_snn import layers


def _model(neuron, features=5, timesteps=6, units=8):
    inputs = keras.Input((timesteps, features))
    x = layers.TimeFolded(keras.layers.Dense(units))(inputs)
    x = neuron(x)
    return keras.Model(inputs, layers.Decoding(3)(x))


def _randomize(model, seed=0):
    return randomize_neurons(model, np.random.default_rng(seed))


NEURONS = {
    "cuba": lambda: layers.CubaLIF(
        threshold=0.5, decay=0.8, current_decay=0.6, name="neuron"
    ),
    "alif_recurrent_soft": lambda: layers.ALIF(
        threshold=0.4,
        decay=0.9,
        adaptation=0.5,
        adaptation_decay=0.8,
        reset="soft",
        recurrent=True,
        name="neuron",
    ),
    "lif_recurrent": lambda: layers.LIF(
        threshold=0.5, decay=0.7, recurrent=True, name="neuron"
    ),
    "plif_channel": lambda: layers.LIF(
        threshold=0.5,
        trainable_threshold="channel",
        trainable_decay="neuron",
        name="neuron",
    ),
    "cuba_channel": lambda: layers.CubaLIF(
        current_decay=0.5, trainable_current_decay="channel", name="neuron"
    ),
}
FEATURES = {
    "cuba": ["current"],
    "alif_recurrent_soft": ["adaptation", "recurrent"],
    "lif_recurrent": ["recurrent"],
    "plif_channel": ["channel"],
    "cuba_channel": ["channel", "current"],
}


def _inputs(count=48, timesteps=6, features=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, timesteps, features)).astype("float32")


@pytest.mark.parametrize("kind", sorted(NEURONS))
def test_float_reference_equals_keras_and_integer_follows(kind):
    model = _randomize(_model(NEURONS[kind]()))
    x = _inputs()
    graph = fuse.fuse(ir.extract(model))
    neuron = graph.node("neuron")
    assert neuron_models.features(neuron) == FEATURES[kind]
    float_out = reference.run_float(graph, x)
    np.testing.assert_allclose(
        float_out, model.predict(x, verbose=0), atol=2e-5
    )
    qgraph = quantize.quantize(graph, x)
    int_out, _, trace = integer.run_integer(qgraph, x, record=True)
    # The integer model follows the float one (untrained, random weights).
    agree = np.mean(int_out.argmax(-1) == float_out.argmax(-1))
    assert agree >= 0.85, agree
    limit = (1 << 15) - 1
    for key in ("state", "current", "adaptation"):
        values = trace.get(f"neuron:{key}")
        if values is not None:
            assert np.max(np.abs(values)) <= limit


def test_cuba_float_trajectory_worked_by_hand():
    node = Node(
        "n",
        "neuron",
        ["input"],
        (1,),
        {"threshold": 1.0, "decay": 0.5, "reset": "hard", "current_decay": 0.5},
    )
    state, spikes, potentials = None, [], []
    for current in [1.0, 0.0, 0.0, 0.5, 0.0]:
        o, u, state = neuron_models.step(
            node, np.array([current]), state, node.params
        )
        spikes.append(int(o[0]))
        potentials.append(float(u[0]))
    # i: 1, .5, .25, .625, .3125; u = .5 v + i; a spike resets v to 0.
    assert potentials == [1.0, 0.5, 0.5, 0.875, 0.75]
    assert spikes == [1, 0, 0, 0, 0]


def _integer_node(**params):
    base = {"threshold": 0.0, "decay": 1.0, "decay_q": 1 << 15}
    base["reset"] = "hard"
    base.update(params)
    return Node("n", "neuron", ["input"], (1,), base)


def _run_integer(node, currents, bits=16):
    state, rows = None, []
    for current in currents:
        o, u, state = neuron_models.step(
            node,
            np.array([current], np.int64),
            state,
            integer.constants(node),
            recurrent=integer._recurrent(node, bits),
            clip_fn=lambda value: fixed_point.saturate(value, bits),
        )
        rows.append(
            (int(o[0]), int(u[0]), {k: v.copy() for k, v in state.items()})
        )
    return rows


def test_cuba_integer_trajectory_worked_by_hand():
    # a_q = 2^14 (a = 0.5), k = 0.5, th_q = 1000, hard reset.
    node = _integer_node(
        threshold_q=1000,
        decay_q=16384,
        current_decay=0.5,
        current_decay_q=16384,
    )
    rows = _run_integer(node, [1001, 0, 0, 501, 0])
    # i: 1001, 501 (500.5 away from zero), 251 (250.5), 627 (125.5 -> 126,
    # + 501), 314 (313.5); u = k v + i, v = 0 after the spike.
    assert [r[2]["current"][0] for r in rows] == [1001, 501, 251, 627, 314]
    assert [r[1] for r in rows] == [1001, 501, 502, 878, 753]
    assert [r[0] for r in rows] == [1, 0, 0, 0, 0]


def test_cuba_integer_current_saturates():
    node = _integer_node(
        threshold_q=1 << 20,
        decay_q=0,
        current_decay=1.0,
        current_decay_q=1 << 15,
    )
    rows = _run_integer(node, [20000, 20000, 20000])
    assert [r[2]["current"][0] for r in rows] == [20000, 32767, 32767]


def test_cuba_with_zero_current_decay_is_lif_in_integers():
    x = _inputs()
    cuba = _model(layers.CubaLIF(threshold=0.5, decay=0.8, current_decay=0.0))
    lif = _model(layers.LIF(threshold=0.5, decay=0.8))
    lif.set_weights(cuba.get_weights())
    outputs = []
    for model in (cuba, lif):
        graph = fuse.fuse(ir.extract(model))
        qgraph = quantize.quantize(graph, x)
        outputs.append(integer.run_integer(qgraph, x)[1])
    np.testing.assert_array_equal(*outputs)


def _alif_loop(currents, th_q, d_q, rho_q, step_q, reset):
    """The integer ALIF written out: threshold th_q + a, a after the spike."""
    v = a = 0
    rows = []
    for current in currents:
        u = fixed_point.decay_multiply(v, d_q) + current
        theta = th_q + a
        o = int(u >= theta)
        v = u - theta * o if reset == "soft" else u * (1 - o)
        a = int(fixed_point.decay_multiply(a, rho_q)) + step_q * o
        rows.append((o, int(u), int(a)))
    return rows


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_alif_integer_trajectory_equals_its_equations(reset):
    step_q = fixed_point.quantize_adaptation_step(0.5, 0.75, 1 / 1000)
    # (1 - 0.75) * 0.5 / 0.001 = 125 per spike.
    assert step_q == 125
    node = _integer_node(
        threshold_q=1000,
        decay_q=1 << 15,
        reset=reset,
        adaptation=0.5,
        adaptation_decay=0.75,
        adaptation_decay_q=24576,
        adaptation_step_q=step_q,
    )
    currents = [600, 600, 600, 600, 600, 600, 600, 600]
    rows = _run_integer(node, currents)
    expected = _alif_loop(currents, 1000, 1 << 15, 24576, step_q, reset)
    got = [(o, u, int(s["adaptation"][0])) for o, u, s in rows]
    assert got == expected
    # Worked by hand (soft reset): the threshold rises by 125 per spike
    # and decays by 3/4 per step (93.75 -> 94, ties away from zero), so
    # the neuron cannot fire at step 5 (u = 906 < 1000 + 196), where an
    # IF neuron without adaptation would.
    if reset == "soft":
        assert [o for o, _, _ in got] == [0, 1, 0, 1, 0, 1, 0, 1]
        assert [a for _, _, a in got][:4] == [0, 125, 94, 196]
        plain = _alif_loop(currents, 1000, 1 << 15, 24576, 0, reset)
        assert [o for o, _, _ in plain] == [0, 1, 0, 1, 1, 0, 1, 0]


def test_recurrent_integer_current_is_a_dense_layer_on_spikes():
    node = _integer_node(
        threshold_q=100,
        recurrent_kernel_q=np.array([[0, 64], [-127, 0]]),
        recurrent_multiplier=np.array([1 << 14, 1 << 14]),
        recurrent_shift=np.array([14, 15]),
        recurrent_kernel=np.zeros((2, 2)),
    )
    node.shape = (2,)
    state, history = None, []
    for current in ([150, 0], [0, 0], [0, 90]):
        o, u, state = neuron_models.step(
            node,
            np.array([current], np.int64),
            state,
            integer.constants(node),
            recurrent=integer._recurrent(node, 16),
            clip_fn=lambda value: fixed_point.saturate(value, 16),
        )
        history.append((o[0].tolist(), u[0].tolist()))
    # Step 1: neuron 0 fires (150 >= 100). Step 2: it sends 0 to itself
    # and round(64 * 2^14 / 2^15) = 32 to neuron 1 (u = 0 + 32). Step 3:
    # nothing fired at step 2; neuron 1 integrates 32 + 90 = 122 and fires.
    assert history == [
        ([1, 0], [150, 0]),
        ([0, 0], [0, 32]),
        ([0, 1], [0, 122]),
    ]


def test_quantized_constants_of_each_model():
    x = _inputs()
    model = _randomize(_model(NEURONS["alif_recurrent_soft"]()))
    qgraph = quantize.quantize(fuse.fuse(ir.extract(model)), x)
    p = qgraph.node("neuron").params
    scale = p["scale"]
    assert p["adaptation_decay_q"] == fixed_point.quantize_membrane_decay(0.8)
    assert p["adaptation_step_q"] == round(0.2 * 0.5 / scale)
    kernel = p["recurrent_kernel"]
    real = p["recurrent_kernel_q"] * np.ldexp(
        p["recurrent_multiplier"].astype(float), -p["recurrent_shift"]
    )
    # One step of the recurrent kernel on a spike is W / scale, within
    # half a weight step per channel.
    steps = np.abs(kernel).max(axis=0) / 127 / scale
    assert np.all(np.abs(real - kernel / scale) <= 0.51 * steps + 1e-9)
    # The scale leaves room for the highest threshold theta0 + beta.
    assert (0.4 + 0.5) / scale <= (1 << 15) - 1
    model = _randomize(_model(NEURONS["plif_channel"]()))
    qgraph = quantize.quantize(fuse.fuse(ir.extract(model)), x)
    p = qgraph.node("neuron").params
    assert p["threshold_q"].shape == (8,)
    assert p["decay_q"].shape == (8,)
    assert np.all(p["decay_q"] % 2 == 0)


def test_every_target_checks_the_features():
    graph = ir.extract(_model(NEURONS["cuba"]()))
    supported = neuron_models.features(graph.node("neuron"))
    neuron_models.require(graph, "any", supported)
    with pytest.raises(edge.UnsupportedLayerError, match="'neuron' .CubaLIF"):
        neuron_models.require(graph, "any", ())


def test_a_sequence_model_reads_its_steps_from_the_input():
    # The exporter passes its `T` to the integer reference; a model without
    # an encoder must still read (N, T, ...) sequences.
    model = _randomize(_model(NEURONS["alif_recurrent_soft"]()))
    x = _inputs(count=8)
    qgraph = quantize.quantize(fuse.fuse(ir.extract(model)), x)
    with_t = integer.run_integer(qgraph, x, timesteps=6)[1]
    np.testing.assert_array_equal(with_t, integer.run_integer(qgraph, x)[1])
    assert with_t.shape[:2] == (8, 6)
