"""`keras-snn export`: the exporter on the command line.

```
keras-snn export runs/digits/model.keras --out build/digits \\
    --targets tflite,onnx --calibration digits
```

The subcommand is registered with the `keras-snn` console script through
the entry point group `keras_snn.commands` (see `setup.cfg`).
`--calibration` names a data set of `keras_snn.datasets` (its training
split is used; `--eval` defaults to the same data set's test split) or a
`.npy` file of inputs or a `.npz` file with arrays `x` (and `y`).

`--out` must be a new or empty folder, or a previous export, replaced whole
only with `--overwrite`. Progress goes to stderr (one line per step, target
and consumer; `--quiet` silences it), the table to stdout. The export fails
(exit status 2, nothing written) when an artefact agrees with the Keras
model on fewer than `--min-agreement` of the evaluation samples or loses
more than `--max-accuracy-drop` accuracy, unless `--allow-accuracy-drop`.
"""

import os

import numpy as np

# Neither imports TensorFlow (`keras-snn --help` loads this module).
from edge import targets as registry
from edge.gate import DEFAULT_MAX_ACCURACY_DROP
from edge.gate import DEFAULT_MIN_AGREEMENT

__all__ = ["export_command", "register"]

DEFAULT_CALIBRATION_SAMPLES = 500


def register(commands):
    """Adds the `export` subcommand to `keras-snn`'s subparsers."""
    parser = commands.add_parser(
        "export",
        help="export a trained model (TFLite, ONNX, C, ...) and check each "
        "file in its consumer",
        description=(
            "Fold batch norms, quantize, convert to each target, run every "
            "artefact in its consumer, and print a table: file size, ops, "
            "accuracy on held-out data and agreement with the Keras model."
        ),
    )
    parser.add_argument("model", help="path of a trained .keras file")
    parser.add_argument("--out", required=True, help="output folder")
    targets = registry.names()  # the entry point group edge.targets
    parser.add_argument(
        "--targets",
        default=",".join(targets),
        help=f"comma-separated, of {', '.join(targets)} (default: all)",
    )
    parser.add_argument(
        "--calibration",
        required=True,
        help="data set name (its training split) or a .npy/.npz file",
    )
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=DEFAULT_CALIBRATION_SAMPLES,
        help="calibration inputs used (default: %(default)s)",
    )
    parser.add_argument(
        "--eval",
        default=None,
        help="data set name (its test split) or a .npz file with x and y "
        "(default: the calibration data set's test split)",
    )
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="evaluate on the first N held-out samples (default: all)",
    )
    parser.add_argument(
        "--timesteps",
        type=int,
        default=None,
        help="time steps T, >= 1 (default: the model's)",
    )
    parser.add_argument(
        "--state-bits",
        type=int,
        default=16,
        help="bits of currents and membrane states, 8 to 32 "
        "(default: %(default)s)",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous export in --out (the whole folder)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help="fail when an artefact predicts the Keras model's class on "
        "fewer than this fraction of the evaluation samples "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=DEFAULT_MAX_ACCURACY_DROP,
        help="fail when an artefact's accuracy is lower than the Keras "
        "model's by more than this (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-accuracy-drop",
        action="store_true",
        help="write the artefacts even when they fail the accuracy gate",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print no progress lines (only the table)",
    )
    parser.set_defaults(handler=export_command, imports_tensorflow=True)


def _load_file(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Argument `--{what}` must be a data set name or an existing "
            f".npy/.npz file. Received: {path!r} (no such file)"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(
            f"Could not read {path!r} given as `--{what}`: {error}"
        ) from error
    if isinstance(data, np.ndarray):
        return data, None
    if "x" not in data.files:
        raise ValueError(
            f"The .npz file {path!r} given as `--{what}` must hold an array "
            f"named 'x' (and optionally 'y'). Found: {data.files}"
        )
    return data["x"], data["y"] if "y" in data.files else None


def _load(source, split, what, data_dir):
    if source.endswith((".npy", ".npz")) or os.path.sep in source:
        return _load_file(source, what)
    from keras_snn import datasets

    train, test = datasets.load_arrays(source, data_dir=data_dir)
    return train if split == "train" else test


def export_command(args):
    """Runs `keras-snn export`; returns the `ExportReport`.

    Raises:
        ValueError: an option is out of range, `--out` cannot be written
            or holds other files, the data or the model cannot be read, or
            the export failed (`edge.ExportError`; for the accuracy gate
            the table is printed first).
    """
    import edge
    from edge import exporter

    for name in ("calibration_samples", "eval_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(
                f"Argument `--{name.replace('_', '-')}` must be >= 1. "
                f"Received: {value}"
            )
    try:  # the cheap checks, before the data are read
        exporter.check_options(
            args.timesteps,
            args.state_bits,
            args.min_agreement,
            args.max_accuracy_drop,
        )
        exporter.load_targets(args.targets)  # consumers installed?
        exporter.check_output_folder(args.out, args.overwrite)
    except edge.ExportError as error:
        raise edge.ExportError(_as_option(str(error))) from None
    from keras_snn import saving

    saving.check_archive(args.model)  # missing, empty, corrupt: one line
    x_cal, _ = _load(args.calibration, "train", "calibration", args.data_dir)
    x_cal = calibration_subset(x_cal, args.calibration_samples)
    eval_source = args.eval or (
        None
        if args.calibration.endswith((".npy", ".npz"))
        else args.calibration
    )
    eval_data = None
    if eval_source is not None:
        x_eval, y_eval = _load(eval_source, "test", "eval", args.data_dir)
        if args.eval_samples is not None:
            x_eval = x_eval[: args.eval_samples]
            y_eval = None if y_eval is None else y_eval[: args.eval_samples]
        eval_data = x_eval if y_eval is None else (x_eval, y_eval)
    try:
        report = edge.export(
            args.model,
            args.out,
            targets=args.targets,
            calibration_data=x_cal,
            eval_data=eval_data,
            timesteps=args.timesteps,
            state_bits=args.state_bits,
            overwrite=args.overwrite,
            min_agreement=args.min_agreement,
            max_accuracy_drop=args.max_accuracy_drop,
            allow_accuracy_drop=args.allow_accuracy_drop,
            verbose=0 if args.quiet else 1,
        )
    except edge.AccuracyDropError as error:
        if error.report is not None:
            print(error.report.table())
        raise
    except edge.CalibrationError as error:
        raise edge.CalibrationError(_as_option(str(error))) from None
    print(report.table())
    return report


_OPTIONS = {
    "timesteps": "--timesteps",
    "state_bits": "--state-bits",
    "min_agreement": "--min-agreement",
    "max_accuracy_drop": "--max-accuracy-drop",
    "targets": "--targets",
    "out_dir": "--out",
    "calibration_data": "--calibration",
    "eval_data": "--eval",
}


def calibration_subset(x, count):
    """`count` of the inputs `x` (all if fewer), drawn with seed 0 and
    kept in order: the calibration inputs of `export` and `qat`."""
    if len(x) <= count:
        return x
    pick = np.random.default_rng(0).choice(len(x), count, replace=False)
    return x[np.sort(pick)]


def _as_option(message):
    """`message` with the Python argument names as command-line options."""
    message = message.replace("overwrite=True (`--overwrite`)", "--overwrite")
    for name, option in _OPTIONS.items():
        message = message.replace(f"`{name}`", f"`{option}`")
        message = message.replace(f"{name}=", f"{option}=")
    return message
