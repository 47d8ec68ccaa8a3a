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

`train` checks every option, the network string (against the data set's
input shape) and the output folder before it loads data or writes a file.
The folder's `run.json` records the run's arguments. Running the same
command again after an interruption (Ctrl-C, a killed process, a full disk)
resumes from the last finished epoch (`backup/`); with other arguments it
is refused, naming them. A finished run is never retrained in place unless
`--overwrite` is given. Every file is written atomically
(`keras_snn.fileio`), and an epoch's history row is on disk before the
backup marks that epoch done, so `history.csv` has each epoch once.

A user error (bad option, network string, file or folder) prints one line
and exits with status 2; Ctrl-C prints one line and exits with 130.

The command line is quick and quiet: the arguments are parsed before Keras
or TensorFlow is imported (`keras-snn --help` imports neither), and a
command that uses TensorFlow imports it with TensorFlow's C++ logging off
(`TF_CPP_MIN_LOG_LEVEL=3`, unless set by the user) and without the lines
its native code prints while loading (absl's "All log messages before
absl::InitializeLog()", oneDNN's notice). `keras-snn --verbose COMMAND`
keeps them all. A subcommand registered through `keras_snn.commands`
asks for this by setting the parser default `imports_tensorflow=True`.
"""

import argparse
import errno
import importlib.util
import math
import os
import sys
import time

from keras_snn import native_logs
from keras_snn import runs
from keras_snn.runs import BACKUP
from keras_snn.runs import MANIFEST  # noqa: F401 (re-exported)
from keras_snn.runs import PLOT_FILES
from keras_snn.runs import PLOTS
from keras_snn.specs import LEARNABLE_SHAPES

DEFAULT_MODEL = "32C3-AP2-64C3-AP2-256FC-Decoding"
# `--augment`: "none" or a "+"-joined set of these, in any order.
AUGMENTATIONS = ("flip", "shift", "erase")
SHIFT_PIXELS = 2
ERASE_PROBABILITY = 0.5  # Zhong et al. 2020's p
PLUGIN_GROUP = "keras_snn.commands"
# TensorFlow without its native log lines (re-exported: plugins use them).
NATIVE_LOG_LINE = native_logs.NATIVE_LOG_LINE
import_tensorflow = native_logs.import_tensorflow
native_logs_hidden = native_logs.native_logs_hidden
EXIT_USAGE = 2  # bad input, as argparse
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

# keras_snn.training.STRATEGIES, written here so that parsing imports no
# TensorFlow (tests/test_distribute.py checks the two agree).
STRATEGIES = ("auto", "one", "mirrored", "multiworker")

SEED_LIMIT = 2**32  # NumPy's seeds are below 2**32


def _option(accepted, convert, predicate):
    """An argparse `type` that accepts `convert(text)` if `predicate` holds.

    The error names what is accepted and the text received; argparse adds
    the option's name ("argument --batch-size: must be an integer >= 1.
    Received: '0'") and exits with status 2.
    """

    def parse(text):
        try:
            value = convert(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not predicate(value):
            raise argparse.ArgumentTypeError(
                f"must be {accepted}. Received: {text!r}"
            )
        return value

    parse.__name__ = accepted  # argparse shows it for some errors
    return parse


def _augmentations(text):
    """`--augment`'s type: "none", or the "+"-joined augmentations in
    `AUGMENTATIONS`' order (so that a resumed run compares them)."""
    if text == "none":
        return text
    names = text.split("+")
    if set(names) <= set(AUGMENTATIONS) and len(set(names)) == len(names):
        return "+".join(name for name in AUGMENTATIONS if name in names)
    raise argparse.ArgumentTypeError(
        f"must be none or {', '.join(AUGMENTATIONS)} joined by '+' (each "
        f"at most once), e.g. flip+shift. Received: {text!r}"
    )


COUNT = _option("an integer >= 1", int, lambda v: v >= 1)
POSITIVE = _option(
    "a finite number > 0", float, lambda v: math.isfinite(v) and v > 0
)
DECAY = _option("a number in [0, 1]", float, lambda v: 0.0 <= v <= 1.0)
RATE = _option("a number in [0, 1)", float, lambda v: 0.0 <= v < 1.0)
SEED = _option(
    f"an integer in [0, {SEED_LIMIT - 1}]",
    int,
    lambda v: 0 <= v < SEED_LIMIT,
)


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-snn",
        description="Train and evaluate spiking neural networks with Keras.",
    )
    parser.add_argument(
        "--verbose",
        dest="tf_logs",
        action="store_true",
        help="keep TensorFlow's own log lines (hidden by default); put it "
        "before the command",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train a network given in the papers' notation",
        description=(
            "Train a spiking network on a dataset and write the model, its "
            "history (JSON and CSV), checkpoints and PNG plots to --out. "
            "Running the same command again resumes an interrupted run; a "
            "finished run is kept unless --overwrite is given."
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
    train.add_argument(
        "--timesteps", type=COUNT, default=4, help="integer >= 1 (default 4)"
    )
    train.add_argument(
        "--epochs", type=COUNT, default=20, help="integer >= 1 (default 20)"
    )
    train.add_argument(
        "--batch-size",
        type=COUNT,
        default=64,
        help="examples per replica and step, integer >= 1 (default 64); the "
        "global batch is this times the number of replicas",
    )
    train.add_argument(
        "--learning-rate",
        type=POSITIVE,
        default=1e-3,
        help="peak of the cosine schedule, > 0 (default 1e-3)",
    )
    train.add_argument(
        "--norm",
        default="bn",
        choices=["none", "bn", "tdbn", "neunorm"],
        help="normalisation of each layer (default: bn on input currents)",
    )
    train.add_argument("--neuron", default="lif", choices=["lif", "if"])
    train.add_argument(
        "--threshold",
        type=POSITIVE,
        default=1.0,
        help="firing threshold, > 0 (default 1)",
    )
    train.add_argument(
        "--decay",
        type=DECAY,
        default=None,
        help="membrane decay of LIF neurons, in [0, 1] (default 0.5); "
        "not accepted with --neuron if",
    )
    for parameter, origin in (
        ("decay", " (PLIF, Fang et al. 2021)"),
        ("threshold", ""),
    ):
        train.add_argument(
            f"--trainable-{parameter}",
            default="none",
            choices=["none", *LEARNABLE_SHAPES],
            help=f"train the neurons' {parameter}: one value per layer, per "
            f"channel or per neuron{origin}; default none (fixed)",
        )
    train.add_argument("--surrogate", default="rectangular")
    train.add_argument(
        "--dropout",
        type=RATE,
        default=0.0,
        help="dropout rate on the spikes entering the head, in [0, 1) "
        "(default 0)",
    )
    train.add_argument(
        "--augment",
        default="none",
        type=_augmentations,
        help="random training augmentation: none (default) or any of flip "
        "(horizontal), shift (up to 2 pixels) and erase (random erasing, "
        "Zhong et al. 2020, with probability 0.5) joined by '+', e.g. "
        "flip+shift+erase",
    )
    train.add_argument(
        "--seed", type=SEED, default=0, help="integer >= 0 (default 0)"
    )
    train.add_argument("--data-dir", default=None, help="local dataset files")
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the run already in --out (finished or not) and train "
        "afresh",
    )
    train.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="Keras progress: 0 silent, 1 bar, 2 one line per epoch",
    )
    train.add_argument(
        "--strategy",
        default="auto",
        choices=STRATEGIES,
        help="tf.distribute strategy: auto (mirrored when more than one GPU "
        "is visible, else one), one device, mirrored (all GPUs of this "
        "machine), multiworker (the workers named by TF_CONFIG; run the "
        "same command on each)",
    )
    train.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="XLA compilation of the training step (default on; turned off "
        "with a one-line note where the strategy's devices cannot use it)",
    )
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="print the devices, replicas and global batch, then stop "
        "(nothing is loaded or written)",
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
        type=COUNT,
        nargs="+",
        default=None,
        help="numbers of steps to evaluate, each >= 1 (default: the "
        "model's own)",
    )
    evaluate.add_argument(
        "--batch-size",
        type=COUNT,
        default=256,
        help="integer >= 1 (default 256)",
    )
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--json", default=None, help="also write results")
    train.set_defaults(handler=train_command, imports_tensorflow=True)
    evaluate.set_defaults(handler=evaluate_command, imports_tensorflow=True)
    for register in _plugin_commands():
        register(commands)
    return parser


def _plugin_commands():
    """Functions `register(subparsers)` of other packages' subcommands.

    A package adds a subcommand by naming such a function under the entry
    point group `keras_snn.commands` (the `edge` package adds `export`);
    the function adds its parser and sets `handler` (and
    `imports_tensorflow=True` if the handler uses TensorFlow). keras_snn
    itself imports nothing of them. Every `keras-snn` command, `--help`
    included, calls all these functions: they must not import TensorFlow
    or Keras (the handler does).
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


def _compile(model, learning_rate, steps, jit_compile=True):
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
        jit_compile=jit_compile,
    )


def train(args):
    """`keras-snn train`: returns the metrics dict it writes.

    Everything given is checked before a file is written or data is
    loaded: the options, the network string against the data set's input
    shape, and the output folder (a finished run there is kept unless
    `--overwrite`; an interrupted one resumes if it was started with the
    same arguments).

    Raises:
        ValueError: bad options, a bad network string, or a run in --out
            that this command must not continue or replace.
        OSError: the output folder cannot be written (`OutputError`), or
            the data set is missing (`DatasetNotFoundError`).
    """
    import keras
    import numpy as np

    from keras_snn import analysis
    from keras_snn import callbacks as snn_callbacks
    from keras_snn import datasets
    from keras_snn import fileio
    from keras_snn import models
    from keras_snn import plotting
    from keras_snn import training

    # A multi-worker strategy must exist before TensorFlow computes.
    strategy, info, jit = runs.strategy_for(args)
    chief = training.is_chief(strategy)
    meta = _dataset_info(args.dataset)
    if args.dry_run:
        runs.print_dry_run(info, jit)
        return info
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        model = models.from_spec(
            args.model,
            input_shape=meta.input_shape,
            num_classes=meta.num_classes,
            timesteps=args.timesteps,
            neuron=args.neuron,
            norm=None if args.norm == "none" else args.norm,
            neuron_kwargs=_neuron_kwargs(args),
            dropout=args.dropout,
            name="snn",
            synchronized=info["replicas"] > 1,
        )
    if chief:
        runs.prepare_run_folder(args)
    (x_train, y_train), (x_test, y_test) = datasets.load_arrays(
        args.dataset, data_dir=args.data_dir
    )
    if tuple(x_train.shape[1:]) != tuple(meta.input_shape):
        raise ValueError(
            f"--dataset {args.dataset}: the data has images of shape "
            f"{tuple(x_train.shape[1:])}, expected {tuple(meta.input_shape)}."
        )
    for split, x in (("training", x_train), ("test", x_test)):
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise ValueError(
                f"--dataset {args.dataset}: {int(bad.sum())} {split} images "
                f"hold NaN or infinite values (the first at index "
                f"{int(np.argmax(bad))}); spiking layers would silently "
                "treat them as no input."
            )
    batches = len(x_train) / info["global_batch_size"]
    per_epoch = int(batches if info["workers"] > 1 else np.ceil(batches))
    if per_epoch < 1:
        raise ValueError(
            f"--batch-size {args.batch_size}: the global batch of "
            f"{info['global_batch_size']} is larger than the "
            f"{len(x_train)} training images."
        )
    with strategy.scope():
        _compile(model, args.learning_rate, args.epochs * per_epoch, jit)
    csv_path = os.path.join(args.out, "history.csv")
    # Keras calls callbacks in list order: an epoch's history row and
    # checkpoint are on disk before the backup marks the epoch done.
    callbacks = [
        snn_callbacks.StopOnNonFiniteLoss(),
        # XLA drops the layers' own first-batch silence check.
        analysis.SilentLayerWarning(x_train[: args.batch_size]),
        snn_callbacks.EpochSeconds(),
        snn_callbacks.HistoryCSV(csv_path),
        snn_callbacks.AtomicCheckpoint(
            os.path.join(args.out, "checkpoint.keras")
        ),
        snn_callbacks.AtomicBackupAndRestore(os.path.join(args.out, BACKUP)),
    ]
    ops = args.augment.split("+")
    start = time.perf_counter()
    history = training.fit(
        model,
        x_train,
        y_train,
        per_replica_batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        augment=training.augmentation(
            flip="flip" in ops,
            shift=SHIFT_PIXELS if "shift" in ops else 0,
            erase=ERASE_PROBABILITY if "erase" in ops else 0.0,
        ),
        validation_data=(x_test, y_test),
        callbacks=callbacks,
        verbose=args.verbose,
        jit_compile=jit,
    )
    train_seconds = time.perf_counter() - start
    accuracy = runs.test_accuracy(model, x_test, y_test)
    if not chief:
        print(
            f"worker {info['task']}: test accuracy {accuracy:.4f}; training "
            f"{train_seconds:.1f} s; the chief writes the run's files"
        )
        return {"test_accuracy": accuracy, "task": info["task"]}
    model_path = os.path.join(args.out, "model.keras")
    fileio.save_model(model, model_path)
    full_history = snn_callbacks.read_history_csv(csv_path)
    full_history.pop("epoch", None)
    full_history = full_history or history.history
    fileio.write_json(
        _json_safe(full_history), os.path.join(args.out, "history.json")
    )

    sample = x_test[: min(len(x_test), 256)]
    rates = analysis.firing_rates(model, sample)
    trains = analysis.spike_trains(model, sample[:1])
    plots = os.path.join(args.out, PLOTS)
    curves, rate_plot, raster = (os.path.join(plots, n) for n in PLOT_FILES)
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "keras-snn train: no plots (matplotlib is not installed: pip "
            "install 'keras-snn[plots]'); the model, history and metrics "
            "are written.",
            file=sys.stderr,
        )
    else:
        plotting.plot_history(full_history, curves)
        plotting.plot_firing_rates(rates, rate_plot)
        plotting.plot_raster(
            {name: spikes[0] for name, spikes in trains.items()}, raster
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
    fileio.write_json(
        _json_safe(metrics), os.path.join(args.out, "metrics.json")
    )
    print(
        f"{args.dataset} {args.model} T={args.timesteps}: test accuracy "
        f"{accuracy:.4f}; training {train_seconds:.1f} s; wrote {model_path}"
    )
    return metrics


def _dataset_info(name):
    """`datasets.info(name)`, with an error that names --dataset."""
    from keras_snn import datasets

    if name not in datasets.DATASETS:
        raise ValueError(
            f"--dataset must be one of {sorted(datasets.DATASETS)}. "
            f"Received: {name!r}"
        )
    return datasets.info(name)


def _json_safe(value):
    """`value` with NaN and infinities (not JSON) as `None` (null)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _neuron_kwargs(args):
    kwargs = {"threshold": args.threshold, "surrogate": args.surrogate}
    if args.neuron == "if" and args.decay is not None:
        raise ValueError(
            f"--decay {args.decay} has no effect with --neuron if (IF "
            "neurons do not leak). Leave out --decay, or use --neuron lif."
        )
    if args.decay is not None:
        kwargs["decay"] = args.decay
    if args.trainable_decay != "none":
        if args.neuron == "if":
            raise ValueError(
                f"--trainable-decay {args.trainable_decay} has no effect with "
                "--neuron if (IF neurons do not leak). Leave it out, or use "
                "--neuron lif."
            )
        kwargs["trainable_decay"] = args.trainable_decay
    if args.trainable_threshold != "none":
        kwargs["trainable_threshold"] = args.trainable_threshold
    return kwargs


def _check_output_file(path, option):
    """Raises `OutputError` now if `path` could not be written later."""
    from keras_snn import fileio

    folder = os.path.dirname(os.path.abspath(path))
    fileio.ensure_folder(folder)
    if os.path.isdir(path):
        raise fileio.OutputError(
            errno.EISDIR, f"{option} {path!r} is a folder; give a file name."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        denied = PermissionError(errno.EACCES, "permission denied")
        raise fileio.output_error(denied, path)


def evaluate(args):
    """`keras-snn evaluate`: returns `{timesteps: accuracy}`.

    Raises:
        ValueError: the model file is not a readable keras_snn model, or
            does not fit the data set.
        OSError: the model file is missing, the data set is missing, or
            --json cannot be written.
    """
    from keras_snn import datasets
    from keras_snn import fileio
    from keras_snn import models
    from keras_snn import saving

    if args.json:
        _check_output_file(args.json, "--json")
    meta = _dataset_info(args.dataset)
    model = saving.load_model(args.model, compile=False)
    expected = tuple(model.input_shape[1:])
    if expected[-3:] != tuple(meta.input_shape):
        raise ValueError(
            f"Model {args.model!r} reads inputs of shape {expected}, but "
            f"--dataset {args.dataset} has images of shape "
            f"{tuple(meta.input_shape)}."
        )
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
        fileio.write_json({str(k): v for k, v in results.items()}, args.json)
    return results


def main(argv=None):
    """Entry point of the `keras-snn` console script.

    Returns the exit status: 0, 2 for a user error (a bad option, network
    string, file or folder; one line on stderr, no traceback, as argparse
    does for a bad option) or 130 when interrupted (Ctrl-C).
    """
    args = _build_parser().parse_args(argv)
    try:
        if getattr(args, "imports_tensorflow", False):
            _import_package(verbose=args.tf_logs)
        args.handler(args)
    except KeyboardInterrupt:
        hint = (
            "; run the same command again to resume"
            if args.command == "train"
            else ""
        )
        print(f"keras-snn {args.command}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, ImportError) as err:
        print(
            f"keras-snn {args.command}: error: {_message(err)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return 0


def _import_package(verbose):
    """TensorFlow, then Keras and every keras_snn layer, logs hidden.

    Under the console script (`_keras_snn_cli`) `import keras_snn` has
    imported none of them yet; otherwise this finds them imported.
    """
    import keras_snn

    import_tensorflow(verbose=verbose)
    if verbose:
        keras_snn.import_all()
        return
    with native_logs_hidden():
        keras_snn.import_all()


def _message(error):
    """The text of `error`, without the "[Errno N]" of an OSError."""
    if isinstance(error, OSError) and error.strerror:
        if error.filename is not None:
            return f"{error.strerror}: {error.filename!r}"
        return error.strerror
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
