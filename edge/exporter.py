"""`edge.export`: from a trained keras_snn model to checked artefacts.

```python
report = edge.export(model, "build/", targets=("tflite", "onnx"),
                     calibration_data=x_train[:500],
                     eval_data=(x_test, y_test))
print(report.table())
```

Steps: extract the step graph (`edge.ir`), fold batch norms and check the
fused currents (`edge.fuse`), quantize with the calibration data and run the
integer reference (`edge.quantize`, `edge.integer`), convert each target,
run every artefact in its real consumer on the evaluation data and compare
it with the Keras model, and only then write the files, each to a temporary
name in the output folder and renamed into place. Any failure before the
rename leaves nothing behind.
"""

import json
import sys
import time

import numpy as np

from edge import errors
from edge import fuse as fuse_lib
from edge import gate
from edge import ir
from edge import qat
from edge import quantize
from edge import reference
from edge import targets as registry
from edge.errors import AccuracyDropError
from edge.errors import CalibrationError
from edge.errors import ExportError
from edge.gate import DEFAULT_MAX_ACCURACY_DROP
from edge.gate import DEFAULT_MIN_AGREEMENT
from edge.output import OutputFolder
from edge.output import check_output_folder
from edge.output import previous_seconds
from edge.output import write_files
from edge.report import ArtefactReport
from edge.report import ExportReport
from edge.report import gate_summary
from edge.targets import ExportContext

__all__ = [
    "ArtefactReport",
    "DEFAULT_MAX_ACCURACY_DROP",
    "DEFAULT_MIN_AGREEMENT",
    "ExportContext",
    "ExportReport",
    "TARGETS",
    "check_options",
    "check_output_folder",
    "check_targets",
    "export",
    "load_targets",
    "write_files",
]

# The registered targets when `edge.exporter` was imported (see
# `edge.targets.names`); `export` looks them up again on each call.
TARGETS = registry.names()
FUSION_CHECK_SAMPLES = 64


def check_targets(targets):
    """`targets` (a list or a comma-separated string) as a list of names.

    Raises:
        ExportError: a name is not a registered target
            (`edge.targets.names`), or there is none.
    """
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    targets = list(dict.fromkeys(targets))
    known = registry.names()
    if not known:
        raise ExportError(
            "No export target is registered: the entry point group "
            f"'{registry.ENTRY_POINT_GROUP}' is empty. Install the package "
            "(`pip install -e .` in a checkout) so that its entry points "
            "exist."
        )
    unknown = [t for t in targets if t not in known]
    if unknown or not targets:
        what = f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""
        raise ExportError(
            f"Argument `targets` must be a non-empty list of "
            f"{', '.join(known)}. Received: targets={targets!r}{what}"
        )
    return targets


def load_targets(targets):
    """The registered `edge.targets.Target`s named in `targets`, each
    checked for its requirements.

    Raises:
        ExportError: a name is not a registered target.
        ConsumerError: a target's consumer is not installed (the message
            says what to install).
    """
    loaded = [registry.get(name) for name in check_targets(targets)]
    for target in loaded:
        target.check()
    return loaded


def _check_data(graph, data, name, timesteps):
    if data is None:
        return None
    array = quantize.check_numbers(data, name)
    try:
        reference.input_steps(graph, array, timesteps)
    except CalibrationError as error:
        raise CalibrationError(f"Argument `{name}`: {error}") from None
    if len(array) == 0:
        raise CalibrationError(f"Argument `{name}` is empty.")
    return array


def _check_number(name, value, low, high=None, integer=False):
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not integer:
        ok = ok or isinstance(value, (float, np.floating))
    if ok:
        ok = bool(np.isfinite(value)) and low <= value
        ok = ok and (high is None or value <= high)
    if not ok:
        accepted = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ExportError(
            f"Argument `{name}` must be {kind} {accepted}. Received: "
            f"{name}={value!r}"
        )


def check_options(
    timesteps=None,
    state_bits=16,
    min_agreement=DEFAULT_MIN_AGREEMENT,
    max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP,
):
    """Checks `export`'s numeric arguments before any work.

    Raises:
        ExportError: `timesteps` is not `None` or an integer >= 1,
            `state_bits` not an integer in [8, 32], `min_agreement` or
            `max_accuracy_drop` not a number in [0, 1].
    """
    if timesteps is not None:
        _check_number("timesteps", timesteps, 1, integer=True)
    _check_number("state_bits", state_bits, 8, 32, integer=True)
    _check_number("min_agreement", min_agreement, 0, 1)
    _check_number("max_accuracy_drop", max_accuracy_drop, 0, 1)


def _keras_outputs(model, x):
    return np.asarray(model.predict(x, batch_size=256, verbose=0), np.float64)


def _spike_agreement(graph, float_trace, int_trace):
    """Fraction of (sample, step, neuron) spikes equal in the two traces."""
    equal = total = 0
    for node in graph.nodes:
        if node.op != "neuron":
            continue
        a = np.stack(float_trace[node.name])
        b = np.stack(int_trace[node.name])
        equal += int(np.sum(a == b))
        total += a.size
    return equal / max(total, 1)


def export(
    model,
    out_dir,
    targets=None,
    calibration_data=None,
    eval_data=None,
    timesteps=None,
    state_bits=16,
    overwrite=False,
    min_agreement=DEFAULT_MIN_AGREEMENT,
    max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP,
    allow_accuracy_drop=False,
    verbose=1,
    progress=None,
):
    """Exports a trained keras_snn model and checks every artefact.

    Args:
        model: a trained `keras.Model` built from keras_snn layers, or the
            path of its `.keras` file.
        out_dir: folder for the artefacts. It must be new, empty, or hold
            a previous export (replaced whole, and only with
            `overwrite=True`); it is written only when every check passed.
        targets: names of registered targets (`edge.targets.names()`; a
            list, or a comma-separated string; default: all of them):
            `"tflite"` writes `model_float32.tflite` and `"tflite-int16x8"`
            `model_int16x8.tflite` (one-timestep step models); `"onnx"`
            writes `model.onnx`;
            `"c"` writes the C99 runtime `c/model.c`, `c/model.h`, an
            example `main`, a Makefile and the Cortex-M4 start-up files,
            checked with gcc on the host and on QEMU's Cortex-M4;
            `"loihi"` writes `model_loihi.net` (lava-dl NetX HDF5),
            checked spike for spike in Lava's bit-accurate simulator;
            `"nir"` writes `model.nir`, checked spike for spike in Norse
            (and snnTorch for LIF-only graphs).
        calibration_data: training inputs (a few hundred) for the
            quantization: `(N, *input_shape)` for a direct-encoding model or
            `(N, T, *input_shape)`; finite numbers.
        eval_data: `(x, y)` held-out inputs and integer labels, or just `x`,
            to measure accuracy and agreement. Defaults to the first 256
            calibration samples (agreement only).
        timesteps: overrides the model's number of time steps `T` (>= 1).
        state_bits: width of currents and states in the integer reference
            (8 to 32).
        overwrite: replace a previous export in `out_dir`.
        min_agreement: the accuracy gate: the export fails when an
            artefact predicts the Keras model's class on fewer than this
            fraction of the evaluation samples. Defaults to 0.9.
        max_accuracy_drop: the accuracy gate: the export fails when an
            artefact's accuracy (with labels) is lower than the Keras
            model's on the same samples by more than this. Defaults to
            0.05 (5 points).
        allow_accuracy_drop: write the artefacts although the accuracy gate
            failed (the report and its table say so).
        verbose: 0 for silence, 1 (default) for a line on stderr when each
            step, target and consumer starts and ends, with elapsed seconds
            (and the time the same target took last time, when replacing a
            previous export).
        progress: a function that receives each progress line instead of
            stderr (used whatever `verbose` is).

    Returns:
        An `ExportReport`; `report.table()` prints it. The report is also
        written to `report.json` in `out_dir`.

    Raises:
        ExportError: the model is not a keras_snn model or has a layer the
            exporter does not support (`UnsupportedLayerError`), a target is
            unknown, an argument is out of range, `out_dir` is not a
            writable folder or holds other files (or a previous export
            without `overwrite`), an artefact did not pass its check in its
            consumer (`ConsumerError`), or an artefact failed the accuracy
            gate (`AccuracyDropError`, which holds the `report`).
        CalibrationError: calibration data is missing, of the wrong shape
            or type, not finite, or leaves a layer silent.
        keras_snn.fileio.OutputError: writing the files failed (disk full).
        FileNotFoundError, ValueError: `model` is the path of a missing or
            unreadable `.keras` file (`keras_snn.saving.load_model`).

    Example:

    >>> report = edge.export(model, "build", calibration_data=x_train[:500],
    ...                      eval_data=(x_test, y_test))
    >>> print(report.table())
    """
    say = _progress_function(verbose, progress)
    targets = load_targets(registry.names() if targets is None else targets)
    check_options(timesteps, state_bits, min_agreement, max_accuracy_drop)
    output = OutputFolder(out_dir, overwrite)
    try:
        report, files, context = _export(
            model,
            output,
            targets,
            calibration_data,
            eval_data,
            timesteps,
            state_bits,
            say,
        )
        report.gate = gate.accuracy_gate(
            report.rows,
            context.keras_out,
            context.labels,
            min_agreement,
            max_accuracy_drop,
            allow_accuracy_drop,
        )
        say(gate_summary(report.gate))
        if not report.gate["passed"] and not allow_accuracy_drop:
            raise AccuracyDropError(
                f"The export of '{report.model}' failed the accuracy gate "
                "and was not written:\n"
                + "\n".join(report.gate["failures"])
                + "\nRetrain or recalibrate (more or more representative "
                "calibration data, more state bits), or pass "
                "allow_accuracy_drop=True (`--allow-accuracy-drop`) to "
                "write it anyway.",
                report,
            )
        files["report.json"] = json.dumps(
            report.to_dict(), indent=2, default=_json_default
        ).encode()
        output.commit(files)
    except BaseException:
        output.discard()
        raise
    say(f"export: wrote {len(files)} files to {output.label}")
    return report


def _progress_function(verbose, progress):
    if progress is not None:
        if not callable(progress):
            raise ExportError(
                "Argument `progress` must be a function of one line of "
                f"text, or None. Received: progress={progress!r}"
            )
        return progress
    if verbose:
        return lambda line: print(line, file=sys.stderr, flush=True)
    return lambda line: None


def _load_model(path):
    from keras_snn import saving

    return saving.load_model(path)


def _export(
    model,
    output,
    targets,
    calibration_data,
    eval_data,
    timesteps,
    state_bits,
    say,
):
    """Everything between the checks of `export` and its commit."""
    start = time.perf_counter()
    if not hasattr(model, "predict"):
        model = _load_model(model)
    preset, shared = None, {}
    if qat.find_integer_graph(model) is not None:
        # A QAT model deploys its own integers with its own scales.
        preset = qat.to_qgraph(model)
        graph = qat.float_graph(preset)
        state_bits = preset.state_bits
    elif qat.find_loihi_graph(model) is not None:
        # A Loihi QAT model: its trained float weights, and its scales
        # for the "loihi" target (edge.targets.loihi.export_target).
        graph = qat.loihi_float_graph(model)
        shared["loihi_scales"] = qat.loihi_scales(model)
    else:
        graph = ir.extract(model, timesteps)
    if calibration_data is None:
        raise CalibrationError(
            "Argument `calibration_data` is required: quantization needs a "
            "few hundred training inputs of shape (N, "
            f"{', '.join(map(str, graph.input_shape))})."
        )
    calibration = _check_data(
        graph, calibration_data, "calibration_data", timesteps
    )
    labels = None
    if eval_data is None:
        x_eval = calibration[:256]
    elif isinstance(eval_data, (tuple, list)) and len(eval_data) == 2:
        x_eval = _check_data(graph, eval_data[0], "eval_data", timesteps)
        labels = np.asarray(eval_data[1])
        if len(labels) != len(x_eval):
            raise ExportError(
                "Argument `eval_data` must be (x, y) with one label per "
                f"input. Received: {len(x_eval)} inputs and {len(labels)} "
                "labels"
            )
    else:
        x_eval = _check_data(graph, eval_data, "eval_data", timesteps)
    steps, _ = reference.input_steps(graph, x_eval, timesteps)
    previous = previous_seconds(output.path)
    say(
        f"export: '{graph.name}': fusing, quantizing on {len(calibration)} "
        f"calibration samples, references on {len(x_eval)} evaluation "
        f"samples (T={steps}){_estimate(previous, 'prepare')}"
    )

    fused = fuse_lib.fuse(graph)
    fusion_error = fuse_lib.check_fusion(
        graph, fused, calibration[:FUSION_CHECK_SAMPLES]
    )
    keras_out = _keras_outputs(model, x_eval)
    float_out, float_trace = reference.run_float(
        fused, x_eval, timesteps, record=True
    )
    context = ExportContext(
        graph=fused,
        calibration=calibration,
        x=x_eval,
        labels=labels,
        keras_out=keras_out,
        float_out=float_out,
        float_trace=float_trace,
        timesteps=steps,
        state_bits=int(state_bits),
        progress=say,
        qgraph=preset,
        shared=shared,
    )
    rows = [
        context.row("keras", "Keras", keras_out),
        context.row(
            "reference-float", "NumPy (fused, float64)", float_out, keras_out
        ),
    ]
    integer_targets = [plugin.name for plugin in targets if plugin.integer]
    if integer_targets:
        try:
            context.ensure_integer()
        except ExportError as error:
            float_targets = [p.name for p in targets if not p.integer]
            hint = (
                f" The other targets ({', '.join(float_targets)}) do not "
                "need it: export them alone with targets="
                f"{float_targets!r}."
                if float_targets
                else ""
            )
            raise type(error)(
                f"The integer targets ({', '.join(integer_targets)}) cannot "
                f"export '{graph.name}': {error}{hint}"
            ) from error
        spikes = _spike_agreement(fused, float_trace, context.int_trace)
        rows.append(
            context.row(
                "reference-int",
                f"edge.integer (int8 w, int{state_bits} v)",
                context.int_out,
                checks={"spike_agreement": spikes},
            )
        )
    seconds = {"prepare": round(time.perf_counter() - start, 2)}
    integer_note = (
        f" (integer reference agreement {rows[2].agreement:.4f})"
        if len(rows) > 2
        else ""
    )
    say(
        f"export: references ready in {seconds['prepare']:.1f} s"
        f"{integer_note}"
    )
    # Every target is converted and checked before anything is written.
    for number, plugin in enumerate(targets, 1):
        target = plugin.name
        tag = f"export: [{number}/{len(targets)}] {target}"
        say(f"{tag}: started{_estimate(previous, target)}")
        begin = time.perf_counter()
        with errors.consumer_progress(say):
            new_files, new_rows = plugin.export(context)
        _add_files(context.files, new_files, target)
        seconds[target] = round(time.perf_counter() - begin, 2)
        done = ", ".join(
            f"{row.target} on {row.consumer} agreement {row.agreement:.4f}"
            for row in new_rows
            if row.agreement is not None
        )
        say(f"{tag}: done in {seconds[target]:.1f} s ({done})")
        rows += new_rows
    files = context.files
    report = ExportReport(
        model=graph.name,
        out_dir=output.label,
        rows=rows,
        fusion_error=fusion_error,
        samples=len(x_eval),
        timesteps=steps,
        seconds=seconds,
    )
    for row in rows:
        if row.path in files:
            row.size_bytes = len(files[row.path])
    return report, files, context


def _add_files(files, new_files, target):
    clash = sorted(set(files) & set(new_files))
    if clash:
        raise ExportError(
            f"The target {target!r} writes files that another target "
            f"already wrote: {', '.join(clash)}"
        )
    files.update(new_files)


def _estimate(previous, step):
    value = previous.get(step)
    if not isinstance(value, (int, float)):
        return ""
    return f" (took {value:.0f} s last time)"


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serializable: {value!r}")
