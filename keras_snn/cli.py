"""The `keras-snn` command line: train and evaluate spiking networks.

Other packages add subcommands through the entry point group
`keras_snn.commands` (the `edge` package adds `keras-snn export`).

```
keras-snn train --dataset fashion_mnist \\
    --model "32C3-AP2-64C3-AP2-256FC-Decoding" \\
    --timesteps 4 --epochs 20 --out runs/fmnist
keras-snn evaluate runs/fmnist/model.keras --dataset fashion_mnist \\
    --timesteps 1 2 4 8
```
"""

import argparse
import json
import os
import sys
import tempfile
import time

DEFAULT_MODEL = "32C3-AP2-64C3-AP2-256FC-Decoding"
AUGMENTATIONS = {
    "none": (),
    "flip": ("flip",),
    "shift": ("shift",),
    "flip+shift": ("flip", "shift"),
}
SHIFT_PIXELS = 2
PLUGIN_GROUP = "keras_snn.commands"


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-snn",
        description="Train and evaluate spiking neural networks with Keras.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train a network given in the papers' notation",
        description=(
            "Train a spiking network on a dataset and write the model, its "
            "history (JSON and CSV), checkpoints and PNG plots to --out. "
            "Running the same command again resumes an interrupted run."
        ),
    )
    train.add_argument(
        "--dataset",
        default="digits",
        help="digits (offline default), mnist, fashion_mnist or cifar10",
    )
    train.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"network string, e.g. '{DEFAULT_MODEL}' (default)",
    )
    train.add_argument("--timesteps", type=int, default=4)
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument(
        "--norm",
        default="bn",
        choices=["none", "bn", "tdbn", "neunorm"],
        help="normalisation of each layer (default: bn on input currents)",
    )
    train.add_argument("--neuron", default="lif", choices=["lif", "if"])
    train.add_argument("--threshold", type=float, default=1.0)
    train.add_argument("--decay", type=float, default=0.5)
    train.add_argument("--surrogate", default="rectangular")
    train.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout rate on the spikes entering the head (default 0)",
    )
    train.add_argument(
        "--augment",
        default="none",
        choices=sorted(AUGMENTATIONS),
        help="random training augmentation: horizontal flip and/or a shift "
        "of up to 2 pixels (default none)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data-dir", default=None, help="local dataset files")
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="Keras progress: 0 silent, 1 bar, 2 one line per epoch",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="test accuracy of a saved model versus the number of steps",
        description=(
            "Evaluate a saved .keras model on the test split for each "
            "number of time steps (the weights are shared; only the "
            "encoder's number of steps changes)."
        ),
    )
    evaluate.add_argument("model", help="path of a .keras file")
    evaluate.add_argument("--dataset", default="digits")
    evaluate.add_argument(
        "--timesteps",
        type=int,
        nargs="+",
        default=None,
        help="numbers of steps to evaluate (default: the model's own)",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--json", default=None, help="also write results")
    train.set_defaults(handler=train_command)
    evaluate.set_defaults(handler=evaluate_command)
    for register in _plugin_commands():
        register(commands)
    return parser


def _plugin_commands():
    """Functions `register(subparsers)` of other packages' subcommands.

    A package adds a subcommand by naming such a function under the entry
    point group `keras_snn.commands` (the `edge` package adds `export`);
    the function adds its parser and sets `handler`. keras_snn itself
    imports nothing of them.
    """
    from importlib.metadata import entry_points

    functions = []
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            functions.append(entry.load())
        except Exception as error:  # a broken plugin must not break train
            print(
                f"keras-snn: warning: command {entry.name!r} from "
                f"{entry.value!r} is unavailable: {error}",
                file=sys.stderr,
            )
    return functions


def train_command(args):
    return train(args)


def evaluate_command(args):
    return evaluate(args)


def _compile(model, learning_rate, steps):
    import keras

    from keras_snn import layers
    from keras_snn import losses

    if isinstance(model.layers[-1], layers.Voting):
        loss = losses.VotingMSE()
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, max(1, steps)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=True,
    )


def _atomic_json(obj, path):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def _atomic_save(model, path):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def train(args):
    """`keras-snn train`: returns the metrics dict it writes."""
    import keras
    import numpy as np

    from keras_snn import analysis
    from keras_snn import datasets
    from keras_snn import models
    from keras_snn import plotting

    if args.epochs < 1:
        raise SystemExit(f"--epochs must be >= 1. Received: {args.epochs}")
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = datasets.load_arrays(
        args.dataset, data_dir=args.data_dir
    )
    model = models.from_spec(
        args.model,
        input_shape=x_train.shape[1:],
        num_classes=int(max(y_train.max(), y_test.max()) + 1),
        timesteps=args.timesteps,
        neuron=args.neuron,
        norm=None if args.norm == "none" else args.norm,
        neuron_kwargs=_neuron_kwargs(args),
        dropout=args.dropout,
        name="snn",
    )
    steps = args.epochs * int(np.ceil(len(x_train) / args.batch_size))
    _compile(model, args.learning_rate, steps)
    csv_path = os.path.join(args.out, "history.csv")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(args.out, "checkpoint.keras")
        ),
        keras.callbacks.CSVLogger(csv_path, append=True),
    ]
    start = time.perf_counter()
    history = model.fit(
        _training_data(x_train, y_train, args),
        epochs=args.epochs,
        shuffle=False,  # the dataset is already shuffled
        validation_data=(x_test, y_test),
        callbacks=callbacks,
        verbose=args.verbose,
    )
    train_seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    model_path = os.path.join(args.out, "model.keras")
    _atomic_save(model, model_path)
    full_history = _read_csv_history(csv_path) or history.history
    _atomic_json(full_history, os.path.join(args.out, "history.json"))

    sample = x_test[: min(len(x_test), 256)]
    rates = analysis.firing_rates(model, sample)
    trains = analysis.spike_trains(model, sample[:1])
    plots = os.path.join(args.out, "plots")
    plotting.plot_history(full_history, os.path.join(plots, "curves.png"))
    plotting.plot_firing_rates(rates, os.path.join(plots, "firing_rates.png"))
    plotting.plot_raster(
        {name: spikes[0] for name, spikes in trains.items()},
        os.path.join(plots, "raster.png"),
    )
    metrics = {
        "dataset": args.dataset,
        "model": args.model,
        "timesteps": args.timesteps,
        "epochs": args.epochs,
        "test_accuracy": float(accuracy),
        "train_seconds_this_run": round(train_seconds, 1),
        "firing_rates": rates,
    }
    _atomic_json(metrics, os.path.join(args.out, "metrics.json"))
    print(
        f"{args.dataset} {args.model} T={args.timesteps}: test accuracy "
        f"{accuracy:.4f}; training {train_seconds:.1f} s; wrote {model_path}"
    )
    return metrics


def _training_data(x, y, args):
    """Shuffled, batched and optionally augmented training batches."""
    import tensorflow as tf

    ops = AUGMENTATIONS[args.augment]
    height, width = x.shape[1:3]

    def augment(image, label):
        if "flip" in ops:
            image = tf.image.random_flip_left_right(image)
        if "shift" in ops:
            pad = SHIFT_PIXELS
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.random_crop(image, (height, width, x.shape[3]))
        return image, label

    data = tf.data.Dataset.from_tensor_slices((x, y))
    data = data.shuffle(len(x), seed=args.seed, reshuffle_each_iteration=True)
    if ops:
        data = data.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)


def _neuron_kwargs(args):
    kwargs = {"threshold": args.threshold, "surrogate": args.surrogate}
    if args.neuron == "lif":
        kwargs["decay"] = args.decay
    return kwargs


def _read_csv_history(path):
    import csv

    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {
        key: [float(row[key]) for row in rows]
        for key in rows[0]
        if key != "epoch"
    }


def evaluate(args):
    """`keras-snn evaluate`: returns `{timesteps: accuracy}`."""
    import keras

    import keras_snn  # noqa: F401  (registers the layers for loading)
    from keras_snn import datasets
    from keras_snn import models

    if not os.path.exists(args.model):
        raise SystemExit(f"No model file at {args.model!r}.")
    model = keras.models.load_model(args.model, compile=False)
    _, (x_test, y_test) = datasets.load_arrays(
        args.dataset, data_dir=args.data_dir
    )
    encoders = [layer for layer in model.layers if hasattr(layer, "timesteps")]
    own = encoders[0].timesteps if encoders else None
    results = {}
    print(f"{'T':>4}  accuracy")
    for timesteps in args.timesteps or [own]:
        copy = (
            model
            if timesteps == own
            else models.with_timesteps(model, timesteps)
        )
        _compile(copy, 1e-3, 1)
        _, accuracy = copy.evaluate(
            x_test, y_test, batch_size=args.batch_size, verbose=0
        )
        results[timesteps] = float(accuracy)
        print(f"{timesteps:>4}  {accuracy:.4f}")
    if args.json:
        _atomic_json({str(k): v for k, v in results.items()}, args.json)
    return results


def main(argv=None):
    """Entry point of the `keras-snn` console script."""
    args = _build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"keras-snn {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
