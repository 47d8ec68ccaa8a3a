"""The Fashion-MNIST recipe's report (issue #19): accuracy, time, int8.

`examples/fashion_mnist.sh OUT EPOCHS SEED` trains one seed of the recipe
with `keras-snn train`; this script reads the run folders it wrote and
measures what the issue asks for:

    test accuracy   the float model's accuracy on the whole test split, as
                    `keras-snn train` measured it (`metrics.json`)
    minutes         training time: the sum of the history's
                    `epoch_seconds` (each epoch's wall time, its
                    validation pass included; `keras_snn.callbacks.
                    EpochSeconds`)
    int8            post-training quantization as `edge.export` runs it
                    (`edge.fuse.fuse(edge.ir.extract(model))`, then
                    `edge.quantize.quantize(fused, calibration, 16)` on the
                    first 500 training images), scored by the integer
                    reference `edge.integer.run_integer` on the whole test
                    split; the C and TFLite-Micro targets are bit-exact to
                    it (tests/test_targets_*)
    curve           test accuracy after each epoch against the minutes
                    trained so far (the history's `val_accuracy`, measured
                    on the test split)

It writes a JSON record (`--json`), the Markdown page rendered from it
(`--page`; `--render JSON` renders a record again without measuring) and
the accuracy-against-time plot of every seed (`--plot`). `--keep JSON`
carries the runs of an earlier record, as measured then, into the new one
(seeds trained in another sitting whose folders are gone); each run keeps
the date and commit of its own measurement:

    for seed in 0 1 2; do
        bash examples/fashion_mnist.sh runs/fashion_mnist/seed$seed 20 $seed
    done
    python benchmarks/fashion_recipe.py runs/fashion_mnist/seed* \\
        --json benchmarks/results/fashion_mnist.json \\
        --page benchmarks/results/fashion_mnist.md \\
        --plot docs/fashion_mnist_accuracy.png
"""

import argparse
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qat_deployed as deployed  # noqa: E402 (beside this file)
from bench_common import add_output_arguments  # noqa: E402
from bench_common import git_commit  # noqa: E402
from bench_common import publish  # noqa: E402
from bench_common import read_record  # noqa: E402
from bench_common import utc_minute  # noqa: E402

CALIBRATION = 500  # as benchmarks/qat_accuracy.py
STATE_BITS = 16  # edge.export's default
TARGET = 0.94  # issue #19
RUN_FILES = ("run.json", "metrics.json", "history.csv", "model.keras")


def read_run(folder):
    """The arguments, accuracy and curve of the finished run in `folder`.

    Raises:
        ValueError: a file of `RUN_FILES` is missing or unreadable, or the
            history has no `epoch_seconds` (written before the callback).
    """
    from keras_snn import callbacks

    missing = [
        name
        for name in RUN_FILES
        if not os.path.exists(os.path.join(folder, name))
    ]
    if missing:
        raise ValueError(
            f"Run folder {folder!r}: no {', '.join(missing)}; give folders "
            "of finished `keras-snn train` runs."
        )
    try:
        with open(os.path.join(folder, "run.json")) as file:
            arguments = json.load(file)["arguments"]
        with open(os.path.join(folder, "metrics.json")) as file:
            metrics = json.load(file)
        history = callbacks.read_history_csv(
            os.path.join(folder, "history.csv")
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Run folder {folder!r}: unreadable ({error})"
        ) from error
    if "epoch_seconds" not in history or "val_accuracy" not in history:
        raise ValueError(
            f"Run folder {folder!r}: its history.csv has no epoch_seconds or "
            "val_accuracy column (train it with this version's keras-snn)."
        )
    minutes = np.cumsum(history["epoch_seconds"]) / 60.0
    return {
        "folder": os.path.basename(os.path.normpath(folder)),
        "arguments": arguments,
        "test_accuracy": float(metrics["test_accuracy"]),
        "minutes": round(float(minutes[-1]), 2),
        "curve": {
            "minutes": [round(float(m), 3) for m in minutes],
            "accuracy": [float(a) for a in history["val_accuracy"]],
        },
    }


def int8_accuracy(folder, x_train, x_test, y_test):
    """Accuracy of the int8 export of `folder`'s model (see the module)."""
    import keras

    model = keras.models.load_model(os.path.join(folder, "model.keras"))
    graph = deployed.ptq_graph("int8", model, x_train[:CALIBRATION], STATE_BITS)
    scores, _ = deployed.reference_outputs("int8", graph, x_test)
    return deployed.accuracy(scores, y_test)


def summary(runs, target=TARGET):
    """Mean, spread and extremes over the runs (sample std, ddof=1)."""
    accuracy = np.array([r["test_accuracy"] for r in runs])
    drops = np.array([r["test_accuracy"] - r["int8_accuracy"] for r in runs])
    return {
        "seeds": len(runs),
        "mean": float(accuracy.mean()),
        "std": float(accuracy.std(ddof=1)) if len(runs) > 1 else 0.0,
        "min": float(accuracy.min()),
        "max": float(accuracy.max()),
        "int8_mean": float(np.mean([r["int8_accuracy"] for r in runs])),
        "largest_int8_drop": float(drops.max()),
        "longest_minutes": float(max(r["minutes"] for r in runs)),
        "target": target,
        "every_seed_reaches_target": bool((accuracy >= target).all()),
    }


def _stamp(record):
    """`(date, commit)` of each run of a record (older records kept them
    once, for all of their runs)."""
    return [
        (r.get("date", record["date"]), r.get("commit", record["commit"]))
        for r in record["runs"]
    ]


def measure(folders, data_dir=None, keep=None):
    """The record of the runs in `folders` (all of one data set), after
    the runs of the earlier record `keep` (a dict) if given.

    Raises:
        ValueError: the runs are of several data sets or test splits, or
            a seed of `folders` is also one of `keep`'s.
    """
    from keras_snn import datasets

    runs = [read_run(folder) for folder in folders]
    kept, seeds = [], [r["arguments"]["seed"] for r in runs]
    if keep is not None:
        try:
            stamps = zip(keep["runs"], _stamp(keep), strict=True)
            kept = [{**r, "date": d, "commit": c} for r, (d, c) in stamps]
            seeds = [r["arguments"]["seed"] for r in kept] + seeds
            kept_images = keep["test_images"]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"the kept record is not one of this script's ({error!r} "
                "missing or malformed)"
            ) from error
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(
            f"seed(s) {repeated} appear twice among the run folders and the "
            "kept record's runs; give each seed once."
        )
    names = {r["arguments"]["dataset"] for r in kept + runs}
    if len(names) != 1:
        raise ValueError(
            f"The run folders hold runs of several data sets ({sorted(names)})"
            "; give runs of one."
        )
    (x_train, _), (x_test, y_test) = datasets.load_arrays(
        names.pop(), data_dir=data_dir
    )
    if kept and kept_images != len(x_test):
        raise ValueError(
            f"the kept record was scored on {kept_images} test "
            f"images, these runs on {len(x_test)}; give runs of one split."
        )
    date = utc_minute()
    commit = git_commit()
    for folder, run in zip(folders, runs, strict=True):
        run["int8_accuracy"] = int8_accuracy(folder, x_train, x_test, y_test)
        run.update(date=date, commit=commit)
    runs = sorted(kept + runs, key=lambda r: r["arguments"]["seed"])
    return {
        "date": date,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "commit": commit,
        "test_images": int(len(x_test)),
        "runs": runs,
        "summary": summary(runs),
    }


def _command(arguments):
    a = arguments
    flags = [
        f"--model {a['model']}",
        f"--timesteps {a['timesteps']}",
        f"--epochs {a['epochs']}",
        f"--batch-size {a['batch_size']}",
        f"--learning-rate {a['learning_rate']:g}",
        f"--norm {a['norm']}",
        f"--dropout {a['dropout']:g}",
        f"--augment {a['augment']}",
        f"--trainable-decay {a.get('trainable_decay', 'none')}",
    ]
    return " ".join(flags)


def render(record):
    """The Markdown page of a record."""
    s = record["summary"]
    first = record["runs"][0]["arguments"]
    seeds = {}  # (date, commit) -> the seeds measured then
    for run, stamp in zip(record["runs"], _stamp(record), strict=True):
        seeds.setdefault(stamp, []).append(str(run["arguments"]["seed"]))
    sittings = [
        f"seed{'s' * (len(s) > 1)} {', '.join(s)} {date} at commit {commit}"
        if len(seeds) > 1
        else f"{date} (commit {commit})"
        for (date, commit), s in seeds.items()
    ]
    lines = [
        f"Measured {'; '.join(sittings)} on {record['machine']}, "
        f"{record['test_images']:,} test images; "
        f"`keras-snn train --dataset {first['dataset']} "
        f"{_command(first)} --seed N`.",
        "",
        "| seed | epochs | training (min) | test accuracy | int8 export "
        "| int8 - float |",
        "|---|---|---|---|---|---|",
    ]
    for run in record["runs"]:
        a = run["arguments"]
        lines.append(
            f"| {a['seed']} | {a['epochs']} | {run['minutes']:.1f} | "
            f"{run['test_accuracy']:.4f} | {run['int8_accuracy']:.4f} | "
            f"{run['int8_accuracy'] - run['test_accuracy']:+.4f} |"
        )
    verdict = (
        "every seed reaches"
        if s["every_seed_reaches_target"]
        else ("not every seed reaches")
    )
    lines += [
        "",
        f"Mean {s['mean']:.4f}, standard deviation {s['std']:.4f} over "
        f"{s['seeds']} seeds (lowest {s['min']:.4f}, highest "
        f"{s['max']:.4f}): {verdict} {s['target']:.2f}. The int8 export "
        f"averages {s['int8_mean']:.4f} and loses at most "
        f"{s['largest_int8_drop'] * 100:.2f} points; the longest run trained "
        f"{s['longest_minutes']:.1f} minutes.",
    ]
    return "\n".join(lines) + "\n"


def plot(record, path):
    """The accuracy-against-time plot of every run of `record`."""
    from keras_snn import plotting

    curves = {
        f"seed {r['arguments']['seed']}": (
            r["curve"]["minutes"],
            r["curve"]["accuracy"],
        )
        for r in record["runs"]
    }
    return plotting.plot_accuracy_vs_time(
        curves, path, target=record["summary"]["target"]
    )


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="*", help="folders of finished runs")
    parser.add_argument("--data-dir", help="local data set files")
    add_output_arguments(parser)
    parser.add_argument("--plot", help="write the PNG plot to this file")
    parser.add_argument(
        "--keep", metavar="JSON", help="carry this record's runs over"
    )
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.render):
        parser.error("give run folders, or --render JSON (not both)")
    if args.keep and args.render:
        parser.error("--keep adds runs to new measurements, not to --render")
    return parser, args


def main(argv=None):
    parser, args = _parse(sys.argv[1:] if argv is None else argv)
    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    if args.render:
        record = read_record(parser, args.render)
    else:
        keep = read_record(parser, args.keep, "--keep") if args.keep else None
        try:
            record = measure(args.runs, args.data_dir, keep)
        except ValueError as error:
            parser.error(str(error))
    publish(render(record), record, args)
    if args.plot:
        plot(record, args.plot)
    return record


if __name__ == "__main__":
    main()
