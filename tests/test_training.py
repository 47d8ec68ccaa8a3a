"""End to end: model.fit, gradients, and the .keras round trip."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf

import keras_snn
from keras_snn import layers


def small_conv_snn(timesteps=3):
    fold = layers.TimeFolded
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(timesteps)(inputs)
    x = fold(keras.layers.Conv2D(8, 3, padding="same"), name="conv0")(x)
    x = fold(keras.layers.BatchNormalization())(x)
    x = layers.LIF(surrogate="fast_sigmoid", trainable_decay=True)(x)
    x = fold(keras.layers.AveragePooling2D(2))(x)
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3))(x)
    x = layers.IF(threshold=0.8, detach_reset=True, surrogate="sigmoid")(x)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(16))(x)
    x = layers.LIF(reset="soft", surrogate="atan")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def toy_data(n=96, seed=0):
    """Three classes: bright top, bright bottom, dark image."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype("int32")
    x = rng.uniform(0, 0.2, (n, 8, 8, 1)).astype("float32")
    x[y == 0, :4] += 0.8
    x[y == 1, 4:] += 0.8
    return x, y


def test_fit_learns_and_gradient_reaches_first_kernel():
    x, y = toy_data()
    model = small_conv_snn()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    kernel = model.get_layer("conv0").layer.kernel
    grad = tape.gradient(loss, kernel)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0

    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=loss_fn,
        metrics=["accuracy"],
        jit_compile=True,
    )
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert history.history["accuracy"][-1] > 0.9


FRESH_PROCESS_CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    import keras
    import keras_snn  # registers the layers; no custom_objects needed

    path, data = sys.argv[1], np.load(sys.argv[2])
    model = keras.models.load_model(path)
    x = tf.constant(data["x"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = model(x, training=False)
        loss = tf.reduce_sum(out * data["w"])
    grad = tape.gradient(loss, x).numpy()
    np.testing.assert_array_equal(out.numpy(), data["out"])
    np.testing.assert_allclose(grad, data["grad"], rtol=1e-5, atol=1e-7)
    assert np.abs(grad).sum() > 0
    print("fresh-process round trip ok")
    """
)


def test_keras_round_trip_in_fresh_process(tmp_path):
    x, y = toy_data(16)
    model = small_conv_snn()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=1, verbose=0)
    w = np.random.default_rng(1).normal(size=(16, 3)).astype("float32")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = model(xt, training=False)
        loss = tf.reduce_sum(out * w)
    grad = tape.gradient(loss, xt).numpy()
    path = tmp_path / "model.keras"
    model.save(path)
    np.savez(tmp_path / "data.npz", x=x, w=w, out=out.numpy(), grad=grad)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS_CHECK,
            str(path),
            str(tmp_path / "data.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "round trip ok" in result.stdout


def test_load_in_same_process_keeps_config(tmp_path):
    model = small_conv_snn()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    lif = [layer for layer in loaded.layers if isinstance(layer, layers.LIF)]
    assert lif[0].trainable_decay and lif[0].surrogate == (
        keras_snn.surrogates.FastSigmoid()
    )
    assert isinstance(lif[1], layers.IF) and lif[1].detach_reset
