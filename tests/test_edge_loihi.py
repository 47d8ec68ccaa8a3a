"""edge.targets.loihi: Loihi fixed point, NetX HDF5 file, Lava bit-exactness.

The Lava tests run the NetX file in lava-nc 0.10.0 / lava-dl 0.6.0 (Python
3.10, made by `keras-snn consumers install`). They skip only when the
environment is missing and `CI` is unset; in CI a missing environment fails.
"""

import os

import keras
import numpy as np
import pytest
from edge_models import dense_model
from edge_models import fold
from edge_models import images
from edge_models import outlier_chain_model
from edge_models import residual_model
from edge_models import set_batch_norm_statistics

from edge import exporter
from edge import fuse
from edge import ir
from edge import reference
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from edge.targets import loihi
from keras_snn import layers

H = "hard"


def dense_net(timesteps=4):
    """Flatten-dense-BN-LIF (host) | dense-LIF, dense-IF (chip) | Decoding."""
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(24))(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(threshold=0.5, decay=0.5, reset=H)(x)
    x = fold(keras.layers.Dense(16))(x)
    x = layers.LIF(threshold=0.3, decay=0.75, reset=H)(x)
    x = fold(keras.layers.Dense(12))(x)
    x = layers.IF(threshold=0.4, reset=H)(x)
    outputs = layers.Decoding(5)(x)
    model = keras.Model(inputs, outputs, name="dense_loihi")
    return set_batch_norm_statistics(model)


def conv_net(timesteps=4, threshold=0.3):
    """conv-BN-LIF (host) | conv-BN-LIF, avgpool+conv-tdBN-IF, maxpool,
    flatten-dense-LIF (chip) | Decoding."""
    inputs = keras.Input((12, 12, 1))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Conv2D(4, 3, padding="same"))(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(threshold=0.5, decay=0.5, reset=H)(x)
    x = fold(keras.layers.Conv2D(6, 3, padding="same"))(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(threshold=threshold, decay=0.75, reset=H)(x)
    x = fold(keras.layers.AveragePooling2D(2))(x)
    x = fold(keras.layers.Conv2D(8, 3, use_bias=False))(x)
    x = layers.TDBatchNormalization(alpha=1.0, threshold=0.4)(x)
    x = layers.IF(threshold=0.4, reset=H)(x)
    x = fold(keras.layers.MaxPooling2D(2))(x)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(16))(x)
    x = layers.LIF(threshold=0.3, decay=0.9, reset=H)(x)
    outputs = layers.Decoding(5)(x)
    model = keras.Model(inputs, outputs, name="conv_loihi")
    return set_batch_norm_statistics(model)


def _lgraph(model):
    return loihi.quantize_loihi(fuse.fuse(ir.extract(model)))


@pytest.fixture(scope="module")
def lava():
    if loihi.lava_python() is None:
        message = (
            "The Lava environment is missing: run keras-snn consumers "
            "install --targets loihi"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def dense_lgraph():
    keras.utils.set_random_seed(1)
    return _lgraph(dense_net())


@pytest.fixture(scope="module")
def conv_lgraph():
    keras.utils.set_random_seed(1)
    return _lgraph(conv_net())


# -- the Loihi reference, by hand ------------------------------------------
def _single(weight, bias=0, threshold=0, v_decay=0, inputs=1):
    layer = loihi.LoihiLayer(
        name="n",
        kind="dense",
        weight=np.full((inputs, 1), weight, np.int64),
        bias=np.array([bias], np.int64),
        threshold=threshold,
        v_decay=v_decay,
        input_shape=(inputs,),
        shape=(1,),
    )
    return loihi.LoihiGraph(None, [], [layer], [], (inputs,), "n")


def _run(lgraph, spikes, **kwargs):
    out, trace = loihi.run_loihi_reference(
        lgraph, np.asarray(spikes)[None], record=True, **kwargs
    )
    name = lgraph.layers[-1].name
    return (
        out[0, :, 0],
        trace[f"{name}:u"][0, :, 0],
        trace[f"{name}:v"][0, :, 0],
    )


def test_reference_delay_and_strict_threshold():
    # w = 10, vThMant = 20: v grows by 10 << 6 = 640 a step from step 1
    # (one step of synaptic delay); v == 1280 == 20 << 6 does not fire.
    spikes, u, v = _run(_single(10, threshold=20), np.ones((7, 1)))
    assert spikes.tolist() == [0, 0, 0, 1, 0, 0, 1]
    assert u.tolist() == [0, 640, 640, 640, 640, 640, 640]
    assert v.tolist() == [0, 640, 1280, 0, 640, 1280, 0]


def test_reference_one_step_of_delay_per_layer():
    def layer(name):
        return loihi.LoihiLayer(
            name, "dense", np.array([[2]]), np.array([0]), 1, 0, (1,), (1,)
        )

    lgraph = loihi.LoihiGraph(None, [], [layer("a"), layer("b")], [], (1,), "b")
    spikes = np.zeros((1, 5, 1), np.int8)
    spikes[0, 0] = 1
    out, trace = loihi.run_loihi_reference(lgraph, spikes, record=True)
    assert trace["a"][0, :, 0].tolist() == [0, 1, 0, 0, 0]
    assert out[0, :, 0].tolist() == [0, 0, 1, 0, 0]


def test_reference_decay_truncates_toward_zero():
    # bias -1 (-64 a step), vDecay 2048 (halves): trunc(-127 / 2) = -63
    # keeps v at -127 where a floor would reach -128.
    _, _, v = _run(_single(2, bias=-1, v_decay=2048), np.zeros((9, 1)))
    assert v.tolist() == [-64, -96, -112, -120, -124, -126, -127, -127, -127]


def test_reference_clips_voltage_to_24_bits():
    _, _, v = _run(_single(2, bias=-4096), np.zeros((34, 1)))
    assert v[30] == -31 * 4096 * 64
    assert v[31] == v[32] == v[33] == -(2**23 - 1)


def test_reference_wraps_current_to_24_bits():
    # 600 inputs of weight 254: (152400 << 6) = 9753600 > 2^23 wraps.
    _, u, v = _run(_single(254, inputs=600), np.ones((2, 600)))
    assert u[1] == 9753600 - 2**24
    assert v[1] == 9753600 - 2**24


def test_reference_reset_interval_phases():
    # Layer 0 with reset_offset=1 zeroes u and v where (t + 1) % 4 == 2.
    lgraph = _single(2, bias=1, threshold=100)
    _, _, v = _run(lgraph, np.zeros((6, 1)), reset_interval=4)
    assert v.tolist() == [64, 64, 128, 192, 256, 64]


# -- quantization ----------------------------------------------------------
@pytest.mark.parametrize("name", ["dense_lgraph", "conv_lgraph"])
def test_quantized_parameters_are_in_loihi_ranges(name, request):
    lgraph = request.getfixturevalue(name)
    loihi.check_ranges(lgraph)
    graph = lgraph.graph
    for layer in lgraph.layers:
        assert layer.weight.min() >= -254 and layer.weight.max() <= 254
        assert loihi.netx_weights_exact(layer.weight)
        assert -4096 <= layer.bias.min() and layer.bias.max() <= 4095
        assert 0 <= layer.threshold <= 131071
        if layer.role == "max_pool":  # OR: ones, IF of threshold 1 spike
            assert set(np.unique(layer.weight)) == {0, 1}
            assert layer.threshold == 0 and layer.v_decay == 0
            continue
        assert not np.any(layer.weight % 2)  # 8-bit mantissa times 2
        neuron = graph.consumers(layer.name)[0].params
        assert layer.v_decay == round((1 - neuron["decay"]) * 4096)
        n = round(layer.scale * neuron["threshold"])
        assert n == pytest.approx(layer.scale * neuron["threshold"])
        assert layer.threshold == (n - 1 if layer.v_decay == 0 else n)
        assert layer.i_decay == 4096


def test_conv_net_layers_fold_pooling(conv_lgraph):
    kinds = [(ly.kind, ly.role) for ly in conv_lgraph.layers]
    assert kinds == [
        ("conv", "synaptic"),
        ("conv", "synaptic"),  # average pool folded: 6x6 kernel, stride 2
        ("conv", "max_pool"),
        ("dense", "synaptic"),
    ]
    pooled = conv_lgraph.layers[1]
    assert pooled.weight.shape[:2] == (6, 6) and pooled.strides == (2, 2)
    assert conv_lgraph.layers[3].flatten


def test_netx_weights_exact_rejects_what_netx_changes():
    assert loihi.netx_weights_exact(np.array([[-254, 254, 2]]))
    assert not loihi.netx_weights_exact(np.array([[-256, 255]]))
    assert not loihi.netx_weights_exact(np.array([[-256, -4]]))
    assert not loihi.netx_weights_exact(np.zeros((2, 2), int))


# -- the NetX file ---------------------------------------------------------
def test_netx_file_structure(conv_lgraph, tmp_path):
    import h5py

    path = tmp_path / "model.net"
    loihi.write_netx(conv_lgraph, path)
    assert os.listdir(tmp_path) == ["model.net"]
    with h5py.File(path, "r") as file:
        group = file["layer"]
        types = [group[str(i)]["type"][0].decode() for i in range(len(group))]
        assert types == ["input", "conv", "conv", "conv", "flatten", "dense"]
        assert group["0/shape"][()].tolist() == [4, 12, 12]
        assert "neuron" not in group["0"]
        first, dense = conv_lgraph.layers[0], conv_lgraph.layers[3]
        np.testing.assert_array_equal(
            group["1/weight"][()], first.weight.transpose(3, 2, 0, 1)
        )
        assert group["1/shape"][()].tolist() == [6, 12, 12]
        assert group["1/padding"][()].tolist() == [1, 1]
        assert group["2/stride"][()].tolist() == [2, 2]
        neuron = group["1/neuron"]
        assert neuron["type"][0] == b"CUBA"
        assert neuron["iDecay"][()] == 4096
        assert neuron["vDecay"][()] == first.v_decay
        assert neuron["vThMant"][()] == first.threshold
        # Dense after flatten: inputs in CHW order, Keras rows in HWC order.
        weight = group["5/weight"][()]
        h, w, c = dense.input_shape
        for row_h, row_w, row_c in [(0, 1, 3), (1, 0, 7), (1, 1, 2)]:
            np.testing.assert_array_equal(
                weight[:, row_c * h * w + row_h * w + row_w],
                dense.weight[(row_h * w + row_w) * c + row_c],
            )
        assert group["5/shape"][()].tolist() == [16]


def test_write_refuses_out_of_range_weights_before_writing(tmp_path):
    lgraph = _single(300)
    with pytest.raises(ExportError, match="out of range"):
        loihi.write_netx(lgraph, tmp_path / "model.net")
    assert os.listdir(tmp_path) == []


# -- refusals --------------------------------------------------------------
def test_refuses_soft_reset():
    with pytest.raises(UnsupportedLayerError, match="soft"):
        _lgraph(dense_model())  # its second LIF resets softly


def test_refuses_residual_add():
    with pytest.raises(UnsupportedLayerError, match="residual add"):
        _lgraph(residual_model())


def test_refuses_threshold_below_one_weight_step():
    keras.utils.set_random_seed(2)
    with pytest.raises(ExportError, match="out of range after scaling"):
        _lgraph(conv_net(threshold=1e-4))


def test_threshold_below_one_weight_step_is_an_unsupported_layer():
    # Found by edge.fuzz: the refusal was a plain ExportError (not the
    # UnsupportedLayerError of every other construct Loihi cannot hold),
    # so `except UnsupportedLayerError` let it through as a crash.
    keras.utils.set_random_seed(0)
    with pytest.raises(UnsupportedLayerError) as info:
        _lgraph(outlier_chain_model())
    message = str(info.value)
    assert "'wide'" in message and "threshold 0.951" in message
    assert "out of range after scaling" in message
    assert "[-256, 254]" in message


def test_refuses_asymmetric_padding():
    inputs = keras.Input((6, 6, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Conv2D(2, 3, padding="same"))(x)
    x = layers.LIF(reset=H)(x)
    x = fold(keras.layers.Conv2D(2, 2, padding="same"))(x)
    x = layers.LIF(reset=H)(x)
    x = fold(keras.layers.Flatten())(x)
    outputs = layers.Decoding(3)(x)
    with pytest.raises(UnsupportedLayerError, match="pad both sides"):
        _lgraph(keras.Model(inputs, outputs))


def _with_loihi_target(monkeypatch):
    # "loihi" is registered under the entry point group edge.targets.
    assert "loihi" in exporter.TARGETS


@pytest.mark.parametrize("make", [dense_model, residual_model])
def test_export_refuses_before_writing_anything(make, tmp_path, monkeypatch):
    _with_loihi_target(monkeypatch)
    model = make()
    x = images(8, tuple(model.input.shape[1:]))
    with pytest.raises(UnsupportedLayerError, match="cannot be exported"):
        exporter.export(model, tmp_path, "loihi", calibration_data=x)
    assert os.listdir(tmp_path) == []


# -- Lava, bit for bit -----------------------------------------------------
def _lava_stream(lgraph, x, tmp_path):
    stream, interval = loihi.make_stream(lgraph, loihi.encode(lgraph, x))
    expected = loihi.run_loihi_reference(lgraph, stream[None], interval)[0]
    path = tmp_path / "model.net"
    loihi.write_netx(lgraph, path)
    got = loihi.run_lava(lgraph, path, stream, interval)
    return got, expected, stream, interval


@pytest.mark.parametrize(
    "name, shape", [("dense_lgraph", (6, 6, 1)), ("conv_lgraph", (12, 12, 1))]
)
def test_lava_equals_reference_spike_for_spike(
    name, shape, request, tmp_path, lava
):
    lgraph = request.getfixturevalue(name)
    x = images(16, shape, seed=2)
    got, expected, stream, interval = _lava_stream(lgraph, x, tmp_path)
    assert (
        got.shape
        == expected.shape
        == (16 * interval + lgraph.depth, *lgraph.output_shape)
    )
    assert 0.02 < expected.mean() < 0.9  # the network is active
    np.testing.assert_array_equal(got, expected)
    # The per-sample windows are the batched reference's output.
    _, window = loihi.run_loihi(lgraph, x)
    steps, depth = window.shape[1], lgraph.depth
    for s in range(len(x)):
        start = s * interval + depth
        np.testing.assert_array_equal(got[start : start + steps], window[s])


def test_lava_detects_a_wrong_flatten_order(conv_lgraph, tmp_path, lava):
    # The check has teeth: the dense rows written in Keras' HWC order
    # (NetX reads CHW) change Lava's spikes.
    original = loihi.netx_writer._netx_weight

    def hwc(layer):
        if layer.kind == "dense":
            return np.asarray(layer.weight).T
        return original(layer)

    x = images(4, (12, 12, 1), seed=2)
    try:
        loihi.netx_writer._netx_weight = hwc
        got, expected, _, _ = _lava_stream(conv_lgraph, x, tmp_path)
    finally:
        loihi.netx_writer._netx_weight = original
    assert not np.array_equal(got, expected)


def test_export_loihi_target(tmp_path, monkeypatch, lava):
    import h5py

    _with_loihi_target(monkeypatch)
    keras.utils.set_random_seed(4)
    model = conv_net()
    x = images(40, (12, 12, 1), seed=5)
    labels = np.arange(40) % 5
    report = exporter.export(
        model,
        tmp_path,
        "loihi",
        calibration_data=images(32, (12, 12, 1), seed=6),
        eval_data=(x, labels),
    )
    row = report.row("loihi-netx")
    assert row.checks["spike_exact"] is True
    assert row.checks["samples_checked"] == loihi.LAVA_SAMPLES
    assert row.checks["layers"] == row.checks["delay_steps"] == 4
    assert row.checks["float_spike_agreement"] > 0.9
    assert row.path == "model_loihi.net" and row.size_bytes > 0
    lgraph = _lgraph(model)
    output, _ = loihi.run_loihi(lgraph, x)
    assert row.accuracy == pytest.approx(np.mean(output.argmax(-1) == labels))
    float_out = reference.run_float(lgraph.graph, x)
    assert row.agreement >= 0.8
    assert np.mean(float_out.argmax(-1) == output.argmax(-1)) >= 0.8
    with h5py.File(tmp_path / "model_loihi.net", "r") as file:
        assert len(file["layer"]) == 6
