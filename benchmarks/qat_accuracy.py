"""Accuracy of quantization-aware training against post-training integers.

Issue #18 asks what quantization-aware training (QAT) recovers of the
float model's accuracy once the network runs on the deployed integer
arithmetic. For each data set this trains the float model once, then
reports, on the whole test split:

    float        the float Keras model (`model.predict`)
    float tuned  the control for QAT: a copy of the float model trained
                 in float as long as QAT fine-tunes (same images,
                 epochs, optimizer, learning rate and batch), so that
                 what QAT gains by training longer is not taken for
                 what it recovers of the quantization loss
    PTQ          post-training quantization: `edge.integer.run_integer`
                 of `edge.quantize.quantize(fused, calibration,
                 state_bits)`, where `fused = edge.fuse.fuse(
                 edge.ir.extract(model))`, as `edge.export` runs it
    QAT          `edge.qat.quantize_model(model, calibration, state_bits)`
                 fine-tuned with `fit` for `--qat-epochs` epochs (Adam,
                 learning rate `--qat-lr`), evaluated with `predict`
    agreement    the fraction of test images on which the QAT model's
                 predicted class equals that of the integer reference of
                 its own quantized graph (`edge.integer.run_integer(
                 edge.qat.to_qgraph(qat))`): 1.0 by construction, measured

at each of `--state-bits` (16, as exported, and 8 by default). The
calibration data are the first 500 training images, as in the
quickstart's export.

Data sets and networks (T = 4, direct encoding, rate readout):

- `digits`: the quickstart network (`examples/quickstart_digits.py`'s
  `train`: its split, seed, optimizer and `--digits-epochs` epochs);
  1437 training and 360 test images; QAT fine-tunes on every training
  image (or the first `--digits-qat-train`).
- `fashion_mnist`: a small conv network (conv 8 - BN - LIF - pool, conv
  16 - BN - LIF - pool, dense 128 - LIF, rate, dense 10), trained
  `--fashion-epochs` (5) epochs on the first `--fashion-train` training
  images (all 60000 by default; Adam 1e-3), QAT fine-tuned on the first
  `--fashion-qat-train` (20000) of them (the QAT forward is a Python loop
  over steps in float64, about 5 times slower per image than the float
  model), tested on all 10000 test images (the Debian package files, read
  by `keras_snn.datasets.load_arrays`). The whole run takes about 8
  minutes on 2 cores.

The default learning rate, 5e-4, was chosen on digits among 1e-4, 3e-4,
5e-4 and 1e-3: after 30 float epochs 1e-4..5e-4 keep 0.9944 at 8 state
bits and 1e-3 loses a test image; after 3 float epochs 5e-4 and 1e-3 gain
the most.

QAT s/epoch is the median wall time of one QAT epoch (the first one
includes tracing). The run prints a Markdown table at the end, with the
command, the machine, its load average and the git commit; `--json PATH`
writes every figure.

Run:

    python benchmarks/qat_accuracy.py --json qat.json
    python benchmarks/qat_accuracy.py --datasets digits --qat-lr 1e-4
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path += [os.path.join(HERE, "..", "examples"), os.path.join(HERE, "..")]

TIMESTEPS = 4
CALIBRATION = 500
DATASETS = ("digits", "fashion_mnist")
EVAL_BATCH = 100  # images per integer-reference call (bounds its memory)
COLUMNS = (
    "data set",
    "state bits",
    "float",
    "float tuned",
    "PTQ int",
    "QAT int",
    "QAT vs own int",
    "QAT s/epoch",
    "QAT train images",
)


# -- data and float models -------------------------------------------------
def load_data(dataset, train_limit=None, test_limit=None, seed=0):
    """`(x_train, y_train, x_test, y_test)` of a data set.

    Args:
        dataset: `"digits"` (the quickstart's split) or `"fashion_mnist"`.
        train_limit: keep the first this many training images.
        test_limit: keep the first this many test images (tests only: the
            benchmark always tests on the whole split).
        seed: the digits split's seed.
    """
    if dataset == "digits":
        import quickstart_digits as qs

        x_train, x_test, y_train, y_test = qs.load_digits(seed=seed)
    else:
        import keras_snn

        (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
            dataset
        )
    if train_limit:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    if test_limit:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    return x_train, y_train, x_test, y_test


def _compile_fit(model, x, y, lr, batch_size, epochs, **kwargs):
    """Adam at `lr`, cross-entropy on logits, `fit` quietly; returns
    the model. The float, float-tuned and QAT runs all train so."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=kwargs.pop("jit_compile", "auto"),
    )
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, **kwargs)
    return model


def train_float(dataset, x_train, y_train, epochs, seed=0, batch_size=64):
    """Trains the float model of `dataset` on `(x_train, y_train)`.

    Digits: the quickstart's `build_model` as its `train` trains it
    (batch 32, Adam 1e-3, 10% held out for validation); Fashion-MNIST:
    the quickstart's network with 8 and 16 filters, Adam 1e-3, on every
    given image.

    Returns:
        `(model, seconds)`.
    """
    import keras

    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    import quickstart_digits as qs

    if dataset == "digits":
        model = qs.build_model(TIMESTEPS)
        batch_size, split = 32, 0.1
    else:  # the quickstart's network, narrower: 8 and 16 filters
        model = qs.build_model(TIMESTEPS, x_train.shape[1:], filters=(8, 16))
        split = 0.0
    _compile_fit(
        model,
        x_train,
        y_train,
        1e-3,
        batch_size,
        epochs,
        validation_split=split,
        jit_compile=True,
    )
    return model, time.perf_counter() - start


def finetune_float(model, x_train, y_train, epochs, lr, batch_size):
    """A copy of `model` trained `epochs` more epochs in float (Adam at
    `lr`): the control for QAT, which fine-tunes as long on the same
    images."""
    import tempfile

    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "float.keras")
        model.save(path)
        tuned = keras.models.load_model(path)
    _compile_fit(
        tuned,
        x_train,
        y_train,
        lr,
        batch_size,
        epochs,
        shuffle=True,
        jit_compile=True,
    )
    return tuned


# -- the three accuracies --------------------------------------------------
def accuracy(scores, labels):
    """Fraction of rows of `scores` whose argmax is the label."""
    return float(np.mean(np.argmax(np.asarray(scores), -1) == labels))


def integer_scores(qgraph, x, batch=EVAL_BATCH):
    """`edge.integer.run_integer(qgraph, x)[0]`, `batch` images a call."""
    from edge import integer

    return np.concatenate(
        [
            integer.run_integer(qgraph, x[i : i + batch])[0]
            for i in range(0, len(x), batch)
        ]
    )


def ptq_accuracy(model, calibration, x_test, y_test, state_bits):
    """Accuracy of the integer reference of `model` quantized after
    training at `state_bits`, as `edge.export` quantizes it."""
    from edge import fuse
    from edge import ir
    from edge import quantize

    fused = fuse.fuse(ir.extract(model))
    qgraph = quantize.quantize(fused, np.asarray(calibration), state_bits)
    return accuracy(integer_scores(qgraph, x_test), y_test)


def finetune_qat(
    model, calibration, x_train, y_train, state_bits, epochs, lr, batch_size
):
    """Quantization-aware fine-tuning of a trained float model.

    Returns:
        `(qat_model, epoch_seconds)`: the model made by
        `edge.qat.quantize_model` after `epochs` epochs of `fit` (Adam at
        `lr`), and each epoch's wall time.
    """
    import keras

    from edge import qat

    qat_model = qat.quantize_model(
        model, np.asarray(calibration), state_bits=state_bits
    )
    times = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    _compile_fit(
        qat_model,
        x_train,
        y_train,
        lr,
        batch_size,
        epochs,
        shuffle=True,
        callbacks=[EpochTimes()],
    )
    return qat_model, times


def qat_figures(qat_model, x_test, y_test, batch_size=256):
    """`(accuracy, agreement)` of a QAT model on the test split.

    `agreement` is the fraction of images on which its predicted class
    (`predict`) equals that of the integer reference of its own quantized
    graph (`edge.qat.to_qgraph`).
    """
    from edge import qat

    keras_scores = qat_model.predict(x_test, batch_size=batch_size, verbose=0)
    own = integer_scores(qat.to_qgraph(qat_model), x_test)
    predicted = np.argmax(np.asarray(keras_scores), -1)
    agree = float(np.mean(predicted == np.argmax(own, -1)))
    return accuracy(keras_scores, y_test), agree


def run_dataset(dataset, config, state_bits, log=print):
    """Trains the float model once, then measures PTQ and QAT at each
    state width.

    Args:
        dataset: `"digits"` or `"fashion_mnist"`.
        config: `{"float_epochs", "train_limit", "qat_train_limit",
            "test_limit", "qat_epochs", "qat_lr", "qat_batch", "seed"}`
            (limits may be `None`: every image).
        state_bits: the state widths, e.g. `(16, 8)`.
        log: called with one progress line at a time.

    Returns:
        One row (a dict) per state width.
    """
    x_train, y_train, x_test, y_test = load_data(
        dataset, config["train_limit"], config["test_limit"], config["seed"]
    )
    model, float_s = train_float(
        dataset, x_train, y_train, config["float_epochs"], config["seed"]
    )
    float_accuracy = accuracy(model.predict(x_test, verbose=0), y_test)
    log(
        f"{dataset}: float {float_accuracy:.4f} after "
        f"{config['float_epochs']} epochs on {len(x_train)} images "
        f"({float_s:.0f} s)"
    )
    calibration = x_train[:CALIBRATION]
    qat_limit = config["qat_train_limit"] or len(x_train)
    tuned = finetune_float(
        model,
        x_train[:qat_limit],
        y_train[:qat_limit],
        config["qat_epochs"],
        config["qat_lr"],
        config["qat_batch"],
    )
    tuned_accuracy = accuracy(tuned.predict(x_test, verbose=0), y_test)
    log(f"{dataset}: float fine-tuned as QAT is: {tuned_accuracy:.4f}")
    rows = []
    for bits in state_bits:
        start = time.perf_counter()
        ptq = ptq_accuracy(model, calibration, x_test, y_test, bits)
        ptq_s = time.perf_counter() - start
        qat_model, epoch_s = finetune_qat(
            model,
            calibration,
            x_train[:qat_limit],
            y_train[:qat_limit],
            bits,
            config["qat_epochs"],
            config["qat_lr"],
            config["qat_batch"],
        )
        start = time.perf_counter()
        qat_accuracy, agree = qat_figures(qat_model, x_test, y_test)
        eval_s = time.perf_counter() - start
        row = {
            "dataset": dataset,
            "state_bits": bits,
            "float": float_accuracy,
            "float_tuned": tuned_accuracy,
            "ptq": ptq,
            "qat": qat_accuracy,
            "agreement": agree,
            "qat_epoch_s": float(np.median(epoch_s)),
            "qat_epoch_times": epoch_s,
            "qat_train_images": int(qat_limit),
            "float_train_images": int(len(x_train)),
            "float_epochs": config["float_epochs"],
            "float_train_s": float_s,
            "test_images": int(len(x_test)),
            "ptq_eval_s": ptq_s,
            "qat_eval_s": eval_s,
        }
        log(
            f"{dataset}, state_bits={bits}: PTQ {ptq:.4f}, QAT "
            f"{qat_accuracy:.4f}, agreement {agree:.4f}, QAT epochs "
            + ", ".join(f"{s:.0f}" for s in epoch_s)
            + f" s, PTQ eval {ptq_s:.0f} s, QAT eval {eval_s:.0f} s"
        )
        rows.append(row)
    return rows


# -- report ----------------------------------------------------------------
def table(rows):
    """Markdown table: one line per (data set, state bits)."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['state_bits']} | {r['float']:.4f} "
            f"| {r['float_tuned']:.4f} "
            f"| {r['ptq']:.4f} | {r['qat']:.4f} | {r['agreement']:.4f} "
            f"| {r['qat_epoch_s']:.1f} | {r['qat_train_images']} |"
        )
    return "\n".join(lines)


def git_commit():
    """The commit of this checkout (with `+dirty` if it has changes), or
    `None` outside git."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", HERE, *a], capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets", nargs="+", choices=DATASETS, default=list(DATASETS)
    )
    parser.add_argument("--state-bits", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat-lr", type=float, default=5e-4)
    parser.add_argument("--qat-batch", type=int, default=64)
    parser.add_argument("--digits-epochs", type=int, default=30)
    parser.add_argument(
        "--digits-qat-train",
        type=int,
        default=0,
        help="first N training images for the QAT fine-tune (0: all)",
    )
    parser.add_argument("--fashion-epochs", type=int, default=5)
    parser.add_argument(
        "--fashion-train",
        type=int,
        default=0,
        help="first N training images for the float model (0: all 60000)",
    )
    parser.add_argument(
        "--fashion-qat-train",
        type=int,
        default=20000,
        help="first N of those for the QAT fine-tune (0: all of them)",
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=0,
        help="first N test images only (for tests; 0: the whole split)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args(argv)
    for name in ("qat_epochs", "digits_epochs", "fashion_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1.")
    return args


def configs(args):
    """`{dataset: config}` for `run_dataset` from the parsed arguments."""
    common = {
        "qat_epochs": args.qat_epochs,
        "qat_lr": args.qat_lr,
        "qat_batch": args.qat_batch,
        "test_limit": args.test_limit or None,
        "seed": args.seed,
    }
    return {
        "digits": {
            **common,
            "float_epochs": args.digits_epochs,
            "train_limit": None,
            "qat_train_limit": args.digits_qat_train or None,
        },
        "fashion_mnist": {
            **common,
            "float_epochs": args.fashion_epochs,
            "train_limit": args.fashion_train or None,
            "qat_train_limit": args.fashion_qat_train or None,
        },
    }


def main(argv=None):
    args = _parse(argv)
    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    start = time.perf_counter()
    load_before = os.getloadavg()
    script = os.path.relpath(os.path.abspath(__file__), ROOT)
    command = shlex.join(["python", script, *(argv or sys.argv[1:])])
    rows = []
    for dataset in args.datasets:
        rows += run_dataset(dataset, configs(args)[dataset], args.state_bits)
    ended = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    record = {
        "command": command,
        "arguments": {k: v for k, v in vars(args).items() if k != "json"},
        "commit": git_commit(),
        "machine": platform.platform(),
        "nproc": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "started": started,
        "ended": ended,
        "wall_s": time.perf_counter() - start,
        "rows": rows,
    }
    print()
    print(f"Command: `{command}`")
    print(
        f"Commit {record['commit']}; {record['machine']}, nproc "
        f"{record['nproc']}, load average before {load_before[0]:.2f}, "
        f"after {record['load_after'][0]:.2f}; {started} to {ended} "
        f"({record['wall_s']:.0f} s)"
    )
    for r in rows[:: len(args.state_bits)]:
        print(
            f"- {r['dataset']}: T={TIMESTEPS}, float model trained "
            f"{r['float_epochs']} epochs on {r['float_train_images']} "
            f"training images, QAT fine-tuned {args.qat_epochs} epochs "
            f"(Adam {args.qat_lr:g}, batch {args.qat_batch}) on the first "
            f"{r['qat_train_images']}, tested on {r['test_images']} images"
        )
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
