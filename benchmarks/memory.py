"""Where keras-snn's working memory goes, and what bounds it (issue #19).

The network is the keras-snn conv-small of `benchmarks/peers.py`
(`peers.keras_model`). Each measurement runs in its own process (the
peak resident memory, `ru_maxrss`, is per process) with 2 intra-op
threads, and reports the working memory as `peers.py` counts it: the peak
minus the resident memory once TensorFlow is imported, before any model.

- `train`: `--steps` training steps (`train_on_batch`, Adam, batch 64),
  compiled with XLA (`jit_compile=True`, as `peers.py` measures) and
  without: what the framework and the compiler hold (T = 1) and what each
  more time step stores for the backward pass.
- `infer`: the inference batch of `peers.py` (256 images), with XLA, as
  `predict_on_batch` calls on sub-batches of `c` images: `c` = 256 is the
  whole batch at once (as `peers.py` measures), smaller `c` the same
  images in slices, what `model.predict(x, batch_size=c)` does batch by
  batch (without its per-call setup of a data iterator, some 60 ms on
  this machine). Time is folded into the batch, so a call holds `c x T`
  images' activations; the images/s of each `c` (median of `--repeats`
  passes over the 256 images after one warm-up pass) give the trade.

For each configuration the page fits `MB = a + b T` by least squares over
the T measured: `a` what does not grow with T, `b` the MB per step.

Run:

    python benchmarks/memory.py --json memory.json --page memory.md
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]

import peers  # noqa: E402 (beside this file)
from bench_common import Sitting  # noqa: E402
from bench_common import add_output_arguments  # noqa: E402
from bench_common import current_rss_mb  # noqa: E402
from bench_common import integer_at_least  # noqa: E402
from bench_common import peak_rss_mb  # noqa: E402
from bench_common import print_result  # noqa: E402
from bench_common import publish  # noqa: E402
from bench_common import read_record  # noqa: E402
from bench_common import run_child  # noqa: E402
from bench_common import timed  # noqa: E402

TRAIN_BATCH, INFER_BATCH = peers.DEFAULTS["conv-small"][2:]


def child(mode, timesteps, option, steps, repeats, seed=0):
    """One measurement, in this process: `mode` `"train"` (`option` 1 with
    XLA, 0 without) or `"infer"` (`option` the sub-batch `c`)."""
    if mode not in ("train", "infer"):
        raise ValueError(f"mode {mode!r}: expected 'train' or 'infer'")
    import keras_snn  # noqa: F401, I001  (TensorFlow's defaults first)
    import keras
    import numpy as np
    import tensorflow as tf

    peers.set_tf_threads()
    imported = current_rss_mb()
    keras.utils.set_random_seed(seed)
    model = peers.keras_model("keras-snn", timesteps, "conv-small")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=bool(option) if mode == "train" else True,
    )
    rng = np.random.default_rng(seed)
    result = {"mode": mode, "timesteps": timesteps, "option": option}
    result["tensorflow"] = tf.__version__
    if mode == "train":
        x = rng.random((TRAIN_BATCH, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, size=TRAIN_BATCH).astype("int32")
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        result["loss"] = float(loss)
    else:
        x = rng.random((INFER_BATCH, 28, 28, 1), dtype=np.float32)
        slices = [x[i : i + option] for i in range(0, INFER_BATCH, option)]
        times, _, _ = timed(
            lambda: [model.predict_on_batch(s) for s in slices], 1, repeats
        )
        result["samples_per_s"] = INFER_BATCH / statistics.median(times)
    result["working_mb"] = peak_rss_mb() - imported
    return result


def fit_line(timesteps, megabytes):
    """`(a, b)` of the least-squares line `MB = a + b T`."""
    n = len(timesteps)
    mean_t, mean_m = sum(timesteps) / n, sum(megabytes) / n
    var = sum((t - mean_t) ** 2 for t in timesteps)
    if var == 0:
        return mean_m, 0.0
    pairs = zip(timesteps, megabytes, strict=True)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in pairs)
    return mean_m - cov / var * mean_t, cov / var


def _measure(spec, args):
    mode, timesteps, option = spec
    return run_child(
        __file__,
        f"{mode}:{timesteps}:{option}",
        ["--steps", str(args.steps), "--repeats", str(args.repeats)],
    )


def configurations(record):
    """`[(label, mode, option)]` of a record, in the page's order."""
    train = [("train, XLA", "train", 1), ("train, no XLA", "train", 0)]
    infer = [
        (f"infer, sub-batch {c}", "infer", c) for c in record["sub_batches"]
    ]
    return train + infer


def render(record):
    """The Markdown page of a record."""
    steps = record["timesteps"]
    cell = {(r["mode"], r["timesteps"], r["option"]): r for r in record["rows"]}
    lines = [
        f"`{record['command']}`, started {record['started']} "
        f"({record['wall_s']:.0f} s), commit {record['commit']}; "
        f"keras-snn conv-small, training batch {TRAIN_BATCH} "
        f"({record['steps']} step(s)), inference batch {INFER_BATCH}, 2 "
        f"threads; {record['machine']}, nproc={record['nproc']}, "
        f"{record['versions']}. Working MB (peak minus the resident "
        "memory after TensorFlow's import), each cell its own process; "
        "`a + b T` the least-squares line over the T measured:",
        "",
        "| configuration | "
        + " | ".join(f"T = {t}" for t in steps)
        + " | a + b T |",
        "|---|" + "---:|" * (len(steps) + 1),
    ]
    for label, mode, option in configurations(record):
        values = [cell[(mode, t, option)]["working_mb"] for t in steps]
        a, b = fit_line(steps, values)
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.0f}" for v in values)
            + f" | {a:.0f} + {b:.1f} T |"
        )
    lines += [
        "",
        "Inference images/s of the same runs (`predict_on_batch` on "
        f"sub-batches of the {INFER_BATCH} images, median of "
        f"{record['repeats']} passes):",
        "",
        "| sub-batch | " + " | ".join(f"T = {t}" for t in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    for c in record["sub_batches"]:
        rates = [cell[("infer", t, c)]["samples_per_s"] for t in steps]
        lines.append(f"| {c} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    return "\n".join(lines) + "\n"


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timesteps",
        type=integer_at_least(1),
        nargs="+",
        default=[1, 4, 8, 16, 32],
        help="default: %(default)s",
    )
    parser.add_argument(
        "--sub-batches",
        type=integer_at_least(1),
        nargs="+",
        default=[INFER_BATCH, 64, 32],
        help="the inference sub-batches c; default: %(default)s",
    )
    parser.add_argument("--steps", type=integer_at_least(1), default=3)
    parser.add_argument("--repeats", type=integer_at_least(1), default=7)
    add_output_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if len(set(args.timesteps)) < 2 and not (args.child or args.render):
        parser.error("--timesteps: give at least two different T to fit")
    return parser, args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = _parse(argv)
    if args.child:
        mode, timesteps, option = args.child.split(":")
        result = child(
            mode, int(timesteps), int(option), args.steps, args.repeats
        )
        print_result(result)
        return None
    if args.render:
        record = read_record(parser, args.render)
    else:
        sitting = Sitting(__file__, argv)
        record = {"timesteps": args.timesteps, "sub_batches": args.sub_batches}
        specs = [
            (mode, t, option)
            for _, mode, option in configurations(record)
            for t in args.timesteps
        ]
        rows = [_measure(spec, args) for spec in specs]
        record.update(
            sitting.header(tensorflow=rows[0]["tensorflow"]),
            steps=args.steps,
            repeats=args.repeats,
            rows=rows,
        )
    publish(render(record), record, args)
    return record


if __name__ == "__main__":
    main()
