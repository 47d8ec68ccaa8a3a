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

import contextlib
import dataclasses
import functools
import json
import os
import secrets
import shutil
import sys
import time

import numpy as np

from edge import fuse as fuse_lib
from edge import integer
from edge import ir
from edge import quantize
from edge import reference
from edge import errors
from edge import step_model
from edge.errors import AccuracyDropError
from edge.errors import CalibrationError
from edge.errors import ConsumerError
from edge.errors import ExportError
from keras_snn import fileio

__all__ = [
    "ArtefactReport",
    "DEFAULT_MAX_ACCURACY_DROP",
    "DEFAULT_MIN_AGREEMENT",
    "ExportContext",
    "ExportReport",
    "TARGETS",
    "TARGET_FUNCTIONS",
    "check_options",
    "check_output_folder",
    "check_targets",
    "export",
    "write_files",
]

# The keys of TARGET_FUNCTIONS, in order.
TARGETS = ("tflite", "onnx", "c", "loihi", "nir")
FUSION_CHECK_SAMPLES = 64
# The accuracy gate. The quickstart's artefacts agree with its Keras model
# on >= 0.997 of the test digits and lose no accuracy; int8 models that
# agreed on 0.56 (TFLite) and 0.81 (C) used to pass unnoticed.
DEFAULT_MIN_AGREEMENT = 0.9
DEFAULT_MAX_ACCURACY_DROP = 0.05
# Rows whose accuracy and agreement are measured on the first
# `checks[key]` evaluation samples rather than on all of them.
_SUBSET_CHECKS = {
    "c-host": "samples",
    "c-cortex-m4": "samples",
    "nir": "samples_checked",
}


@dataclasses.dataclass
class ArtefactReport:
    """What was measured for one artefact (or reference model).

    Example:

    >>> row = report.row("tflite-float32")
    >>> row.size_bytes, row.ops, row.accuracy, row.checks["within_1e-5"]

    Attributes:
        target: e.g. `"tflite-int8"`.
        consumer: the program that ran it, e.g. `"TFLite-Micro"`.
        path: file written (relative to the output folder), or `None`.
        size_bytes: file size, or `None`.
        ops: operators the file uses.
        accuracy: accuracy on the evaluation labels, or `None`.
        agreement: fraction of evaluation samples whose predicted class
            equals the Keras model's.
        max_abs_diff: largest absolute difference of the outputs from the
            model it must equal (see `checks`), or `None`.
        checks: further named results (bit-exactness, spike agreement).
    """

    target: str
    consumer: str
    path: str = None
    size_bytes: int = None
    ops: list = dataclasses.field(default_factory=list)
    accuracy: float = None
    agreement: float = None
    max_abs_diff: float = None
    checks: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ExportReport:
    """The result of `export`: one `ArtefactReport` per row.

    Attributes:
        model: the model's name.
        out_dir: where the files were written.
        rows: the `ArtefactReport`s: the Keras model, the float and
            integer references, then one or more per target.
        fusion_error: the largest relative current difference found by
            `edge.fuse.check_fusion`.
        samples: number of evaluation samples.
        timesteps: `T`.
        gate: the accuracy gate: `min_agreement`, `max_accuracy_drop`, the
            `lowest_agreement` and `largest_accuracy_drop` of the artefacts
            (and the rows they come from), `failures` (one line per row
            past a threshold), `passed`, and `allowed` (the export went on
            with `allow_accuracy_drop=True` although it did not pass).
        seconds: wall-clock seconds of the preparation (`"prepare"`:
            fusion, quantization, references) and of each target.

    Example:

    >>> report = edge.export(model, "build", calibration_data=x_train[:500])
    >>> print(report.table())
    >>> report.row("onnx").agreement
    """

    model: str
    out_dir: str
    rows: list
    fusion_error: float
    samples: int
    timesteps: int
    gate: dict = dataclasses.field(default_factory=dict)
    seconds: dict = dataclasses.field(default_factory=dict)

    def row(self, target):
        """The row of `target` (e.g. `"onnx"`)."""
        for row in self.rows:
            if row.target == target:
                return row
        raise KeyError(target)

    def to_dict(self):
        return dataclasses.asdict(self)

    def table(self):
        """A plain-text table: one line per artefact."""
        header = (
            f"{'artefact':<18} {'consumer':<22} {'bytes':>8} {'accuracy':>9} "
            f"{'agree':>7} {'max|diff|':>10}  checks / ops"
        )
        lines = [
            f"Export of '{self.model}' to {self.out_dir} "
            f"({self.samples} evaluation samples, T={self.timesteps}; "
            f"fusion error {self.fusion_error:.2g})",
            header,
            "-" * len(header),
        ]

        def fmt(value, spec):
            return "-" if value is None else format(value, spec)

        for row in self.rows:
            notes = [f"{k}={_short(v)}" for k, v in row.checks.items()]
            if row.ops:
                notes.append("ops: " + " ".join(row.ops))
            lines.append(
                f"{row.target:<18} {row.consumer:<22} "
                f"{fmt(row.size_bytes, 'd'):>8} {fmt(row.accuracy, '.4f'):>9} "
                f"{fmt(row.agreement, '.4f'):>7} "
                f"{fmt(row.max_abs_diff, '.2g'):>10}  {'; '.join(notes)}"
            )
        if self.gate:
            lines.append(_gate_summary(self.gate))
        return "\n".join(lines)


def _gate_summary(gate):
    """The accuracy gate's line(s) of `ExportReport.table`."""
    if gate.get("lowest_agreement") is None:
        return "Accuracy gate: no artefact to check."
    line = (
        f"Accuracy gate: lowest agreement with Keras "
        f"{gate['lowest_agreement']:.4f} ({gate['lowest_agreement_row']}; "
        f"required >= {gate['min_agreement']:g})"
    )
    if gate.get("largest_accuracy_drop") is not None:
        line += (
            f", largest accuracy drop {gate['largest_accuracy_drop']:+.4f} "
            f"({gate['largest_accuracy_drop_row']}; allowed <= "
            f"{gate['max_accuracy_drop']:g})"
        )
    if gate["passed"]:
        return line + ": passed."
    verdict = (
        "FAILED, written anyway (allow_accuracy_drop)"
        if gate.get("allowed")
        else "FAILED"
    )
    return "\n".join([f"{line}: {verdict}:", *gate["failures"]])


def _short(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@dataclasses.dataclass
class ExportContext:
    """What a target's export function receives (see `TARGET_FUNCTIONS`).

    A target function `f(context) -> list[ArtefactReport]` converts
    `graph`/`qgraph`, runs the artefact in its consumer on `x`, compares it
    with the references, raises `ConsumerError` when a required check
    fails, and puts its files (name -> bytes) into `files`; `export` writes
    them only after every target has passed.

    Attributes:
        graph: the fused step graph.
        qgraph: its `QuantizedGraph` (the integer reference).
        calibration: calibration inputs (float32).
        x: evaluation inputs; `labels` their labels or `None`.
        keras_out: the Keras model's outputs on `x`.
        float_out, float_trace: the float reference's output and trace.
        int_out, int_trace: the integer reference's output and trace.
        timesteps: `T`.
        files: the files to write, filled by the target functions.
        progress: a function of one line of text that shows progress
            (`export`'s `verbose`/`progress`); a target may call `log`
            when a consumer starts or ends.
    """

    graph: object
    qgraph: object
    calibration: np.ndarray
    x: np.ndarray
    labels: object
    keras_out: np.ndarray
    float_out: np.ndarray
    float_trace: dict
    int_out: np.ndarray
    int_trace: dict
    timesteps: int
    files: dict = dataclasses.field(default_factory=dict)
    progress: object = None

    def log(self, line):
        """Shows `line` as progress (nothing when the export is quiet)."""
        if self.progress is not None:
            self.progress(line)

    @functools.cached_property
    def keras_step_out(self):
        """The Keras step model's aggregated output on `x`: the float the
        step artefacts (TFLite float32, ONNX) must equal; computed once."""
        return _keras_step_outputs(self.graph, self.x)[0]

    def accuracy(self, output):
        """Accuracy of `output` on the labels (`None` without labels)."""
        return _accuracy(output, self.labels)

    def agreement(self, output):
        """Fraction of samples whose class equals the Keras model's."""
        return _agreement(output, self.keras_out)

    def row(self, target, consumer, output, expected=None, **fields):
        """An `ArtefactReport` for `output` (aggregated, one per sample).

        Accuracy and agreement come from `output`; with `expected` (the
        float model the artefact must equal), also the largest difference
        and the `within_1e-5` fraction of samples. `fields` are passed on
        (`path`, `ops`, `checks`, ...).
        """
        row = ArtefactReport(
            target,
            consumer,
            accuracy=self.accuracy(output),
            agreement=self.agreement(output),
            **fields,
        )
        if expected is not None:
            row.max_abs_diff = float(np.max(np.abs(output - expected)))
            row.checks["within_1e-5"] = _close_fraction(output, expected)
        return row


# target name -> "module:function" of its export function (imported only
# when the target is asked for).
TARGET_FUNCTIONS = {
    "tflite": "edge.exporter:_tflite",
    "onnx": "edge.exporter:_onnx",
    "c": "edge.targets.c:export_target",
    "loihi": "edge.loihi:export_target",
    "nir": "edge.nir_export:export_target",
}


def _target_function(target):
    import importlib

    module, name = TARGET_FUNCTIONS[target].split(":")
    return getattr(importlib.import_module(module), name)


def check_targets(targets):
    """`targets` (a list or a comma-separated string) as a list.

    Raises:
        ExportError: a name is not one of `TARGETS`, or there is none.
    """
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    targets = list(dict.fromkeys(targets))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        what = f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""
        raise ExportError(
            f"Argument `targets` must be a non-empty list of "
            f"{', '.join(TARGETS)}. Received: targets={targets!r}{what}"
        )
    return targets


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


_STAGING_KINDS = ("export", "old")
_REPORT = "report.json"


def _previous_export(path):
    """The model name of the export in folder `path`, or `None`."""
    try:
        with open(os.path.join(path, _REPORT), encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError):
        return None
    if isinstance(saved, dict) and "rows" in saved and "model" in saved:
        return str(saved["model"])
    return None


def _visible_entries(path):
    """Entries of folder `path`, less the hidden temporary files a killed
    writer left (`keras_snn.fileio.remove_stale_temporaries`)."""
    fileio.remove_stale_temporaries(path)
    return sorted(os.listdir(path))


def check_output_folder(out_dir, overwrite=False):
    """Checks that `export` may write `out_dir`.

    Creates nothing; removes what killed exports into `out_dir` left (and
    puts back a previous export that a kill left aside).

    Args:
        out_dir: the output folder.
        overwrite: whether a previous export there may be replaced.

    Returns:
        The absolute path of `out_dir`.

    Raises:
        ExportError: `out_dir` is a file or below one, holds files that
            are not an export, or holds an export and `overwrite` is
            false.
    """
    # A link is followed: the folder it points to is replaced.
    path = os.path.realpath(os.fspath(out_dir))
    folder, name = os.path.split(path)
    if not name:
        raise ExportError(
            f"Argument `out_dir` must name a folder that the export can "
            f"replace whole, not a file system root. Received: {out_dir!r}"
        )
    ancestor = folder
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ExportError(
            f"Argument `out_dir` must be a folder. Received: "
            f"{os.fspath(out_dir)!r}, below {ancestor!r}, which is a file."
        )
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ExportError(
            f"Argument `out_dir` must be a folder. Received: "
            f"{os.fspath(out_dir)!r}, which is a file."
        )
    if os.path.isdir(folder):
        _remove_leftovers(path)
    if not os.path.isdir(path):
        return path
    try:
        entries = _visible_entries(path)
    except OSError as error:
        raise ExportError(
            f"Argument `out_dir` must be a readable folder. Received: "
            f"{os.fspath(out_dir)!r} "
            f"({fileio.describe_os_error(error, path, 'read')})"
        ) from error
    if not entries:
        return path
    model = _previous_export(path)
    if model is None:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ExportError(
            f"Argument `out_dir` must be a new folder, an empty one or a "
            f"previous export: the export replaces it whole. Received: "
            f"{os.fspath(out_dir)!r}, which holds other files ({shown})."
        )
    if not overwrite:
        raise ExportError(
            f"Argument `out_dir` ({os.fspath(out_dir)!r}) holds a previous "
            f"export of '{model}' ({_REPORT}). Pass overwrite=True "
            "(`--overwrite`) to replace it whole, or choose another folder."
        )
    return path


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _remove_leftovers(path):
    """Removes the staging folders of killed exports into `path` (named
    `.<name>.<kind>-<pid>-<random>.tmp`, with a process id that no longer
    runs); a replaced export that a kill left aside is put back first."""
    folder, name = os.path.split(path)
    prefix = f".{name}."
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        kind, _, rest = entry[len(prefix) : -len(".tmp")].partition("-")
        pid = rest.partition("-")[0]
        if kind not in _STAGING_KINDS or not pid.isdigit():
            continue
        if _process_alive(int(pid)):
            continue
        full = os.path.join(folder, entry)
        if kind == "old" and not os.path.lexists(path):
            with contextlib.suppress(OSError):  # else left as it is
                os.rename(full, path)
        else:
            shutil.rmtree(full, ignore_errors=True)


class _OutputFolder:
    """The hidden folder an export is written to, renamed to `out_dir` by
    `commit`; `discard` removes it and any folder made for it."""

    def __init__(self, out_dir, overwrite):
        self.path = check_output_folder(out_dir, overwrite)
        self.label = os.fspath(out_dir)
        folder, name = os.path.split(self.path)
        self.made = []  # folders created for out_dir, innermost first
        ancestor = folder
        while not os.path.lexists(ancestor):
            self.made.append(ancestor)
            ancestor = os.path.dirname(ancestor)
        try:
            fileio.ensure_folder(folder)
            self.staging = os.path.join(
                folder,
                f".{name}.export-{os.getpid()}-{secrets.token_hex(4)}.tmp",
            )
            os.mkdir(self.staging)  # mode 0o777 less the umask
        except OSError as error:
            self._remove_made()
            message = fileio.output_error(error, self.path, "create")
            raise ExportError(
                f"Argument `out_dir` must be a writable folder. Received: "
                f"{self.label!r} ({message.strerror or message})"
            ) from error

    def _remove_made(self):
        for folder in self.made:
            try:
                os.rmdir(folder)
            except OSError:
                break

    def discard(self):
        """Removes the staging folder (and the folders made for it)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self._remove_made()

    def commit(self, files):
        """Writes `{relative name: bytes}` and puts the folder in place."""
        write_files(self.staging, files)
        folder, name = os.path.split(self.path)
        old = None
        try:
            if os.path.isdir(self.path):
                if _visible_entries(self.path):
                    old = os.path.join(
                        folder,
                        f".{name}.old-{os.getpid()}-"
                        f"{secrets.token_hex(4)}.tmp",
                    )
                    os.rename(self.path, old)
                else:
                    os.rmdir(self.path)
            os.rename(self.staging, self.path)
        except OSError as error:
            if old is not None and not os.path.lexists(self.path):
                os.rename(old, self.path)
            raise fileio.output_error(error, self.path, "replace") from error
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_files(out_dir, files):
    """Writes `{relative name: bytes}` into `out_dir`, each file
    atomically with `keras_snn.fileio` (created folders included).

    Raises:
        keras_snn.fileio.OutputError: a file could not be written.
    """
    for name, content in files.items():
        final = os.path.join(out_dir, name)
        fileio.ensure_folder(os.path.dirname(final))
        fileio.write_bytes(final, content)


def _keras_outputs(model, x):
    return np.asarray(model.predict(x, batch_size=256, verbose=0), np.float64)


def _agreement(output, keras_output):
    return float(np.mean(output.argmax(-1) == keras_output.argmax(-1)))


def _accuracy(output, labels):
    if labels is None:
        return None
    return float(np.mean(output.argmax(-1) == np.asarray(labels)))


def _close_fraction(output, expected, tolerance=1e-5):
    """Fraction of samples whose whole output is within `tolerance`."""
    error = np.abs(output - expected).reshape(len(output), -1).max(axis=1)
    return float(np.mean(error <= tolerance))


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
    targets=TARGETS,
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
        targets: any of `TARGETS` (list, or a comma-separated string):
            `"tflite"` writes `model_float32.tflite` and `model_int8.tflite`
            (one-timestep step models); `"onnx"` writes `model.onnx`;
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
    targets = check_targets(targets)
    check_options(timesteps, state_bits, min_agreement, max_accuracy_drop)
    output = _OutputFolder(out_dir, overwrite)
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
        report.gate = _accuracy_gate(
            report.rows,
            context,
            min_agreement,
            max_accuracy_drop,
            allow_accuracy_drop,
        )
        say(_gate_summary(report.gate))
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
    previous = _previous_seconds(output.path)
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
    qgraph = quantize.quantize(fused, calibration, int(state_bits))
    int_out, _, int_trace = integer.run_integer(
        qgraph, x_eval, timesteps, record=True
    )
    context = ExportContext(
        graph=fused,
        qgraph=qgraph,
        calibration=calibration,
        x=x_eval,
        labels=labels,
        keras_out=keras_out,
        float_out=float_out,
        float_trace=float_trace,
        int_out=int_out,
        int_trace=int_trace,
        timesteps=steps,
        progress=say,
    )
    spikes = _spike_agreement(fused, float_trace, int_trace)
    rows = [
        context.row("keras", "Keras", keras_out),
        context.row(
            "reference-float", "NumPy (fused, float64)", float_out, keras_out
        ),
        context.row(
            "reference-int",
            f"NumPy (int8 w, int{state_bits} v)",
            int_out,
            checks={"spike_agreement": spikes},
        ),
    ]
    seconds = {"prepare": round(time.perf_counter() - start, 2)}
    say(
        f"export: references ready in {seconds['prepare']:.1f} s (integer "
        f"reference agreement {rows[2].agreement:.4f})"
    )
    # Every target is converted and checked before anything is written.
    for number, target in enumerate(targets, 1):
        tag = f"export: [{number}/{len(targets)}] {target}"
        say(f"{tag}: started{_estimate(previous, target)}")
        begin = time.perf_counter()
        with errors.consumer_progress(say):
            new_rows = _target_function(target)(context)
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


def _previous_seconds(path):
    """`seconds` of the export in `path` (what it is about to replace)."""
    try:
        with open(os.path.join(path, _REPORT), encoding="utf-8") as file:
            seconds = json.load(file).get("seconds")
    except (OSError, ValueError, AttributeError):
        return {}
    return seconds if isinstance(seconds, dict) else {}


def _estimate(previous, step):
    value = previous.get(step)
    if not isinstance(value, (int, float)):
        return ""
    return f" (took {value:.0f} s last time)"


def _accuracy_gate(
    rows, context, min_agreement, max_accuracy_drop, allow_accuracy_drop
):
    """The accuracy gate over the artefact rows (those with a file).

    Agreement is measured by each target against the Keras model on the
    samples it ran; the accuracy drop compares a row's accuracy with the
    Keras model's on the same samples (the first `checks[...]` ones for
    the rows of `_SUBSET_CHECKS`).
    """
    gate = {
        "min_agreement": min_agreement,
        "max_accuracy_drop": max_accuracy_drop,
        "lowest_agreement": None,
        "lowest_agreement_row": None,
        "largest_accuracy_drop": None,
        "largest_accuracy_drop_row": None,
        "failures": [],
    }
    for row in rows:
        if row.path is None or row.agreement is None:
            continue
        name = f"{row.target} on {row.consumer}"
        if (
            gate["lowest_agreement"] is None
            or row.agreement < gate["lowest_agreement"]
        ):
            gate["lowest_agreement"] = row.agreement
            gate["lowest_agreement_row"] = name
        if row.agreement < min_agreement:
            gate["failures"].append(
                f"  {name}: agreement with the Keras model "
                f"{row.agreement:.4f} < min_agreement {min_agreement:g}"
            )
        if row.accuracy is None or context.labels is None:
            continue
        count = row.checks.get(_SUBSET_CHECKS.get(row.target), len(context.x))
        keras_accuracy = _accuracy(
            context.keras_out[:count], context.labels[:count]
        )
        drop = keras_accuracy - row.accuracy
        if (
            gate["largest_accuracy_drop"] is None
            or drop > gate["largest_accuracy_drop"]
        ):
            gate["largest_accuracy_drop"] = drop
            gate["largest_accuracy_drop_row"] = name
        if drop > max_accuracy_drop:
            gate["failures"].append(
                f"  {name}: accuracy {row.accuracy:.4f} is {drop:.4f} below "
                f"the Keras model's {keras_accuracy:.4f} (on the same "
                f"{count} samples) > max_accuracy_drop {max_accuracy_drop:g}"
            )
    gate["passed"] = not gate["failures"]
    gate["allowed"] = bool(allow_accuracy_drop and not gate["passed"])
    return gate


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serializable: {value!r}")


def _keras_step_outputs(graph, x):
    """Per-step outputs of the Keras step model (the float the step
    artefacts must equal)."""
    step = step_model.build_step_model(graph, batch_size=None)

    def run(inputs):
        return {k: np.asarray(v) for k, v in step(inputs).items()}

    return step_model.run_steps(run, graph, x)


def _tflite(context):
    from edge import tflite

    graph, x, files = context.graph, context.x, context.files

    expected = context.keras_step_out
    rows = []
    context.log("  tflite: converting the float32 step model")
    float_bytes = tflite.convert(graph)
    context.log(f"  tflite: float32 in LiteRT on {len(x)} samples")
    runner = tflite.LiteRTRunner(float_bytes)
    outputs = [
        step_model.run_steps(runner, graph, x[i : i + 1])[0]
        for i in range(len(x))
    ]
    output = np.concatenate(outputs)
    files["model_float32.tflite"] = float_bytes
    rows.append(
        context.row(
            "tflite-float32",
            "LiteRT",
            output,
            expected,
            path="model_float32.tflite",
            ops=tflite.op_names(float_bytes),
        )
    )
    context.log("  tflite: converting the int8 step model")
    int8_bytes = tflite.convert(graph, "int8", context.calibration)
    context.log(f"  tflite: int8 in LiteRT (reference kernels) on {len(x)}")
    litert_out, litert_raw = tflite.run_quantized(
        tflite.LiteRTRunner(int8_bytes, reference_kernels=True),
        graph,
        int8_bytes,
        x,
    )
    context.log(f"  tflite: int8 in TFLite-Micro on {len(x)} samples")
    tflm_out, tflm_raw = tflite.run_tflm(int8_bytes, graph, x)
    emulated_raw = tflite.run_quantized(
        tflite.IntegerReferenceRunner(int8_bytes), graph, int8_bytes, x
    )[1]
    files["model_int8.tflite"] = int8_bytes
    checks = {
        "litert_equals_int_reference": bool(
            np.array_equal(litert_raw, emulated_raw)
        ),
        "tflm_equals_int_reference": bool(
            np.array_equal(tflm_raw, emulated_raw)
        ),
    }
    if not all(checks.values()):
        raise ConsumerError(
            f"The int8 TFLite model of '{graph.name}' does not run bit for "
            f"bit as the integer reference: {checks}"
        )
    for consumer, out in (("LiteRT", litert_out), ("TFLite-Micro", tflm_out)):
        rows.append(
            context.row(
                "tflite-int8",
                consumer,
                out,
                path="model_int8.tflite",
                ops=tflite.op_names(int8_bytes),
                checks=dict(checks),
            )
        )
    return rows


def _onnx(context):
    from edge import onnx_export

    graph, x, files = context.graph, context.x, context.files

    expected = context.keras_step_out
    context.log("  onnx: converting with tf2onnx")
    model_bytes = onnx_export.convert(graph)
    context.log(f"  onnx: in onnxruntime on {len(x)} samples")
    output, _ = step_model.run_steps(
        onnx_export.OnnxRunner(model_bytes), graph, x
    )
    files["model.onnx"] = model_bytes
    return [
        context.row(
            "onnx",
            "onnxruntime",
            output,
            expected,
            path="model.onnx",
            ops=onnx_export.op_names(model_bytes),
        )
    ]
