"""Training throughput on one and two replicas under tf.distribute.

Trains a spiking conv network (`keras_snn.models.from_spec`, default
"16C3-AP2-32C3-AP2-64FC-Decoding", 28x28x1 random inputs repeated over T
steps, tdBN with synchronized statistics, Adam 1e-3, sparse categorical
cross-entropy from logits) through `keras_snn.training.fit` in these
configurations, each in its own process(es):

    one          one device, per-replica batch B
    mirrored     MirroredStrategy over 2 replicas (the first 2 GPUs, or 2
                 logical CPU devices where there are fewer GPUs; with
                 one GPU `one` runs on it and `mirrored` on the CPU, which
                 do not compare), batch B per replica (global 2B)
    multiworker  MultiWorkerMirroredStrategy, 2 worker processes on
                 127.0.0.1 (ports from the OS, one GPU each where there
                 are GPUs), batch B per replica (global 2B)
    one-global   one device, batch 2B (the global batch of the two above)

Timing: a callback reads `time.perf_counter()` in `on_train_batch_begin`
and `on_train_batch_end`; Keras (and the multi-worker loop of
`keras_snn.training`) hand it the step's logs as Python floats, so the
step has finished when `on_train_batch_end` runs. The first `--warmup`
steps (tracing, first allocations) are dropped; throughput is
global batch x timed steps / the sum of the timed step times. Under
`multiworker` the chief's (worker 0's) figure is reported; both workers
run every step together (collectives), the other's is in `--json`.

XLA is off in every configuration by default (it cannot place replicas on
logical CPU devices nor, here, across workers); `--jit` asks for it and
`keras_snn.training.fit` keeps it only where `jit_supported` allows (the
XLA column says where it ran). Thread settings are TensorFlow's defaults
in every process: two workers on one machine share its cores.

The parent process never imports TensorFlow. `--rounds` runs the whole
set several times (alternating the order) and reports each
configuration's fastest round, since load from other processes only ever
slows a run down. It prints a markdown table with each configuration's
throughput relative to `one`; on a shared, noisy machine compare the
ratios within one run.

Run:

    python benchmarks/distributed_throughput.py
    python benchmarks/distributed_throughput.py --batch 32 --steps 20 \\
        --warmup 3 --rounds 2 --configs one mirrored multiworker
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))]

from bench_common import integer_at_least  # noqa: E402 (beside this file)

RESULT_PREFIX = "DISTRIBUTED_THROUGHPUT_RESULT "
CONFIGS = {
    "one": "one device, batch B",
    "mirrored": "MirroredStrategy, 2 replicas in 1 process",
    "multiworker": "MultiWorkerMirroredStrategy, 2 worker processes",
    "one-global": "one device, batch 2B",
}
DEFAULT_SPEC = "16C3-AP2-32C3-AP2-64FC-Decoding"
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


# --------------------------------------------------------------------------
# Child: one process of one configuration; prints one JSON line.
# --------------------------------------------------------------------------


def _child(args):
    import tensorflow as tf

    config = args.config
    worker_index = 0
    if config == "multiworker":
        worker_index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    gpus = tf.config.list_physical_devices("GPU")
    if config == "mirrored" and len(gpus) < 2:
        # Two replicas on this machine's CPU: two logical CPU devices
        # (their kernels share the process's thread pools).
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    if config == "multiworker" and gpus:
        # One replica per worker: worker i sees one GPU (shared, growing
        # its memory as needed, where there is only one).
        gpu = gpus[worker_index % len(gpus)]
        tf.config.set_visible_devices(gpu, "GPU")
        tf.config.experimental.set_memory_growth(gpu, True)

    import keras
    import numpy as np

    import keras_snn

    if config in ("one", "one-global"):
        strategy = keras_snn.training.get_strategy("one")
    elif config == "mirrored":
        devices = None
        if len(gpus) >= 2:
            logical = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in logical[:2]]
        strategy = keras_snn.training.get_strategy("mirrored", devices)
    else:
        strategy = keras_snn.training.get_strategy("multiworker")
    per_replica = args.batch * (2 if config == "one-global" else 1)
    info = keras_snn.training.describe(strategy, per_replica)
    global_batch = info["global_batch_size"]
    total_steps = args.warmup + args.steps

    rng = np.random.default_rng(args.seed)
    x = rng.random((global_batch * total_steps, *INPUT_SHAPE), "float32")
    y = rng.integers(0, NUM_CLASSES, len(x)).astype("int32")

    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        model = keras_snn.models.from_spec(
            args.spec,
            input_shape=INPUT_SHAPE,
            num_classes=NUM_CLASSES,
            timesteps=args.timesteps,
            norm="tdbn",
            synchronized=True,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=args.jit,
        )

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self.loss = None

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # Python floats: the step (and its collectives) has finished.
            self.loss = float((logs or {}).get("loss", float("nan")))
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    start = time.perf_counter()
    keras_snn.training.fit(
        model,
        x,
        y,
        per_replica_batch_size=per_replica,
        epochs=1,
        seed=args.seed,
        callbacks=[timer],
        verbose=0,
        jit_compile=args.jit,
    )
    fit_s = time.perf_counter() - start
    if len(timer.times) != total_steps:
        raise RuntimeError(
            f"ran {len(timer.times)} steps, expected {total_steps}"
        )
    timed = timer.times[args.warmup :]
    return {
        "config": config,
        "worker": worker_index,
        "strategy": info["strategy"],
        "devices": info["devices"],
        "workers": info["workers"],
        "replicas": info["replicas"],
        "per_replica_batch": per_replica,
        "global_batch": global_batch,
        "xla": bool(model.jit_compile),
        "examples_per_s": global_batch * len(timed) / sum(timed),
        "median_step_s": float(np.median(timed)),
        "step_s": timed,
        "warmup_s": sum(timer.times[: args.warmup]),
        "fit_s": fit_s,
        "loss": timer.loss,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_snn": keras_snn.__version__,
        },
        "gpus": len(gpus),
    }


# --------------------------------------------------------------------------
# Parent: starts the processes of each configuration; never imports TF.
# --------------------------------------------------------------------------


def _free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _child_command(config, args):
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        config,
        "--spec",
        args.spec,
        "--batch",
        str(args.batch),
        "--timesteps",
        str(args.timesteps),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
        *(["--jit"] if args.jit else []),
    ]


def _parse(output):
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def _failure(returncode, output):
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    return {
        "error": f"exit {returncode}: " + (lines[-1] if lines else "no output"),
        "output_tail": "\n".join(lines[-25:]),
    }


def _kill(processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def _run_config(config, args):
    """Runs one configuration; returns its (chief's) result or an error."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["KERAS_BACKEND"] = "tensorflow"
    count = 2 if config == "multiworker" else 1
    ports = _free_ports(count) if count > 1 else None
    processes = []
    start = time.perf_counter()
    try:
        for index in range(count):
            if ports:
                env = dict(
                    env,
                    TF_CONFIG=json.dumps(
                        {
                            "cluster": {
                                "worker": [f"127.0.0.1:{p}" for p in ports]
                            },
                            "task": {"type": "worker", "index": index},
                        }
                    ),
                )
            processes.append(
                subprocess.Popen(
                    _child_command(config, args),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        outputs = _wait_all(processes, start + args.child_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.child_timeout:.0f} s"}
    finally:
        _kill(processes)
    wall = time.perf_counter() - start
    # The worker that failed by itself (exit > 0) before one that was
    # killed because of it.
    order = sorted(range(count), key=lambda i: processes[i].returncode <= 0)
    for i in order:
        if processes[i].returncode != 0 or _parse(outputs[i]) is None:
            return _failure(processes[i].returncode, outputs[i])
    results = [_parse(output) for output in outputs]
    chief = dict(results[0])
    chief["wall_s"] = wall
    if len(results) > 1:
        chief["other_workers"] = results[1:]
    return chief


def _wait_all(processes, deadline):
    """Outputs of all processes; kills all when one fails or time is up.

    Output is read by threads so that a chatty child never blocks on a
    full pipe; a failed worker would leave the other waiting on its
    collectives, so the first non-zero exit ends the configuration.
    """
    import threading

    outputs = [None] * len(processes)

    def read(i):
        outputs[i] = processes[i].stdout.read()

    readers = [
        threading.Thread(target=read, args=(i,), daemon=True)
        for i in range(len(processes))
    ]
    for reader in readers:
        reader.start()
    while True:
        codes = [p.poll() for p in processes]
        if all(code is not None for code in codes):
            break
        if any(code not in (None, 0) for code in codes):
            break
        if time.perf_counter() > deadline:
            _kill(processes)
            raise subprocess.TimeoutExpired(processes[0].args, 0)
        time.sleep(0.05)
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()
    for reader in readers:
        reader.join(timeout=30)
    return [output or "" for output in outputs]


def _best(round_results):
    """The fastest successful round (load from elsewhere only slows)."""
    ok = [r for r in round_results if "error" not in r]
    if not ok:
        return round_results[-1]
    best = dict(max(ok, key=lambda r: r["examples_per_s"]))
    best["per_round"] = [r.get("examples_per_s") for r in round_results]
    return best


def _parser():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--batch",
        type=integer_at_least(1),
        default=32,
        help="per-replica batch B",
    )
    parser.add_argument("--timesteps", type=integer_at_least(1), default=4)
    parser.add_argument(
        "--steps", type=integer_at_least(1), default=20, help="timed steps"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="steps run before the timed ones (not timed; >= 1 "
        "recommended: the first includes tracing)",
    )
    parser.add_argument(
        "--rounds",
        type=integer_at_least(1),
        default=1,
        help="times each configuration is run (fresh processes each, "
        "alternating order); the fastest round is reported",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        metavar="CONFIG",
        help=f"any of {', '.join(CONFIGS)} (default: all)",
    )
    parser.add_argument("--spec", default=DEFAULT_SPEC)
    parser.add_argument(
        "--jit",
        action="store_true",
        help="ask for XLA (kept only where the strategy allows it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--child-timeout",
        type=float,
        default=300.0,
        help="seconds allowed to each configuration's process(es)",
    )
    parser.add_argument("--json", metavar="OUT", help="write results here")
    parser.add_argument(
        "--child", choices=list(CONFIGS), help=argparse.SUPPRESS
    )
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error(f"argument --warmup: must be >= 0, got {args.warmup}")
    if args.child_timeout <= 0:
        parser.error("argument --child-timeout: must be > 0")

    if args.child:
        args.config = args.child
        result = _child(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    total_start = time.perf_counter()
    configs = list(dict.fromkeys(args.configs))
    runs = {config: [] for config in configs}
    for round_index in range(args.rounds):
        # Alternate the order so that drifts in the machine's load hit
        # every configuration alike.
        for config in configs if round_index % 2 == 0 else configs[::-1]:
            result = _run_config(config, args)
            runs[config].append(result)
            status = result.get("error") or (
                f"{result['examples_per_s']:.1f} examples/s"
            )
            print(
                f"[{time.perf_counter() - total_start:6.1f} s] round "
                f"{round_index + 1}, {config}: {status}",
                file=sys.stderr,
                flush=True,
            )
    results = {config: _best(rs) for config, rs in runs.items()}

    ok = [r for r in results.values() if "error" not in r]
    versions = ok[0]["versions"] if ok else {}
    gpus = ok[0]["gpus"] if ok else None
    base = results.get("one", {}).get("examples_per_s")
    print(
        f"\nspec {args.spec}, input 28x28x1 (random), T={args.timesteps}, "
        f"tdBN synchronized, B={args.batch} per replica, {args.warmup} "
        f"warm-up + {args.steps} timed steps through "
        f"keras_snn.training.fit, best of {args.rounds} round(s); "
        "examples/s = global batch x timed steps / "
        "their summed step time; "
        + "".join(f"{k} {v}, " for k, v in versions.items())
        + f"os.cpu_count()={os.cpu_count()}"
        + ("" if gpus is None else f", GPUs={gpus}")
        + "\n"
    )
    print(
        "| configuration | replicas | global batch | XLA | examples/s "
        "| ratio to one | median step ms | examples/s per round |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for config, r in results.items():
        if "error" in r:
            print(f"| {config} | - | - | - | error: {r['error']} | - | - | - |")
            continue
        per_round = ", ".join(
            "error" if x is None else f"{x:.0f}" for x in r["per_round"]
        )
        ratio = r["examples_per_s"] / base if base else None
        print(
            f"| {config} ({CONFIGS[config]}) | {r['replicas']} | "
            f"{r['global_batch']} | {'yes' if r['xla'] else 'no'} | "
            f"{r['examples_per_s']:.1f} | "
            f"{'-' if ratio is None else format(ratio, '.2f')} | "
            f"{1000 * r['median_step_s']:.1f} | {per_round} |"
        )
    for config, rs in runs.items():
        for round_index, r in enumerate(rs):
            if "error" in r:
                print(
                    f"\n{config}, round {round_index + 1} failed:\n"
                    f"{r.get('output_tail', r['error'])}"
                )
    print(f"\ntotal wall time {time.perf_counter() - total_start:.0f} s")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "args": {
                        k: v
                        for k, v in vars(args).items()
                        if k not in ("child", "config")
                    },
                    "cpu_count": os.cpu_count(),
                    "results": results,
                    "rounds": runs,
                },
                file,
                indent=1,
            )
    failed = any("error" in r for rs in runs.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
