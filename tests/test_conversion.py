"""ANN-to-SNN conversion: spike-norm and percentile thresholds, BN folding."""

import keras
import numpy as np
import pytest

from keras_snn import analysis
from keras_snn import functional
from keras_snn.conversion import convert_ann


def small_ann(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="relu"),
            keras.layers.Dense(3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2),
        ]
    )


def simulate_currents(kernels, biases, thresholds, x, timesteps):
    """Reference IF simulation in NumPy; returns each layer's currents."""
    spikes = np.repeat(x[:, None], timesteps, axis=1)  # direct encoding
    scale = 1.0
    currents = []
    for kernel, bias, theta in zip(kernels, biases, thresholds, strict=False):
        current = spikes @ kernel + bias / scale
        currents.append(current)
        if theta is None:
            break
        v = np.zeros(current.shape[::2])
        out = []
        for t in range(timesteps):
            o, _, v = functional.neuron_step(
                current[:, t], v, theta, 1.0, reset="soft"
            )
            out.append(o)
        spikes = np.stack(out, axis=1)
        scale *= theta
    return currents


def test_spike_norm_thresholds_equal_calibration_maxima():
    ann = small_ann()
    bn = ann.layers[2]
    bn.set_weights(
        [
            np.array([1.5, 0.5, 2.0], "float32"),
            np.array([0.1, 0.2, -0.1], "float32"),
            np.array([0.3, -0.2, 0.1], "float32"),
            np.array([0.5, 2.0, 1.0], "float32"),
        ]
    )
    x = np.random.default_rng(0).random((40, 4)).astype("float32")
    snn = convert_ann(ann, x, timesteps=6, threshold="spike_norm")
    thresholds = [layer.threshold for layer in analysis.spiking_layers(snn)]
    k1, b1 = ann.layers[0].get_weights()
    k2, b2 = functional.fold_batch_norm(
        *ann.layers[1].get_weights(),
        *functional.batch_norm_parameters(bn),
    )
    # Layer 1 sees the constant input: its threshold is max(x W1 + b1).
    theta1 = (x @ k1 + b1).max()
    assert thresholds[0] == pytest.approx(theta1, rel=1e-5)
    # Layer 2: the max over samples, neurons and steps of the current it
    # receives from the spiking layer 1 (bias divided by theta1).
    currents = simulate_currents(
        [k1, k2], [b1, b2], [theta1, None], x, timesteps=6
    )
    assert thresholds[1] == pytest.approx(currents[1].max(), rel=1e-5)
    # The readout carries the output layer's weights, bias / (theta1 theta2).
    readout = snn.layers[-1]
    kernel, bias = readout.get_weights()
    np.testing.assert_allclose(kernel, ann.layers[-1].get_weights()[0])
    np.testing.assert_allclose(
        bias,
        ann.layers[-1].get_weights()[1] / (thresholds[0] * thresholds[1]),
        rtol=1e-5,
    )
    assert [type(x).__name__ for x in analysis.spiking_layers(snn)] == [
        "IF",
        "IF",
    ]
    assert all(x.reset == "soft" for x in analysis.spiking_layers(snn))


def test_percentile_thresholds_and_rate_approximation():
    ann = small_ann()
    for layer in (ann.layers[0], ann.layers[1]):
        kernel, bias = layer.get_weights()
        layer.set_weights([np.abs(kernel), bias])
    x = np.random.default_rng(1).random((200, 4)).astype("float32")
    snn = convert_ann(
        ann, x, timesteps=400, threshold="percentile", percentile=100.0
    )
    k1, b1 = ann.layers[0].get_weights()
    a1 = np.maximum(x @ k1 + b1, 0)
    theta = analysis.spiking_layers(snn)[0].threshold
    assert theta == pytest.approx(a1[a1 > 0].max(), rel=1e-5)
    # With 400 steps the SNN's logits approach the ANN's / lambda_2.
    ann_logits = ann.predict(x, verbose=0)
    snn_logits = snn.predict(x, verbose=0)
    agree = (ann_logits.argmax(1) == snn_logits.argmax(1)).mean()
    assert agree >= 0.9


def test_conv_model_converts_and_runs():
    ann = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    x = np.random.default_rng(2).random((16, 6, 6, 1)).astype("float32")
    snn = convert_ann(ann, x, timesteps=4, encoding="bernoulli", seed=0)
    probabilities = snn.predict(x, verbose=0)
    assert probabilities.shape == (16, 4)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "layer, message",
    [
        (keras.layers.MaxPooling2D(2), "MaxPooling2D"),
        (keras.layers.Activation("tanh"), "Activation"),
        (keras.layers.ReLU(max_value=6.0), "max_value"),
    ],
)
def test_unsupported_layers_are_named(layer, message):
    ann = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Conv2D(2, 3, padding="same", activation="relu"),
            layer,
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match=message):
        convert_ann(ann, np.zeros((2, 4, 4, 1)), timesteps=2)


def test_invalid_arguments():
    ann = small_ann()
    x = np.ones((4, 4), "float32")
    with pytest.raises(ValueError, match="threshold"):
        convert_ann(ann, x, timesteps=2, threshold="max")
    with pytest.raises(ValueError, match="percentile"):
        convert_ann(ann, x, timesteps=2, threshold="percentile", percentile=0)
    with pytest.raises(ValueError, match="timesteps"):
        convert_ann(ann, x, timesteps=0)
    with pytest.raises(ValueError, match="encoding"):
        convert_ann(ann, x, timesteps=2, encoding="latency")
