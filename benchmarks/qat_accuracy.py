"""Accuracy of quantization-aware training against post-training integers.

Issue #18 asks what quantization-aware training (QAT) recovers of the
float model's accuracy once the network runs on the deployed arithmetic,
and whether the deployed program then computes what the QAT model
predicts. For each data set this trains the float model once, then
reports, on the whole test split, in each arithmetic (the int8 profile
at each of `--state-bits`, 16 as exported and 8, the least `edge.quantize`
and the C runtime accept; the Loihi profile, 8-bit weight mantissas and
24-bit state), with `benchmarks/qat_deployed.py`:

    float        the float Keras model (`model.predict`)
    float tuned  the control for QAT: a copy of the float model trained
                 in float as long as QAT fine-tunes (same images,
                 epochs, optimizer, learning rate and batch), so that
                 what QAT gains by training longer is not taken for
                 what it recovers of the quantization loss
    PTQ          post-training quantization, as `edge.export` runs it:
                 `fused = edge.fuse.fuse(edge.ir.extract(model))`, then
                 int8: `edge.integer.run_integer` of `edge.quantize.
                 quantize(fused, calibration, state_bits)`; Loihi:
                 `edge.targets.loihi.run_loihi` of `quantize_loihi(fused)`
    QAT          `edge.qat.quantize_model(model, calibration, state_bits,
                 profile=...)` fine-tuned with `fit` for `--qat-epochs`
                 epochs (Adam, learning rate `--qat-lr`), `predict`
    QAT vs own   the fraction of test images on which the QAT model's
    reference    predicted class equals that of the reference of its own
                 quantized graph (`run_integer(edge.qat.to_qgraph(qat))`,
                 `run_loihi(edge.qat.to_lgraph(qat))`): 1.0 by
                 construction, measured
    deployed     the fraction of test images on which the deployed program
    bit-exact    of that graph gives outputs equal to the reference's,
                 every one of them, at every step: for int8 the C runtime
                 (the C target's own generator and test harness,
                 `edge.targets.c.run_c`, host gcc, `--c-chunk` images per
                 build), its per-step output integers; for Loihi the NetX
                 file in Lava's `fixed_pt` simulator (`--lava-chunk`
                 images per run, one stream with resets between images,
                 as the `loihi` target runs them), its output spikes
    QAT vs       the fraction on which the deployed program's predicted
    deployed     class (C: `edge.targets.c.output_scores`; Lava: the host
                 readout `edge.targets.loihi.decode`) equals the QAT Keras
                 model's

The calibration data of the int8 profile are the first 500 training
images, as in the quickstart's export; the Loihi profile's scales come
from the weights.

The C check of 10,000 Fashion-MNIST images took 14 s (2026-12-04, 2
cores: 5 builds of 2000 images, each embedding a 5.9 MB test-data header:
generating 1.3 s, gcc 8.5 s, running 4.1 s, reading the 1.8 MB printout
0.1 s); the integer reference of the same images took 20 s.

Data sets and networks (T = 4, direct encoding, rate readout):

- `digits`: the quickstart network (`examples/quickstart_digits.py`'s
  `train`: its split, seed, optimizer and `--digits-epochs` epochs; 32
  and 64 filters, or `--digits-filters`);
  1437 training and 360 test images; QAT fine-tunes on every training
  image (or the first `--digits-qat-train`).
- `fashion_mnist`: a small conv network (conv 8 - BN - LIF - pool, conv
  16 - BN - LIF - pool, dense 128 - LIF, rate, dense 10; other widths
  with `--fashion-filters`), trained
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
import os
import platform
import shlex
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path += [
    HERE,
    os.path.join(HERE, "..", "examples"),
    os.path.join(HERE, ".."),
]

import qat_deployed as deployed  # noqa: E402 (beside this file)
from bench_common import git_commit  # noqa: E402

TIMESTEPS = 4
CALIBRATION = 500
DATASETS = ("digits", "fashion_mnist")
DEFAULT_FILTERS = {"digits": (32, 64), "fashion_mnist": (8, 16)}
COLUMNS = (
    "data set",
    "filters",
    "arithmetic",
    "float",
    "float tuned",
    "PTQ",
    "QAT",
    "QAT vs own reference",
    "deployed bit-exact",
    "QAT vs deployed",
    "QAT s/epoch",
    "QAT train images",
    "deployed",
)
DEPLOYED = {"int8": "C (host gcc)", "loihi": "Lava fixed_pt"}


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


def train_float(
    dataset, x_train, y_train, epochs, seed=0, batch_size=64, filters=None
):
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
        batch_size, split = 32, 0.1
    else:
        split = 0.0
    filters = tuple(filters or DEFAULT_FILTERS[dataset])
    model = qs.build_model(TIMESTEPS, x_train.shape[1:], filters=filters)
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


# -- QAT --------------------------------------------------------------------
def finetune_qat(
    model,
    calibration,
    x_train,
    y_train,
    arithmetic,
    epochs,
    lr,
    batch_size,
):
    """Quantization-aware fine-tuning of a trained float model.

    Args:
        arithmetic: `(profile, state_bits)`: `("int8", 16)`, `("int8",
            8)` or `("loihi", 24)`.

    Returns:
        `(qat_model, epoch_seconds)`: the model made by
        `edge.qat.quantize_model` after `epochs` epochs of `fit` (Adam at
        `lr`), and each epoch's wall time.
    """
    import keras

    from edge import qat

    profile, state_bits = arithmetic
    qat_model = qat.quantize_model(
        model,
        None if profile == "loihi" else np.asarray(calibration),
        state_bits=state_bits,
        profile=profile,
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


def arithmetics(profiles, state_bits):
    """`[(profile, state_bits)]`: the int8 profile at each state width,
    then Loihi's (24-bit state)."""
    from keras_snn import loihi_fixed_point

    found = []
    for profile in profiles:
        if profile == "loihi":
            found.append(("loihi", loihi_fixed_point.STATE_BITS))
        else:
            found += [(profile, bits) for bits in state_bits]
    return found


def run_dataset(dataset, config, arithmetic_list, log=print):
    """Trains the float model once, then measures PTQ and QAT in each
    arithmetic.

    Args:
        dataset: `"digits"` or `"fashion_mnist"`.
        config: `{"float_epochs", "train_limit", "qat_train_limit",
            "test_limit", "qat_epochs", "qat_lr", "qat_batch", "seed",
            "filters", "c_chunk", "lava_chunk"}` (limits may be `None`:
            every image; `filters`: the two convolutions' widths, `None`:
            the data set's default; `c_chunk`, `lava_chunk`: images per
            build of the C runtime or per Lava run, 0: no deployed check).
        arithmetic_list: `arithmetics(...)`.
        log: called with one progress line at a time.

    Returns:
        One row (a dict) per arithmetic.
    """
    x_train, y_train, x_test, y_test = load_data(
        dataset, config["train_limit"], config["test_limit"], config["seed"]
    )
    filters = tuple(config["filters"] or DEFAULT_FILTERS[dataset])
    model, float_s = train_float(
        dataset,
        x_train,
        y_train,
        config["float_epochs"],
        config["seed"],
        filters=filters,
    )
    float_accuracy = deployed.accuracy(model.predict(x_test, verbose=0), y_test)
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
    tuned_accuracy = deployed.accuracy(tuned.predict(x_test, verbose=0), y_test)
    log(f"{dataset}: float fine-tuned as QAT is: {tuned_accuracy:.4f}")
    rows = []
    for profile, bits in arithmetic_list:
        start = time.perf_counter()
        ptq = deployed.ptq_accuracy(
            profile, model, calibration, x_test, y_test, bits
        )
        ptq_s = time.perf_counter() - start
        qat_model, epoch_s = finetune_qat(
            model,
            calibration,
            x_train[:qat_limit],
            y_train[:qat_limit],
            (profile, bits),
            config["qat_epochs"],
            config["qat_lr"],
            config["qat_batch"],
        )
        chunk = config["lava_chunk" if profile == "loihi" else "c_chunk"]
        figures = deployed.qat_figures(
            qat_model, x_test, y_test, chunk, profile=profile
        )
        row = {
            "dataset": dataset,
            "filters": list(filters),
            "profile": profile,
            "state_bits": bits,
            "deployed": DEPLOYED[profile],
            "float": float_accuracy,
            "float_tuned": tuned_accuracy,
            "ptq": ptq,
            **figures,
            "qat_epoch_s": float(np.median(epoch_s)),
            "qat_epoch_times": epoch_s,
            "qat_train_images": int(qat_limit),
            "float_train_images": int(len(x_train)),
            "float_epochs": config["float_epochs"],
            "float_train_s": float_s,
            "test_images": int(len(x_test)),
            "ptq_eval_s": ptq_s,
        }
        log(
            f"{dataset} {filters}, {_arithmetic(row)}: PTQ {ptq:.4f}, QAT "
            f"{row['qat']:.4f}, agreement {row['agreement']:.4f}, "
            f"{row['deployed']} bit-exact "
            f"{_fraction(row['deployed_bit_exact'])}, QAT vs deployed "
            f"{_fraction(row['deployed_agreement'])}, QAT epochs "
            + ", ".join(f"{s:.0f}" for s in epoch_s)
            + f" s, PTQ eval {ptq_s:.0f} s, QAT eval "
            f"{row['qat_eval_s']:.0f} s, deployed check "
            f"{_seconds(row['deployed_s'])}"
        )
        rows.append(row)
    return rows


# -- report ----------------------------------------------------------------
def _fraction(value):
    return "-" if value is None else f"{value:.4f}"


def _seconds(value):
    return "-" if value is None else f"{value:.0f} s"


def _arithmetic(row):
    """The arithmetic cell: `int8, 16-bit state` or `Loihi, 24-bit
    state`."""
    name = "Loihi" if row["profile"] == "loihi" else row["profile"]
    return f"{name}, {row['state_bits']}-bit state"


def table(rows):
    """Markdown table: one line per (data set, filters, arithmetic); `-`
    where the deployed check was skipped."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---:|" * (len(COLUMNS) - 4) + "---|",
    ]
    for r in rows:
        cells = (
            r["dataset"],
            "-".join(str(f) for f in r["filters"]),
            _arithmetic(r),
            *(_fraction(r[k]) for k in ("float", "float_tuned", "ptq")),
            *(_fraction(r[k]) for k in ("qat", "agreement")),
            *(_fraction(r[k]) for k in ("deployed_bit_exact",)),
            _fraction(r["deployed_agreement"]),
            f"{r['qat_epoch_s']:.1f}",
            r["qat_train_images"],
            r["deployed"],
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets", nargs="+", choices=DATASETS, default=list(DATASETS)
    )
    parser.add_argument(
        "--profiles",
        nargs="+",
        choices=deployed.PROFILES,
        default=list(deployed.PROFILES),
        help="QAT profiles (default: %(default)s)",
    )
    parser.add_argument(
        "--state-bits",
        type=int,
        nargs="+",
        default=[16, 8],
        help="the int8 profile's state widths (Loihi's is 24)",
    )
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
    for dataset, flag in (
        ("digits", "--digits"),
        ("fashion_mnist", "--fashion"),
    ):
        parser.add_argument(
            f"{flag}-filters",
            type=int,
            nargs=2,
            default=list(DEFAULT_FILTERS[dataset]),
            metavar=("CONV1", "CONV2"),
            help="the two convolutions' widths (default: %(default)s)",
        )
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
    parser.add_argument(
        "--c-chunk",
        type=int,
        default=deployed.C_CHUNK,
        help="test images per build of the C runtime (0: no C check)",
    )
    parser.add_argument(
        "--lava-chunk",
        type=int,
        default=deployed.LAVA_CHUNK,
        help="test images per Lava run (0: no Lava check)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args(argv)
    for name in ("qat_epochs", "digits_epochs", "fashion_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1.")
    for name in ("c_chunk", "lava_chunk"):
        if getattr(args, name) < 0:
            flag = f"--{name.replace('_', '-')}"
            parser.error(
                f"{flag} must be >= 0 (0: no deployed check); received "
                f"{getattr(args, name)}."
            )
    from edge.targets.c.toolchain import HOST_CC

    if "int8" in args.profiles and args.c_chunk and not shutil.which(HOST_CC):
        parser.error(
            f"the C check needs {HOST_CC} (apt install gcc libc6-dev); "
            "pass --c-chunk 0 to skip it."
        )
    if "loihi" in args.profiles and args.lava_chunk:
        from edge.targets import loihi

        if loihi.lava_python() is None:
            parser.error(
                "the Lava check needs Lava (keras-snn consumers install "
                "--targets loihi); pass --lava-chunk 0 to skip it."
            )
    return args


def configs(args):
    """`{dataset: config}` for `run_dataset` from the parsed arguments."""
    common = {
        "qat_epochs": args.qat_epochs,
        "qat_lr": args.qat_lr,
        "qat_batch": args.qat_batch,
        "test_limit": args.test_limit or None,
        "seed": args.seed,
        "c_chunk": args.c_chunk,
        "lava_chunk": args.lava_chunk,
    }
    return {
        "digits": {
            **common,
            "float_epochs": args.digits_epochs,
            "filters": args.digits_filters,
            "train_limit": None,
            "qat_train_limit": args.digits_qat_train or None,
        },
        "fashion_mnist": {
            **common,
            "float_epochs": args.fashion_epochs,
            "filters": args.fashion_filters,
            "train_limit": args.fashion_train or None,
            "qat_train_limit": args.fashion_qat_train or None,
        },
    }


def main(argv=None):
    args = _parse(argv)
    import keras_snn  # noqa: F401  (TensorFlow defaults first)
    from keras_snn import fileio

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    start = time.perf_counter()
    load_before = os.getloadavg()
    script = os.path.relpath(os.path.abspath(__file__), ROOT)
    command = shlex.join(["python", script, *(argv or sys.argv[1:])])
    rows = []
    arithmetic_list = arithmetics(args.profiles, args.state_bits)
    for dataset in args.datasets:
        rows += run_dataset(dataset, configs(args)[dataset], arithmetic_list)
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
    for r in rows[:: len(arithmetic_list)]:
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
        fileio.write_json(record, args.json, indent=1)
    return rows


if __name__ == "__main__":
    main()
