"""CubaLIF, recurrent, per-channel and ALIF neurons on Loihi and NIR.

Loihi: a CubaLIF's current decay is Loihi's `iDecay`, a recurrent dense
layer is a NetX `dense_rec` layer and a per-channel threshold is one scale
per output channel; the NetX file runs in Lava (lava-nc 0.10.0, lava-dl
0.6.0, bit-accurate `fixed_pt` models) spike for spike as the Loihi
reference. NIR: a CubaLIF is a `nir.CubaLIF` that Norse 1.1 and snnTorch
1.0 run spike for spike as the float reference (up to float32 ties);
per-channel parameters and recurrent layers (an `Affine` from a neuron
back to itself) are checked in Norse. What neither can express is
refused, naming the layer.

The consumers are found as in `test_edge_loihi.py` and `test_edge_nir.py`:
a missing environment skips locally and fails in CI.
"""

import os

import h5py
import keras
import numpy as np
import pytest
from edge_models import set_batch_norm_statistics

from edge import exporter
from edge import fuse
from edge import ir
from edge import reference
from edge.errors import UnsupportedLayerError
from edge.targets import loihi
from edge.targets import nir as nir_export
from keras_snn import layers
from keras_snn.fixed_point import quantize_decay

fold = layers.TimeFolded
H = "hard"


def _need(found, what, command):
    if found:
        return
    message = f"The {what} environment is missing: run {command}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def lava():
    _need(
        loihi.lava_python() is not None,
        "Lava",
        "keras-snn consumers install --targets loihi",
    )


def _model(chip, features=12, timesteps=4, seed=0):
    """DirectEncoding, dense-LIF (the host encoder), then `chip(x)`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Dense(16))(x)
    x = layers.LIF(threshold=0.5, decay=0.5, reset=H)(x)
    x = chip(x)
    outputs = layers.Decoding(4)(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed + 1)
    for weight in model.weights:
        if "recurrent" in weight.path:
            weight.assign(rng.normal(0.0, 0.3, weight.shape))
        elif "threshold" in weight.path and len(weight.shape):
            weight.assign(rng.uniform(0.3, 0.8, weight.shape))
        elif "decay" in weight.path and len(weight.shape):
            weight.assign(rng.uniform(0.5, 0.95, weight.shape))
        elif weight.path.endswith("bias"):
            weight.assign(rng.normal(0.0, 0.1, weight.shape))
    return set_batch_norm_statistics(model)


def _inputs(count=16, features=12, seed=2):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, features)).astype("float32")


def _graph(model):
    return fuse.fuse(ir.extract(model))


def _lava_equals_reference(lgraph, x, tmp_path):
    """Runs `x` in Lava and the reference; returns the reference stream."""
    stream, interval = loihi.make_stream(lgraph, loihi.encode(lgraph, x))
    expected = loihi.run_loihi_reference(lgraph, stream[None], interval)[0]
    path = tmp_path / "model.net"
    loihi.write_netx(lgraph, path)
    got = loihi.run_lava(lgraph, path, stream, interval)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert 0.02 < expected.mean() < 0.9  # the network is active
    return stream, interval, expected


def _float_agreement(lgraph, x):
    """Chip output spikes (reference) vs the float model's, per spike."""
    _, window = loihi.run_loihi(lgraph, x)
    _, trace = reference.run_float(lgraph.graph, x, record=True)
    expected = np.stack(trace[lgraph.output_node], 1)
    return float(np.mean(expected == window))


# -- Loihi -----------------------------------------------------------------
def _cuba_chip(x, decay=1.0):
    x = fold(keras.layers.Dense(12, use_bias=False))(x)
    x = layers.CubaLIF(
        threshold=0.6, decay=0.8, current_decay=0.6, reset=H, name="cuba_1"
    )(x)
    x = fold(keras.layers.Dense(8, use_bias=False))(x)
    return layers.CubaLIF(
        threshold=0.5, decay=decay, current_decay=0.4, reset=H, name="cuba_2"
    )(x)


def test_loihi_cuba_lif_is_spike_exact_in_lava(tmp_path, lava):
    lgraph = loihi.quantize_loihi(_graph(_model(_cuba_chip)))
    first, second = lgraph.layers
    # iDecay = round((1 - a) 4096), vDecay = round((1 - k) 4096).
    assert first.i_decay == quantize_decay(1 - 0.6, 12) == 1638
    assert second.i_decay == quantize_decay(1 - 0.4, 12) == 2458
    assert (first.v_decay, second.v_decay) == (819, 0)
    x = _inputs()
    stream, interval, expected = _lava_equals_reference(lgraph, x, tmp_path)
    with h5py.File(tmp_path / "model.net", "r") as file:
        assert int(file["layer/1/neuron/iDecay"][()]) == 1638
        assert int(file["layer/2/neuron/iDecay"][()]) == 2458
    # The current decay matters: without it the reference differs.
    first.i_decay = second.i_decay = loihi.quantization.DECAY_UNITY
    plain = loihi.run_loihi_reference(lgraph, stream[None], interval)[0]
    assert not np.array_equal(plain, expected)
    first.i_decay, second.i_decay = 1638, 2458
    assert _float_agreement(lgraph, x) >= 0.95


def _recurrent_chip(x):
    x = fold(keras.layers.Dense(12))(x)
    x = layers.LIF(
        threshold=0.6,
        decay=0.8,
        reset=H,
        recurrent=True,
        trainable_threshold="channel",
        name="rec_lif",
    )(x)
    x = fold(keras.layers.Dense(8, use_bias=False))(x)
    return layers.CubaLIF(
        threshold=0.5,
        decay=0.9,
        current_decay=0.5,
        reset=H,
        recurrent=True,
        name="rec_cuba",
    )(x)


def test_loihi_recurrent_and_channel_threshold_are_spike_exact(tmp_path, lava):
    model = _model(_recurrent_chip)
    thresholds = model.get_layer("rec_lif").cell.parameters("float64")[0]
    lgraph = loihi.quantize_loihi(_graph(model))
    first, second = lgraph.layers
    assert first.weight_rec.shape == (12, 12)
    assert second.weight_rec.shape == (8, 8)
    # One vThMant; each channel scaled by n / theta_c.
    np.testing.assert_allclose(
        first.scale * np.asarray(thresholds), first.threshold
    )
    x = _inputs()
    stream, interval, expected = _lava_equals_reference(lgraph, x, tmp_path)
    with h5py.File(tmp_path / "model.net", "r") as file:
        assert file["layer/1/type"][0] == b"dense_rec"
        np.testing.assert_array_equal(
            file["layer/1/weight_rec"][()], first.weight_rec.T
        )
    # The recurrent synapses matter.
    saved = first.weight_rec
    first.weight_rec = np.zeros_like(saved)
    plain = loihi.run_loihi_reference(lgraph, stream[None], interval)[0]
    first.weight_rec = saved
    assert not np.array_equal(plain, expected)
    assert _float_agreement(lgraph, x) >= 0.95


def _refusal(chip, match):
    with pytest.raises(UnsupportedLayerError, match=match):
        loihi.quantize_loihi(_graph(_model(chip)))


def test_loihi_refuses_a_filtered_bias():
    def biased(x):
        x = fold(keras.layers.Dense(8))(x)
        return layers.CubaLIF(current_decay=0.5, reset=H, name="cuba_b")(x)

    def batch_norm(x):
        x = fold(keras.layers.Dense(8, use_bias=False))(x)
        x = fold(keras.layers.BatchNormalization())(x)
        return layers.CubaLIF(current_decay=0.5, reset=H, name="cuba_n")(x)

    _refusal(biased, r"'cuba_b'.*filters the bias.*use_bias=False")
    _refusal(batch_norm, r"'cuba_n'.*filters the bias.*use_bias=False")


def test_loihi_refuses_alif_and_what_netx_cannot_hold():
    def alif(x):
        x = fold(keras.layers.Dense(8))(x)
        return layers.ALIF(reset=H, name="alif_1")(x)

    def channel_decay(x):
        x = fold(keras.layers.Dense(8))(x)
        return layers.LIF(
            decay=0.7, reset=H, trainable_decay="channel", name="leaky_c"
        )(x)

    def endless_current(x):
        x = fold(keras.layers.Dense(8, use_bias=False))(x)
        return layers.CubaLIF(current_decay=1.0, reset=H, name="cuba_1")(x)

    _refusal(alif, r"'alif_1'.*adaptive threshold.*NetX")
    _refusal(channel_decay, r"'leaky_c'.*one vDecay and one iDecay")
    _refusal(endless_current, r"'cuba_1'.*iDecay=0")


# -- NIR -------------------------------------------------------------------
@pytest.fixture(scope="module")
def nir_consumers():
    try:
        nir_export.nir_python()
        found = True
    except nir_export.ConsumerError:
        found = False
    _need(found, "NIR consumers'", "keras-snn consumers install --targets nir")


def _nir_cuba_chip(x):
    x = fold(keras.layers.Dense(12))(x)
    x = layers.CubaLIF(
        threshold=0.6, decay=0.8, current_decay=0.6, reset=H, name="cuba_1"
    )(x)
    x = fold(keras.layers.Dense(8))(x)
    return layers.CubaLIF(
        threshold=0.5, decay=0.0, current_decay=0.3, reset=H, name="cuba_2"
    )(x)


def _nir_check(model, x, tmp_path, consumers, convert=None):
    """Runs the model's NIR file in `consumers`; returns the comparisons."""
    graph = _graph(model)
    _, trace = reference.run_float(graph, x, record=True)
    conversion = nir_export.convert(graph)
    if convert is not None:
        convert(conversion.nir_graph)
    path = nir_export.write(conversion.nir_graph, str(tmp_path / "m.nir"))
    results = []
    for consumer in consumers:
        output, _, spikes, _ = nir_export.run_conversion(
            conversion, path, x, consumer
        )
        result = nir_export.compare_spikes(graph, trace, spikes)
        result["max_abs_diff"] = float(
            np.max(np.abs(output - model.predict(x, verbose=0)))
        )
        assert all(0.02 < s.mean() < 0.9 for s in spikes.values())
        results.append(result)
    return results


def test_nir_cuba_lif_is_spike_exact_in_norse_and_snntorch(
    tmp_path, nir_consumers
):
    model = _model(_nir_cuba_chip, timesteps=6)
    conversion = nir_export.convert(_graph(model))
    assert conversion.consumers == ["norse", "snntorch"]
    node = conversion.nir_graph.nodes["cuba_1"]
    assert type(node).__name__ == "CubaLIF"
    dt = nir_export.NIR_DT
    np.testing.assert_allclose(node.tau_syn, dt / 0.4)
    np.testing.assert_allclose(node.w_in, 1 / 0.4)
    np.testing.assert_allclose(node.tau_mem, dt / 0.2)
    np.testing.assert_allclose(node.r, 1 / 0.2)
    np.testing.assert_allclose(node.v_threshold, 0.6)
    x = _inputs(64)
    results = _nir_check(model, x, tmp_path, ["norse", "snntorch"])
    for result in results:
        assert result["spike_agreement"] == 1.0, result
        assert result["exact_samples"] == 1.0
        assert result["max_abs_diff"] < 1e-5

    # The check has teeth: the unscaled input weight (w_in = 1, NIR's
    # default) makes spikes differ far from any threshold tie.
    def unscaled(nir_graph):
        nir_graph.nodes["cuba_1"].w_in = np.ones_like(node.w_in)

    (wrong,) = _nir_check(model, x[:16], tmp_path, ["norse"], unscaled)
    assert wrong["unexplained"]


def _nir_channel_model():
    """Conv CubaLIF with per-channel threshold and decays, a per-neuron
    LIF after a flatten: the NIR layouts of per-neuron arrays."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(4)(inputs)
    x = fold(keras.layers.Conv2D(4, 3, padding="same"))(x)
    x = layers.LIF(threshold=0.5, decay=0.5, reset=H)(x)
    x = fold(keras.layers.Conv2D(6, 3))(x)
    x = layers.CubaLIF(
        current_decay=0.5,
        reset=H,
        trainable_threshold="channel",
        trainable_decay="channel",
        trainable_current_decay="channel",
        name="cuba_c",
    )(x)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(10))(x)
    x = layers.LIF(
        reset=H,
        trainable_threshold="neuron",
        trainable_decay="neuron",
        name="lif_n",
    )(x)
    model = keras.Model(inputs, layers.Decoding(4)(x))
    rng = np.random.default_rng(4)
    for weight in model.weights:
        if "threshold" in weight.path and len(weight.shape):
            weight.assign(rng.uniform(0.3, 0.8, weight.shape))
        elif "decay" in weight.path and len(weight.shape):
            weight.assign(rng.uniform(0.3, 0.95, weight.shape))
        elif weight.path.endswith("bias"):
            weight.assign(rng.normal(0.0, 0.1, weight.shape))
    return model


def test_nir_per_channel_parameters_are_spike_exact_in_norse(
    tmp_path, nir_consumers
):
    model = _nir_channel_model()
    assert nir_export.convert(_graph(model)).consumers == ["norse"]
    x = np.random.default_rng(5).uniform(0, 1, (24, 6, 6, 1))
    (result,) = _nir_check(model, x.astype("float32"), tmp_path, ["norse"])
    assert result["spike_agreement"] == 1.0, result
    assert result["max_abs_diff"] < 1e-5


def test_nir_recurrent_layers_are_spike_exact_in_norse(tmp_path, nir_consumers):
    # A recurrent LIF (per-channel threshold) and a recurrent CubaLIF.
    model = _model(_recurrent_chip, timesteps=8)
    conversion = nir_export.convert(_graph(model))
    assert conversion.recurrent == ("rec_lif", "rec_cuba")
    assert conversion.consumers == ["norse"]  # snnTorch fails on cycles
    edges = conversion.nir_graph.edges
    assert ("rec_lif", "rec_lif_recurrent") in edges
    assert ("rec_lif_recurrent", "rec_lif") in edges
    x = _inputs(32)
    (result,) = _nir_check(model, x, tmp_path, ["norse"])
    assert result["spike_agreement"] == 1.0, result
    assert result["max_abs_diff"] < 1e-5

    # The recurrent synapses matter: without them the spikes differ.
    def cut(nir_graph):
        for name in ("rec_lif_recurrent", "rec_cuba_recurrent"):
            nir_graph.nodes[name].weight[:] = 0.0

    (wrong,) = _nir_check(model, x[:16], tmp_path, ["norse"], cut)
    assert wrong["unexplained"]


def test_nir_refuses_alif_and_an_endless_leak():
    def alif(x):
        x = fold(keras.layers.Dense(8))(x)
        return layers.ALIF(reset=H, name="alif_n")(x)

    def no_leak(x):
        x = fold(keras.layers.Dense(8))(x)
        return layers.CubaLIF(decay=1.0, reset=H, name="cuba_if")(x)

    for chip, match in (
        (alif, r"'alif_n'.*adaptive threshold has no NIR"),
        (no_leak, r"'cuba_if'.*decay in \[0, 1\)"),
    ):
        with pytest.raises(UnsupportedLayerError, match=match):
            nir_export.convert(_graph(_model(chip)))


def test_export_cuba_lif_to_loihi_and_nir(tmp_path, lava, nir_consumers):
    # A CubaLIF with decay=1 has no NIR form (an infinite tau_mem).
    model = _model(lambda x: _cuba_chip(x, decay=0.9), timesteps=6)
    x = _inputs(24)
    report = exporter.export(
        model,
        tmp_path,
        ["loihi", "nir"],
        calibration_data=_inputs(16, seed=7),
        eval_data=(x, np.arange(24) % 4),
    )
    loihi_row = report.row("loihi-netx")
    assert loihi_row.checks["spike_exact"] is True
    assert loihi_row.checks["iDecay"] == [1638, 2458]
    assert loihi_row.checks["float_spike_agreement"] >= 0.95
    nir_rows = [row for row in report.rows if row.target == "nir"]
    assert [row.consumer for row in nir_rows] == ["Norse 1.1", "snnTorch 1.0"]
    for row in nir_rows:
        assert row.checks["spike_agreement"] == 1.0
        assert "CubaLIF" in row.ops
    assert sorted(os.listdir(tmp_path)) == [
        "model.nir",
        "model_loihi.net",
        "report.json",
    ]
