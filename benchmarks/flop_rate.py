"""How close keras-snn's steps run to the machine's arithmetic rate (#19).

For each workload and T of `benchmarks/peers.py` (its keras-snn network,
`peers.keras_model`, compiled with XLA as `peers.py` measures it), this
counts the floating-point operations of one sample and measures the
throughput in this one process, 2 intra-op threads:

- inference: the operations of the forward pass as TensorFlow's graph
  profiler counts them (`tf.compat.v1.profiler`, float operations of the
  traced `model(x, training=False)`: convolutions, matmuls, the neuron
  and normalization arithmetic); a layer that `TimeFolded` runs once per
  sample (time-invariant input) counts once, the others T times;
- training: the usual count of three times the forward convolutions and
  matmuls (the backward pass computes the gradient of their input and of
  their kernel, each as much work as the forward) plus the rest of the
  forward once; the profiler has no count for the backward ops;
- the rate: samples/s of `predict_on_batch` and `train_on_batch` (median
  of `--repeats` after `--warmup`, the batches of `peers.py`) times the
  operations per sample, next to the rate of a float32 matrix product
  (`--matmul` square, XLA) on the same threads: what this CPU's kernels
  reach on the most favourable dense work.

A step that runs at a large share of the matrix product's rate is
arithmetic-bound: more speed needs fewer operations (or cheaper ones),
not less overhead.

Run:

    python benchmarks/flop_rate.py --json flop_rate.json --page flop_rate.md
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
from bench_common import integer_at_least  # noqa: E402
from bench_common import publish  # noqa: E402
from bench_common import read_record  # noqa: E402
from bench_common import timed  # noqa: E402

DEFAULT_RUNS = ("conv-small:4", "conv-small:8", "conv-small:16", "resnet19:2")
DENSE_OPS = ("Conv2D", "Conv3D", "MatMul", "BatchMatMulV2")


def count_flops(model, shape):
    """Float operations of one sample's forward pass through `model`.

    Returns:
        `(total, dense)`: all operations the profiler counts, and those of
        the convolutions and matmuls among them.
    """
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=False))
    graph = function.get_concrete_function(
        tf.TensorSpec((1, *shape), tf.float32)
    ).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    dense = sum(
        node.total_float_ops
        for node in profile.children
        if graph.get_operation_by_name(node.name).type in DENSE_OPS
    )
    return profile.total_float_ops, dense


def matmul_rate(size, warmup, repeats):
    """GFLOP/s of an XLA float32 `size x size` matrix product."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = (
        tf.constant(rng.random((size, size), dtype=np.float32))
        for _ in range(2)
    )
    product = tf.function(tf.matmul, jit_compile=True)
    times, _, _ = timed(lambda: product(a, b).numpy(), warmup, max(repeats, 1))
    return 2 * size**3 / statistics.median(times) / 1e9


def measure(workload, timesteps, batches, warmup, repeats, seed=0):
    """One row: operations per sample and the rates of keras-snn's steps."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    model = peers.keras_model("keras-snn", timesteps, workload)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    channels, height, width = peers.WORKLOADS[workload]
    shape = (height, width, channels)
    total, dense = count_flops(model, shape)
    batch, infer_batch = batches
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, size=batch).astype("int32")
    x_infer = rng.random((infer_batch, *shape), dtype=np.float32)
    train, _, _ = timed(lambda: model.train_on_batch(x, y), warmup, repeats)
    infer, _, _ = timed(
        lambda: model.predict_on_batch(x_infer), warmup, repeats
    )
    return {
        "workload": workload,
        "timesteps": timesteps,
        "batch": batch,
        "infer_batch": infer_batch,
        "infer_flops": total,
        "dense_flops": dense,
        "train_flops": total + 2 * dense,
        "infer_samples_per_s": infer_batch / statistics.median(infer),
        "train_samples_per_s": batch / statistics.median(train),
    }


def render(record):
    """The Markdown page of a record."""
    peak = record["matmul_gflops"]
    lines = [
        f"`{record['command']}`, started {record['started']} "
        f"({record['wall_s']:.0f} s), commit {record['commit']}; keras-snn "
        f"with XLA, 2 threads, {record['warmup']} warm-up + "
        f"{record['repeats']} timed steps (median); {record['machine']}, "
        f"nproc={record['nproc']}, {record['versions']}. A float32 "
        f"{record['matmul']} x {record['matmul']} matrix product (XLA) "
        f"reached **{peak:.0f} GFLOP/s** in the same run.",
        "",
        "| workload | T | batch | MFLOP per sample | samples/s | GFLOP/s | "
        "share of the matrix product's rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        for step, batch in (("infer", r["infer_batch"]), ("train", r["batch"])):
            flops = r[f"{step}_flops"]
            rate = r[f"{step}_samples_per_s"]
            gflops = flops * rate / 1e9
            lines.append(
                f"| {r['workload']} ({step}) | {r['timesteps']} | {batch} | "
                f"{flops / 1e6:.1f} | {rate:.0f} | {gflops:.0f} | "
                f"{100 * gflops / peak:.0f}% |"
            )
    return "\n".join(lines) + "\n"


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peers.add_runs_argument(parser, DEFAULT_RUNS)
    parser.add_argument("--warmup", type=integer_at_least(0), default=2)
    parser.add_argument("--repeats", type=integer_at_least(1), default=5)
    parser.add_argument("--matmul", type=integer_at_least(1), default=2048)
    parser.add_argument(
        "--batches",
        type=integer_at_least(1),
        nargs=2,
        metavar=("TRAIN", "INFER"),
        help="default: the batches of peers.py for the workload",
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    runs = peers.parse_runs(parser, args.runs)
    return parser, args, runs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args, runs = _parse(argv)
    if args.render:
        record = read_record(parser, args.render)
    else:
        import keras_snn  # noqa: F401, I001  (TensorFlow's defaults first)
        import tensorflow as tf

        peers.set_tf_threads()
        sitting = Sitting(__file__, argv)
        peak = matmul_rate(args.matmul, args.warmup, args.repeats)
        rows = [
            measure(
                workload,
                timesteps,
                args.batches or peers.DEFAULTS[workload][2:],
                args.warmup,
                args.repeats,
            )
            for workload, timesteps in runs
        ]
        record = {
            **sitting.header(tensorflow=tf.__version__),
            "warmup": args.warmup,
            "repeats": args.repeats,
            "matmul": args.matmul,
            "matmul_gflops": peak,
            "rows": rows,
        }
    publish(render(record), record, args)
    return record


if __name__ == "__main__":
    main()
