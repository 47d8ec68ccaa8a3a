"""edge C runtime: the neuron models of `edge.neuron_models` (CubaLIF,
ALIF, recurrent synapses, per-channel and per-neuron parameters), bit for
bit against the integer reference (`edge.integer`), outputs and every state
at every step, on the gcc host build and on QEMU's Cortex-M4.

Needs gcc, arm-none-eabi-gcc and qemu-system-arm (`.ci/install_arm.sh`).
Without them the tests are skipped locally and fail in CI (`CI` set).
"""

import dataclasses

import keras
import numpy as np
import pytest
from edge_models import randomize_neurons
from edge_models import require_programs

from edge import fuse
from edge import integer
from edge import ir
from edge import neuron_models
from edge import quantize
from edge.errors import UnsupportedLayerError
from edge.targets import c as c_target
from edge.targets.c import plan as plan_module
from edge.targets.c.nodes import row_stride
from keras_snn import layers as snn

TOOLS = ("gcc", "make", "arm-none-eabi-gcc", "arm-none-eabi-size")
TOOLS += ("qemu-system-arm",)
STEPS = 5


@pytest.fixture(scope="module", autouse=True)
def toolchain():
    require_programs(TOOLS, "C runtime tests", "run .ci/install_arm.sh")


def _neuron(kind):
    """The neuron layer of a model, and the states it keeps besides the
    membrane (the keys of `edge.neuron_models.step`)."""
    if kind == "cuba":
        layer = snn.CubaLIF(
            threshold=0.5,
            decay=0.8,
            current_decay=0.6,
            trainable_current_decay="channel",
        )
        return layer, ("current",)
    if kind == "alif_recurrent_soft":
        layer = snn.ALIF(
            threshold=0.5,
            decay=0.9,
            adaptation=0.7,
            adaptation_decay=0.9,
            recurrent=True,
            reset="soft",
        )
        return layer, ("adaptation", "spikes")
    if kind == "lif_recurrent_hard":
        layer = snn.LIF(threshold=0.5, decay=0.8, recurrent=True, reset="hard")
        return layer, ("spikes",)
    layer = snn.LIF(  # plif, plif_conv
        threshold=0.5,
        decay=0.8,
        trainable_threshold="channel",
        trainable_decay="neuron",
    )
    return layer, ()


def _model(kind):
    """A tiny model: a sequence `(T, 4)` into dense(6), or a directly
    encoded input into dense(8) (plif) or a 3x3 conv (plif_conv)."""
    layer, _ = _neuron(kind)
    if kind == "plif_conv":
        inputs = keras.Input((4, 4, 1))
        x = snn.DirectEncoding(STEPS)(inputs)
        x = snn.TimeFolded(keras.layers.Conv2D(3, 3, padding="same"))(x)
        x = layer(x)
        x = snn.TimeFolded(keras.layers.Flatten())(x)
    elif kind == "plif":
        inputs = keras.Input((6,))
        x = snn.DirectEncoding(STEPS)(inputs)
        x = layer(snn.TimeFolded(keras.layers.Dense(8))(x))
    else:
        inputs = keras.Input((STEPS, 4))
        x = layer(snn.TimeFolded(keras.layers.Dense(6))(inputs))
    model = keras.Model(inputs, snn.Decoding(3)(x), name=kind)
    rng = np.random.default_rng(1)
    randomize_neurons(model, rng)
    return model


MODELS = ("cuba", "alif_recurrent_soft", "lif_recurrent_hard", "plif")
MODELS += ("plif_conv",)
FEATURES = {
    "cuba": ["channel", "current"],
    "alif_recurrent_soft": ["adaptation", "recurrent"],
    "lif_recurrent_hard": ["recurrent"],
    "plif": ["channel"],
    "plif_conv": ["channel"],
}


def _inputs(graph, count, seed):
    shape = graph.input_shape
    if graph.timesteps is None:  # a sequence of STEPS frames
        shape = (STEPS, *shape)
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *shape)).astype("float32")


@pytest.fixture(scope="module")
def networks():
    result = {}
    for kind in MODELS:
        keras.utils.set_random_seed(3)
        graph = fuse.fuse(ir.extract(_model(kind)))
        result[kind] = quantize.quantize(graph, _inputs(graph, 32, 1))
    return result


def _neuron_node(qgraph):
    return next(n for n in qgraph.nodes if n.op == "neuron")


def _cname(qgraph):
    """The C name of the neuron node (its membrane's state field)."""
    node = _neuron_node(qgraph)
    return plan_module.Plan(qgraph, "model").buffers[node.name].cname


def _expected_states(qgraph, x):
    """The integer reference's outputs and its states, `(N, T, ...)`."""
    _, raw, trace = integer.run_integer(qgraph, x, record=True)
    node = _neuron_node(qgraph)
    _, kept = _neuron(qgraph.graph.name)
    keys = [f"{node.name}:state"] + [f"{node.name}:{k}" for k in kept]
    return raw, {key: np.stack(trace[key], axis=1) for key in keys}


def _check_bit_exact(qgraph, platform, tmp_path, count=6, instances=2):
    x = _inputs(qgraph.graph, count, 2)
    expected_raw, expected = _expected_states(qgraph, x)
    raw, states, _ = c_target.run_c(
        qgraph, x, tmp_path, platform, instances=instances, record=True
    )
    np.testing.assert_array_equal(raw, expected_raw)
    assert sorted(states) == sorted(expected)  # every state, no other
    for key, values in expected.items():
        assert states[key].shape == values.shape, key
        np.testing.assert_array_equal(states[key], values, err_msg=key)
    return expected


# -- bit-exactness ---------------------------------------------------------
@pytest.mark.parametrize("kind", MODELS)
def test_outputs_and_states_equal_the_reference_on_the_host(
    networks, kind, tmp_path
):
    # Two instances step in turn on different samples (a state shared
    # between instances would show), and are reset for the next samples
    # (a state that reset missed would show).
    qgraph = networks[kind]
    assert neuron_models.features(_neuron_node(qgraph)) == FEATURES[kind]
    expected = _check_bit_exact(qgraph, "host", tmp_path)
    node = _neuron_node(qgraph)
    x = _inputs(qgraph.graph, 6, 2)
    trace = integer.run_integer(qgraph, x, record=True)[2]
    assert 0 < np.mean(trace[node.name]) < 1  # they fire, not always
    for key, values in expected.items():
        assert np.count_nonzero(values), key  # every state is exercised


def test_sanitizer_build_of_the_neuron_models(networks, tmp_path):
    # ASan/UBSan: no overflow, no out-of-bounds access in the new paths.
    for kind in ("cuba", "alif_recurrent_soft", "plif_conv"):
        _check_bit_exact(networks[kind], "host-sanitize", tmp_path / kind)


@pytest.mark.parametrize("kind", MODELS)
def test_outputs_and_states_equal_the_reference_on_cortex_m4(
    networks, kind, tmp_path
):
    _check_bit_exact(networks[kind], "cortex-m4", tmp_path, count=4)


# -- generated code --------------------------------------------------------
def test_state_struct_holds_every_state(networks):
    qgraph = networks["alif_recurrent_soft"]
    node, c = _neuron_node(qgraph), _cname(qgraph)
    units = int(node.shape[-1])
    files = c_target.generate(qgraph)
    header, source = files["model.h"], files["model.c"]
    # Membrane and adaptation in the state's width, the spikes as bytes;
    # the wide fields first, so no padding.
    assert f"    int16_t {c}[{units}];" in header
    assert f"    int16_t {c}_adaptation[{units}];" in header
    assert f"    uint8_t {c}_spikes[{units}];" in header
    assert header.index(f"{c}_adaptation[") < header.index(f"{c}_spikes[")
    state = 2 * units + 2 * units + units
    assert f"#define MODEL_STATE_BYTES {state + state % 2}" in header
    # The spikes are the node's output and the next step's recurrent input.
    assert "ksnn_recurrent_accumulate(acc, y, p->recurrent);" in source
    assert f"state->{c}_spikes" in source


def test_node_functions_call_the_runtime_arithmetic(networks):
    # One definition of each piece of arithmetic: ksnn_runtime.h.
    runtime = c_target.generate(networks["cuba"])["ksnn_runtime.h"]

    def body(function):
        text = runtime[runtime.index(f"{function}(") :]
        return text[: text.index("\n}\n")]

    # The LIF step and the models' step share the leak and the fire/reset.
    for function in ("ksnn_neuron_step", "ksnn_neuron_model_step"):
        assert "ksnn_leak_add(" in body(function)
        assert "ksnn_fire_reset(" in body(function)
        assert ">>" not in body(function)
    model_step = body("ksnn_neuron_model_step")
    assert model_step.count("ksnn_leak_add(") == 3  # i, u and a
    assert "ksnn_requantize_one(" in model_step  # the recurrent current
    assert "ksnn_decay_multiply(" in body("ksnn_leak_add")
    # The decay's division: ksnn_decay_multiply, and the 32-bit form of
    # ksnn_neuron_step16 (16-bit LIF states), nowhere else.
    assert "KSNN_DECAY_BITS" in body("ksnn_decay_multiply")
    assert "KSNN_DECAY_BITS" in body("ksnn_neuron_step16")
    assert runtime.count("KSNN_DECAY_BITS") == 3  # and its #define
    for kind in MODELS:
        source = c_target.generate(networks[kind])["model.c"]
        functions = source[source.index("static ksnn_status_t node_") :]
        assert functions.count("ksnn_neuron_model_step(&n, x[j],") == 1
        for word in (">>", "->decay_q", "->threshold", "rshift_round"):
            assert word not in functions, (kind, word)
        assert "static const ksnn_neuron_model_params_t" in source


def test_per_channel_and_per_neuron_parameters_are_arrays(networks):
    qgraph = networks["plif_conv"]
    node, c = _neuron_node(qgraph), _cname(qgraph)
    source = c_target.generate(qgraph)["model.c"]
    channels, size = int(node.shape[-1]), int(np.prod(node.shape))
    assert channels < size  # a conv: channel c is not neuron j
    threshold, decay = f"g_model_{c}_threshold", f"g_model_{c}_decay"
    assert f"static const int32_t {threshold}[{channels}]" in source
    assert f"static const int32_t {decay}[{size}]" in source
    assert f"{{{threshold}, 0, 0}}, /* theta */" in source
    assert f"{{{decay}, 0, 1}}, /* decay */" in source


# -- memory and synaptic operations ----------------------------------------
def test_memory_counts_the_new_states_and_recurrent_weights(networks, tmp_path):
    qgraph = networks["alif_recurrent_soft"]
    node = _neuron_node(qgraph)
    units = int(node.shape[-1])
    memory = c_target.memory_bytes(qgraph)
    assert memory["states"] == {
        f"{node.name}:state": 2 * units,
        f"{node.name}:adaptation": 2 * units,
        f"{node.name}:spikes": units,
    }
    assert memory["state"] == 5 * units + (5 * units) % 2
    assert memory["recurrent_weights"] == units * row_stride(units)
    files = c_target.generate(qgraph)
    assert f"#define MODEL_STATE_BYTES {memory['state']}" in files["model.h"]
    # The recurrent weights are const: flash, not RAM; the accumulators
    # are in the scratch arena.
    size = c_target.model_size_cortex_m4(files, tmp_path)
    assert size["flash"] > memory["weights"] > memory["recurrent_weights"]
    assert memory["scratch"] >= 4 * units
    # sizeof(model_state_t) is the declared size, on the host and on M4.
    main = (
        '#include "model.h"\n'
        "int main(void)\n{\n"
        "    return sizeof(model_state_t) == MODEL_STATE_BYTES ? 0 : 3;\n"
        "}\n"
    )
    files["model_main_example.c"] = main
    c_target.run_host(c_target.build_host(files, tmp_path / "host"))
    c_target.run_qemu(c_target.build_cortex_m4(files, tmp_path / "m4"))


def test_synaptic_operations_count_recurrent_synapses(networks):
    qgraph = networks["lif_recurrent_hard"]
    node = _neuron_node(qgraph)
    x = _inputs(qgraph.graph, 3, 2)
    _, _, trace = integer.run_integer(qgraph, x, record=True)
    counts = c_target.synaptic_operations(qgraph, x)
    units = int(node.shape[-1])
    recurrent = sum(
        np.count_nonzero(spikes) * units for spikes in trace[node.name][:-1]
    )
    decoding = sum(np.count_nonzero(spikes) * 3 for spikes in trace[node.name])
    assert recurrent > 0
    assert counts["accumulates"] == pytest.approx(
        (recurrent + decoding) / len(x)
    )


# -- refusals --------------------------------------------------------------
def _with_params(qgraph, **changes):
    nodes = [
        dataclasses.replace(n, params=dict(n.params, **changes))
        if n.op == "neuron"
        else n
        for n in qgraph.nodes
    ]
    return dataclasses.replace(qgraph, graph=qgraph.graph.replace(nodes))


def test_every_neuron_feature_is_implemented():
    assert set(plan_module.NEURON_FEATURES) == set(neuron_models.FEATURES)


def test_what_the_runtime_cannot_express_is_refused_naming_the_layer(
    networks,
):
    qgraph = networks["alif_recurrent_soft"]
    layer = _neuron_node(qgraph).layer
    # One adaptation per channel: the C runtime has one per layer.
    channel = _with_params(qgraph, adaptation_step_q=np.arange(6))
    with pytest.raises(UnsupportedLayerError, match=f"layer '{layer}'.*"):
        c_target.generate(channel)
    with pytest.raises(UnsupportedLayerError, match="adaptation per channel"):
        c_target.generate(channel)
    # A threshold array of neither a channel's nor a neuron's shape.
    odd = _with_params(qgraph, threshold_q=np.ones((2, 3), np.int64))
    with pytest.raises(UnsupportedLayerError, match=f"'{layer}'.*threshold"):
        c_target.generate(odd)
    # Recurrent weights beyond int8.
    kernel = _neuron_node(qgraph).params["recurrent_kernel_q"] * 4
    wide = _with_params(qgraph, recurrent_kernel_q=kernel)
    with pytest.raises(UnsupportedLayerError, match=f"'{layer}'.*int8"):
        c_target.generate(wide)


def test_a_feature_outside_neuron_features_is_refused(networks, monkeypatch):
    # The planner asks edge.neuron_models.require first: a feature the
    # target did not declare is refused naming the layer and the feature,
    # with nothing generated.
    qgraph = networks["cuba"]
    layer = _neuron_node(qgraph).layer
    monkeypatch.setattr(plan_module, "NEURON_FEATURES", ("channel",))
    with pytest.raises(UnsupportedLayerError) as error:
        c_target.generate(qgraph)
    message = str(error.value)
    assert f"Layer '{layer}' (CubaLIF)" in message and "'c'" in message
    assert "synaptic current" in message


def test_wide_states_equal_the_reference(networks, tmp_path):
    # 20-bit states: int32_t fields, the same arithmetic.
    for kind in ("cuba", "alif_recurrent_soft"):
        graph = networks[kind].graph
        wide = quantize.quantize(graph, _inputs(graph, 32, 1), 20)
        header = c_target.generate(wide)["model.h"]
        assert f"    int32_t {_cname(wide)}[" in header
        _check_bit_exact(wide, "host", tmp_path / kind)
