"""Export targets of `edge.export`: a small protocol and its registry.

A target turns the prepared graphs of an `ExportContext` into files,
runs them in their consumers and reports rows:

```python
from edge.targets import Requirement, Target

def export_mine(context):
    data = my_format.convert(context.graph)
    context.files["model.mine"] = data
    output = my_format.run(data, context.x)
    return [context.row("mine", "my runtime", output, path="model.mine")]

TARGET = Target(
    "mine",
    export_mine,
    requirements=(Requirement.module("my_format", "pip install my-format"),),
)
```

A package makes it available to `edge.export` and `keras-snn export` by
naming it under the entry point group `edge.targets` (in `setup.cfg`:
`edge.targets = mine = my_package:TARGET`); `edge` itself is not touched.
An entry point names a `Target` or a plain function `f(context) -> rows`
(the target of the entry point's name, without requirements). Loading a
target imports its module; listing the names (`names`) imports nothing.
"""

import dataclasses
import importlib.util
import shutil

import numpy as np

from edge import report
from edge.errors import ConsumerError
from edge.errors import ExportError

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExportContext",
    "Requirement",
    "Target",
    "get",
    "names",
]

ENTRY_POINT_GROUP = "edge.targets"
# The order in which the targets of this package are listed (and run by
# default); other registered targets follow in alphabetical order.
_BUILT_IN_ORDER = ("tflite", "tflite-int16x8", "onnx", "c", "loihi", "nir")


@dataclasses.dataclass(frozen=True)
class Requirement:
    """A consumer (or converter) that a target needs.

    Attributes:
        name: what it is, e.g. `"onnxruntime"`.
        available: a function of no argument, true when it is there.
        install: how to install it, e.g. `"pip install onnxruntime"`.
    """

    name: str
    available: object
    install: str

    @classmethod
    def module(cls, module, install, name=None):
        """A Python module that must be importable (checked without
        importing it)."""

        def available():
            try:
                return importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                return False

        return cls(name or module, available, install)

    @classmethod
    def program(cls, program, install, name=None):
        """A program that must be on the `PATH`."""
        return cls(
            name or program, lambda: shutil.which(program) is not None, install
        )


class Target:
    """One export target: a name, its requirements and its export.

    Args:
        name: the name given in `targets=` (e.g. `"onnx"`).
        function: `function(context) -> list[ArtefactReport]`; it puts
            its files (relative name -> bytes) into `context.files` and
            raises `edge.ConsumerError` when an artefact fails its check.
        requirements: the `Requirement`s of its consumers.
        description: one line for `--help` and error messages.
        integer: whether it deploys the integer reference
            (`context.qgraph`): a graph that the integer quantizer refuses
            is refused for such targets only. Defaults to `False`.
    """

    def __init__(
        self, name, function, requirements=(), description="", integer=False
    ):
        self.name = name
        self.function = function
        self.requirements = tuple(requirements)
        self.description = description
        self.integer = bool(integer)

    def __repr__(self):
        return f"Target({self.name!r})"

    def missing(self):
        """The requirements that are not available, as
        `"<name> (<how to install>)"` lines."""
        return [
            f"{req.name} ({req.install})"
            for req in self.requirements
            if not req.available()
        ]

    def check(self):
        """Raises `ConsumerError` naming what to install when a
        requirement is missing."""
        missing = self.missing()
        if missing:
            raise ConsumerError(
                f"The target {self.name!r} needs what is not installed: "
                + "; ".join(missing)
            )

    def export(self, context):
        """Converts and checks; returns `(files, rows)`.

        `files` maps relative file names to bytes; nothing is written.
        """
        saved, context.files = context.files, {}
        try:
            rows = list(self.function(context))
            return context.files, rows
        finally:
            context.files = saved


def _entry_points():
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def names():
    """The names of the registered targets (nothing is imported): this
    package's in their usual order, then the others alphabetically."""
    found = sorted({entry.name for entry in _entry_points()})

    def order(name):
        if name in _BUILT_IN_ORDER:
            return (0, _BUILT_IN_ORDER.index(name), name)
        return (1, 0, name)

    return tuple(sorted(found, key=order))


def get(name):
    """The registered `Target` called `name` (its module is imported).

    Raises:
        ExportError: no target of that name is registered, or its entry
            point does not load or names neither a `Target` nor a function.
    """
    entries = [entry for entry in _entry_points() if entry.name == name]
    if not entries:
        raise ExportError(
            f"No export target {name!r} is registered (entry point group "
            f"{ENTRY_POINT_GROUP!r}). Registered: {', '.join(names())}"
        )
    entry = entries[0]
    try:
        loaded = entry.load()
    except Exception as error:
        raise ExportError(
            f"The export target {name!r} ({entry.value}) could not be "
            f"loaded: {type(error).__name__}: {error}"
        ) from error
    if isinstance(loaded, Target):
        if loaded.name != name:
            raise ExportError(
                f"The entry point {name!r} ({entry.value}) names the target "
                f"{loaded.name!r}; the two names must be equal."
            )
        return loaded
    if callable(loaded):
        return Target(name, loaded)
    raise ExportError(
        f"The entry point {name!r} ({entry.value}) must name an "
        f"`edge.targets.Target` or a function. Received: {loaded!r}"
    )


@dataclasses.dataclass
class ExportContext:
    """What a target's export function receives.

    A target function `f(context) -> list[ArtefactReport]` converts
    `graph`/`qgraph`, runs the artefact in its consumer on `x`, compares it
    with the references, raises `ConsumerError` when a required check
    fails, and puts its files (name -> bytes) into `files`; `export` writes
    them only after every target has passed.

    Attributes:
        graph: the fused step graph.
        calibration: calibration inputs (float32).
        x: evaluation inputs; `labels` their labels or `None`.
        keras_out: the Keras model's outputs on `x`.
        float_out, float_trace: the float reference's output and trace.
        timesteps: `T`.
        qgraph: its `QuantizedGraph` (the integer reference), and
            `int_out`, `int_raw`, `int_trace` the integer reference's
            output, per-step integers and trace on `x`: `None` until
            `ensure_integer` computes them
            (the exporter does so for targets with `integer=True` only).
        state_bits: the width of the integer states.
        files: the files to write, filled by the target functions.
        progress: a function of one line of text that shows progress
            (`export`'s `verbose`/`progress`); a target may call `log`
            when a consumer starts or ends.
        shared: results that several targets use, computed by the first
            that needs them (e.g. the Keras step model's outputs, see
            `edge.targets.tflite.keras_step_outputs`).
    """

    graph: object
    calibration: np.ndarray
    x: np.ndarray
    labels: object
    keras_out: np.ndarray
    float_out: np.ndarray
    float_trace: dict
    timesteps: int
    qgraph: object = None
    int_out: np.ndarray = None
    int_trace: dict = None
    int_raw: np.ndarray = None
    state_bits: int = 16
    files: dict = dataclasses.field(default_factory=dict)
    progress: object = None
    shared: dict = dataclasses.field(default_factory=dict)

    def ensure_integer(self):
        """Quantizes the graph and runs the integer reference on `x`, once.

        Returns:
            `qgraph`.

        Raises:
            UnsupportedLayerError, CalibrationError: the graph has no
                integer form (`edge.quantize.quantize`), every time.
        """
        from edge import integer
        from edge import quantize

        if self.qgraph is None:
            failure = self.shared.get("integer_failure")
            if failure is not None:
                raise failure
            try:
                self.qgraph = quantize.quantize(
                    self.graph, self.calibration, int(self.state_bits)
                )
            except ExportError as error:
                self.shared["integer_failure"] = error
                raise
        if self.int_raw is None:
            self.int_out, self.int_raw, self.int_trace = integer.run_integer(
                self.qgraph, self.x, self.timesteps, record=True
            )
        return self.qgraph

    def log(self, line):
        """Shows `line` as progress (nothing when the export is quiet)."""
        if self.progress is not None:
            self.progress(line)

    def accuracy(self, output):
        """Accuracy of `output` on the labels (`None` without labels)."""
        return report.accuracy(output, self.labels)

    def agreement(self, output):
        """Fraction of samples whose class equals the Keras model's."""
        return report.agreement(output, self.keras_out)

    def row(
        self, target, consumer, output, expected=None, close=None, **fields
    ):
        """An `ArtefactReport` for `output` (`edge.report.make_row`).

        `output` holds the artefact's aggregated outputs on the first
        `len(output)` evaluation samples; accuracy and agreement are
        measured on those. With `expected` (the model the artefact must
        equal), also the largest difference and, unless `close=False`,
        the `within_1e-5` fraction of samples. `fields` are passed on
        (`path`, `ops`, `checks`, ...).
        """
        count = len(output)
        labels = None if self.labels is None else self.labels[:count]
        return report.make_row(
            target,
            consumer,
            output,
            self.keras_out[:count],
            labels,
            expected=expected,
            close=expected is not None if close is None else close,
            samples=None if count == len(self.x) else count,
            **fields,
        )
