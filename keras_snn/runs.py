"""A run of `keras-snn train`: its folder, files, manifest, resumes and
devices.

`prepare_run_folder(args)` checks `--out` before training: a finished run
is kept unless `--overwrite`, an interrupted run resumes only with the
arguments it was started with (recorded in `run.json`), and `--overwrite`
removes the files of the previous run, and nothing else.
`strategy_for(args)` makes the run's `tf.distribute` strategy
(`--strategy`, `--jit`), `print_dry_run` reports it, and `test_accuracy`
measures the trained model the same way on every worker. Importing this
module imports no TensorFlow.
"""

import json
import os
import sys

__all__ = [
    "BACKUP",
    "MANIFEST",
    "PLOTS",
    "PLOT_FILES",
    "RUN_ARGUMENTS",
    "RUN_FILES",
    "prepare_run_folder",
    "print_dry_run",
    "strategy_for",
    "test_accuracy",
]

# The files `keras-snn train` writes into --out. MANIFEST records the
# arguments of the run, to tell a resume from a different run.
MANIFEST = "run.json"
BACKUP = "backup"
PLOTS = "plots"
PLOT_FILES = ("curves.png", "firing_rates.png", "raster.png")
RUN_FILES = (
    MANIFEST,
    "history.csv",
    "checkpoint.keras",
    "model.keras",
    "history.json",
    "metrics.json",
)
# The arguments that define a run (not where it reads or writes, nor how
# much it prints): a resume with any of them changed is refused.
RUN_ARGUMENTS = (
    "dataset",
    "model",
    "timesteps",
    "epochs",
    "batch_size",
    "learning_rate",
    "norm",
    "neuron",
    "threshold",
    "decay",
    "surrogate",
    "dropout",
    "augment",
    "seed",
    "trainable_decay",
    "trainable_threshold",
)
# Arguments added after runs were written: an older MANIFEST without them
# stored these values.
ADDED_ARGUMENTS = {"trainable_decay": "none", "trainable_threshold": "none"}


def _run_arguments(args):
    """The arguments that define the run in `args`, as stored in MANIFEST."""
    return {name: getattr(args, name) for name in RUN_ARGUMENTS}


def _flag(name):
    return "--" + name.replace("_", "-")


def prepare_run_folder(args):
    """Checks --out and what it holds; writes the run's MANIFEST.

    Raises:
        OutputError: --out is a file, below a file, or not writable.
        ValueError: --out holds a finished run (without --overwrite), or
            an interrupted run of other arguments.
    """
    from keras_snn import fileio

    out = args.out
    fileio.ensure_folder(out)
    for folder in (out, os.path.join(out, PLOTS), os.path.join(out, BACKUP)):
        fileio.remove_stale_temporaries(folder)
    manifest_path = os.path.join(out, MANIFEST)
    backup = os.path.join(out, BACKUP)
    if args.overwrite:
        _remove_run(out)
    elif os.path.isdir(backup):
        stored = _read_manifest(manifest_path)
        if stored is not None:
            _check_same_run(stored, _run_arguments(args), out, backup)
    else:
        finished = [
            name
            for name in ("model.keras", "metrics.json")
            if os.path.exists(os.path.join(out, name))
        ]
        if finished:
            raise ValueError(
                f"--out {out!r} already holds a finished run "
                f"({', '.join(finished)}). Running again would train from "
                "epoch 1 and replace it: add --overwrite to discard it and "
                "train afresh, or choose another --out."
            )
    fileio.write_json(
        {"command": "train", "arguments": _run_arguments(args)}, manifest_path
    )


def _read_manifest(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)["arguments"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"The run manifest {path!r} is unreadable ({error}). Add "
            "--overwrite to discard the run in that folder, or choose "
            "another --out."
        ) from error


def _check_same_run(stored, current, out, backup):
    differences = [
        f"{_flag(name)} {value!r} (now {current[name]!r})"
        for name in RUN_ARGUMENTS
        if (value := stored.get(name, ADDED_ARGUMENTS.get(name)))
        != current[name]
    ]
    if differences:
        raise ValueError(
            f"--out {out!r} holds an interrupted run with other arguments: "
            f"{'; '.join(differences)}. Its training state is in "
            f"{backup!r}. Run its own command to resume it, add --overwrite "
            "to discard it and train afresh, or choose another --out."
        )


def _remove_run(out):
    """Removes the files of a previous run from `out` (and nothing else)."""
    import shutil

    from keras_snn import fileio

    try:
        for name in RUN_FILES:
            path = os.path.join(out, name)
            if os.path.isfile(path):
                os.remove(path)
        for name in PLOT_FILES:
            path = os.path.join(out, PLOTS, name)
            if os.path.isfile(path):
                os.remove(path)
        if os.path.isdir(os.path.join(out, BACKUP)):
            shutil.rmtree(os.path.join(out, BACKUP))
    except OSError as error:
        raise fileio.output_error(error, out, "remove the old run in") from (
            error
        )


def strategy_for(args):
    """The run's strategy, and whether XLA is on (a note if turned off)."""
    from keras_snn import training

    strategy = training.get_strategy(args.strategy)
    info = training.describe(strategy, args.batch_size)
    jit = bool(args.jit)
    if jit and not info["jit"] and training.is_chief(strategy):
        print(
            f"keras-snn train: XLA is off: {info['strategy']} with "
            f"{info['replicas']} replicas on {', '.join(info['devices'])} "
            "cannot run one compiled step (--no-jit hides this note).",
            file=sys.stderr,
        )
    return strategy, info, jit and info["jit"]


def print_dry_run(info, jit):
    """Prints what `keras-snn train --dry-run` reports."""
    print(f"strategy: {info['strategy']}")
    print(f"devices of this worker: {', '.join(info['devices'])}")
    print(f"workers: {info['workers']} (this is task {info['task']})")
    print(f"replicas: {info['replicas']}")
    print(
        f"batch: {info['per_replica_batch_size']} per replica, "
        f"{info['global_batch_size']} global"
    )
    print(f"XLA: {'on' if jit else 'off'}")


def test_accuracy(model, x, y, batch_size=256):
    """Accuracy of `model` on `(x, y)`, the same on every worker.

    The model is called directly (not `evaluate`, which Keras 3 cannot run
    under a multi-worker strategy); the prediction is the largest output.
    """
    import numpy as np

    correct = 0
    for start in range(0, len(x), batch_size):
        outputs = np.asarray(model(x[start : start + batch_size]))
        correct += int(
            np.sum(outputs.argmax(-1) == y[start : start + batch_size])
        )
    return correct / len(x)
