"""Quickstart: train a convolutional spiking network on scikit-learn's digits.

The digits data ships with scikit-learn, so this runs offline. The network
sees each 8x8 image as a constant input current for T time steps (direct
encoding; the first convolution is the encoding layer), has two conv-BN-LIF
stages and one dense-LIF stage, and reads out the mean spike rate over time
through a dense layer. The batch normalisation acts on the input currents
of the neurons (Ledinauskas et al. 2020, Sec. 2.6): Keras'
`BatchNormalization` inside `keras_snn.layers.TimeFolded` normalises over
batch and time, and the exporter folds it into the convolution. Its moving
statistics use momentum 0.9 (`keras_snn.layers.normalization.MOMENTUM`),
not Keras' 0.99: with 0.99, after 3 epochs (123 steps) the moving variance
still holds 0.99**123 = 29% of its initial 1.0 while the batch variance of
the currents is about 0.01, so in inference the currents are several times
too small, every neuron is silent and validation accuracy sits at 0.0417
(one class) although training accuracy is 96%. It trains
with plain `model.compile` / `model.fit`, is saved as `.keras`, reloaded,
and evaluated on the held-out test split. Then `edge.export` folds the
batch norms, quantizes, writes every target (TFLite float32 and integer
16x8, ONNX, C for Cortex-M4, Loihi NetX, NIR), runs each in its consumer
(LiteRT, TFLite-Micro, onnxruntime, gcc and QEMU, Lava, Norse) and prints
the accuracy of every artefact (skip with `--no-export`).

Run:

    python examples/quickstart_digits.py --epochs 30 --timesteps 4
"""

import argparse
import os
import tempfile
import time

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras
import numpy as np

# See the module docstring: Keras' default 0.99 is too slow for short runs.
BN_MOMENTUM = keras_snn.layers.normalization.MOMENTUM


def load_digits(test_fraction=0.2, seed=0):
    """Digits as float images in [0, 1], shape (N, 8, 8, 1), split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    data = sk_load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    return train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )


def build_model(
    timesteps=4, input_shape=(8, 8, 1), num_classes=10, filters=(32, 64)
):
    """Conv SNN: [conv-BN-LIF-pool] x 2, dense-LIF, rate readout.

    `filters` are the two convolutions' widths."""
    layers = keras_snn.layers
    fold = layers.TimeFolded
    inputs = keras.Input(input_shape)
    x = layers.DirectEncoding(timesteps)(inputs)
    for width in filters:
        x = fold(keras.layers.Conv2D(width, 3, padding="same"))(x)
        x = fold(keras.layers.BatchNormalization(momentum=BN_MOMENTUM))(x)
        x = layers.LIF(threshold=1.0, decay=0.5)(x)
        x = fold(keras.layers.AveragePooling2D(2))(x)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(128))(x)
    x = layers.LIF(threshold=1.0, decay=0.5)(x)
    rate = keras.layers.GlobalAveragePooling1D(name="spike_rate")(x)
    outputs = keras.layers.Dense(num_classes, name="readout")(rate)
    return keras.Model(inputs, outputs, name="digits_snn")


def train(epochs=30, timesteps=4, seed=0, batch_size=32, verbose=0):
    """Trains the quickstart network as the command does.

    Returns:
        `(model, (x_train, x_test, y_train, y_test))`.
    """
    keras.utils.set_random_seed(seed)
    data = load_digits(seed=seed)
    x_train, _, y_train, _ = data
    model = build_model(timesteps)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=0.1,
        verbose=verbose,
        # XLA steps cannot warn about silent layers themselves; this does.
        callbacks=[keras_snn.analysis.SilentLayerWarning(x_train[:batch_size])],
    )
    return model, data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=None, help="where to save the .keras model"
    )
    parser.add_argument(
        "--export-dir",
        default=None,
        help="folder for the exported artefacts (default: next to --out)",
    )
    parser.add_argument(
        "--no-export", action="store_true", help="stop after training"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, (x_train, x_test, y_train, y_test) = train(
        args.epochs, args.timesteps, args.seed, args.batch_size, verbose=2
    )
    train_s = time.perf_counter() - start

    out = args.out or os.path.join(tempfile.mkdtemp(), "digits_snn.keras")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    model.save(out)
    reloaded = keras.models.load_model(out)
    reloaded.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    _, accuracy = reloaded.evaluate(x_test, y_test, verbose=0)
    print(
        f"digits SNN, T={args.timesteps}: test accuracy {accuracy:.4f} "
        f"({len(y_test)} images), training {train_s:.1f} s, saved to {out}"
    )
    if not args.no_export:
        import edge

        export_dir = args.export_dir or os.path.join(
            os.path.dirname(os.path.abspath(out)), "export"
        )
        report = edge.export(
            reloaded,
            export_dir,
            calibration_data=x_train[:500],
            eval_data=(x_test, y_test),
            overwrite=True,  # a rerun replaces its own previous export
        )
        print(report.table())
    return accuracy


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
