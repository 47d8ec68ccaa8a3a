"""Where a keras-snn training step spends its time (issue #19).

For each workload of `benchmarks/peers.py` (its keras-snn network,
`peers.keras_model`) and each T, this compiles the model without XLA,
runs `--warmup` training steps (`train_on_batch`, Adam, the training
batch of `peers.py`), then profiles `--steps` more with TensorFlow's
profiler (`tf.profiler.experimental`) and reads the op statistics back
with TensorFlow's own converter (`framework_op_stats`). With
`jit_compile=True`, as `peers.py` measures, TensorFlow runs the whole step
as one XLA op that its profiler does not break down; without XLA the step
runs the same layers as separate ops, so this is where the time goes
before XLA fuses them (XLA then fuses the elementwise work, not the
convolutions).

Each op's self time goes into one category, by its type and its name
scope (the first rule that matches):

    threads idle           IDLE (both threads waiting: dispatch, Python)
    NaN guard              CheckNumerics (keras_snn.layers.checks)
    optimizer              ops in the optimizer's scope (adam/...),
                           Assign*/Apply*
    convolution, forward   Conv2D ops
    convolution, backward  Conv2DBackprop* ops
    dense                  MatMul ops
    pooling                pooling ops and their gradients
    stacking and copies    Pack, Unpack, Concat, Transpose, Tile, ...
    neuron                 other ops in a neuron layer's scope (LIF, IF)
    normalization          other ops in a BN/tdBN layer's scope
    other                  the rest: the loss, gradient ops without a
                           layer scope (the fused neuron op's backward
                           scan among them), ops that Grappler rewrote
                           (ArithmeticOptimizer/...)
    smaller ops            the converter lists only the 500 ops with the
                           most self time; the others' time (from the
                           listed ops' shares of the total), not sorted

It prints one Markdown table (milliseconds per step and share of the
step, per category and configuration); `--json` writes the record,
`--render` prints the table of a record again, `--page` writes it to a
file (the docs include such a page).

Run:

    python benchmarks/profile_step.py --json profile.json --page profile.md
"""

import argparse
import glob
import importlib
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE]

import peers  # noqa: E402 (beside this file)
from bench_common import Sitting  # noqa: E402
from bench_common import add_output_arguments  # noqa: E402
from bench_common import publish  # noqa: E402
from bench_common import read_record  # noqa: E402

CATEGORIES = (
    "threads idle",
    "NaN guard",
    "optimizer",
    "convolution, forward",
    "convolution, backward",
    "dense",
    "pooling",
    "stacking and copies",
    "neuron",
    "normalization",
    "other",
    "smaller ops",
)
TOP_OPS = 500  # the converter lists the 500 ops with the most self time
COPIES = {
    "Pack",
    "Unpack",
    "ConcatV2",
    "Concat",
    "Transpose",
    "Tile",
    "BroadcastTo",
    "Identity",
    "Reshape",
    "StridedSlice",
    "StridedSliceGrad",
    "Slice",
    "Split",
    "SplitV",
    "Squeeze",
    "ExpandDims",
    "Fill",
    "ZerosLike",
    "OnesLike",
}
NEURON_SCOPES = ("lif", "_if", "neuron")
# Keras 3 optimizers' scopes (Grappler's "ArithmeticOptimizer/..." ops are
# rewritten ops of any layer, not the optimizer's).
OPTIMIZER_SCOPES = ("adam", "adamw", "sgd", "rmsprop", "nadam", "lion")
NORM_SCOPES = ("batch_norm", "tdbn", "normalization")
DEFAULT_RUNS = ("conv-small:4", "conv-small:16", "resnet19:2")


def category(op_type, name):
    """The category of one op, from its type and name (see the docstring)."""
    lower = name.lower()
    if op_type == "IDLE":
        return "threads idle"
    if op_type == "CheckNumerics":
        return "NaN guard"
    if lower.split("/")[0] in OPTIMIZER_SCOPES or op_type.startswith(
        ("Assign", "ResourceApply", "ApplyAdam")
    ):
        return "optimizer"
    if "Conv2D" in op_type or "Conv3D" in op_type:
        return (
            "convolution, backward"
            if "Backprop" in op_type
            else "convolution, forward"
        )
    if "MatMul" in op_type:
        return "dense"
    if "Pool" in op_type:
        return "pooling"
    if op_type in COPIES:
        return "stacking and copies"
    scopes = lower.split("/")[:-1]
    if any(key in s for s in scopes for key in NEURON_SCOPES):
        return "neuron"
    if any(key in s for s in scopes for key in NORM_SCOPES):
        return "normalization"
    return "other"


def op_table(data):
    """The ops of a `framework_op_stats` JSON table.

    Returns:
        `(rows, total_us)`: `[(type, name, self_us)]` of the ops listed
        (the `TOP_OPS` with the most self time) and the self time of all
        ops, listed or not (a listed op's self time over its share of the
        host's total).
    """
    table = json.loads(data)[0]
    ids = [c["id"] for c in table["cols"]]
    at = {key: ids.index(key) for key in ("type", "operation")}
    at["self"] = ids.index("total_self_time")
    share = ids.index("host_total_self_time_percent")  # a fraction
    rows, total_us = [], 0.0
    for row in table["rows"]:
        cells = [c.get("v") if c else None for c in row["c"]]
        rows.append(
            (cells[at["type"]], cells[at["operation"]], cells[at["self"]])
        )
        if not total_us and cells[share]:
            total_us = cells[at["self"]] / cells[share]
    return rows, max(total_us, sum(r[2] for r in rows))


def categorize(rows, total_us, steps):
    """`{category: ms per step}` of `op_table`'s rows over `steps` steps;
    `"smaller ops"` is the time of the ops the table does not list."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for op_type, name, self_us in rows:
        totals[category(op_type, name or "")] += self_us / 1000.0 / steps
    listed = sum(totals.values())
    totals["smaller ops"] = max(0.0, total_us / 1000.0 / steps - listed)
    return totals


def profile(workload, timesteps, batch, warmup, steps, seed=0):
    """Profiles `steps` training steps of keras-snn's `workload` network.

    Returns:
        `{"workload", "timesteps", "batch", "steps", "ms": {category: ms
        per step}, "step_ms"}`; `step_ms` is the sum of the categories.
    """
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.profiler.internal import (
        _pywrap_profiler_plugin as plugin,
    )

    keras.utils.set_random_seed(seed)
    model = peers.keras_model("keras-snn", timesteps, workload)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    channels, height, width = peers.WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    x = rng.random((batch, height, width, channels), dtype=np.float32)
    y = rng.integers(0, 10, size=(batch,)).astype("int32")
    for _ in range(warmup):
        model.train_on_batch(x, y)
    with tempfile.TemporaryDirectory(prefix="profile-step-") as folder:
        tf.profiler.experimental.start(folder)
        for _ in range(steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        paths = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        data, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"TensorFlow's profiler converter failed: {data!r}")
    ms = categorize(*op_table(data), steps)
    return {
        "workload": workload,
        "timesteps": timesteps,
        "batch": batch,
        "steps": steps,
        "ms": ms,
        "step_ms": sum(ms.values()),
    }


def render(record):
    """The Markdown report of a record."""
    rows = record["rows"]
    head = [f"{r['workload']}, T = {r['timesteps']}" for r in rows]
    lines = [
        f"`{record['command']}`, started {record['started']} "
        f"({record['wall_s']:.0f} s); {record['steps']} profiled training "
        f"steps after {record['warmup']} warm-up steps, without XLA, 2 "
        f"threads; {record['machine']}, nproc={record['nproc']}, "
        f"{record['versions']}. Milliseconds per step (share of the step):",
        "",
        "| category | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for name in CATEGORIES:
        cells = [
            f"{r['ms'][name]:.1f} ({100 * r['ms'][name] / r['step_ms']:.0f}%)"
            for r in rows
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"{r['step_ms']:.1f}" for r in rows]
    lines.append("| **step** | " + " | ".join(totals) + " |")
    batches = ", ".join(f"{r['batch']}" for r in rows)
    lines += ["", f"Training batches: {batches}."]
    return "\n".join(lines) + "\n"


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peers.add_runs_argument(parser, DEFAULT_RUNS)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--batch", type=int, help="default: the training batch of peers.py"
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    runs = peers.parse_runs(parser, args.runs)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1, --warmup >= 0")
    return parser, args, runs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args, runs = _parse(argv)
    if args.render:
        record = read_record(parser, args.render)
    else:
        import keras_snn  # noqa: F401  (TensorFlow's defaults first)

        tf = importlib.import_module("tensorflow")

        peers.set_tf_threads()
        sitting = Sitting(__file__, argv)
        rows = []
        for workload, timesteps in runs:
            batch = args.batch or peers.DEFAULTS[workload][2]
            rows.append(
                profile(workload, timesteps, batch, args.warmup, args.steps)
            )
        record = {
            **sitting.header(tensorflow=tf.__version__),
            "warmup": args.warmup,
            "steps": args.steps,
            "rows": rows,
        }
    publish(render(record), record, args)
    return record


if __name__ == "__main__":
    main()
