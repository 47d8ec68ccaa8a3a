"""Class agreement of each deployed integer arithmetic with the float model.

Issue #14 asks for one deployed integer arithmetic, chosen by fidelity.
This measures, for each candidate, how often it predicts the class that
the float Keras model predicts (`argmax` of `model.predict`'s aggregated
output) on the evaluation inputs:

    edge-integer  the integer reference: `edge.integer.run_integer` on
                  `edge.quantize.quantize(fused, calibration)` (its
                  default state bits), as `edge.export` runs it
    tflite-int8   the TFLite converter's int8 post-training quantization:
                  `edge.targets.tflite.converter.convert(fused, "int8",
                  calibration)` run step by step in LiteRT
                  (`run_quantized(LiteRTRunner(model), ...)`)

where `fused = edge.fuse.fuse(edge.ir.extract(model))`.

Networks:

- the quickstart network (`examples/quickstart_digits.py`'s
  `build_model`, T=4), trained `--quickstart-epochs` epochs (3 by
  default: enough for it to fire and classify, short enough for a
  benchmark) on the digits training split with the quickstart's seed and
  optimizer; calibrated on the first 500 training images as the
  quickstart's export is, evaluated on the whole test split (360 images),
  where accuracy against the labels is shown too;
- `--networks` random networks of `edge.fuzz` (`draw_spec` with a
  `RandomChooser`, then `build`): network `i` is drawn from
  `numpy.random.default_rng(seed + i)`, so seeds `seed .. seed + N - 1`;
  as in `edge.fuzz`, calibrated on `inputs_for(spec, 32, spec["seed"])`
  and evaluated on `inputs_for(spec, samples, spec["seed"] + 1)`.

A network on which an arithmetic raises (an `UnsupportedLayerError`, a
`CalibrationError`, or anything else) counts as refused for that
arithmetic and is left out of its mean, minimum and 10th percentile
(`numpy.percentile`, linear interpolation); the reasons are listed under
the table. The last column is the mean over the networks on which the
Keras model predicts more than one class: on the others (a constant
prediction) agreement says little. If the installed `edge` has no int8
TFLite converter, the `tflite-int8` column is skipped with a note.

Run:

    python benchmarks/integer_fidelity.py
    python benchmarks/integer_fidelity.py --networks 60 --json out.json

To measure another checkout's `edge` (the code it imports is printed
first), put it first on the path:

    cd /path/to/other
    PYTHONPATH=$PWD python /path/to/keras-snn/benchmarks/integer_fidelity.py
"""

import argparse
import collections
import json
import os
import sys

import numpy as np

# Appended, not prepended: a PYTHONPATH naming another checkout (an older
# `edge` to compare with) comes first.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path += [os.path.join(HERE, "..", "examples"), os.path.join(HERE, "..")]

QUICKSTART_TIMESTEPS = 4
QUICKSTART_CALIBRATION = 500
FUZZ_CALIBRATION = 32  # as edge.fuzz.main
PERCENTILE = 10

ARITHMETICS = {
    "edge-integer": "edge integer reference (`edge.integer`)",
    "tflite-int8": "TFLite converter int8 PTQ (LiteRT)",
}


class Unavailable(Exception):
    """The installed `edge` cannot run an arithmetic at all."""


# -- the arithmetics -------------------------------------------------------
def run_edge_integer(fused, calibration, x):
    """Aggregated output of the integer reference on `x`."""
    from edge import integer
    from edge import quantize

    qgraph = quantize.quantize(fused, calibration)
    return integer.run_integer(qgraph, x)[0]


def tflite_int8_note():
    """`None` if the int8 TFLite path is there, else why it is not."""
    try:
        from edge.targets.tflite import converter
    except ImportError as error:
        return f"edge.targets.tflite.converter cannot be imported: {error}"
    missing = [
        name
        for name in ("convert", "run_quantized", "LiteRTRunner")
        if not hasattr(converter, name)
    ]
    if missing:
        return (
            "edge.targets.tflite.converter has no "
            + ", ".join(missing)
            + " (no int8 converter path)"
        )
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return "ai_edge_litert (LiteRT) is not installed"
    return None


def run_tflite_int8(fused, calibration, x):
    """Aggregated output of the converter's int8 model, run in LiteRT."""
    from edge.errors import ExportError
    from edge.targets.tflite import converter

    try:
        model_bytes = converter.convert(fused, "int8", calibration)
    except ExportError as error:
        if str(error).startswith("Argument `quantize`"):
            raise Unavailable(str(error)) from error
        raise
    runner = converter.LiteRTRunner(model_bytes)
    return converter.run_quantized(runner, fused, model_bytes, x)[0]


RUNNERS = {"edge-integer": run_edge_integer, "tflite-int8": run_tflite_int8}


def agreement(output, keras_output):
    """Fraction of samples on which the two outputs' argmax agree."""
    return float(
        np.mean(
            np.argmax(np.asarray(output), -1)
            == np.argmax(np.asarray(keras_output), -1)
        )
    )


def _reason(error):
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text[:160]


def measure(model, calibration, x, names, disabled):
    """Runs each arithmetic on one network.

    Args:
        model: the float Keras model.
        calibration: calibration inputs.
        x: evaluation inputs.
        names: the arithmetics to run (keys of `RUNNERS`).
        disabled: `{name: note}`, filled when an arithmetic turns out to
            be unavailable (it is then skipped for every network).

    Returns:
        `(keras_output, {name: ("ok", output) or ("refused", reason)})`.
    """
    from edge import fuse
    from edge import ir

    keras_output = np.asarray(model.predict(x, verbose=0), np.float64)
    results = {}
    try:
        fused = fuse.fuse(ir.extract(model))
    except Exception as error:  # noqa: BLE001 - a refusal of every column
        reason = "extract/fuse: " + _reason(error)
        return keras_output, {n: ("refused", reason) for n in names}
    for name in names:
        if name in disabled:
            continue
        try:
            output = RUNNERS[name](fused, np.asarray(calibration), x)
            results[name] = ("ok", np.asarray(output, np.float64))
        except Unavailable as error:
            disabled[name] = _reason(error)
        except Exception as error:  # noqa: BLE001 - counted as refused
            results[name] = ("refused", _reason(error))
    return keras_output, results


# -- the networks ----------------------------------------------------------
def quickstart(epochs, seed):
    """`(model, calibration, x_test, y_test)`: the quickstart network
    trained `epochs` epochs as `examples/quickstart_digits.py` trains it."""
    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    # isort: split
    import quickstart_digits as qs

    model, (x_train, x_test, _, y_test) = qs.train(
        epochs, QUICKSTART_TIMESTEPS, seed
    )
    return model, x_train[:QUICKSTART_CALIBRATION], x_test, y_test


def fuzz_network(seed, samples):
    """`(spec, model, calibration, x)` of random network `seed`."""
    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    # isort: split
    from edge import fuzz

    spec = fuzz.draw_spec(fuzz.RandomChooser(np.random.default_rng(seed)))
    model = fuzz.build(spec)
    calibration = fuzz.inputs_for(spec, FUZZ_CALIBRATION, spec["seed"])
    x = fuzz.inputs_for(spec, samples, spec["seed"] + 1)
    return spec, model, calibration, x


# -- tables ----------------------------------------------------------------
def _fmt(value):
    return "-" if value is None else f"{value:.4f}"


def quickstart_table(keras_output, results, labels, names, disabled):
    """Markdown table of the quickstart network."""
    keras_accuracy = float(np.mean(np.argmax(keras_output, -1) == labels))
    lines = [
        "| arithmetic | agreement with Keras | accuracy |",
        "|---|---:|---:|",
        f"| Keras float32 (`model.predict`) | 1.0000 | {keras_accuracy:.4f} |",
    ]
    for name in names:
        if name in disabled:
            lines.append(f"| {ARITHMETICS[name]} | skipped | skipped |")
            continue
        status, value = results[name]
        if status == "refused":
            lines.append(f"| {ARITHMETICS[name]} | refused | refused |")
            continue
        accuracy = float(np.mean(np.argmax(value, -1) == labels))
        lines.append(
            f"| {ARITHMETICS[name]} | {agreement(value, keras_output):.4f} "
            f"| {accuracy:.4f} |"
        )
    return "\n".join(lines)


def fuzz_table(rows, names, disabled):
    """Markdown table over the random networks.

    Args:
        rows: one `{name: ("ok", agreement) or ("refused", reason)}` per
            network that was built, with `"keras_classes"`: the number of
            classes the Keras model predicts on its inputs. The last
            column leaves out the networks where that is 1 (a constant
            prediction, which says little about fidelity) and gives the
            count of the others in parentheses.
    """
    lines = [
        "| arithmetic | measured | refused | mean agreement | min "
        f"| p{PERCENTILE} | mean, Keras >1 class |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        if name in disabled:
            lines.append(
                f"| {ARITHMETICS[name]} | skipped | - | - | - | - | - |"
            )
            continue
        values = [r[name][1] for r in rows if r[name][0] == "ok"]
        refused = sum(r[name][0] == "refused" for r in rows)
        mean = float(np.mean(values)) if values else None
        low = float(np.min(values)) if values else None
        p = float(np.percentile(values, PERCENTILE)) if values else None
        varied = [
            r[name][1]
            for r in rows
            if r[name][0] == "ok" and r["keras_classes"] > 1
        ]
        lines.append(
            f"| {ARITHMETICS[name]} | {len(values)} | {refused} "
            f"| {_fmt(mean)} | {_fmt(low)} | {_fmt(p)} "
            f"| {_fmt(float(np.mean(varied)) if varied else None)} "
            f"({len(varied)}) |"
        )
    return "\n".join(lines)


def refusal_lines(rows, names):
    """`- name: count x reason` for every refusal reason."""
    lines = []
    for name in names:
        reasons = collections.Counter(
            r[name][1] for r in rows if r.get(name, ("",))[0] == "refused"
        )
        for reason, count in reasons.most_common():
            lines.append(f"- {name}: {count} x {reason}")
    return lines


# -- main ------------------------------------------------------------------
def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--networks",
        type=int,
        default=40,
        help="random edge.fuzz networks (0 for none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="network i is drawn with seed + i; also the quickstart's seed",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=64,
        help="evaluation inputs per random network",
    )
    parser.add_argument(
        "--quickstart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the quickstart network",
    )
    parser.add_argument("--quickstart-epochs", type=int, default=3)
    parser.add_argument(
        "--json", default=None, help="also write every network's result here"
    )
    args = parser.parse_args(argv)
    if args.networks < 0:
        parser.error(f"--networks must be >= 0. Received: {args.networks}")
    if args.samples < 1:
        parser.error(f"--samples must be >= 1. Received: {args.samples}")
    if args.quickstart_epochs < 1:
        parser.error(
            "--quickstart-epochs must be >= 1. Received: "
            f"{args.quickstart_epochs}"
        )
    return args


def main(argv=None):
    args = _parse(argv)
    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    # isort: split
    import edge

    names = list(ARITHMETICS)
    disabled = {}
    note = tflite_int8_note()
    if note:
        disabled["tflite-int8"] = note
    record = {"edge": os.path.dirname(edge.__file__), "args": vars(args)}
    print(f"edge from {record['edge']}", flush=True)

    if args.quickstart:
        model, calibration, x_test, y_test = quickstart(
            args.quickstart_epochs, args.seed
        )
        keras_output, results = measure(
            model, calibration, x_test, names, disabled
        )
        quick = quickstart_table(keras_output, results, y_test, names, disabled)
        record["quickstart"] = {
            name: (
                [status, agreement(value, keras_output)]
                if status == "ok"
                else [status, value]
            )
            for name, (status, value) in results.items()
        }
        print(quick, flush=True)

    rows, failed = [], []
    for index in range(args.networks):
        seed = args.seed + index
        try:
            spec, model, calibration, x = fuzz_network(seed, args.samples)
        except Exception as error:  # noqa: BLE001 - reported, run goes on
            failed.append((seed, _reason(error)))
            print(
                f"[{index + 1}/{args.networks}] seed {seed}: not built: "
                f"{_reason(error)}",
                flush=True,
            )
            continue
        keras_output, results = measure(model, calibration, x, names, disabled)
        row = {
            name: (
                ("ok", agreement(value, keras_output))
                if status == "ok"
                else ("refused", value)
            )
            for name, (status, value) in results.items()
        }
        classes = len(np.unique(np.argmax(keras_output, -1)))
        rows.append({**row, "keras_classes": classes})
        record.setdefault("networks", []).append(
            {"seed": seed, "spec": spec, "keras_classes": classes, **row}
        )
        marks = " ".join(
            f"{name}={_fmt(value) if status == 'ok' else 'refused'}"
            for name, (status, value) in row.items()
        )
        print(
            f"[{index + 1}/{args.networks}] seed {seed} "
            f"({spec['input']}, {spec['head']}, T={spec['timesteps']}, "
            f"Keras predicts {classes} class{'es' * (classes > 1)}): "
            f"{marks}",
            flush=True,
        )

    print()
    if args.quickstart:
        print(
            f"Quickstart network (T={QUICKSTART_TIMESTEPS}, "
            f"{args.quickstart_epochs} epochs, seed {args.seed}), "
            f"{len(y_test)} test images, calibrated on "
            f"{QUICKSTART_CALIBRATION} training images:"
        )
        print()
        print(quick)
        print()
    if args.networks:
        print(
            f"{len(rows)} random edge.fuzz networks (seeds {args.seed}.."
            f"{args.seed + args.networks - 1}), {args.samples} inputs each; "
            "refused networks are left out of that column's statistics:"
        )
        print()
        print(fuzz_table(rows, names, disabled))
        single = sum(r["keras_classes"] == 1 for r in rows)
        print()
        print(
            f"On {single} of {len(rows)} networks the Keras model predicts "
            "a single class for every input."
        )
        lines = refusal_lines(rows, names)
        if lines:
            print()
            print("Refusals:")
            print("\n".join(lines))
        if failed:
            print()
            print(f"{len(failed)} networks could not be built:")
            print("\n".join(f"- seed {s}: {r}" for s, r in failed))
    for name, why in disabled.items():
        print()
        print(f"Note: {ARITHMETICS[name]} skipped: {why}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(record, file, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
