"""ANN-to-SNN conversion on digits: accuracy versus time steps.

Trains a small ReLU ANN (Conv-BN-ReLU-AvgPool, Conv-ReLU-AvgPool, Dense-ReLU,
Dense) on scikit-learn's digits, converts it with
`keras_snn.conversion.convert_ann` (BN folded, IF neurons with reset by
subtraction) using spike-norm and 99.9th-percentile thresholds (Srinivasan
et al. 2020, Sec. 3.2), and prints the test accuracy of each SNN for each
number of time steps next to the ANN's.

Run:

    python examples/convert_ann_digits.py --epochs 30
    python examples/convert_ann_digits.py --dataset fashion_mnist --epochs 5
"""

import argparse
import time

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras
import numpy as np

from keras_snn.conversion import convert_ann
from keras_snn.models import with_timesteps


def build_ann(input_shape, num_classes=10):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, padding="same"),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.AveragePooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.2),
            layers.Dense(64, activation="relu"),
            layers.Dense(num_classes),
        ],
        name="ann",
    )


def accuracy(model, x, y, batch_size=500):
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float((logits.argmax(1) == y).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--timesteps", type=int, nargs="+", default=[8, 16, 32, 64, 128]
    )
    parser.add_argument("--calibration", type=int, default=500)
    parser.add_argument("--calibration-timesteps", type=int, default=32)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        args.dataset
    )
    if args.test_samples:
        x_test, y_test = (
            x_test[: args.test_samples],
            y_test[: args.test_samples],
        )
    ann = build_ann(x_train.shape[1:])
    ann.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ann.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    ann_accuracy = accuracy(ann, x_test, y_test)
    print(f"{args.dataset}: ANN test accuracy {ann_accuracy:.4f}")

    calibration = x_train[: args.calibration]
    rows = {}
    for method in ("spike_norm", "percentile"):
        start = time.perf_counter()
        snn = convert_ann(
            ann,
            calibration,
            timesteps=args.calibration_timesteps,
            threshold=method,
            percentile=99.9,
        )
        thresholds = [
            round(layer.threshold, 3)
            for layer in keras_snn.analysis.spiking_layers(snn)
        ]
        print(
            f"{method}: thresholds {thresholds} "
            f"({time.perf_counter() - start:.1f} s)"
        )
        rows[method] = [
            accuracy(with_timesteps(snn, steps), x_test, y_test)
            for steps in args.timesteps
        ]

    header = " | ".join(f"T={steps}" for steps in args.timesteps)
    print(f"\n| method | ANN | {header} |")
    print("|---|---:|" + "---:|" * len(args.timesteps))
    for method, values in rows.items():
        cells = " | ".join(f"{value:.4f}" for value in values)
        print(f"| {method} | {ann_accuracy:.4f} | {cells} |")
    return ann_accuracy, rows


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
