"""Activity, synaptic-operation counts, energy report and rate logger."""

import keras
import numpy as np
import pytest

import keras_snn
from keras_snn import analysis
from keras_snn.callbacks import FiringRateLogger

L = keras_snn.layers


def tiny_model(timesteps=2):
    """Direct encoding -> Conv(2, 2x2) -> IF -> Flatten -> Dense(3) -> IF
    -> Decoding(2); weights chosen so the spikes are known by hand."""
    inputs = keras.Input((3, 3, 1))
    x = L.DirectEncoding(timesteps)(inputs)
    conv = keras.layers.Conv2D(2, 2, use_bias=False)
    x = L.TimeFolded(conv, name="conv")(x)
    x = L.IF(threshold=1.0, name="if1")(x)
    x = L.TimeFolded(keras.layers.Flatten(), name="flat")(x)
    dense = keras.layers.Dense(3, use_bias=False)
    x = L.TimeFolded(dense, name="fc")(x)
    x = L.IF(threshold=1.0, name="if2")(x)
    out = L.Decoding(2, name="readout")(x)
    model = keras.Model(inputs, out)
    # Map 0 sums its 4 inputs, map 1 is silent.
    kernel = np.zeros((2, 2, 1, 2), "float32")
    kernel[..., 0, 0] = 1.0
    conv.set_weights([kernel])
    # fc unit 0 sums all 8 inputs, units 1 and 2 are silent.
    w = np.zeros((8, 3), "float32")
    w[:, 0] = 1.0
    dense.set_weights([w])
    return model


def test_op_counts_equal_hand_counts():
    model = tiny_model(timesteps=2)
    x = np.zeros((1, 3, 3, 1), "float32")
    x[0, 0, 0, 0] = 1.0  # only the top-left pixel is on
    rows = {r["layer"]: r for r in analysis.synaptic_operations(model, x)}
    # Encoding conv: 4 positions * 4 taps * 2 filters, every step: MACs.
    assert rows["conv"]["role"] == "encoding"
    assert rows["conv"]["op"] == "MAC"
    assert rows["conv"]["ops"] == 4 * 4 * 2 * 2
    # conv map 0 at position (0, 0) gets 1 per step -> fires at t=0 and
    # t=1 (IF, soft reset); no other neuron fires. fc receives one spike
    # per step, fanning out to 3 units: 2 steps * 1 * 3 = 6 ACs.
    assert rows["fc"]["role"] == "spike-driven"
    assert rows["fc"]["op"] == "AC"
    assert rows["fc"]["ops"] == pytest.approx(6.0)
    # Readout: 3 inputs * 2 classes, once.
    assert rows["readout"]["op"] == "MAC"
    assert rows["readout"]["ops"] == 6
    spikes = analysis.spikes_per_neuron(model, x)
    # if1: 2 spikes among 8 neurons; if2: fc unit 0 gets 1/step -> 2
    # spikes among 3 neurons.
    assert spikes["if1"] == pytest.approx(2 / 8)
    assert spikes["if2"] == pytest.approx(2 / 3)


def test_conv_ac_counts_padding_and_strides():
    inputs = keras.Input((2, 4, 4, 1))
    x = L.IF(threshold=1.0, name="spikes")(inputs)
    conv = keras.layers.Conv2D(5, 3, padding="same")
    x = L.TimeFolded(conv, name="conv")(x)
    model = keras.Model(inputs, x)
    data = np.zeros((1, 2, 4, 4, 1), "float32")
    data[0, 0, 0, 0, 0] = 1.0  # a corner spike at t=0: 4 windows hold it
    data[0, 1, 1, 1, 0] = 1.0  # an inner spike at t=1: 9 windows
    (row,) = analysis.synaptic_operations(model, data)
    assert row["op"] == "AC"
    assert row["ops"] == (4 + 9) * 5


def test_count_macs_of_ann_and_equivalent():
    ann = keras.Sequential(
        [
            keras.Input((3, 3, 1)),
            keras.layers.Conv2D(2, 2),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
            keras.layers.Dense(2),
        ]
    )
    assert analysis.count_macs(ann) == {
        ann.layers[0].name: 4 * 4 * 2,
        ann.layers[2].name: 8 * 3,
        ann.layers[3].name: 3 * 2,
    }
    assert analysis.count_macs(tiny_model()) == {
        "conv": 32,
        "fc": 24,
        "readout": 6,
    }


def test_energy_report_formula():
    model = tiny_model(timesteps=2)
    x = np.zeros((1, 3, 3, 1), "float32")
    x[0, 0, 0, 0] = 1.0
    report = analysis.energy_report(
        model, x, energy_per_ac=1.0, energy_per_mac=10.0
    )
    assert report.snn_acs == pytest.approx(6.0)
    assert report.snn_macs == pytest.approx(64 + 6)
    assert report.snn_energy == pytest.approx(6.0 + 700.0)
    assert report.ann_energy == pytest.approx((32 + 24 + 6) * 10.0)
    assert "ANN / SNN energy" in report.table()
    assert analysis.ENERGY_45NM["float32"]["mac"] == pytest.approx(4.6e-12)
    with pytest.raises(ValueError, match="energy_per_ac"):
        analysis.energy_report(model, x, energy_per_ac=-1.0)


def test_firing_rate_logger_writes_history_and_tensorboard(tmp_path):
    model = tiny_model()
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).random((8, 3, 3, 1)).astype("float32")
    y = np.zeros(8, "int32")
    logger = FiringRateLogger(x, log_dir=tmp_path)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    rates = analysis.firing_rates(model, x)
    for name in ("if1", "if2"):
        logged = history.history[f"firing_rate/{name}"]
        assert len(logged) == 2
        assert logged[-1] == pytest.approx(rates[name], abs=1e-6)
    assert list(tmp_path.iterdir())  # TensorBoard event file


def test_firing_rate_logger_errors():
    with pytest.raises(ValueError, match="data"):
        FiringRateLogger(np.zeros((0, 3)))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    logger = FiringRateLogger(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="no spiking layers"):
        model.fit(
            np.zeros((2, 3)), np.zeros((2, 2)), verbose=0, callbacks=[logger]
        )
