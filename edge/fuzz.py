"""Random small keras_snn networks, checked in every consumer of the exporter.

`draw_spec` draws the description of a small network (dense or
convolutional on static inputs, dense on sequences, strides and paddings,
LIF or IF neurons, hard or soft reset, thresholds and decays, batch norm
or tdBN, average or max pooling, residual blocks, every readout head, `T`
from 1 to 8); `build` turns it into a Keras model whose weights are
scaled until every spiking layer fires; `check_network` exports it to
every target and runs each artefact in its consumer with a driver loop
of its own, comparing with the reference that defines it:

| target           | consumer                  | expected                    |
|------------------|---------------------------|-----------------------------|
| `tflite-float32` | LiteRT                    | `model.predict`             |
| `tflite-int16x8` | LiteRT (both kernel sets) | `edge.integer`, bit for bit |
| `tflm`           | TFLite-Micro              | `edge.integer`, bit for bit |
| `onnx`           | onnxruntime               | `model.predict`             |
| `c-host`         | gcc                       | `edge.integer`, bit for bit |
| `c-sanitize`     | gcc, ASan and UBSan       | `edge.integer`, bit for bit |
| `nir`            | Norse                     | the Keras model's spikes    |
| `loihi`          | Lava (NetX)               | `edge.targets.loihi` ref.   |

The same drawing serves the property tests (through a Hypothesis
`draw`, see `tests/test_edge_property.py`) and the long run, one command:

    python -m edge.fuzz --networks 300 --seed 0

which prints, per target, how many networks were exported, refused
(`UnsupportedLayerError`, or a `CalibrationError`), exact, mismatched
and crashed, and the specification of every failing network.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np

__all__ = [
    "CONSUMER_TARGETS",
    "HEADS",
    "HypothesisChooser",
    "Outcome",
    "RandomChooser",
    "available_targets",
    "build",
    "check_network",
    "draw_spec",
    "firing_rates",
    "main",
    "summary_table",
]

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
HEADS = (
    "decoding",
    "voting",
    "membrane-last",
    "membrane-mean",
    "membrane-max",
    "rate",
)
STATUSES = ("exact", "mismatched", "crashed", "refused")
FLOAT_TOLERANCE = 1e-4  # float32 consumers against Keras (relative, absolute)
RATE_RANGE = (0.03, 0.7)  # mean firing rates the weight scaling aims at
SCALING_ROUNDS = 8
# Weight given to every input of a layer's first output channel, in units
# of the layer's largest weight, or 0 for none: a silent (-20) or saturated
# (+20) channel beside ordinary ones, as training leaves them, stretches
# the integer scales.
OUTLIERS = (0.0, 0.0, 0.0, -20.0, 20.0)
PROGRESS_EVERY = 25  # networks between two tables of the long run


# -- drawing ---------------------------------------------------------------
class RandomChooser:
    """Draws with a NumPy generator (the long run).

    Args:
        rng: a `numpy.random.Generator`.
    """

    def __init__(self, rng):
        self.rng = rng

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def integer(self, low, high):
        """An int in `[low, high]` (both included)."""
        return int(self.rng.integers(low, high + 1))

    def uniform(self, low, high):
        """A float in `[low, high]`, to three decimals."""
        return round(float(self.rng.uniform(low, high)), 3)


class HypothesisChooser:
    """Draws with Hypothesis (`data.draw` of `st.data()`), so that a
    failing network shrinks.

    Args:
        draw: `data.draw`, or the `draw` of a `@st.composite` strategy.
    """

    def __init__(self, draw):
        from hypothesis import strategies

        self.draw = draw
        self.st = strategies

    def choice(self, options):
        return self.draw(self.st.sampled_from(options))

    def integer(self, low, high):
        return self.draw(self.st.integers(low, high))

    def uniform(self, low, high):
        # Thousandths, so that a drawn value prints as it is.
        return self.draw(self.st.integers(low * 1000, high * 1000)) / 1000


def _neuron(chooser, chain=False):
    kind = chooser.choice(("LIF", "IF"))
    return {
        "type": kind,
        "threshold": chooser.uniform(0.2, 1.5),
        "decay": chooser.uniform(0.2, 0.95) if kind == "LIF" else 1.0,
        "reset": "hard" if chain else chooser.choice(("hard", "soft")),
    }


def draw_spec(chooser):
    """Draws the description of a small random network.

    Args:
        chooser: a `RandomChooser` or a `HypothesisChooser`.

    Half of the networks are drawn as a "chain": hard reset, no residual
    block, average pooling, a spike-count head and at least two spiking
    layers, what the NIR and Loihi targets accept; the others use every
    construct (and those targets refuse most of them).

    Returns:
        A JSON-serializable dict for `build`.
    """
    chain = chooser.choice((False, True))
    spec = {
        "timesteps": chooser.integer(1, 8),
        "input": chooser.choice(("image", "features", "sequence")),
        "seed": chooser.integer(0, 9999),
        "chain": chain,
    }
    blocks = []
    if spec["input"] == "image":
        spec["shape"] = [6, 6, chooser.integer(1, 2)]
        size = 6
        for _ in range(chooser.integer(0, 2)):
            kind = chooser.choice(("conv", "conv", "residual"))
            if chain:
                kind = "conv"
            if kind == "residual" and size >= 2:
                stride = chooser.integer(1, 2)
                blocks.append(
                    {
                        "kind": "residual",
                        "filters": chooser.integer(2, 4),
                        "stride": stride,
                        "neuron": chooser.choice(("lif", "if")),
                    }
                )
                size = -(-size // stride)
                continue
            kernel = chooser.integer(1, 3)
            padding = chooser.choice(("same", "valid"))
            if size < kernel:
                padding = "same"
            strides = chooser.integer(1, 2)
            size = (
                -(-size // strides)
                if padding == "same"
                else (size - kernel) // strides + 1
            )
            block = {
                "kind": "conv",
                "filters": chooser.integer(2, 5),
                "kernel": kernel,
                "strides": strides,
                "padding": padding,
                "use_bias": chooser.choice((True, False)),
                "outlier": chooser.choice(OUTLIERS),
                "norm": chooser.choice(("none", "bn", "tdbn")),
                "neuron": _neuron(chooser, chain),
                "pool": chooser.choice(("none", "avg", "max")),
                "pool_padding": chooser.choice(("valid", "same")),
            }
            if chain and block["pool"] == "max":
                block["pool"] = "avg"
            if size < 2:
                block["pool"] = "none"
            elif block["pool"] != "none":
                size = (
                    size // 2
                    if block["pool_padding"] == "valid"
                    else -(-size // 2)
                )
            blocks.append(block)
        dense = chooser.integer(0, 2)
    else:
        # Static features repeated T times by a DirectEncoding, or a
        # sequence (N, T, 8) read step by step (no encoding layer).
        spec["shape"] = [8]
        if spec["input"] == "sequence":
            spec["shape"] = [spec["timesteps"], 8]
        dense = chooser.integer(1, 2)
    # At least one spiking layer before the head, two in a chain.
    dense = max(dense, (2 if chain else 1) - len(blocks))
    for _ in range(dense):
        blocks.append(
            {
                "kind": "dense",
                "units": chooser.integer(4, 12),
                "norm": chooser.choice(("none", "bn", "tdbn")),
                "outlier": chooser.choice(OUTLIERS),
                "neuron": _neuron(chooser, chain),
            }
        )
    spec["blocks"] = blocks
    spec["head"] = chooser.choice(HEADS[:2] if chain else HEADS)
    spec["classes"] = chooser.integer(2, 4)
    if spec["head"] == "voting":
        spec["head_neuron"] = _neuron(chooser, chain)
    if spec["head"].startswith("membrane"):
        spec["head_decay"] = chooser.uniform(0.5, 1.0)
    return spec


# -- building --------------------------------------------------------------
def _neuron_layer(neuron, name):
    from keras_snn import layers

    if neuron["type"] == "IF":
        return layers.IF(
            threshold=neuron["threshold"], reset=neuron["reset"], name=name
        )
    return layers.LIF(
        threshold=neuron["threshold"],
        decay=neuron["decay"],
        reset=neuron["reset"],
        name=name,
    )


def _normalization(norm, threshold, name):
    import keras

    from keras_snn import layers

    if norm == "bn":
        return layers.TimeFolded(keras.layers.BatchNormalization(), name=name)
    if norm == "tdbn":
        return layers.TDBatchNormalization(
            alpha=1.0, threshold=threshold, name=name
        )
    return None


def _block(x, block, index):
    import keras

    from keras_snn import layers
    from keras_snn import models

    fold = layers.TimeFolded
    name = f"b{index}"
    if block["kind"] == "residual":
        return models.residual_block(
            x,
            block["filters"],
            stride=block["stride"],
            neuron=block["neuron"],
            name=f"{name}_res",
        )
    if block["kind"] == "conv":
        x = fold(
            keras.layers.Conv2D(
                block["filters"],
                block["kernel"],
                strides=block["strides"],
                padding=block["padding"],
                use_bias=block["use_bias"],
            ),
            name=f"{name}_conv",
        )(x)
    else:
        if len(x.shape) > 3:
            x = fold(keras.layers.Flatten(), name=f"{name}_flatten")(x)
        x = fold(keras.layers.Dense(block["units"]), name=f"{name}_dense")(x)
    norm = _normalization(
        block["norm"], block["neuron"]["threshold"], f"{name}_norm"
    )
    if norm is not None:
        x = norm(x)
    x = _neuron_layer(block["neuron"], f"{name}_neuron")(x)
    pool = block.get("pool", "none")
    if pool != "none":
        cls = (
            keras.layers.AveragePooling2D
            if pool == "avg"
            else keras.layers.MaxPooling2D
        )
        x = fold(cls(2, padding=block["pool_padding"]), name=f"{name}_pool")(x)
    return x


def _head(x, spec):
    import keras

    from keras_snn import layers

    fold = layers.TimeFolded
    classes = spec["classes"]
    if len(x.shape) > 3:
        x = fold(keras.layers.Flatten(), name="head_flatten")(x)
    head = spec["head"]
    if head == "decoding":
        return layers.Decoding(classes, name="head")(x)
    if head == "voting":
        x = fold(keras.layers.Dense(3 * classes), name="head_dense")(x)
        x = _neuron_layer(spec["head_neuron"], "head_neuron")(x)
        return layers.Voting(classes, name="head")(x)
    if head.startswith("membrane"):
        return layers.MembraneReadout(
            classes,
            decay=spec["head_decay"],
            mode=head.split("-")[1],
            name="head",
        )(x)
    rate = keras.layers.GlobalAveragePooling1D(name="head_rate")(x)
    return keras.layers.Dense(classes, name="head")(rate)


def _randomize_normalization(model, rng):
    """Non-trivial gamma, beta and moving statistics in every batch norm,
    so that folding them is tested."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if getattr(inner, "moving_variance", None) is None:
            continue
        channels = inner.moving_variance.shape[0]
        if getattr(inner, "gamma", None) is not None:
            inner.gamma.assign(rng.uniform(0.5, 2.0, channels))
        if getattr(inner, "beta", None) is not None:
            inner.beta.assign(rng.uniform(-0.3, 0.3, channels))
        inner.moving_mean.assign(rng.uniform(-0.2, 0.2, channels))
        inner.moving_variance.assign(rng.uniform(0.05, 0.5, channels))


def inputs_for(spec, count, seed):
    """`count` random inputs in `[0, 1]` of the network's input shape."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *spec["shape"])).astype("float32")


def _neuron_layers(model):
    from keras_snn import layers

    return [layer for layer in model.layers if isinstance(layer, layers.LIF)]


def _synaptic_sources(layer):
    """The Conv2D / Dense layers whose currents reach `layer` (through
    batch norm, pooling, flatten and additions)."""
    import keras

    found, seen = [], set()
    pending = list(keras.tree.flatten(layer.input))
    while pending:
        tensor = pending.pop()
        source = tensor._keras_history.operation
        if id(source) in seen:
            continue
        seen.add(id(source))
        inner = getattr(source, "layer", source)
        if isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
            found.append(inner)
        elif not isinstance(source, keras.layers.InputLayer):
            from keras_snn import layers

            if not isinstance(source, (layers.LIF, layers.DirectEncoding)):
                pending += keras.tree.flatten(source.input)
    return found


def firing_rates(model, x):
    """Mean firing rate of every spiking layer on `x`, by layer name."""
    import keras

    neurons = _neuron_layers(model)
    probe = keras.Model(model.input, [layer.output for layer in neurons])
    outputs = probe(x, training=False)
    if len(neurons) == 1:
        outputs = [outputs]
    return {
        layer.name: float(np.mean(keras.ops.convert_to_numpy(out)))
        for layer, out in zip(neurons, outputs, strict=True)
    }


def _scale_to_fire(model, x):
    """Scales the weights feeding each spiking layer, first to last, until
    its firing rate on `x` is in `RATE_RANGE` (or after `SCALING_ROUNDS`).
    A layer that stays silent gets the magnitudes of its weights (with
    negative weights only, no scale makes it fire)."""
    low, high = RATE_RANGE
    for layer in _neuron_layers(model):
        sources = _synaptic_sources(layer)
        for round_ in range(SCALING_ROUNDS):
            rate = firing_rates(model, x)[layer.name]
            if low <= rate <= high or not sources:
                break
            factor = 2.0 if rate < low else 0.5
            silent = rate == 0.0 and round_ >= SCALING_ROUNDS // 2
            for source in sources:
                for weight in source.weights:
                    value = weight * factor
                    weight.assign(abs(value) if silent else value)


def _set_outliers(model, spec):
    """Gives every input of each block's first output channel the weight
    `outlier` times the largest weight of its layer."""
    for index, block in enumerate(spec["blocks"]):
        if block.get("outlier"):
            name = f"b{index}_{block['kind']}"
            kernel = model.get_layer(name).layer.kernel
            value = np.array(kernel.numpy())
            value[..., 0] = block["outlier"] * np.max(np.abs(value))
            kernel.assign(value)


def build(spec):
    """Builds the Keras model of `spec`, with weights that make it fire.

    Args:
        spec: a dict from `draw_spec`.

    Returns:
        A built `keras.Model` named `fuzz_<seed>`.
    """
    import keras

    from keras_snn import layers

    keras.utils.set_random_seed(spec["seed"])
    inputs = keras.Input(tuple(spec["shape"]))
    x = inputs
    if spec["input"] != "sequence":
        x = layers.DirectEncoding(spec["timesteps"])(inputs)
    for index, block in enumerate(spec["blocks"]):
        x = _block(x, block, index)
    outputs = _head(x, spec)
    model = keras.Model(inputs, outputs, name=f"fuzz_{spec['seed']}")
    _randomize_normalization(model, np.random.default_rng(spec["seed"]))
    x = inputs_for(spec, 32, spec["seed"])
    _scale_to_fire(model, x)
    _set_outliers(model, spec)
    _scale_to_fire(model, x)  # the outliers change what follows
    return model


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


def _float_steps(step, graph, x):
    """Runs a float step function (dict -> dict) sample by sample, states
    fed back by name; returns the aggregated output."""
    from edge import reference
    from edge.targets.tflite import step_model

    steps, x_at = reference.input_steps(graph, x)
    names = [step_model.state_name(node) for node in graph.state_nodes]
    outputs = []
    for i in range(len(x)):
        states = {
            name: np.zeros((1, *node.shape), np.float32)
            for name, node in zip(names, graph.state_nodes, strict=True)
        }
        per_step = []
        for t in range(steps):
            feed = {step_model.INPUT: x_at(t)[i : i + 1].astype(np.float32)}
            result = step({**feed, **states})
            per_step.append(np.asarray(result[step_model.OUTPUT])[0])
            states = {name: np.asarray(result[name]) for name in names}
        outputs.append(np.stack(per_step))
    per_step = np.stack(outputs)
    return reference.aggregate(list(per_step.swapaxes(0, 1)), graph.aggregate)


def _integer_steps(step, qgraph, x):
    """Runs an integer step function sample by sample: the input quantized
    as `edge.integer` does, int16 states starting at 0 and fed back;
    returns the raw outputs `(N, T, ...)`."""
    from edge import integer
    from edge import reference
    from edge.targets.tflite import step_model

    graph = qgraph.graph
    steps, x_at = reference.input_steps(graph, x)
    names = [step_model.state_name(node) for node in graph.state_nodes]
    raws = []
    for i in range(len(x)):
        states = {
            name: np.zeros((1, *node.shape), np.int16)
            for name, node in zip(names, graph.state_nodes, strict=True)
        }
        per_step = []
        for t in range(steps):
            xq = integer.quantize_input(qgraph, x_at(t)[i : i + 1])
            result = step({step_model.INPUT: xq.astype(np.int16), **states})
            per_step.append(np.asarray(result[step_model.OUTPUT])[0])
            states = {name: np.asarray(result[name]) for name in names}
        raws.append(np.stack(per_step))
    return np.stack(raws)


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

        work["integer_model"] = integer_model.build_integer_model(
            _qgraph(work)
        )
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
    from edge.targets.tflite import step_model

    qgraph = _qgraph(work)
    graph = qgraph.graph
    steps, x_at = reference.input_steps(graph, work["x"])
    xq = np.stack(
        [integer.quantize_input(qgraph, x_at(t)) for t in range(steps)], 1
    ).astype(np.int16)[:, :, None]
    states = {
        step_model.state_name(node): np.zeros((1, *node.shape), np.int16)
        for node in graph.state_nodes
    }
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


def _message(error):
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
                status, detail = "refused", _message(error)
                if not str(error).strip():
                    status = "crashed"  # a refusal must say why
            except Exception as error:  # noqa: BLE001 - a crash to report
                status, detail = "crashed", _message(error)
            seconds = time.perf_counter() - start
            outcomes.append(Outcome(target, status, detail, seconds))
    return outcomes


# -- the long run ----------------------------------------------------------
def summary_table(results, targets):
    """The table of the long run: per target, networks exported, refused,
    exact, mismatched and crashed.

    Args:
        results: list of `(spec, outcomes)`.
        targets: the targets checked.
    """
    header = (
        f"{'target':<16}{'networks':>9}{'exported':>9}{'refused':>8}"
        f"{'exact':>7}{'mismatched':>11}{'crashed':>8}{'s/net':>7}"
    )
    lines = [header, "-" * len(header)]
    for target in targets:
        rows = [o for _, outs in results for o in outs if o.target == target]
        count = {s: sum(o.status == s for o in rows) for s in STATUSES}
        exported = count["exact"] + count["mismatched"]
        seconds = sum(o.seconds for o in rows) / max(len(rows), 1)
        lines.append(
            f"{target:<16}{len(rows):>9}{exported:>9}{count['refused']:>8}"
            f"{count['exact']:>7}{count['mismatched']:>11}"
            f"{count['crashed']:>8}{seconds:>7.1f}"
        )
    return "\n".join(lines)


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m edge.fuzz",
        description=(
            "Exports random small keras_snn networks to every target and "
            "checks each consumer against its reference."
        ),
    )
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--targets",
        default=None,
        help="comma-separated subset of: " + ", ".join(CONSUMER_TARGETS),
    )
    parser.add_argument(
        "--samples", type=int, default=8, help="inputs run per network"
    )
    parser.add_argument(
        "--json", default=None, help="also write every outcome to this file"
    )
    args = parser.parse_args(argv)
    if args.networks < 1:
        parser.error(f"--networks must be >= 1. Received: {args.networks}")
    if args.samples < 1:
        parser.error(f"--samples must be >= 1. Received: {args.samples}")
    if args.targets is not None:
        args.targets = [t.strip() for t in args.targets.split(",") if t]
        unknown = sorted(set(args.targets) - set(CONSUMER_TARGETS))
        if unknown:
            parser.error(
                f"--targets: unknown {', '.join(unknown)}; choose from "
                + ", ".join(CONSUMER_TARGETS)
            )
    return args


def main(argv=None):
    """`python -m edge.fuzz`: the long differential run; returns the exit
    status (1 if any consumer mismatched or crashed)."""
    args = _parse(argv)
    targets = args.targets or available_targets()
    rng = np.random.default_rng(args.seed)
    results = []
    start = time.perf_counter()
    for index in range(args.networks):
        spec = draw_spec(RandomChooser(rng))
        try:
            model = build(spec)
            calibration = inputs_for(spec, 32, spec["seed"])
            x = inputs_for(spec, args.samples, spec["seed"] + 1)
            outcomes = check_network(model, calibration, x, targets)
        except Exception as error:  # noqa: BLE001 - reported, run goes on
            outcomes = [
                Outcome(t, "crashed", "build/extract: " + _message(error))
                for t in targets
            ]
            traceback.print_exc()
        results.append((spec, outcomes))
        bad = [o for o in outcomes if o.status in ("mismatched", "crashed")]
        marks = " ".join(f"{o.target}={o.status}" for o in bad) or "ok"
        print(
            f"[{index + 1}/{args.networks}] {time.perf_counter() - start:.0f}s"
            f" {marks}",
            flush=True,
        )
        for outcome in bad:
            print(f"    {outcome.target}: {outcome.detail}", flush=True)
            print(f"    spec: {json.dumps(spec)}", flush=True)
        if (index + 1) % PROGRESS_EVERY == 0 and index + 1 < args.networks:
            print(summary_table(results, targets), flush=True)
    print(
        f"{len(results)} networks, seed {args.seed}, {args.samples} inputs each"
    )
    print(summary_table(results, targets))
    if args.json:
        from keras_snn import fileio

        fileio.write_json(
            [
                {
                    "spec": spec,
                    "outcomes": [dataclasses.asdict(o) for o in outs],
                }
                for spec, outs in results
            ],
            args.json,
        )
    failed = any(
        o.status in ("mismatched", "crashed")
        for _, outs in results
        for o in outs
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
