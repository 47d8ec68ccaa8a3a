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
"""

import os

import numpy as np

__all__ = ["export_command", "register"]

DEFAULT_CALIBRATION_SAMPLES = 500
TARGETS = ("tflite", "onnx", "c", "loihi", "nir")  # = exporter.TARGETS


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
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated, of {', '.join(TARGETS)} (default: all)",
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
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--state-bits", type=int, default=16)
    parser.add_argument("--data-dir", default=None)
    parser.set_defaults(handler=export_command)


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
    """Runs `keras-snn export`; returns the `ExportReport`."""
    import edge

    for name in ("calibration_samples", "eval_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(
                f"Argument `--{name.replace('_', '-')}` must be >= 1. "
                f"Received: {value}"
            )
    x_cal, _ = _load(args.calibration, "train", "calibration", args.data_dir)
    if len(x_cal) > args.calibration_samples:
        rng = np.random.default_rng(0)
        pick = rng.choice(len(x_cal), args.calibration_samples, False)
        x_cal = x_cal[np.sort(pick)]
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
    report = edge.export(
        args.model,
        args.out,
        targets=args.targets,
        calibration_data=x_cal,
        eval_data=eval_data,
        timesteps=args.timesteps,
        state_bits=args.state_bits,
    )
    print(report.table())
    return report
