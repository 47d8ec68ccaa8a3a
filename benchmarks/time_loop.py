"""Training throughput of the spiking time loop, implemented several ways.

Measures `model.train_on_batch` speed (samples/s) of a small convolutional
spiking network,

    input (B=64, T, 28, 28, 1)
    -> TimeFolded(Conv2D(32, 3, "same")) -> LIF
    -> TimeFolded(AveragePooling2D(2)) -> TimeFolded(Flatten())
    -> TimeFolded(Dense(10)) -> GlobalAveragePooling1D (mean over time)

trained with Adam on sparse categorical cross-entropy from logits, for these
ways of running the LIF time loop:

    1  LIF(unroll=False)   symbolic while loop,      jit_compile=False
    2  LIF(unroll=False)   symbolic while loop,      jit_compile=True
    3  LIF(unroll=True)    unrolled Python loop,     jit_compile=False
    4  LIF(unroll=True)    unrolled Python loop,     jit_compile=True
    5  LIF()               default (auto unroll),    jit_compile=True
    6  XLA-step LIF        only the unrolled recurrence in a
                           tf.function(jit_compile=True), rest plain TF,
                           jit_compile=False
    7  TimeDistributed     keras.layers.TimeDistributed instead of
                           TimeFolded, default LIF,  jit_compile=True

Each (variant, T) runs in its own subprocess (so XLA / oneDNN state does not
leak between variants) with 2 intra-op threads and 1 inter-op thread. The
throughput is B / median step time over `--repeats` timed calls that follow
`--warmup` warm-up calls (the first of which includes tracing and any XLA
compilation). The whole set is run `--rounds` times (alternating the order)
and the fastest round of each variant is reported, since load from other
processes only ever slows a run down; the per-round numbers are shown too.
After timing, each child restores the initial weights and reports the norm
of the conv kernel's gradient on the benchmark batch, so that one can see
that gradients flow and agree across variants.

The parent process never imports TensorFlow. It prints a markdown table with
the throughput relative to variant 1 at the same T; on a shared, noisy
machine compare the ratios within one run rather than absolute numbers.

Run:

    python benchmarks/time_loop.py
    python benchmarks/time_loop.py --timesteps 4 8 --repeats 10 --rounds 2
"""

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 64
THREADS_INTRA = 2
THREADS_INTER = 1
RESULT_PREFIX = "TIME_LOOP_RESULT "

VARIANTS = {
    1: "LIF(unroll=False), jit=False",
    2: "LIF(unroll=False), jit=True",
    3: "LIF(unroll=True), jit=False",
    4: "LIF(unroll=True), jit=True",
    5: "LIF() auto, jit=True",
    6: "XLA-step LIF, jit=False",
    7: "TimeDistributed, LIF(), jit=True",
}


# --------------------------------------------------------------------------
# Child: builds one model, times it, prints one JSON line.
# --------------------------------------------------------------------------


def _child(variant, timesteps, repeats, warmup, seed):
    import tensorflow as tf

    # Before any op runs (the env vars set by the parent do the same).
    tf.config.threading.set_intra_op_parallelism_threads(THREADS_INTRA)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS_INTER)

    import keras
    import numpy as np

    import keras_snn

    class XlaStepLIF(keras_snn.layers.LIF):
        """LIF whose unrolled recurrence alone is an XLA-compiled function.

        The layers around it (convolutions, pooling, dense) stay in plain
        TensorFlow, so they use oneDNN kernels; only the elementwise neuron
        dynamics are fused by XLA. Benchmark-only: no masks, potentials or
        trainable neuron parameters.
        """

        def __init__(self, **kwargs):
            super().__init__(unroll=True, **kwargs)
            self._xla_recurrence = tf.function(
                self._recurrence, jit_compile=True, autograph=False
            )

        def _recurrence(self, sequences, v):
            cell = self.cell
            threshold, decay = cell.parameters(sequences.dtype)
            spikes = []
            for t in range(sequences.shape[1]):
                o, _, v = cell.step(sequences[:, t], v, threshold, decay)
                spikes.append(o)
            return tf.stack(spikes, axis=1), v

        def inner_loop(self, sequences, initial_state, mask, training=False):
            if (
                mask is not None
                or self.return_potentials
                or self.cell.trainable_threshold
                or self.cell.trainable_decay
            ):
                raise NotImplementedError("XlaStepLIF: benchmark-only layer")
            outputs, v = self._xla_recurrence(sequences, initial_state[0])
            return outputs[:, -1], outputs, [v]

    keras.utils.set_random_seed(seed)
    if variant == 7:
        wrap = keras.layers.TimeDistributed
    else:
        wrap = keras_snn.layers.TimeFolded
    if variant in (1, 2):
        lif = keras_snn.layers.LIF(unroll=False)
    elif variant in (3, 4):
        lif = keras_snn.layers.LIF(unroll=True)
    elif variant == 6:
        lif = XlaStepLIF()
    else:
        lif = keras_snn.layers.LIF()
    jit = variant in (2, 4, 5, 7)

    inputs = keras.Input((timesteps, 28, 28, 1))
    x = wrap(keras.layers.Conv2D(32, 3, padding="same"))(inputs)
    x = lif(x)
    x = wrap(keras.layers.AveragePooling2D(2))(x)
    x = wrap(keras.layers.Flatten())(x)
    x = wrap(keras.layers.Dense(10))(x)
    outputs = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, outputs)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit
    )

    rng = np.random.default_rng(seed)
    xb = rng.random((BATCH, timesteps, 28, 28, 1), dtype=np.float32)
    yb = rng.integers(0, 10, size=(BATCH,)).astype("int32")
    initial_weights = model.get_weights()

    warm_times = []
    for _ in range(warmup):
        start = time.perf_counter()
        model.train_on_batch(xb, yb)  # returns numpy: synchronous
        warm_times.append(time.perf_counter() - start)
    step_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(xb, yb)
        step_times.append(time.perf_counter() - start)
    median = float(np.median(step_times))

    # Gradient check (not timed): from the initial weights, eager tape.
    model.set_weights(initial_weights)
    kernel = model.layers[1].layer.kernel
    with tf.GradientTape() as tape:
        logits = model(xb, training=True)
        value = loss(yb, logits)
    grad = tape.gradient(value, kernel.value)
    grad_norm = None if grad is None else float(tf.norm(grad))
    spike_rate = float(tf.reduce_mean(lif(model.layers[1](xb))))

    return {
        "variant": variant,
        "timesteps": timesteps,
        "samples_per_s": BATCH / median,
        "median_step_s": median,
        "first_call_s": warm_times[0] if warm_times else None,
        "warmup_s": sum(warm_times),
        "grad_norm": grad_norm,
        "spike_rate": spike_rate,
        "loss0": float(value),
    }


# --------------------------------------------------------------------------
# Parent: one subprocess per (variant, T); never imports TensorFlow.
# --------------------------------------------------------------------------


def _run_child(variant, timesteps, args):
    env = dict(os.environ)
    env.update(
        TF_NUM_INTRAOP_THREADS=str(THREADS_INTRA),
        TF_NUM_INTEROP_THREADS=str(THREADS_INTER),
        OMP_NUM_THREADS=str(THREADS_INTRA),
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_BACKEND="tensorflow",
    )
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--variant",
        str(variant),
        "--timesteps",
        str(timesteps),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
    ]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.child_timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.child_timeout} s"}
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            result["wall_s"] = wall
            return result
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {
        "error": f"exit {proc.returncode}: "
        + (lines[-1] if lines else "no output"),
        "stderr_tail": "\n".join(lines[-25:]),
    }


def _best(round_results):
    """Fastest successful round (external load only ever slows a run)."""
    ok = [r for r in round_results if "error" not in r]
    if not ok:
        return round_results[-1]
    best = dict(max(ok, key=lambda r: r["samples_per_s"]))
    best["warmup_s"] = min(r["warmup_s"] for r in ok)
    best["first_call_s"] = min(r["first_call_s"] for r in ok)
    return best


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[4, 8])
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed train_on_batch calls per variant (>= 8 recommended)",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times each variant is run (fresh subprocess each); the "
        "fastest round is reported",
    )
    parser.add_argument(
        "--variants", type=int, nargs="+", default=sorted(VARIANTS)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child-timeout", type=float, default=300.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = _child(
            args.variant,
            args.timesteps[0],
            args.repeats,
            args.warmup,
            args.seed,
        )
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    runs = {
        key: []
        for key in ((v, t) for t in args.timesteps for v in args.variants)
    }
    total_start = time.perf_counter()
    order = list(runs)
    for round_index in range(args.rounds):
        # Alternate the order so slow drifts in machine load hit all
        # variants alike.
        for variant, timesteps in (
            order if round_index % 2 == 0 else (order[::-1])
        ):
            result = _run_child(variant, timesteps, args)
            runs[variant, timesteps].append(result)
            status = result.get("error") or (
                f"{result['samples_per_s']:.1f} samples/s"
            )
            print(
                f"[{time.perf_counter() - total_start:6.1f} s] round "
                f"{round_index + 1}, variant {variant}, T={timesteps}: "
                f"{status}",
                file=sys.stderr,
                flush=True,
            )
    results = {key: _best(rs) for key, rs in runs.items()}

    print(
        f"\nB={BATCH}, {args.warmup} warm-up + {args.repeats} timed "
        f"train_on_batch calls, {THREADS_INTRA} intra-op / {THREADS_INTER} "
        f"inter-op threads, nproc={os.cpu_count()}; samples/s = B / median "
        f"step time, best of {args.rounds} round(s) (each round: one fresh "
        "subprocess per variant)\n"
    )
    print(
        "| variant | T | train samples/s | ratio to variant 1 | warm-up s "
        "| first call s | conv grad norm | samples/s per round |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for timesteps in args.timesteps:
        base = results.get((1, timesteps), {}).get("samples_per_s")
        for variant in args.variants:
            r = results[variant, timesteps]
            name = f"{variant}. {VARIANTS[variant]}"
            if "error" in r:
                print(
                    f"| {name} | {timesteps} | error: {r['error']} "
                    "| - | - | - | - | - |"
                )
                continue
            ratio = r["samples_per_s"] / base if base else None
            per_round = ", ".join(
                _fmt(x.get("samples_per_s"), ".0f")
                for x in runs[variant, timesteps]
            )
            print(
                f"| {name} | {timesteps} | {r['samples_per_s']:.1f} | "
                f"{_fmt(ratio, '.2f')} | {r['warmup_s']:.1f} | "
                f"{_fmt(r['first_call_s'], '.1f')} | "
                f"{_fmt(r['grad_norm'], '.4g')} | {per_round} |"
            )
    errors = [(k, r) for k, rs in runs.items() for r in rs if "error" in r]
    for (variant, timesteps), r in errors:
        print(
            f"\nvariant {variant}, T={timesteps} failed:\n"
            f"{r.get('stderr_tail', r['error'])}"
        )
    print(f"\ntotal wall time {time.perf_counter() - total_start:.0f} s")


if __name__ == "__main__":
    main()
