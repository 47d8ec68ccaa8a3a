"""Small keras_snn models (and data) shared by the edge tests."""

import keras
import numpy as np

from edge.fuzz.networks import randomize_normalization
from keras_snn import layers
from keras_snn import models

fold = layers.TimeFolded


def set_batch_norm_statistics(model, seed=0):
    """Gives every batch norm non-trivial gamma, beta, mean and variance,
    so that folding them is a real test (`edge.fuzz`'s drawing)."""
    return randomize_normalization(model, np.random.default_rng(seed))


def conv_model(
    timesteps=3, reset="hard", head="decoding", input_shape=(8, 8, 1)
):
    """Conv-BN-LIF-pool-conv-tdBN-LIF-pool-flatten-dense-LIF-head."""
    inputs = keras.Input(input_shape)
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Conv2D(6, 3, padding="same"))(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(threshold=0.6, decay=0.5, reset=reset)(x)
    x = fold(keras.layers.AveragePooling2D(2))(x)
    x = fold(keras.layers.Conv2D(8, 3, padding="valid", use_bias=False))(x)
    x = layers.TDBatchNormalization(alpha=1.0, threshold=0.8)(x)
    x = layers.IF(threshold=0.8, reset=reset)(x)
    x = fold(keras.layers.MaxPooling2D(2, padding="same"))(x)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(20))(x)
    x = layers.LIF(threshold=0.5, decay=0.75, reset=reset)(x)
    if head == "decoding":
        outputs = layers.Decoding(10)(x)
    elif head == "voting":
        x = fold(keras.layers.Dense(20))(x)
        x = layers.LIF(threshold=0.3, decay=0.5)(x)
        outputs = layers.Voting(10)(x)
    elif head == "membrane":
        outputs = layers.MembraneReadout(10, decay=0.9, mode="last")(x)
    else:  # the quickstart's readout: mean spike rate, then Dense
        rate = keras.layers.GlobalAveragePooling1D()(x)
        outputs = keras.layers.Dense(10)(rate)
    model = keras.Model(inputs, outputs, name=f"conv_{head}_{reset}")
    return set_batch_norm_statistics(model)


def dense_model(timesteps=4, threshold=1.0, decay=0.5, reset="soft", name=None):
    """Flatten-dense-BN-LIF-dense-LIF-Decoding on 8x8 inputs; the arguments
    set the second LIF layer."""
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(32))(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(threshold=1.0, decay=0.5)(x)
    x = fold(keras.layers.Dense(16))(x)
    x = layers.LIF(threshold=threshold, decay=decay, reset=reset)(x)
    outputs = layers.Decoding(10)(x)
    return set_batch_norm_statistics(
        keras.Model(inputs, outputs, name=name or "dense_snn")
    )


def residual_model(timesteps=2):
    """A stem and one spiking basic block (tdBN shortcut of spikes)."""
    inputs = keras.Input((8, 8, 2))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Conv2D(4, 3, padding="same"))(x)
    x = layers.LIF(threshold=0.5, decay=0.5)(x)
    x = models.residual_block(x, 4, name="block")
    x = fold(keras.layers.Flatten())(x)
    outputs = layers.Decoding(5)(x)
    return set_batch_norm_statistics(
        keras.Model(inputs, outputs, name="residual_snn")
    )


def images(count, shape=(8, 8, 1), seed=0):
    """Random inputs in [0, 1], a stand-in for calibration images."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *shape)).astype("float32")


def outlier_chain_model(timesteps=2, outlier=-20.0, scale=256.0):
    """Found by `edge.fuzz`: dense-IF-dense-IF-Decoding whose second dense
    layer has one silent column (every weight `outlier`) and weights
    scaled up `scale` times, so that one Loihi weight step (max |w| / 254)
    is far above the threshold 0.951."""
    inputs = keras.Input((8,))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Dense(12))(x)
    x = layers.IF(threshold=0.444, reset="hard")(x)
    dense = fold(keras.layers.Dense(6, name="wide_dense"), name="wide")
    x = dense(x)
    x = layers.IF(threshold=0.951, reset="hard")(x)
    outputs = layers.Decoding(4)(x)
    model = keras.Model(inputs, outputs, name="outlier_chain")
    kernel = np.array(dense.layer.kernel.numpy())
    kernel[:, 0] = outlier
    dense.layer.kernel.assign(kernel * scale)
    return model


def randomize_neurons(model, rng, unit_decay_every=None):
    """Gives the recurrent kernels and the learned thresholds and decays
    values that differ between neurons (their initial values are equal).

    Args:
        model: a Keras model.
        rng: a NumPy generator (the caller's stream).
        unit_decay_every: `None`, or `n`: every `n`-th decay is exactly 1
            (the Q15 `2^15` that an int16 cannot hold) among others.
    """
    for weight in model.weights:
        if "recurrent" in weight.path:
            weight.assign(rng.normal(0.0, 0.4, weight.shape))
        elif "threshold" in weight.path:
            weight.assign(rng.uniform(0.3, 0.7, weight.shape))
        elif "decay" in weight.path:
            decay = rng.uniform(0.5, 0.95, weight.shape)
            if unit_decay_every:
                decay.reshape(-1)[::unit_decay_every] = 1.0
            weight.assign(decay)
    return model


def require_programs(programs, what, install):
    """Fails under CI, else skips, when one of `programs` is missing.

    Args:
        programs: the executables the tests run.
        what: what needs them, for the message (e.g. "C runtime tests").
        install: how to install them.
    """
    import os
    import shutil

    import pytest

    missing = [name for name in programs if shutil.which(name) is None]
    if missing:
        message = f"{what} need {', '.join(missing)}: {install}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
