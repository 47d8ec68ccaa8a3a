"""Exporting a network to every target and checking each consumer."""

import dataclasses
import os
import tempfile
import time

import numpy as np

CONSUMER_TARGETS = (
    "tflite-float32",
    "tflite-int16x8",
    "tflm",
    "onnx",
    "c-host",
    "c-sanitize",
    "nir",
    "loihi",
)
STATUSES = ("exact", "mismatched", "crashed", "refused")
FLOAT_TOLERANCE = 1e-4  # float32 consumers against Keras (relative, absolute)


# -- checking --------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    """What one target did with one network.

    Attributes:
        target: one of `CONSUMER_TARGETS`.
        status: `"exact"`, `"mismatched"`, `"crashed"` or `"refused"`.
        detail: the refusal or error message, or what differed.
        seconds: wall time of the conversion and the consumer run.
    """

    target: str
    status: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def exported(self):
        return self.status in ("exact", "mismatched")


def available_targets():
    """The targets whose consumers are installed here."""
    import shutil

    targets = ["tflite-float32", "tflite-int16x8", "onnx"]
    try:
        import tflite_micro  # noqa: F401

        targets.append("tflm")
    except ImportError:
        pass
    if shutil.which("gcc"):
        targets += ["c-host", "c-sanitize"]
    from edge.errors import ConsumerError
    from edge.targets import loihi
    from edge.targets import nir as nir_export

    try:
        nir_export.nir_python()
        import nir  # noqa: F401

        targets.append("nir")
    except (ConsumerError, ImportError):
        pass
    if loihi.lava_python() is not None:
        targets.append("loihi")
    return [t for t in CONSUMER_TARGETS if t in targets]


def _close(got, expected):
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return False, f"shape {got.shape}, expected {expected.shape}"
    diff = np.abs(got - expected)
    bound = FLOAT_TOLERANCE * (1.0 + np.abs(expected))
    if np.all(diff <= bound):
        return True, f"max |diff| {diff.max(initial=0):.2e}"
    bad = int(np.sum(diff > bound))
    return False, (
        f"{bad} of {diff.size} outputs differ, max |diff| {diff.max():.3g}"
    )


def _drive(step, graph, x, feed, dtype):
    """Runs a step function (dict -> dict) sample by sample, with this
    module's own loop: `feed(x_t)` is the step's input, states of `dtype`
    start at 0 and are fed back by name. Returns the per-step outputs
    `(N, T, ...)`."""
    from edge import reference
    from edge.targets.tflite import step_model

    steps, x_at = reference.input_steps(graph, x)
    shapes = {
        name: node.shape
        for node in graph.state_nodes
        for name in step_model.state_names(node).values()
    }
    names = list(shapes)
    outputs = []
    for i in range(len(x)):
        states = {
            name: np.zeros((1, *shape), dtype) for name, shape in shapes.items()
        }
        per_step = []
        for t in range(steps):
            result = step(
                {step_model.INPUT: feed(x_at(t)[i : i + 1]), **states}
            )
            per_step.append(np.asarray(result[step_model.OUTPUT])[0])
            states = {name: np.asarray(result[name]) for name in names}
        outputs.append(np.stack(per_step))
    return np.stack(outputs)


def _float_steps(step, graph, x):
    """A float step function's aggregated output (`_drive`)."""
    from edge import reference

    per_step = _drive(
        step, graph, x, lambda x_t: x_t.astype(np.float32), np.float32
    )
    return reference.aggregate(list(per_step.swapaxes(0, 1)), graph.aggregate)


def _integer_steps(step, qgraph, x):
    """An integer step function's raw outputs `(N, T, ...)` (`_drive`):
    the input quantized as `edge.integer` does, int16 states."""
    from edge import integer

    def feed(x_t):
        return integer.quantize_input(qgraph, x_t).astype(np.int16)

    return _drive(step, qgraph.graph, x, feed, np.int16)


def _litert(model_bytes, reference_kernels=False):
    """A LiteRT signature runner and the `{name: (scale, zero_point)}` of
    its inputs."""
    from ai_edge_litert import interpreter as litert

    kwargs = {}
    if reference_kernels:
        kwargs["experimental_op_resolver_type"] = (
            litert.OpResolverType.BUILTIN_REF
        )
    interpreter = litert.Interpreter(model_content=bytes(model_bytes), **kwargs)
    runner = interpreter.get_signature_runner()
    params = {
        name: tuple(detail["quantization"])
        for name, detail in runner.get_input_details().items()
    }
    return runner, params


def _check_tflite_float(work):
    from edge.targets.tflite import converter as tflite

    runner, _ = _litert(tflite.convert(work["graph"]))
    output = _float_steps(lambda feed: runner(**feed), work["graph"], work["x"])
    return _close(output, work["keras_out"])


def _integer_model(work):
    if "integer_model" not in work:
        from edge.targets.tflite import integer_model

        work["integer_model"] = integer_model.build_integer_model(_qgraph(work))
    return work["integer_model"]


def _raw_equal(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False, f"shape {got.shape}, expected {expected.shape}"
    differ = int(np.sum(got != expected))
    if differ:
        return False, f"{differ} of {got.size} integers differ"
    return True, f"{got.size} integers equal"


def _check_tflite_integer(work):
    model_bytes = _integer_model(work)
    for reference_kernels in (False, True):
        runner, _ = _litert(model_bytes, reference_kernels)
        got = _integer_steps(
            lambda feed, run=runner: run(**feed), _qgraph(work), work["x"]
        )
        equal, detail = _raw_equal(got, work["int_raw"])
        if not equal:
            kernels = "reference" if reference_kernels else "default"
            return False, f"LiteRT ({kernels} kernels): {detail}"
    return True, detail


def _check_tflm(work):
    from edge import integer
    from edge import reference
    from edge.targets.tflite import converter as tflite
    from edge.targets.tflite import integer_model

    qgraph = _qgraph(work)
    graph = qgraph.graph
    steps, x_at = reference.input_steps(graph, work["x"])
    xq = np.stack(
        [integer.quantize_input(qgraph, x_at(t)) for t in range(steps)], 1
    ).astype(np.int16)[:, :, None]
    states = integer_model.initial_states(qgraph)
    raw = tflite.run_tflm_arrays(_integer_model(work), xq, states, graph.name)
    return _raw_equal(raw, work["int_raw"])


def _check_onnx(work):
    import onnxruntime

    from edge.targets.onnx import converter as onnx_export

    session = onnxruntime.InferenceSession(
        bytes(onnx_export.convert(work["graph"])),
        providers=["CPUExecutionProvider"],
    )
    names = [
        out.name.removesuffix(onnx_export.NEXT) for out in session.get_outputs()
    ]

    def step(feed):
        return dict(zip(names, session.run(None, feed), strict=True))

    output = _float_steps(step, work["graph"], work["x"])
    return _close(output, work["keras_out"])


def _qgraph(work):
    if "qgraph" not in work:
        from edge import integer
        from edge import quantize

        work["qgraph"] = quantize.quantize(work["graph"], work["cal"])
        work["int_raw"] = integer.run_integer(work["qgraph"], work["x"])[1]
    return work["qgraph"]


def _check_c(work, platform):
    from edge.targets import c as c_target

    qgraph = _qgraph(work)
    directory = os.path.join(work["dir"], platform)
    raw, _ = c_target.run_c(qgraph, work["x"], directory, platform)
    return _raw_equal(raw, work["int_raw"])


def _keras_spikes(model, graph):
    """Spikes `(N, T, ...)` of the Keras model's neuron layers, by the name
    of their step-graph node."""
    import keras

    nodes = [node for node in graph.nodes if node.op == "neuron"]
    probe = keras.Model(
        model.input, [model.get_layer(node.layer).output for node in nodes]
    )
    return nodes, probe


def _check_nir(work):
    import keras

    from edge import reference
    from edge.targets import nir as nir_export

    graph, x, model = work["graph"], work["x"], work["model"]
    conversion = nir_export.convert(graph)
    path = nir_export.write(
        conversion.nir_graph, os.path.join(work["dir"], "model.nir")
    )
    output, _, spikes, _ = nir_export.run_conversion(
        conversion, path, x, "norse"
    )
    nodes, probe = _keras_spikes(model, graph)
    expected = probe(x, training=False)
    if len(nodes) == 1:
        expected = [expected]
    differ = 0
    for node, want in zip(nodes, expected, strict=True):
        want = keras.ops.convert_to_numpy(want)
        got = spikes[node.name]
        if got.shape != want.shape:
            return False, f"'{node.name}' spikes have shape {got.shape}"
        differ += int(np.sum(got != want))
    if differ:
        # Keras (float32) and Norse (float32) may differ where a potential
        # is within rounding of the threshold: explained if the float64
        # reference puts the first difference of each sample at a tie.
        _, trace = reference.run_float(graph, x, record=True)
        result = nir_export.compare_spikes(graph, trace, spikes)
        if result["unexplained"]:
            return False, (
                f"{differ} spikes differ from Keras; not at a tie: "
                f"{result['unexplained'][:3]}"
            )
        return True, f"{differ} spikes differ, all after a near-tie"
    return _close(output, work["keras_out"])


def _check_loihi(work):
    from edge.targets import loihi

    lgraph = loihi.quantize_loihi(work["graph"])
    stream, interval = loihi.make_stream(
        lgraph, loihi.encode(lgraph, work["x"])
    )
    expected = loihi.run_loihi_reference(lgraph, stream[None], interval)[0]
    path = os.path.join(work["dir"], loihi.NETX_FILE)
    loihi.write_netx(lgraph, path)
    got = loihi.run_lava(lgraph, path, stream, interval)
    return _raw_equal(got, expected)


_CHECKS = {
    "tflite-float32": _check_tflite_float,
    "tflite-int16x8": _check_tflite_integer,
    "tflm": _check_tflm,
    "onnx": _check_onnx,
    "c-host": lambda work: _check_c(work, "host"),
    "c-sanitize": lambda work: _check_c(work, "host-sanitize"),
    "nir": _check_nir,
    "loihi": _check_loihi,
}


def error_message(error):
    text = f"{type(error).__name__}: {error}".strip()
    return " ".join(text.split())[:600]


def check_network(model, calibration, x, targets=None, directory=None):
    """Exports `model` to each target and checks each consumer.

    Args:
        model: a keras_snn model (e.g. from `build`).
        calibration: calibration inputs for the quantized targets.
        x: the inputs run in every consumer.
        targets: some of `CONSUMER_TARGETS`; defaults to
            `available_targets()`.
        directory: scratch folder (a temporary one by default).

    Returns:
        A list of `Outcome`, one per target. A refusal is an
        `UnsupportedLayerError` or a `CalibrationError` with a message;
        any other exception is a crash.
    """
    from edge import fuse
    from edge import ir
    from edge.errors import CalibrationError
    from edge.errors import UnsupportedLayerError

    targets = available_targets() if targets is None else list(targets)
    with tempfile.TemporaryDirectory() as scratch:
        work = {
            "model": model,
            "graph": fuse.fuse(ir.extract(model)),
            "cal": np.asarray(calibration),
            "x": np.asarray(x),
            "keras_out": np.asarray(model.predict(x, verbose=0), np.float64),
            "dir": directory or scratch,
        }
        outcomes = []
        for target in targets:
            start = time.perf_counter()
            try:
                same, detail = _CHECKS[target](work)
                status = "exact" if same else "mismatched"
            except (UnsupportedLayerError, CalibrationError) as error:
                status, detail = "refused", error_message(error)
                if not str(error).strip():
                    status = "crashed"  # a refusal must say why
            except Exception as error:  # noqa: BLE001 - a crash to report
                status, detail = "crashed", error_message(error)
            seconds = time.perf_counter() - start
            outcomes.append(Outcome(target, status, detail, seconds))
    return outcomes
