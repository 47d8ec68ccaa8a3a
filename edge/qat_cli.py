"""`keras-snn qat`: quantization-aware fine-tuning on the command line.

```
keras-snn qat runs/fmnist/model.keras --dataset fashion_mnist \\
    --epochs 2 --learning-rate 1e-4 --out runs/fmnist/qat.keras
keras-snn export runs/fmnist/qat.keras --out build/fmnist \\
    --targets tflite-int16x8,c --calibration fashion_mnist
```

The command loads a trained float keras_snn model, quantizes it as
`edge.export` does (`edge.qat.quantize_model` on `--calibration-samples`
training inputs), prints the test accuracy of the float model, of the
post-training integer model (`edge.integer.run_integer` on the float
model's quantized graph) and of the QAT model before fine-tuning (the
same integers, so the same accuracy), fine-tunes the QAT model with `fit`
(Adam, `SparseCategoricalCrossentropy(from_logits=True)`), prints its
test accuracy after, and saves it atomically to `--out`. `keras-snn
export` deploys that file with its own scales.

Issue 18 names this `keras-snn train --qat int8|loihi`; it is a command of
its own because `keras_snn` (which owns `train`) never imports `edge`,
which owns the quantizer. Two profiles: `int8` (int8 weights per output
channel, `--state-bits` currents and potentials, Q15 decays: what the
integer targets run, e.g. TFLite 16x8, C) and `loihi` (the chip layers on
Loihi's fixed point: 8-bit even weight mantissas, 24-bit states, Lava's
decays and strict threshold; what the `loihi` target's NetX file runs).
For `loihi` the post-training figure is the Loihi reference
(`edge.targets.loihi.run_loihi`) of the float model, and `--state-bits`
does not apply.

The command is registered with the `keras-snn` console script through the
entry point group `keras_snn.commands` (see `setup.cfg`). Bad input (an
option out of range, a missing or foreign model file, data that does not
fit the model, an `--out` that cannot be written) prints one line and
exits with status 2.
"""

import errno
import os

import numpy as np

# Neither imports TensorFlow (`keras-snn --help` loads this module).
from edge.cli import DEFAULT_CALIBRATION_SAMPLES
from edge.cli import _load
from edge.cli import calibration_subset
from keras_snn.cli import COUNT
from keras_snn.cli import POSITIVE
from keras_snn.cli import SEED
from keras_snn.cli import _option

__all__ = ["qat_command", "register"]

PROFILES = ("int8", "loihi")
STATE_BITS = _option(
    "an integer in [8, 32]", int, lambda value: 8 <= value <= 32
)


def register(commands):
    """Adds the `qat` subcommand to `keras-snn`'s subparsers."""
    parser = commands.add_parser(
        "qat",
        help="fine-tune a trained model against the deployed integer "
        "arithmetic (quantization-aware training)",
        description=(
            "Quantize a trained float model as `keras-snn export` does, "
            "fine-tune it with the integer arithmetic of the deployed "
            "model in its forward pass, and print the test accuracy of "
            "the float, post-training integer and QAT models. Issue 18's "
            "`keras-snn train --qat` lives here: train belongs to "
            "keras_snn, which never imports edge."
        ),
    )
    parser.add_argument("model", help="path of a trained float .keras file")
    parser.add_argument(
        "--dataset",
        required=True,
        help="data set name (its training split fine-tunes and "
        "calibrates) or a .npz file with arrays x and y",
    )
    parser.add_argument(
        "--eval",
        default=None,
        help="data set name (its test split) or a .npz file with x and y "
        "(default: the --dataset data set's test split; required when "
        "--dataset is a file)",
    )
    parser.add_argument("--out", required=True, help="the QAT .keras file")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file",
    )
    parser.add_argument(
        "--epochs", type=COUNT, default=1, help="integer >= 1 (default 1)"
    )
    parser.add_argument(
        "--learning-rate",
        type=POSITIVE,
        default=1e-4,
        help="Adam's learning rate, > 0 (default 1e-4)",
    )
    parser.add_argument(
        "--batch-size", type=COUNT, default=64, help="integer >= 1 (default 64)"
    )
    parser.add_argument(
        "--state-bits",
        type=STATE_BITS,
        default=16,
        help="bits of currents and membrane states, 8 to 32 (default 16)",
    )
    parser.add_argument(
        "--profile",
        default="int8",
        choices=PROFILES,
        help="int8: int8 weights, --state-bits states (the integer "
        "targets); loihi: Loihi's fixed point, the NetX file run by Lava "
        "(default int8)",
    )
    parser.add_argument(
        "--calibration-samples",
        type=COUNT,
        default=DEFAULT_CALIBRATION_SAMPLES,
        help="training inputs that choose the scales (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=SEED, default=0, help="integer >= 0 (default 0)"
    )
    parser.add_argument("--data-dir", default=None, help="local data files")
    parser.add_argument(
        "--verbose",
        type=int,
        default=2,
        choices=[0, 1, 2],
        help="Keras progress: 0 silent, 1 bar, 2 one line per epoch "
        "(default 2)",
    )
    parser.set_defaults(handler=qat_command, imports_tensorflow=True)


def _is_file(source):
    return source.endswith((".npy", ".npz")) or os.path.sep in source


def _check_source(source, option):
    """The `DatasetInfo` of a data set name (`None` for a file)."""
    from keras_snn import datasets

    if _is_file(source):
        return None
    if source not in datasets.DATASETS:
        raise ValueError(
            f"Argument `{option}` must be a data set name, one of "
            f"{sorted(datasets.DATASETS)}, or a .npz file. Received: "
            f"{source!r}"
        )
    return datasets.info(source)


def _check_out(path, overwrite):
    """Raises now if `--out` could not be written after the fine-tuning."""
    from keras_snn import fileio

    if os.path.isdir(path):
        raise fileio.OutputError(
            errno.EISDIR,
            f"Argument `--out` {path!r} is a folder; give a file name.",
        )
    if not path.endswith(".keras"):
        raise ValueError(
            f"Argument `--out` must name a .keras file. Received: {path!r}"
        )
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            f"Argument `--out` {path!r} exists; pass --overwrite to replace it."
        )
    # The folder is made when the model is written; here its nearest
    # existing ancestor must be a folder this process can write in.
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise fileio.OutputError(
            errno.ENOTDIR,
            f"Cannot write {path!r}: {folder!r} is a file, not a folder.",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fileio.OutputError(
            errno.EACCES,
            f"Cannot write {path!r} (folder {folder!r}): permission denied.",
        )


def _labelled(source, split, option, data_dir, shape):
    """`(x, y)` of `source`, checked against the model's input `shape`."""
    x, y = _load(source, split, option.lstrip("-"), data_dir)
    if y is None:
        raise ValueError(
            f"Argument `{option}` must give labels: a data set name or a "
            f".npz file with arrays x and y. Received: {source!r} (no y)"
        )
    if tuple(x.shape[1:]) != shape or len(x) != len(y) or not len(x):
        raise ValueError(
            f"Argument `{option}` {source!r} has inputs of shape "
            f"{tuple(x.shape)} and {len(y)} labels; the model reads inputs "
            f"of shape (N, {', '.join(map(str, shape))})."
        )
    return x, np.asarray(y)


def _keras_accuracy(model, x, y, batch_size):
    from edge import report

    return report.accuracy(model.predict(x, batch_size, verbose=0), y)


def qat_command(args):
    """Runs `keras-snn qat`; returns the test accuracies (a dict).

    Raises:
        ValueError: an option is out of range, the model file is not a
            float keras_snn model that `edge.export` accepts (for
            `--profile loihi`: that the `loihi` target accepts), or the
            data do not fit it.
        OSError: the model or a data file is missing, or `--out` cannot
            be written.
    """
    import keras

    from edge import fuse
    from edge import integer
    from edge import ir
    from edge import qat
    from edge import quantize
    from edge import report
    from keras_snn import fileio
    from keras_snn import saving

    _check_out(args.out, args.overwrite)
    if args.eval is None and _is_file(args.dataset):
        raise ValueError(
            "Argument `--eval` is required when `--dataset` is a file "
            f"({args.dataset!r}): the test accuracies need held-out data."
        )
    infos = {"--dataset": _check_source(args.dataset, "--dataset")}
    if args.eval is not None:
        infos["--eval"] = _check_source(args.eval, "--eval")
    saving.check_archive(args.model)  # missing, empty, corrupt: one line
    model = saving.load_model(args.model)
    if (
        qat.find_integer_graph(model) is not None
        or qat.find_loihi_graph(model) is not None
    ):
        raise ValueError(
            f"The model {args.model!r} is already a QAT model; give the "
            "trained float model."
        )
    loihi = args.profile == "loihi"
    try:
        graph = fuse.fuse(ir.extract(model))
        if loihi:  # refuses what Loihi cannot run before the data load
            from edge.targets.loihi import quantize_loihi
            from edge.targets.loihi import run_loihi

            lgraph = quantize_loihi(graph)
    except ValueError as error:
        raise ValueError(f"The model {args.model!r}: {error}") from None
    shape = tuple(model.input_shape[1:])
    for option, info in infos.items():
        if info is not None and tuple(info.input_shape) != shape:
            raise ValueError(
                f"Argument `{option}` {info.name!r} has images of shape "
                f"{tuple(info.input_shape)}; the model {args.model!r} reads "
                f"inputs of shape {shape}."
            )
    x_train, y_train = _labelled(
        args.dataset, "train", "--dataset", args.data_dir, shape
    )
    x_test, y_test = _labelled(
        args.eval or args.dataset, "test", "--eval", args.data_dir, shape
    )
    keras.utils.set_random_seed(args.seed)
    x_cal = calibration_subset(x_train, args.calibration_samples)
    if not loihi:
        qgraph = quantize.quantize(
            graph, quantize.check_numbers(x_cal), args.state_bits
        )
    qat_model = qat.quantize_model(
        model, x_cal, args.state_bits, profile=args.profile
    )
    # Compiled before its first predict, which fit then keeps (a compile
    # would trace predict again, and TensorFlow warn of retracing).
    qat_model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    size = args.batch_size
    print(
        f"test accuracy on {len(x_test)} samples ({args.profile}"
        + ("" if loihi else f", state bits {args.state_bits}")
        + "):",
        flush=True,
    )
    accuracies = {}

    def show(name, value):
        accuracies[name] = value
        print(f"  {name:<24} {value:.4f}", flush=True)

    show("float", _keras_accuracy(model, x_test, y_test, size))
    if loihi:
        scores, _ = run_loihi(lgraph, x_test)
    else:
        scores, _ = integer.run_integer(qgraph, x_test)
    show("post-training integer", report.accuracy(scores, y_test))
    show(
        "qat before fine-tuning",
        _keras_accuracy(qat_model, x_test, y_test, size),
    )
    qat_model.fit(
        x_train,
        y_train,
        batch_size=size,
        epochs=args.epochs,
        verbose=args.verbose,
    )
    epochs = f"{args.epochs} epoch{'s' * (args.epochs > 1)}"
    show(
        f"qat after {epochs}",
        _keras_accuracy(qat_model, x_test, y_test, size),
    )
    fileio.ensure_folder(os.path.dirname(os.path.abspath(args.out)))
    fileio.save_model(qat_model, args.out)
    print(f"wrote {args.out}")
    return accuracies
