"""edge NIR target: mapping, file round trip, Norse/snnTorch spike-exactness.

The consumers run in their environment (`keras-snn consumers install
--targets nir`). Without it the consumer tests skip locally and fail in CI
(`CI` set).
"""

import os

import keras
import numpy as np
import pytest
from edge_models import dense_model
from edge_models import fold
from edge_models import images
from edge_models import residual_model
from edge_models import set_batch_norm_statistics

from edge import exporter
from edge import fuse
from edge import ir
from edge import reference
from edge.errors import UnsupportedLayerError
from edge.targets import nir as nir_export
from keras_snn import functional
from keras_snn import layers

INSTALL = "keras-snn consumers install --targets nir"


def _missing(what):
    message = f"{what} is missing: run {INSTALL} (and pip install nir)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; the NIR tests must run in CI")
    pytest.skip(message)


@pytest.fixture(scope="module")
def nir():
    try:
        import nir as nir_module
    except ImportError:
        _missing("the nir package")
    return nir_module


@pytest.fixture(scope="module")
def consumers(nir):
    try:
        nir_export.nir_python()
    except nir_export.ConsumerError:
        _missing(".venv-nir")
    return nir_export.CONSUMERS


# -- models ----------------------------------------------------------------
def dense_lif(timesteps=4):
    """Flatten-dense-BN-LIF-dense-LIF-Decoding, hard reset."""
    return dense_model(
        timesteps, threshold=0.7, decay=0.8, reset="hard", name="dense_lif"
    )


def conv_net(timesteps=4, neuron="IF", pool="avg", padding="same", kernel=3):
    """Conv-BN-LIF-pool-conv-tdBN-(IF|LIF)-flatten-dense-LIF-Decoding."""
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Conv2D(6, kernel, padding=padding))(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(threshold=0.6, decay=0.5)(x)
    pooling = (
        keras.layers.AveragePooling2D(2)
        if pool == "avg"
        else keras.layers.MaxPooling2D(2)
    )
    x = fold(pooling)(x)
    x = fold(keras.layers.Conv2D(8, 3, padding="valid", use_bias=False))(x)
    x = layers.TDBatchNormalization(alpha=1.0, threshold=0.8)(x)
    if neuron == "IF":
        x = layers.IF(threshold=0.8, reset="hard")(x)
    else:
        x = layers.LIF(threshold=0.8, decay=0.9)(x)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(20))(x)
    x = layers.LIF(threshold=0.5, decay=0.75)(x)
    outputs = layers.Decoding(10)(x)
    return set_batch_norm_statistics(
        keras.Model(inputs, outputs, name=f"conv_{neuron.lower()}")
    )


def _fused(model):
    return fuse.fuse(ir.extract(model))


def _context(model, x, labels=None):
    graph = _fused(model)
    keras_out = np.asarray(model.predict(x, verbose=0), np.float64)
    float_out, trace = reference.run_float(graph, x, record=True)
    return exporter.ExportContext(
        graph=graph,
        qgraph=None,
        calibration=x,
        x=x,
        labels=labels,
        keras_out=keras_out,
        float_out=float_out,
        float_trace=trace,
        int_out=None,
        int_trace=None,
        timesteps=graph.timesteps,
    )


# -- parameter mapping ------------------------------------------------------
def test_lif_parameters_follow_the_euler_convention():
    kind, p = nir_export.lif_parameters(0.6, 0.75, (2, 3))
    assert kind == "LIF"
    for value in p.values():
        assert value.shape == (2, 3)
    np.testing.assert_allclose(p["tau"], 1e-4 / 0.25)
    np.testing.assert_allclose(1 - nir_export.NIR_DT / p["tau"], 0.75)
    np.testing.assert_allclose(p["v_threshold"], 0.6 * 0.25)
    assert np.all(p["r"] == 1) and np.all(p["v_leak"] == 0)
    assert np.all(p["v_reset"] == 0)
    kind, p = nir_export.lif_parameters(0.8, 1.0, (5,), gain=4.0)
    assert kind == "IF"
    np.testing.assert_allclose(p["v_threshold"], 3.2)
    assert np.all(p["r"] == 1) and np.all(p["v_reset"] == 0)


def _one_layer_graph(nir, threshold, decay, size):
    kind, params = nir_export.lif_parameters(threshold, decay, (size,))
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([size])),
            "neuron": getattr(nir, kind)(**params),
            "output": nir.Output(output_type=np.array([size])),
        },
        edges=[("input", "neuron"), ("neuron", "output")],
    )


@pytest.mark.parametrize(
    "consumer, threshold, decay",
    [("norse", 1.0, 0.75), ("snntorch", 1.0, 0.75), ("norse", 1.13, 1.0)],
)
def test_one_neuron_layer_follows_neuron_step(
    nir, consumers, tmp_path, consumer, threshold, decay
):
    # Constant currents, none of which makes u land exactly on theta.
    currents = np.array([0.05, 0.3, 0.55, 0.9, 1.7, 3.1])
    steps = 40
    path = nir_export.write(
        _one_layer_graph(nir, threshold, decay, len(currents)),
        str(tmp_path / "neuron.nir"),
    )
    x = np.broadcast_to(currents, (1, steps, len(currents)))
    result = nir_export.run(path, x, consumer, record=["neuron"], batched=1)
    v = np.zeros_like(currents)
    spikes, potentials = [], []
    for _ in range(steps):
        o, _, v = functional.neuron_step(currents, v, threshold, decay)
        spikes.append(o)
        potentials.append(v)
    spikes, potentials = np.stack(spikes), np.stack(potentials)
    assert 0 < spikes.sum() < spikes.size
    np.testing.assert_array_equal(result["spikes/neuron"][0], spikes)
    np.testing.assert_array_equal(result["output"][0], spikes)
    # Norse's potential is (1 - k) times ours (r = 1, Euler); snnTorch's
    # (beta = 1 - dt/tau, threshold v_threshold / (1 - k)) is ours.
    scale = 1.0 if consumer == "snntorch" or decay == 1.0 else 1 - decay
    np.testing.assert_allclose(
        result["potentials/neuron"][0], scale * potentials, atol=1e-5
    )


# -- structure of the file --------------------------------------------------
def test_graph_reads_back_with_nir_layouts(nir, tmp_path):
    keras.utils.set_random_seed(2)
    graph = _fused(conv_net())
    conversion = nir_export.convert(graph)
    path = nir_export.write(conversion.nir_graph, str(tmp_path / "m.nir"))
    assert sorted(os.listdir(tmp_path)) == ["m.nir"]  # no temporaries left
    read = nir.read(path)
    chain = [conversion.names[node.name] for node in graph.nodes]
    chain += ["output"]
    assert chain[0] == "input"
    assert [tuple(e) for e in read.edges] == list(
        zip(chain, chain[1:], strict=False)
    )
    types = [type(read.nodes[name]).__name__ for name in chain]
    assert types == [
        "Input",
        "Conv2d",
        "LIF",
        "SumPool2d",
        "Conv2d",
        "IF",
        "Flatten",
        "Affine",
        "LIF",
        "Affine",
        "Output",
    ]
    nodes = [read.nodes[name] for name in chain]
    params = [node.params for node in graph.nodes]
    np.testing.assert_array_equal(nodes[0].output_type["output"], [1, 8, 8])
    conv = nodes[1]
    np.testing.assert_allclose(
        conv.weight, params[1]["kernel"].transpose(3, 2, 0, 1), rtol=1e-6
    )
    assert tuple(conv.padding) == (1, 1) and tuple(conv.stride) == (1, 1)
    # The 1/4 of the 2x2 average pool is folded into the next convolution.
    np.testing.assert_array_equal(nodes[3].kernel_size, [2, 2])
    np.testing.assert_allclose(
        nodes[4].weight,
        params[4]["kernel"].transpose(3, 2, 0, 1) / 4,
        rtol=1e-6,
    )
    flatten = nodes[6]
    assert flatten.start_dim == 0
    np.testing.assert_array_equal(flatten.input_type["input"], [8, 2, 2])
    # Dense after Flatten: rows in C-H-W order.
    kernel = params[7]["kernel"]  # (H*W*C, out)
    chw = kernel.reshape(2, 2, 8, 20).transpose(2, 0, 1, 3).reshape(32, 20)
    np.testing.assert_allclose(nodes[7].weight, chw.T, rtol=1e-6)
    lif = nodes[2]
    assert lif.v_threshold.shape == (6, 8, 8)
    np.testing.assert_allclose(lif.v_threshold, 0.6 * 0.5)
    np.testing.assert_allclose(lif.tau, 2e-4)
    np.testing.assert_allclose(nodes[5].v_threshold, 0.8)
    np.testing.assert_allclose(nodes[9].weight, params[9]["kernel"].T, 1e-6)


# -- spike-exact in the consumers -------------------------------------------
def _check_rows(rows, consumers, samples):
    assert [row.consumer for row in rows] == consumers
    for row in rows:
        assert row.target == "nir" and row.path == "model.nir"
        assert row.checks["samples_checked"] == samples
        assert row.checks["spike_agreement"] == 1.0, row.checks
        assert row.checks["exact_samples"] == 1.0
        assert row.agreement == 1.0
        assert row.max_abs_diff < 1e-5


def test_dense_lif_network_is_spike_exact_in_norse_and_snntorch(consumers):
    keras.utils.set_random_seed(4)
    x = images(48, seed=11)
    context = _context(dense_lif(), x, labels=np.arange(48) % 10)
    rows = nir_export.export_target(context)
    _check_rows(rows, ["Norse 1.1", "snnTorch 1.0"], 48)
    assert context.files["model.nir"][:4] == b"\x89HDF"


def test_conv_network_with_if_is_spike_exact_in_norse(consumers):
    keras.utils.set_random_seed(5)
    context = _context(conv_net(neuron="IF"), images(80, seed=12))
    rows = nir_export.export_target(context, samples=64)
    _check_rows(rows, ["Norse 1.1"], 64)  # snnTorch misreads nir.IF
    assert rows[0].accuracy is None
    assert sorted(rows[0].ops) == [
        "Affine",
        "Conv2d",
        "Flatten",
        "IF",
        "Input",
        "LIF",
        "Output",
        "SumPool2d",
    ]


def test_conv_lif_network_is_spike_exact_in_snntorch_and_norse(
    consumers, tmp_path
):
    keras.utils.set_random_seed(6)
    x = images(32, seed=13)
    model = conv_net(neuron="LIF")
    graph = _fused(model)
    _, trace = reference.run_float(graph, x, record=True)
    conversion = nir_export.convert(graph)
    assert conversion.consumers == ["norse", "snntorch"]
    path = nir_export.write(conversion.nir_graph, str(tmp_path / "m.nir"))
    for consumer in conversion.consumers:
        output, _, spikes, _ = nir_export.run_conversion(
            conversion, path, x, consumer
        )
        result = nir_export.compare_spikes(graph, trace, spikes)
        assert result["spike_agreement"] == 1.0, (consumer, result)
        assert all(0 < s.mean() < 1 for s in spikes.values())
        np.testing.assert_allclose(
            output, model.predict(x, verbose=0), atol=1e-5
        )


def test_wrong_threshold_is_caught_as_not_a_tie(nir, consumers, tmp_path):
    # The check must not be vacuous: an unscaled NIR threshold (theta
    # instead of theta (1 - k)) gives differences far from any tie.
    keras.utils.set_random_seed(4)
    x = images(16, seed=11)
    graph = _fused(dense_lif())
    _, trace = reference.run_float(graph, x, record=True)
    conversion = nir_export.convert(graph)
    first = conversion.neurons[0]
    lif = conversion.nir_graph.nodes[conversion.names[first]]
    lif.v_threshold = np.full_like(lif.v_threshold, 1.0)
    path = nir_export.write(conversion.nir_graph, str(tmp_path / "bad.nir"))
    _, _, spikes, _ = nir_export.run_conversion(conversion, path, x)
    result = nir_export.compare_spikes(graph, trace, spikes)
    assert result["spike_agreement"] < 1.0
    assert result["unexplained"]
    assert result["unexplained"][0]["layer"] == first


# -- refusals ---------------------------------------------------------------
def _soft_reset_model():
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(8))(x)
    x = layers.LIF(threshold=1.0, decay=0.5, reset="soft", name="soft_lif")(x)
    outputs = layers.Decoding(3)(x)
    return keras.Model(inputs, outputs)


def _membrane_model():
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(8))(x)
    x = layers.LIF(threshold=1.0, decay=0.5)(x)
    outputs = layers.MembraneReadout(3, decay=0.9, name="membrane")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "make, words",
    [
        (_soft_reset_model, ["soft_lif", "reset='soft'"]),
        (lambda: conv_net(pool="max"), ["max pooling"]),
        (lambda: conv_net(kernel=2), ["padding='same'", "(0, 1)"]),
        (_membrane_model, ["membrane", "leaky integrator"]),
        (residual_model, ["block", "residual addition"]),
    ],
    ids=["soft_reset", "max_pool", "asymmetric_same", "membrane", "residual"],
)
def test_unsupported_constructs_are_refused_before_writing(nir, make, words):
    keras.utils.set_random_seed(1)
    model = make()
    x = images(4, shape=model.input_shape[1:], seed=1)
    context = _context(model, x)
    with pytest.raises(UnsupportedLayerError) as info:
        nir_export.export_target(context)
    message = str(info.value)
    assert "cannot be exported to NIR" in message
    for word in words:
        assert word in message
    assert context.files == {}
