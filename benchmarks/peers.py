"""keras-snn against snnTorch, SpikingJelly and Norse (issues #8, #19).

One command measures, for each number of time steps T, one workload in
each library, each in its own process with 2 intra-op threads:

`conv-small` (`--workload conv-small`, the default; T = 4 and 8 unless
`--timesteps` says otherwise):

    input 28x28x1 repeated T times (direct input current)
    Conv(32, 3x3, same) - BN - LIF - AvgPool2 - Conv(64, 3x3, same) - BN
    - LIF - AvgPool2 - Flatten - Dense(256) - LIF - Dense(10)
    output = mean over time; cross-entropy; Adam(lr=1e-3)
    LIF: decay 0.5, threshold 1.0, hard reset

`resnet19` (`--workload resnet19`; T = 2 and 4, training batch 32,
inference batch 64): the spiking ResNet-19 of Zheng et al. 2021 (Table 4,
Fig. 5b) on 32x32x3 input with tdBN, the same LIF, the decoding layer,
cross-entropy and Adam; in keras-snn `keras_snn.models.spiking_resnet(19,
...)`, in the peers `bench_common.RESNET19` written with their layers.

The libraries:

    keras-snn          the default layers as a user writes them
                       (DirectEncoding, TimeFolded(Conv2D/BN/...), LIF()),
                       jit_compile=True; keras_snn imported first, as the
                       README shows (it turns on TensorFlow's oneDNN
                       kernels). The input is the same at every step, so
                       TimeFolded runs Conv1 and BN1 once per sample
    keras-snn (T x)    the same with TimeFolded(..., time_invariant=False):
                       every layer runs at every step, the peers' work
    keras-snn (32)     the same model and training; inference as
                       `predict_on_batch` on slices of 32 images (the
                       batch of Keras's `model.predict` by default):
                       time is folded into the batch, so a slice holds
                       32 x T images' activations instead of 256 x T
                       (benchmarks/memory.py measures the trade)
    keras-snn (no XLA) the same compiled with jit_compile=False (ResNet-19
                       only): TensorFlow's graph with its oneDNN
                       convolution kernels instead of XLA's
    keras-snn (bf16)   the same without XLA under Keras' mixed_bfloat16
                       policy (ResNet-19 only): bfloat16 arithmetic,
                       float32 weights, oneDNN's bfloat16 kernels (AMX
                       where the CPU has it); XLA on CPU runs bfloat16
                       slower than float32
    keras-snn (ref)    the same with LIF(fused=False): the unrolled
                       keras.layers.RNN reference path, for comparison
    Keras ANN          ReLU instead of LIF, T = 1, jit_compile=True: the
                       lower bound
    snnTorch           benchmarks/peer_snntorch.py (snn.Leaky, Python loop
                       over time, as in its tutorials)
    SpikingJelly       benchmarks/peer_spikingjelly.py (multi-step LIFNode;
                       its tdBN in ResNet-19)
    Norse              benchmarks/peer_norse.py (LIFBoxCell, Python loop
                       over time; conv-small only)
    ... (bf16)         a peer's forward pass under torch.autocast(bfloat16)
                       (`--precision bfloat16`; ResNet-19 only)

(ResNet-19 runs keras-snn with and without XLA, snnTorch and
SpikingJelly, and each of the three in bfloat16.) A bfloat16 row's ratios
are to the bfloat16 peers, every other row's to the float32 peers.

It prints one Markdown report: training throughput (samples/s at the
training batch, B / median time of `--repeats` steps of forward +
backward + Adam update after `--warmup` steps), inference
throughput (inference batch, same protocol), the peak resident memory of
the process (`ru_maxrss`), the working memory (peak minus the resident
memory once the framework is imported, before any model is built:
TensorFlow alone holds about 600 MB, torch about 220 MB), and the ratios
to the fastest peer (throughput) and to the lowest peer (memory). A second
table gives the throughput from the process's CPU time per step (batch x
threads / median CPU seconds), the rate with both threads busy: on a
loaded machine the wall-clock numbers swing by 2x or more from run to run,
the CPU-time ones much less (they still rise with cache and memory
contention).

The peers run in the virtual environment made by
`benchmarks/install_peers.sh` (`.venv-peers`, or `--peers-python`). The
whole set runs `--rounds` times, alternating the order; each cell reports
the best round (load from other processes only slows a run down), and the
per-round numbers are listed below the tables. On a shared machine compare
the ratios within one run. The parent process imports neither TensorFlow
nor torch while it measures.

`--json PATH` writes the record of the run (the command, the date, every
round of every library); `--render PATH` prints the report of a record
again without measuring, and `--page PATH` writes the report to a file:
the docs' tables are such pages, so the tables and the run cannot differ.

Run:

    benchmarks/install_peers.sh        # once
    python benchmarks/peers.py --timesteps 4 8
    python benchmarks/peers.py --workload resnet19 --json resnet19.json
    python benchmarks/peers.py --render resnet19.json --page page.md
"""

import argparse
import os
import platform
import subprocess
import sys
import time

from bench_common import WORKLOADS
from bench_common import Sitting
from bench_common import add_output_arguments
from bench_common import child_env
from bench_common import current_rss_mb
from bench_common import peak_rss_mb
from bench_common import print_result
from bench_common import publish
from bench_common import read_record
from bench_common import read_result
from bench_common import summary
from bench_common import timed
from peers_report import BF16
from peers_report import LIBRARIES
from peers_report import PEERS
from peers_report import render

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREADS = 2
SLICE = 32  # keras-snn-sub32's inference slice: Keras's predict batch

# Per workload: the libraries that run it, the default T, training and
# inference batch.
DEFAULTS = {
    "conv-small": (
        tuple(k for k in LIBRARIES if k != "keras-snn-noxla" and BF16 not in k),
        (4, 8),
        64,
        256,
    ),
    "resnet19": (
        (
            "keras-snn",
            "keras-snn-noxla",
            "snntorch",
            "spikingjelly",
            "keras-snn-bf16",
            "snntorch-bf16",
            "spikingjelly-bf16",
        ),
        (2, 4),
        32,
        64,
    ),
}


def peer_script(library):
    """The peer script (`peer_<name>.py`'s name) that measures `library`,
    or `None` for a keras-snn library."""
    name = library.removesuffix(BF16)
    return name if name in PEERS else None


def set_tf_threads():
    """TensorFlow's threads as every keras-snn measurement here runs:
    `THREADS` intra-op, one inter-op. Kept as they are when TensorFlow
    already runs (a test process): they can be set only before."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def add_runs_argument(parser, default):
    """`--runs WORKLOAD:T ...` (read it with `parse_runs`)."""
    parser.add_argument(
        "--runs",
        nargs="+",
        default=list(default),
        metavar="WORKLOAD:T",
        help="default: %(default)s",
    )


def parse_runs(parser, texts):
    """`[(workload, T)]` of `--runs WORKLOAD:T ...`; anything else is
    `parser`'s error, naming the value and what is accepted."""
    runs = []
    for text in texts:
        workload, _, steps = text.partition(":")
        if workload not in DEFAULTS or not steps.isdigit() or not int(steps):
            parser.error(
                f"--runs {text}: expected WORKLOAD:T with WORKLOAD one of "
                f"{', '.join(sorted(DEFAULTS))} and T a positive integer"
            )
        runs.append((workload, int(steps)))
    return runs


# --------------------------------------------------------------------------
# Child: one Keras model, timed; prints one JSON line.
# --------------------------------------------------------------------------


def keras_model(kind, timesteps, workload="conv-small", recompute=False):
    """The keras-snn (or Keras ANN) model of `kind` for `workload`; with
    `recompute`, gradient checkpointing (`keras_snn.layers.Recompute`):
    ResNet-19 recomputes each residual block, conv-small each spiking
    layer with its pooling (what follows the convolutions that run once
    per sample)."""
    import keras

    import keras_snn

    layers = keras.layers
    if workload == "resnet19":
        # Zheng et al. 2021's ResNet-19 (bench_common.RESNET19) with the
        # peers' neuron: decay 0.5, threshold 1, hard reset.
        return keras_snn.models.spiking_resnet(
            19,
            input_shape=(32, 32, 3),
            num_classes=10,
            timesteps=timesteps,
            neuron_kwargs=dict(decay=0.5, threshold=1.0, reset="hard"),
            recompute=recompute,
        )
    if kind == "keras-ann":
        inputs = keras.Input((28, 28, 1))
        x = layers.Conv2D(32, 3, padding="same")(inputs)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.AveragePooling2D(2)(x)
        x = layers.Conv2D(64, 3, padding="same")(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.AveragePooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(256, activation="relu")(x)
        outputs = layers.Dense(10)(x)
        return keras.Model(inputs, outputs)

    fused = False if kind == "keras-snn-ref" else None
    time_invariant = False if kind == "keras-snn-steps" else None
    snn = keras_snn.layers

    def lif():
        return snn.LIF(decay=0.5, threshold=1.0, reset="hard", fused=fused)

    def folded(layer):
        return snn.TimeFolded(layer, time_invariant=time_invariant)

    def spike_and_pool(x):
        block = [lif(), folded(layers.AveragePooling2D(2))]
        if recompute:
            return snn.Recompute(keras.Sequential(block))(x)
        return block[1](block[0](x))

    inputs = keras.Input((28, 28, 1))
    x = snn.DirectEncoding(timesteps)(inputs)
    x = folded(layers.Conv2D(32, 3, padding="same"))(x)
    x = spike_and_pool(folded(layers.BatchNormalization())(x))
    x = folded(layers.Conv2D(64, 3, padding="same"))(x)
    x = spike_and_pool(folded(layers.BatchNormalization())(x))
    x = folded(layers.Flatten())(x)
    x = lif()(folded(layers.Dense(256))(x))
    x = folded(layers.Dense(10))(x)
    outputs = layers.GlobalAveragePooling1D()(x)  # mean over time
    return keras.Model(inputs, outputs)


def keras_child(kind, timesteps, args):
    # keras_snn first, as the README shows: it sets TensorFlow's defaults
    # (oneDNN kernels) before TensorFlow is imported.
    import keras_snn

    library_version = keras_snn.__version__
    import keras
    import numpy as np
    import tensorflow as tf

    set_tf_threads()
    import_rss_mb = current_rss_mb()

    keras.utils.set_random_seed(args.seed)
    if kind.endswith(BF16):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = keras_model(kind, timesteps, args.workload)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=kind not in ("keras-snn-noxla", "keras-snn" + BF16),
    )
    rng = np.random.default_rng(args.seed)
    channels, height, width = WORKLOADS[args.workload]
    shape = (height, width, channels)
    x = rng.random((args.batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, size=(args.batch,)).astype("int32")
    x_infer = rng.random((args.infer_batch, *shape), dtype=np.float32)
    size = SLICE if kind == "keras-snn-sub32" else args.infer_batch
    slices = [x_infer[i : i + size] for i in range(0, len(x_infer), size)]

    train_times, train_cpu, loss = timed(
        lambda: model.train_on_batch(x, y), args.warmup, args.repeats
    )
    train_peak = peak_rss_mb()
    infer_times, infer_cpu, _ = timed(
        lambda: [model.predict_on_batch(s) for s in slices],
        args.warmup,
        args.repeats,
    )
    version = (
        f"keras-snn {library_version}, keras {keras.__version__}, "
        f"tensorflow {tf.__version__}"
    )
    result = summary(
        kind,
        version,
        THREADS,
        args.batch,
        args.infer_batch,
        (train_times, train_cpu),
        (infer_times, infer_cpu),
        loss,
        train_peak,
    )
    result["import_rss_mb"] = import_rss_mb
    result["precision"] = keras.config.dtype_policy().name
    result["parameters"] = sum(
        int(np.prod(w.shape)) for w in model.trainable_weights
    )
    return result


# --------------------------------------------------------------------------
# Parent: one subprocess per (library, T, round); imports no framework.
# --------------------------------------------------------------------------


def _command(library, timesteps, args):
    common = [
        "--timesteps",
        str(timesteps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--seed",
        str(args.seed),
    ]
    sizes = ["--batch", str(args.batch), "--infer-batch", str(args.infer_batch)]
    sizes += ["--workload", args.workload]
    peer = peer_script(library)
    if peer is not None:
        script = os.path.join(HERE, f"peer_{peer}.py")
        precision = "bfloat16" if library.endswith(BF16) else "float32"
        return [
            args.peers_python,
            script,
            *common,
            *sizes,
            "--threads",
            "2",
            "--precision",
            precision,
        ]
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        library,
        *common,
        *sizes,
    ]


def _run(library, timesteps, args):
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            _command(library, timesteps, args),
            env=child_env(THREADS),
            capture_output=True,
            text=True,
            timeout=args.child_timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.child_timeout} s"}
    result = read_result(proc.stdout)
    if result is not None:
        result["wall_s"] = time.perf_counter() - start
        return result
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {
        "error": f"exit {proc.returncode}: "
        + (lines[-1] if lines else "no output"),
        "stderr_tail": "\n".join(lines[-20:]),
    }


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload",
        choices=sorted(DEFAULTS),
        default="conv-small",
        help="conv-small (default) or the spiking ResNet-19",
    )
    parser.add_argument(
        "--timesteps",
        type=int,
        nargs="+",
        help="default: 4 8 (conv-small), 2 4 (resnet19)",
    )
    parser.add_argument(
        "--libraries",
        nargs="+",
        choices=sorted(LIBRARIES),
        help="default: every library that runs the workload",
    )
    parser.add_argument(
        "--batch", type=int, help="default: 64 (conv-small), 32 (resnet19)"
    )
    parser.add_argument(
        "--infer-batch", type=int, help="default: 256 (conv-small), 64"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs of the whole set, alternating the order; best reported",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peers-python",
        default=os.path.join(ROOT, ".venv-peers", "bin", "python"),
        help="python of the venv with torch, snntorch, spikingjelly, norse",
    )
    parser.add_argument("--child-timeout", type=float, default=600.0)
    add_output_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    libraries, timesteps, batch, infer_batch = DEFAULTS[args.workload]
    args.libraries = args.libraries or list(libraries)
    args.timesteps = args.timesteps or list(timesteps)
    args.batch = args.batch or batch
    args.infer_batch = args.infer_batch or infer_batch
    unsupported = sorted(set(args.libraries) - set(libraries))
    if unsupported:
        parser.error(
            f"--libraries {' '.join(unsupported)}: not measured on "
            f"{args.workload} (it runs {', '.join(libraries)})"
        )
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    if min(args.timesteps) < 1 or args.rounds < 1 or args.batch < 1:
        parser.error("--timesteps, --rounds and --batch must be >= 1")
    if args.infer_batch < 1:
        parser.error("--infer-batch must be >= 1")
    return parser, args


def measure(args, argv, log=None):
    """Runs every (library, T) `args.rounds` times in alternating order.

    Returns:
        The record: the command, dates, machine, settings and every run.
    """
    order = [(lib, t) for t in args.timesteps for lib in args.libraries]
    runs = {key: [] for key in order}
    sitting = Sitting(__file__, argv)
    for index in range(args.rounds):
        for library, timesteps in order if index % 2 == 0 else order[::-1]:
            result = _run(library, timesteps, args)
            runs[library, timesteps].append(result)
            status = result.get("error") or (
                f"train {result['train_samples_per_s']:.0f}, infer "
                f"{result['infer_samples_per_s']:.0f} samples/s, "
                f"{result['peak_rss_mb']:.0f} MB"
            )
            print(
                f"[{sitting.elapsed():6.0f} s] round {index + 1} "
                f"{library} T={timesteps}: {status}",
                file=log or sys.stderr,
                flush=True,
            )
    return {
        "workload": args.workload,
        **sitting.header(),
        "python": platform.python_version(),
        "threads": THREADS,
        "settings": {
            key: getattr(args, key)
            for key in (
                "timesteps",
                "libraries",
                "batch",
                "infer_batch",
                "warmup",
                "repeats",
                "rounds",
            )
        },
        "runs": [
            {"library": lib, "timesteps": t, "runs": rs}
            for (lib, t), rs in runs.items()
        ],
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = _parse(argv)
    if args.child:
        result = keras_child(args.child, args.timesteps[0], args)
        print_result(result)
        return None
    if args.render:
        record = read_record(parser, args.render)
    else:
        if any(map(peer_script, args.libraries)) and not os.path.exists(
            args.peers_python
        ):
            parser.error(
                f"{args.peers_python} not found: run "
                "benchmarks/install_peers.sh or pass --peers-python"
            )
        record = measure(args, argv)
    publish(render(record), record, args)
    return record


if __name__ == "__main__":
    main()
