"""Quantization-aware training for Loihi: the QAT model computes Lava's spikes.

`edge.qat.quantize_model(model, profile="loihi")` wraps the Loihi target's
split of a network (host encoder, chip layers, host readout) in one Keras
layer (`keras_snn.quantization_loihi.LoihiIntegerGraph`) whose chip layers
run `keras_snn.loihi_fixed_point`, the arithmetic of the Loihi reference:
its chip spikes must equal the reference's window (`run_loihi`) spike for
spike, at creation and after training, and the NetX file of the trained
model must run in Lava as the reference does.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_edge_loihi import conv_net
from test_edge_loihi import dense_net
from test_edge_loihi import lava  # noqa: F401 (fixture)
from test_edge_loihi_nir_neuron_models import _inputs
from test_edge_loihi_nir_neuron_models import _model
from test_edge_loihi_nir_neuron_models import _recurrent_chip

import edge
from edge import qat
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from edge.targets import loihi
from keras_snn import layers
from keras_snn import loihi_fixed_point as lfp
from keras_snn.quantization_loihi import LoihiIntegerGraph


def _recurrent_model():
    return _model(_recurrent_chip)


MODELS = {
    "dense": (dense_net, (6, 6, 1)),
    "conv_pools": (conv_net, (12, 12, 1)),
    "cuba_recurrent_channel": (_recurrent_model, (12,)),
}


def _data(shape, count=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *shape)).astype("float32")


def _chip_equals_reference(model, x):
    """The QAT model's encoder and chip spikes vs the Loihi reference."""
    layer = qat.find_loihi_graph(model)
    encoded, spikes = layer.chip_spikes(x)
    lgraph = qat.to_lgraph(model)
    output, window = loihi.run_loihi(lgraph, x)
    got = np.stack([np.asarray(s) for s in spikes], axis=1)
    np.testing.assert_array_equal(
        np.stack([np.asarray(s) for s in encoded], axis=1),
        loihi.encode(lgraph, x),
    )
    np.testing.assert_array_equal(got, window)
    assert 0.01 < got.mean() < 0.9  # the chip is active
    # The readout is the reference's, to float64 rounding.
    np.testing.assert_allclose(model.predict(x, verbose=0), output, atol=1e-5)
    return lgraph


@pytest.mark.parametrize("name", sorted(MODELS))
def test_chip_spikes_equal_the_loihi_reference_before_and_after_fit(name):
    keras.utils.set_random_seed(3)
    build, shape = MODELS[name]
    model = qat.quantize_model(build(), profile="loihi")
    x = _data(shape)
    before = _chip_equals_reference(model, x)
    # At creation it is the exporter's own quantization of the float model.
    exported = loihi.quantize_loihi(qat.loihi_float_graph(model))
    for a, b in zip(before.layers, exported.layers, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)
        assert a.threshold == b.threshold
    labels = np.arange(len(x)) % model.output_shape[-1]
    model.compile(
        keras.optimizers.Adam(3e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, labels, epochs=2, batch_size=12, verbose=0)
    after = _chip_equals_reference(model, x)
    changed = [
        not np.array_equal(a.weight, b.weight)
        for a, b in zip(before.layers, after.layers, strict=True)
        if a.role == "synaptic"
    ]
    assert all(changed)  # every chip layer trained


def test_gradients_reach_the_first_chip_layer():
    keras.utils.set_random_seed(4)
    model = qat.quantize_model(conv_net(), profile="loihi")
    layer = qat.find_loihi_graph(model)
    x = _data((12, 12, 1), count=8)
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(model(x) ** 2)
    weights = list(layer.float_weights.values())
    grads = tape.gradient(loss, weights)
    assert all(g is not None for g in grads)
    first = layer.float_weights[(layer.chip[0]["name"], "kernel")]
    assert float(np.abs(grads[weights.index(first)]).sum()) > 0
    # The host encoder and readout are frozen: not weights of the layer.
    names = {name for name, _ in layer.float_weights}
    assert names == {
        ly["name"] for ly in layer.chip if ly["role"] != "max_pool"
    }


def test_saves_and_loads_as_keras_without_custom_objects(tmp_path):
    keras.utils.set_random_seed(5)
    model = qat.quantize_model(_recurrent_model(), profile="loihi")
    x = _inputs()
    path = tmp_path / "qat_loihi.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(qat.find_loihi_graph(loaded), LoihiIntegerGraph)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )
    a, b = qat.to_lgraph(model), qat.to_lgraph(loaded)
    for first, second in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(first.weight, second.weight)
        np.testing.assert_array_equal(first.weight_rec, second.weight_rec)


def test_trained_weights_beyond_the_range_are_clipped_as_deployed():
    keras.utils.set_random_seed(6)
    model = qat.quantize_model(dense_net(), profile="loihi")
    layer = qat.find_loihi_graph(model)
    kernel = layer.float_weights[(layer.chip[0]["name"], "kernel")]
    kernel.assign(kernel * 5.0)  # far past 254 / S
    lgraph = qat.to_lgraph(model)
    assert int(np.max(np.abs(lgraph.layers[0].weight))) == 254
    loihi.check_ranges(lgraph)
    _chip_equals_reference(model, _data((6, 6, 1)))
    # Without the QAT scales the exporter would choose a smaller scale.
    again = loihi.quantize_loihi(qat.loihi_float_graph(model))
    assert again.layers[0].scale < lgraph.layers[0].scale


def test_export_deploys_the_qat_scales_spike_exact_in_lava(tmp_path, lava):  # noqa: F811
    keras.utils.set_random_seed(7)
    model = qat.quantize_model(conv_net(), profile="loihi")
    x = _data((12, 12, 1), count=16)
    labels = np.arange(len(x)) % 5
    model.compile(
        keras.optimizers.Adam(3e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    report = edge.export(
        model,
        tmp_path / "out",
        targets=["loihi"],
        calibration_data=x,
        eval_data=(x, labels),
        verbose=False,
    )
    row = next(r for r in report.rows if r.target == "loihi-netx")
    assert row.checks["spike_exact"] is True
    assert row.agreement == 1.0  # the QAT Keras model's classes, exactly
    expected = qat.to_lgraph(model)
    assert row.checks["vThMant"] == [ly.threshold for ly in expected.layers]
    assert (tmp_path / "out" / "model_loihi.net").exists()


def test_bad_profile_and_missing_calibration_are_named():
    model = dense_net()
    with pytest.raises(ValueError, match="profile.*'int8', 'loihi'.*int4"):
        qat.quantize_model(model, profile="int4")
    with pytest.raises(ExportError, match="calibration_data"):
        qat.quantize_model(model)


def test_loihi_profile_refuses_what_loihi_cannot_run():
    inputs = keras.Input((6,))
    x = layers.DirectEncoding(2)(inputs)
    x = layers.TimeFolded(keras.layers.Dense(8))(x)
    x = layers.LIF(threshold=0.5, reset="hard")(x)
    x = layers.TimeFolded(keras.layers.Dense(4))(x)
    x = layers.LIF(threshold=0.5, reset="soft", name="soft_lif")(x)
    model = keras.Model(inputs, layers.Decoding(3)(x))
    with pytest.raises(UnsupportedLayerError, match="soft_lif.*hard"):
        qat.quantize_model(model, profile="loihi")


# -- the shared arithmetic -------------------------------------------------
def test_loihi_arithmetic_is_the_same_on_numpy_and_tensors():
    rng = np.random.default_rng(0)
    x = rng.integers(-(2**31), 2**31, 4000, dtype=np.int64)
    x[:4] = [-5, 5, -4097, 4097]
    for d in (0, 1, 410, 2048, 4095, 4096):
        expected = np.sign(x) * ((np.abs(x) * (4096 - d)) >> 12)
        np.testing.assert_array_equal(lfp.decay_toward_zero(x, d), expected)
        tensor = lfp.decay_toward_zero(tf.constant(x, tf.float64), d)
        np.testing.assert_array_equal(np.asarray(tensor), expected)
    assert list(lfp.decay_toward_zero(np.array([-5, 5]), 2048)) == [-2, 2]
    wide = rng.integers(-(2**40), 2**40, 4000, dtype=np.int64)
    for bits in (24, 32):
        expected = wide.astype(np.int32) if bits == 32 else None
        got = lfp.wrap(wide, bits)
        if expected is not None:
            np.testing.assert_array_equal(got, expected)
        assert got.min() >= -(2 ** (bits - 1)) and got.max() < 2 ** (bits - 1)
        np.testing.assert_array_equal(
            np.asarray(lfp.wrap(tf.constant(wide, tf.float64), bits)), got
        )


def test_straight_through_gradients_of_the_loihi_arithmetic():
    x = tf.Variable([1000.0, -37.0, 5.0], dtype=tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        decayed = lfp.decay_toward_zero_ste(x, 1024)
        wrapped = lfp.wrap(x * 2.0**22, 24)
        weights = lfp.weight_integers(x, 0.5)
    np.testing.assert_array_equal(np.asarray(decayed), [750, -27, 3])
    np.testing.assert_allclose(tape.gradient(decayed, x), [0.75] * 3)
    np.testing.assert_allclose(tape.gradient(wrapped, x), [2.0**22] * 3)
    # 2 clip(round(0.5 x / 2), -127, 127): the clipped weight passes none.
    np.testing.assert_array_equal(np.asarray(weights), [254, -18, 2])
    np.testing.assert_allclose(tape.gradient(weights, x), [0.0, 0.5, 0.5])


def _random_chains(count, first_seed=200):
    """edge.fuzz's random "chain" networks that the Loihi target accepts
    (hard reset, average pooling, spike-count heads, LIF and IF)."""
    from edge.fuzz import networks

    found, refused = [], 0
    for seed in range(first_seed, first_seed + 200):
        spec = networks.draw_spec(
            networks.RandomChooser(np.random.default_rng(seed))
        )
        if not spec["chain"]:
            continue
        model = networks.build(spec)
        try:
            qat_model = qat.quantize_model(model, profile="loihi")
        except UnsupportedLayerError:
            refused += 1
            continue
        found.append((qat_model, networks.inputs_for(spec, 12, seed)))
        if len(found) == count:
            break
    assert refused <= count  # most chains are Loihi networks
    return found


def test_chip_spikes_equal_the_loihi_reference_on_random_networks():
    networks = _random_chains(6)
    assert len(networks) == 6
    for model, x in networks:
        lgraph = qat.to_lgraph(model)
        _, window = loihi.run_loihi(lgraph, x)
        _, spikes = qat.find_loihi_graph(model).chip_spikes(x)
        got = np.stack([np.asarray(s) for s in spikes], axis=1)
        np.testing.assert_array_equal(got, window)
        assert got.mean() > 0.01  # the chip fires
