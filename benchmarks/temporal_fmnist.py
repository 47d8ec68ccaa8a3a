"""Sequential Fashion-MNIST: recurrent spiking networks against an LSTM.

Each image is fed row by row, `T = 28` steps of 28 pixels (scaled to
[0, 1]), and the label is read out after the last row. Four models are
trained with the same budget (Adam with the same cosine-decayed learning
rate, the same batch size and number of epochs, sparse categorical
cross-entropy from logits):

    alif-rec  TimeFolded(Dense(H)) -> ALIF(recurrent=True) -> head
    lif-rec   TimeFolded(Dense(H)) -> LIF(recurrent=True)  -> head
    lif-ff    TimeFolded(Dense(H)) -> LIF (no recurrence)  -> head
    lstm      keras.layers.LSTM(H') -> Dense(10), H' chosen so that its
              parameter count is the nearest to that of alif-rec

The spiking head is `keras_snn.layers.MembraneReadout(10, mode="last")`:
non-spiking output neurons whose potential after the last row are the
logits (leak `--readout-decay`). `recurrent=True` adds the synapses
`o[t-1] W_rec` from the layer's own spikes of the previous row (H x H
weights, no bias), so alif-rec and lif-rec have the same parameters and
lif-ff has H x H fewer.

Each model is trained in its own subprocess (`--in-process` runs them in
this process, for tests) with `jit_compile=True` (XLA); where XLA fails for
a model it is retried without, and the table says which ran. Training time
is the wall time of `model.fit` (the first epoch includes tracing and XLA
compilation); s/epoch is the median epoch time. The parent process never
imports TensorFlow. It prints a markdown table (and `--json` writes every
figure), with the machine's load average before and after.

`--dataset digits` swaps in scikit-learn's 8x8 digits fed row by row
(T = 8 steps of 8 pixels) as a small stand-in, used by the tests.

Run:

    python benchmarks/temporal_fmnist.py --epochs 10 --lr 5e-3
    python benchmarks/temporal_fmnist.py --epochs 1 --limit 5000 \\
        --models alif-rec lstm --json out.json
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

RESULT_PREFIX = "TEMPORAL_FMNIST_RESULT "
CLASSES = 10
MODELS = {
    "alif-rec": "recurrent ALIF",
    "lif-rec": "recurrent LIF",
    "lif-ff": "feed-forward LIF",
    "lstm": "Keras LSTM",
}
INPUTS = {"fashion_mnist": 28, "digits": 8}


# --------------------------------------------------------------------------
# Parameter counts, computed without TensorFlow (and checked in the child
# against `model.count_params()`).
# --------------------------------------------------------------------------


def spiking_parameters(inputs, hidden, recurrent):
    """Dense(H) on each row, W_rec if recurrent, MembraneReadout(10)."""
    count = inputs * hidden + hidden + hidden * CLASSES + CLASSES
    if recurrent:
        count += hidden * hidden
    return count


def lstm_parameters(inputs, units):
    """LSTM(units) with bias, then Dense(10)."""
    return 4 * units * (inputs + units + 1) + units * CLASSES + CLASSES


def lstm_units_for(target, inputs):
    """The LSTM width whose parameter count is the nearest to `target`."""
    # 4 u^2 + (4 (inputs + 1) + CLASSES) u + CLASSES = target
    b = 4 * (inputs + 1) + CLASSES
    root = (-b + math.sqrt(b * b + 16 * (target - CLASSES))) / 8
    candidates = [max(1, math.floor(root)), max(1, math.ceil(root))]
    return min(
        candidates, key=lambda u: abs(lstm_parameters(inputs, u) - target)
    )


def expected_parameters(model, inputs, hidden, lstm_units):
    if model == "lstm":
        return lstm_parameters(inputs, lstm_units)
    return spiking_parameters(inputs, hidden, model != "lif-ff")


# --------------------------------------------------------------------------
# Child: trains one model, returns one dict.
# --------------------------------------------------------------------------


def _load(dataset, limit):
    import keras_snn

    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        dataset
    )
    # (N, H, W, 1) in [0, 1] -> (N, T=H rows, W pixels).
    x_train, x_test = x_train[..., 0], x_test[..., 0]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    return (x_train, y_train), (x_test, y_test)


def _learnable(value):
    """`--trainable-*` as the neuron layers take it (`"none"`: `False`)."""
    return False if value in (None, "none") else value


def build_model(name, steps, inputs, args, lstm_units):
    import keras

    import keras_snn

    sequence = keras.Input((steps, inputs), name="rows")
    if name == "lstm":
        x = keras.layers.LSTM(lstm_units)(sequence)
        logits = keras.layers.Dense(CLASSES)(x)
        return keras.Model(sequence, logits, name=name)
    current = keras_snn.layers.TimeFolded(keras.layers.Dense(args.hidden))(
        sequence
    )
    common = dict(
        threshold=args.threshold,
        decay=args.decay,
        surrogate=args.surrogate,
        recurrent=name != "lif-ff",
        trainable_decay=_learnable(args.trainable_decay),
        trainable_threshold=_learnable(args.trainable_threshold),
    )
    if name == "alif-rec":
        neuron = keras_snn.layers.ALIF(
            adaptation=args.adaptation,
            adaptation_decay=args.adaptation_decay,
            **common,
        )
    else:
        neuron = keras_snn.layers.LIF(**common)
    spikes = neuron(current)
    logits = keras_snn.layers.MembraneReadout(
        CLASSES, decay=args.readout_decay, mode="last"
    )(spikes)
    return keras.Model(sequence, logits, name=name)


def train_one(name, args):
    """Trains and evaluates model `name`; returns a dict of results."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = _load(args.dataset, args.limit)
    steps, inputs = x_train.shape[1:]
    lstm_units = args.lstm_units or lstm_units_for(
        spiking_parameters(inputs, args.hidden, True), inputs
    )
    steps_per_epoch = math.ceil(len(x_train) / args.batch)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    result = {"model": name, "description": MODELS[name]}
    for jit in (True, False) if args.jit else (False,):
        keras.utils.set_random_seed(args.seed)
        model = build_model(name, steps, inputs, args, lstm_units)
        schedule = keras.optimizers.schedules.CosineDecay(
            args.lr, decay_steps=args.epochs * steps_per_epoch
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=jit,
        )
        times = []
        start = time.perf_counter()
        try:
            history = model.fit(
                x_train,
                y_train,
                batch_size=args.batch,
                epochs=args.epochs,
                shuffle=True,
                verbose=2 if args.verbose else 0,
                callbacks=[EpochTimes()],
            )
        except Exception as err:  # XLA refused: retry without it
            if not jit:
                raise
            result["xla_error"] = f"{type(err).__name__}: {err}"[:300]
            continue
        train_s = time.perf_counter() - start
        break
    _, accuracy = model.evaluate(
        x_test, y_test, batch_size=max(args.batch, 256), verbose=0
    )
    count = int(model.count_params())
    expected = expected_parameters(name, inputs, args.hidden, lstm_units)
    if name != "lstm":  # a learned decay/threshold: 1 or H numbers
        expected += sum(
            {"layer": 1, "channel": args.hidden, "neuron": args.hidden}.get(
                value, 0
            )
            for value in (args.trainable_decay, args.trainable_threshold)
        )
    if count != expected:
        raise RuntimeError(
            f"{name}: {count} parameters, the formula says {expected}"
        )
    rate = None
    if name != "lstm":
        neuron_output = keras.Model(model.inputs, model.layers[2].output)
        rate = float(np.mean(neuron_output.predict(x_test[:512], verbose=0)))
    result.update(
        parameters=count,
        hidden=lstm_units if name == "lstm" else args.hidden,
        test_accuracy=float(accuracy),
        train_accuracy=float(history.history["accuracy"][-1]),
        train_s=train_s,
        epoch_s=float(np.median(times)),
        epoch_times=times,
        xla=jit,
        spike_rate=rate,
        train_samples=int(len(x_train)),
        test_samples=int(len(x_test)),
        steps=int(steps),
    )
    return result


# --------------------------------------------------------------------------
# Parent: never imports TensorFlow.
# --------------------------------------------------------------------------


def _child_argv(args, name):
    argv = ["--child", "--models", name]
    for key in (
        "dataset epochs batch hidden limit lr threshold decay adaptation "
        "adaptation_decay readout_decay surrogate seed lstm_units "
        "trainable_decay trainable_threshold"
    ).split():
        value = getattr(args, key)
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    if not args.jit:
        argv.append("--no-jit")
    if args.verbose:
        argv.append("--verbose")
    return argv


def _run_child(args, name):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    cmd = [sys.executable, os.path.abspath(__file__), *_child_argv(args, name)]
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None if args.verbose else subprocess.PIPE,
            text=True,
            timeout=args.child_timeout,
        )
    except subprocess.TimeoutExpired:
        return {"model": name, "error": f"timed out ({args.child_timeout} s)"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    return {
        "model": name,
        "error": f"exit {proc.returncode}: "
        + (lines[-1] if lines else "no output"),
    }


def _load_average():
    try:
        return os.getloadavg()
    except OSError:
        return None


def table(results):
    """The markdown table of the results, one row per model."""
    rows = [
        "| model | hidden | parameters | test accuracy | train accuracy "
        "| training s | s/epoch | XLA | spike rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = f"{r['model']} ({MODELS[r['model']]})"
        if "error" in r:
            rows.append(f"| {name} | error: {r['error']} |||||||| ")
            continue
        rate = "-" if r["spike_rate"] is None else f"{r['spike_rate']:.3f}"
        rows.append(
            f"| {name} | {r['hidden']} | {r['parameters']:,} | "
            f"{100 * r['test_accuracy']:.2f}% | "
            f"{100 * r['train_accuracy']:.2f}% | {r['train_s']:.0f} | "
            f"{r['epoch_s']:.0f} | {'yes' if r['xla'] else 'no'} | {rate} |"
        )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODELS), default=list(MODELS)
    )
    parser.add_argument("--dataset", choices=sorted(INPUTS), default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument(
        "--limit", type=int, default=None, help="training images (subset)"
    )
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--decay", type=float, default=0.9)
    parser.add_argument("--adaptation", type=float, default=1.0)
    parser.add_argument("--adaptation-decay", type=float, default=0.95)
    parser.add_argument("--readout-decay", type=float, default=1.0)
    parser.add_argument("--surrogate", default="sigmoid")
    for name in ("decay", "threshold"):
        parser.add_argument(
            f"--trainable-{name}",
            choices=("none", "layer", "channel", "neuron"),
            default="none",
            help=f"learn the spiking layer's {name} (PLIF); default none",
        )
    parser.add_argument(
        "--lstm-units",
        type=int,
        default=None,
        help="default: the parameter count nearest to alif-rec's",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-jit", dest="jit", action="store_false")
    parser.add_argument("--json", default=None, help="write results here")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="train every model in this process (no subprocesses)",
    )
    parser.add_argument("--child-timeout", type=float, default=3600.0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dataset is None:
        args.dataset = "fashion_mnist"

    if args.child:
        result = train_one(args.models[0], args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return result

    load_before = _load_average()
    start = time.perf_counter()
    results = []
    for name in args.models:
        if args.in_process:
            result = train_one(name, args)
        else:
            result = _run_child(args, name)
        results.append(result)
        status = result.get("error") or (
            f"{100 * result['test_accuracy']:.2f}% in {result['train_s']:.0f} s"
        )
        print(
            f"[{time.perf_counter() - start:6.0f} s] {name}: {status}",
            file=sys.stderr,
            flush=True,
        )
    load_after = _load_average()
    ok = [r for r in results if "error" not in r]
    samples = ok[0]["train_samples"] if ok else "?"
    print(
        f"\n{args.dataset} row by row, {samples} training images, "
        f"{args.epochs} epoch(s), batch {args.batch}, Adam {args.lr:g} with "
        f"cosine decay; spiking: H={args.hidden}, threshold "
        f"{args.threshold:g}, decay {args.decay:g}, ALIF adaptation "
        f"{args.adaptation:g} / {args.adaptation_decay:g}, surrogate "
        f"{args.surrogate}, MembraneReadout decay {args.readout_decay:g}, "
        f"learned decay {args.trainable_decay} / threshold "
        f"{args.trainable_threshold}; nproc={os.cpu_count()}, load average "
        f"before {load_before}, after {load_after}\n"
    )
    print(table(results))
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "arguments": {
                        k: v
                        for k, v in vars(args).items()
                        if k not in ("child", "json")
                    },
                    "machine": platform.platform(),
                    "nproc": os.cpu_count(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "results": results,
                },
                f,
                indent=2,
            )
    return results


if __name__ == "__main__":
    main()
