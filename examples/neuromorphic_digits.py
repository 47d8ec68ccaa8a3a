"""The neuromorphic path offline: digits to events to frames to an SNN.

No event-camera dataset can be downloaded here, so this example records its
own, the way N-MNIST was recorded: each scikit-learn digit (upscaled to
16x16) is swept by simulated saccades and every pixel emits ON/OFF events
when its log intensity changes by more than a contrast threshold
(`keras_snn.datasets.image_to_events`). The events are written as N-MNIST
binary files, read back with `read_nmnist`, integrated into `T` OFF/ON
frames (`event_dataset`), and a convolutional SNN is trained on the frame
sequences with `model.fit`.

`--neuron alif-recurrent` trains instead the recurrent ALIF network of
`benchmarks/temporal_fmnist.py` on the same frames: each flattened frame
drives `Dense(128)`, then `ALIF(recurrent=True)` (adaptive thresholds and
recurrent synapses from the previous frame's spikes), and a
`MembraneReadout` gives the logits after the last frame.

Run:

    python examples/neuromorphic_digits.py --frames 8 --epochs 15
    python examples/neuromorphic_digits.py --neuron alif-recurrent
"""

import argparse
import tempfile
import time

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras
import numpy as np

from keras_snn import datasets

AMPLITUDE = 3.0


def record(images, labels, out_dir):
    """Writes one N-MNIST file per image; returns (paths, labels, sensor)."""
    big = np.kron(images[..., 0], np.ones((2, 2), "float32"))  # 8 -> 16 px
    datasets.convert_images(
        big, labels, out_dir, format="nmnist", amplitude=AMPLITUDE
    )
    paths, labels = datasets.read_converted(out_dir)
    sensor = datasets.saccade_sensor_size(big.shape[1:], amplitude=AMPLITUDE)
    return paths, labels, sensor


def recurrent_alif(input_shape, hidden=128):
    """Flattened frames -> Dense -> recurrent ALIF -> MembraneReadout."""
    frames = keras.Input(input_shape)
    x = keras_snn.layers.TimeFolded(keras.layers.Flatten())(frames)
    x = keras_snn.layers.TimeFolded(keras.layers.Dense(hidden))(x)
    x = keras_snn.layers.ALIF(
        decay=0.9,
        adaptation=1.0,
        adaptation_decay=0.95,
        surrogate="sigmoid",
        recurrent=True,
    )(x)
    logits = keras_snn.layers.MembraneReadout(10, mode="last")(x)
    return keras.Model(frames, logits, name="recurrent_alif")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--limit", type=int, default=None, help="images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--neuron",
        choices=["lif", "alif-recurrent"],
        default="lif",
        help="lif: the convolutional LIF network; alif-recurrent: "
        "Dense(128) -> recurrent ALIF -> MembraneReadout",
    )
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = datasets.load_arrays("digits")
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_paths, train_labels, sensor = record(
            x_train, y_train, f"{tmp}/train"
        )
        test_paths, test_labels, _ = record(x_test, y_test, f"{tmp}/test")
        record_s = time.perf_counter() - start

        def frames(paths, labels, shuffle):
            return datasets.event_dataset(
                paths,
                labels,
                reader="nmnist",
                sensor_size=sensor,
                num_frames=args.frames,
                batch_size=32,
                shuffle=shuffle,
                seed=args.seed,
                cache=True,
            )

        train_data = frames(train_paths, train_labels, True)
        test_data = frames(test_paths, test_labels, False)
        if args.neuron == "lif":
            model = keras_snn.models.from_spec(
                "16C3-AP2-32C3-AP2-128FC-Decoding",
                input_shape=(args.frames, *sensor, 2),
                num_classes=10,
                norm="bn",
            )
        else:
            model = recurrent_alif((args.frames, *sensor, 2))
        model.compile(
            optimizer=keras.optimizers.Adam(2e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=True,
        )
        model.fit(train_data, epochs=args.epochs, verbose=2)
        _, accuracy = model.evaluate(test_data, verbose=0)
    total_s = time.perf_counter() - start
    print(
        f"event digits, {args.frames} frames of {sensor[0]}x{sensor[1]}x2: "
        f"test accuracy {accuracy:.4f} ({len(test_labels)} recordings, "
        f"{args.neuron} network, {model.count_params():,} parameters); "
        f"recording {record_s:.1f} s, total {total_s:.1f} s"
    )
    return accuracy


if __name__ == "__main__":
    main()
