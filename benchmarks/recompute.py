"""Gradient checkpointing: the memory it saves and the time it costs (#19).

`keras_snn.layers.Recompute` keeps only a block's input for the backward
pass and runs the block again when the gradient reaches it. This measures
the trade on the two workloads of `benchmarks/peers.py` (its
`keras_model`, keras-snn):

- `resnet19`: the spiking ResNet-19 (training batch 32), each residual
  block recomputed (`spiking_resnet(19, ..., recompute=True)`);
- `conv-small` (training batch 64): each spiking layer with its pooling
  recomputed (the convolutions before them run once per sample).

For each workload, T, and compilation (XLA, `jit_compile=True`, as
`peers.py` measures; and TensorFlow's graph without XLA), one process
trains without and one with `Recompute`: the working memory (peak resident
memory minus that after TensorFlow's import, as `peers.py` counts it) and
the training throughput (batch / median wall time of `--repeats` steps
after `--warmup`), 2 intra-op threads. The page gives both and their
ratios (with / without).

Run:

    python benchmarks/recompute.py --json recompute.json --page recompute.md
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]

import peers  # noqa: E402 (beside this file)
from bench_common import WORKLOADS  # noqa: E402
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

# workload -> default T
DEFAULT_TIMESTEPS = {"resnet19": (2, 4), "conv-small": (8, 16)}


def child(workload, timesteps, xla, recompute, warmup, repeats, seed=0):
    """One measurement in this process: trains `workload` at `timesteps`
    steps (`xla`, `recompute`: bools) and returns the working MB, the
    samples/s and the last loss."""
    if workload not in WORKLOADS:
        raise ValueError(
            f"workload {workload!r}: expected one of {sorted(WORKLOADS)}"
        )
    import keras_snn  # noqa: F401, I001  (TensorFlow's defaults first)
    import keras
    import numpy as np
    import tensorflow as tf

    peers.set_tf_threads()
    imported = current_rss_mb()
    keras.utils.set_random_seed(seed)
    model = peers.keras_model("keras-snn", timesteps, workload, recompute)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=xla,
    )
    batch = peers.DEFAULTS[workload][2]
    channels, height, width = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    x = rng.random((batch, height, width, channels), dtype=np.float32)
    y = rng.integers(0, 10, size=batch).astype("int32")
    times, _, loss = timed(lambda: model.train_on_batch(x, y), warmup, repeats)
    return {
        "workload": workload,
        "timesteps": timesteps,
        "xla": xla,
        "recompute": recompute,
        "tensorflow": tf.__version__,
        "loss": float(loss),
        "samples_per_s": batch / statistics.median(times),
        "working_mb": peak_rss_mb() - imported,
    }


def _spec(workload, timesteps, xla, recompute):
    return f"{workload}:{timesteps}:{int(xla)}:{int(recompute)}"


def _measure(cell, args):
    options = ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    return run_child(__file__, _spec(*cell), options)


def cells(plan):
    """`[(workload, T, xla, recompute)]` of `{workload: [T, ...]}`."""
    return [
        (workload, t, xla, recompute)
        for workload, steps in plan.items()
        for t in steps
        for xla in (True, False)
        for recompute in (False, True)
    ]


def render(record):
    """The Markdown page of a record."""
    rows = {
        (r["workload"], r["timesteps"], r["xla"], r["recompute"]): r
        for r in record["rows"]
    }
    lines = [
        f"`{record['command']}`, started {record['started']} "
        f"({record['wall_s']:.0f} s), commit {record['commit']}; keras-snn "
        f"training steps (median of {record['repeats']} after "
        f"{record['warmup']}), each cell its own process, 2 threads; "
        f"{record['machine']}, nproc={record['nproc']}, "
        f"{record['versions']}. Working MB = peak minus the resident memory "
        "after TensorFlow's import; ratios are with / without Recompute:",
        "",
        "| workload | T | compiled | MB | MB, Recompute | ratio | samples/s "
        "| samples/s, Recompute | ratio |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, steps in record["plan"].items():
        batch = peers.DEFAULTS[workload][2]
        for t in steps:
            for xla in (True, False):
                plain = rows[(workload, t, xla, False)]
                again = rows[(workload, t, xla, True)]
                mb, mb_rc = plain["working_mb"], again["working_mb"]
                rate, rate_rc = plain["samples_per_s"], again["samples_per_s"]
                lines.append(
                    f"| {workload} (batch {batch}) | {t} | "
                    f"{'XLA' if xla else 'no XLA'} | {mb:.0f} | {mb_rc:.0f} "
                    f"| {_ratio(mb_rc, mb)} | {rate:.1f} | {rate_rc:.1f} | "
                    f"{_ratio(rate_rc, rate)} |"
                )
    return "\n".join(lines) + "\n"


def _ratio(value, reference):
    return f"{value / reference:.2f}" if reference > 0 else "-"


def _timesteps(text):
    workload, _, steps = text.partition(":")
    if workload not in WORKLOADS:
        raise argparse.ArgumentTypeError(
            f"{text}: the workload must be one of {sorted(WORKLOADS)}"
        )
    try:
        values = [int(t) for t in steps.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"{text}: expected WORKLOAD:T[,T...] with integers T >= 1, "
            "e.g. resnet19:2,4"
        )
    return workload, values


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--plan",
        type=_timesteps,
        nargs="+",
        metavar="WORKLOAD:T[,T...]",
        help="the workloads and T to measure; default: "
        + " ".join(
            f"{w}:{','.join(map(str, t))}" for w, t in DEFAULT_TIMESTEPS.items()
        ),
    )
    parser.add_argument("--warmup", type=integer_at_least(0), default=2)
    parser.add_argument("--repeats", type=integer_at_least(1), default=3)
    add_output_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser, parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = _parse(argv)
    if args.child:
        workload, t, xla, recompute = args.child.split(":")
        result = child(
            workload,
            int(t),
            bool(int(xla)),
            bool(int(recompute)),
            args.warmup,
            args.repeats,
        )
        print_result(result)
        return None
    if args.render:
        record = read_record(parser, args.render)
    else:
        sitting = Sitting(__file__, argv)
        plan = dict(args.plan) if args.plan else dict(DEFAULT_TIMESTEPS)
        plan = {w: list(t) for w, t in plan.items()}
        rows = [_measure(cell, args) for cell in cells(plan)]
        record = {
            **sitting.header(tensorflow=rows[0]["tensorflow"]),
            "plan": plan,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "rows": rows,
        }
    publish(render(record), record, args)
    return record


if __name__ == "__main__":
    main()
