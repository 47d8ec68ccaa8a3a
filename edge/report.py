"""What `edge.export` measured: report rows, the report and its table.

Every target builds its rows with `make_row` (usually through
`ExportContext.row` of `edge.targets`), so accuracy, agreement with the
Keras model and the difference from the model an artefact must equal are
computed one way for all of them. This module imports no target and no
exporter: targets import the report types from here.

```python
row = make_row("onnx", "onnxruntime", output, keras_out, labels,
               expected=keras_step_out, close=True, path="model.onnx")
```
"""

import dataclasses

import numpy as np

__all__ = [
    "CLOSE_TOLERANCE",
    "ArtefactReport",
    "ExportReport",
    "accuracy",
    "agreement",
    "close_fraction",
    "gate_summary",
    "make_row",
]

# Outputs of float artefacts within this of the float they must equal
# count as equal (`checks["within_1e-5"]`).
CLOSE_TOLERANCE = 1e-5
_CLOSE_CHECK = "within_1e-5"


@dataclasses.dataclass
class ArtefactReport:
    """What was measured for one artefact (or reference model).

    Example:

    >>> row = report.row("tflite-float32")
    >>> row.size_bytes, row.ops, row.accuracy, row.checks["within_1e-5"]

    Attributes:
        target: e.g. `"tflite-int16x8"`.
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
        samples: the number of (first) evaluation samples that accuracy
            and agreement were measured on; `None` for all of them.
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
    samples: int = None


def accuracy(output, labels):
    """Fraction of rows of `output` whose largest entry is the label
    (`None` without labels)."""
    if labels is None:
        return None
    return float(np.mean(np.argmax(output, -1) == np.asarray(labels)))


def agreement(output, keras_output):
    """Fraction of rows whose class (largest entry) is equal in both."""
    return float(np.mean(np.argmax(output, -1) == np.argmax(keras_output, -1)))


def close_fraction(output, expected, tolerance=CLOSE_TOLERANCE):
    """Fraction of samples whose whole output is within `tolerance`."""
    error = np.abs(output - expected).reshape(len(output), -1).max(axis=1)
    return float(np.mean(error <= tolerance))


def make_row(
    target,
    consumer,
    output,
    keras_out,
    labels=None,
    expected=None,
    close=False,
    samples=None,
    **fields,
):
    """The `ArtefactReport` of `output` (aggregated, one row per sample).

    Args:
        target: the row's name, e.g. `"onnx"`.
        consumer: the program that ran the artefact.
        output: its outputs on the first `len(output)` evaluation samples.
        keras_out: the Keras model's outputs on the same samples.
        labels: their labels, or `None`.
        expected: the outputs the artefact must equal (e.g. the float or
            the integer reference), or `None`: gives `max_abs_diff`.
        close: also the check `within_1e-5`: the fraction of samples
            within `CLOSE_TOLERANCE` of `expected`.
        samples: the number of evaluation samples `output` covers when it
            is not all of them (recorded for the accuracy gate).
        **fields: further `ArtefactReport` fields (`path`, `ops`,
            `checks`, ...).

    Returns:
        An `ArtefactReport`.
    """
    row = ArtefactReport(
        target,
        consumer,
        accuracy=accuracy(output, labels),
        agreement=agreement(output, keras_out),
        samples=samples,
        **fields,
    )
    if expected is not None:
        row.max_abs_diff = float(np.max(np.abs(output - expected)))
        if close:
            row.checks[_CLOSE_CHECK] = close_fraction(output, expected)
    return row


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
        wide = max([22, *(len(row.consumer) for row in self.rows)])
        header = (
            f"{'artefact':<18} {'consumer':<{wide}} {'bytes':>8} "
            f"{'accuracy':>9} "
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
                f"{row.target:<18} {row.consumer:<{wide}} "
                f"{fmt(row.size_bytes, 'd'):>8} {fmt(row.accuracy, '.4f'):>9} "
                f"{fmt(row.agreement, '.4f'):>7} "
                f"{fmt(row.max_abs_diff, '.2g'):>10}  {'; '.join(notes)}"
            )
        if self.gate:
            lines.append(gate_summary(self.gate))
        return "\n".join(lines)


def gate_summary(gate):
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
