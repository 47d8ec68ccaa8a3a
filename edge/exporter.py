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

import dataclasses
import functools
import json
import os
import tempfile

import numpy as np

from edge import fuse as fuse_lib
from edge import integer
from edge import ir
from edge import quantize
from edge import reference
from edge import step_model
from edge.errors import CalibrationError
from edge.errors import ConsumerError
from edge.errors import ExportError

__all__ = [
    "ArtefactReport",
    "ExportContext",
    "ExportReport",
    "TARGETS",
    "TARGET_FUNCTIONS",
    "export",
]

# The keys of TARGET_FUNCTIONS, in order.
TARGETS = ("tflite", "onnx", "c", "loihi", "nir")
FUSION_CHECK_SAMPLES = 64


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
        return "\n".join(lines)


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
    "c": "edge.c_runtime:export_target",
    "loihi": "edge.loihi:export_target",
    "nir": "edge.nir_export:export_target",
}


def _target_function(target):
    import importlib

    module, name = TARGET_FUNCTIONS[target].split(":")
    return getattr(importlib.import_module(module), name)


def _check_targets(targets):
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    targets = list(dict.fromkeys(targets))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ExportError(
            f"Argument `targets` must be a non-empty list of {TARGETS}. "
            f"Received: targets={targets!r}"
        )
    return targets


def _check_out_dir(out_dir):
    out_dir = os.fspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe-"):
            pass
    except OSError as error:
        raise ExportError(
            f"Argument `out_dir` must be a writable folder. Received: "
            f"out_dir={out_dir!r} ({error.strerror or error})"
        ) from error
    return out_dir


def _check_data(graph, data, name, timesteps):
    if data is None:
        return None
    try:
        reference.input_steps(graph, data, timesteps)
    except CalibrationError as error:
        raise CalibrationError(f"Argument `{name}`: {error}") from None
    if len(data) == 0:
        raise CalibrationError(f"Argument `{name}` is empty.")
    return np.asarray(data, np.float32)


def write_files(out_dir, files):
    """Writes `{relative name: bytes}` atomically: all to temporary files
    first, then renamed into place; on failure the temporaries are removed
    and no file of this call is left half-written."""
    temporaries = []
    try:
        for name, content in files.items():
            final = os.path.join(out_dir, name)
            folder = os.path.dirname(final)
            os.makedirs(folder, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                dir=folder,
                prefix=f".{os.path.basename(name)}.",
                suffix=".tmp",
            )
            temporaries.append((temporary, final))
            with os.fdopen(handle, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
        for temporary, final in temporaries:
            os.replace(temporary, final)
    finally:
        for temporary, _ in temporaries:
            if os.path.exists(temporary):
                os.remove(temporary)


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
):
    """Exports a trained keras_snn model and checks every artefact.

    Args:
        model: a trained `keras.Model` built from keras_snn layers, or the
            path of its `.keras` file.
        out_dir: folder for the artefacts (created if needed).
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
            `(N, T, *input_shape)`.
        eval_data: `(x, y)` held-out inputs and integer labels, or just `x`,
            to measure accuracy and agreement. Defaults to the first 256
            calibration samples (agreement only).
        timesteps: overrides the model's number of time steps `T`.
        state_bits: width of currents and states in the integer reference.

    Returns:
        An `ExportReport`; `report.table()` prints it. The report is also
        written to `report.json` in `out_dir`.

    Raises:
        ExportError: the model is not a keras_snn model or has a layer the
            exporter does not support (`UnsupportedLayerError`), a target is
            unknown, `out_dir` is not writable, or an artefact did not pass
            its check in its consumer (`ConsumerError`).
        CalibrationError: calibration data is missing or of the wrong shape.

    Example:

    >>> report = edge.export(model, "build", calibration_data=x_train[:500],
    ...                      eval_data=(x_test, y_test))
    >>> print(report.table())
    """
    targets = _check_targets(targets)
    graph = ir.extract(model, timesteps)
    if not hasattr(model, "predict"):
        model = ir._load(model)
    out_dir = _check_out_dir(out_dir)
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

    fused = fuse_lib.fuse(graph)
    fusion_error = fuse_lib.check_fusion(
        graph, fused, calibration[:FUSION_CHECK_SAMPLES]
    )
    keras_out = _keras_outputs(model, x_eval)
    float_out, float_trace = reference.run_float(
        fused, x_eval, timesteps, record=True
    )
    qgraph = quantize.quantize(fused, calibration, state_bits)
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
    # Every target is converted and checked before anything is written.
    for target in targets:
        rows += _target_function(target)(context)
    files = context.files
    report = ExportReport(
        model=graph.name,
        out_dir=out_dir,
        rows=rows,
        fusion_error=fusion_error,
        samples=len(x_eval),
        timesteps=steps,
    )
    for row in rows:
        if row.path in files:
            row.size_bytes = len(files[row.path])
    files["report.json"] = json.dumps(
        report.to_dict(), indent=2, default=_json_default
    ).encode()
    write_files(out_dir, files)
    return report


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
    float_bytes = tflite.convert(graph)
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
    int8_bytes = tflite.convert(graph, "int8", context.calibration)
    litert_out, litert_raw = tflite.run_quantized(
        tflite.LiteRTRunner(int8_bytes, reference_kernels=True),
        graph,
        int8_bytes,
        x,
    )
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
    model_bytes = onnx_export.convert(graph)
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
