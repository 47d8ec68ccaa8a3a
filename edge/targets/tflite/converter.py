"""TFLite step models: conversion (float32, full-integer int8) and runners.

The step model of `edge.targets.tflite.step_model` is saved as a
SavedModel with a fixed batch of 1 and converted with
`tf.lite.TFLiteConverter.from_saved_model`
(`from_concrete_functions` on a Keras 3 model and Keras' own
`export(format="litert")`, which allows Flex ops, are avoided: see
TOOLCHAIN.md). Only builtin ops are allowed. The int8 model has int8 inputs
and outputs and is calibrated on the step inputs and states that the float
reference goes through on the calibration data.

**State scales.** After conversion every state input gets the quantization
(scale, zero point) of the matching state output, so a runtime feeds the
new state back as raw int8 with no rescaling between steps. The output's
range contains every state value, and TFLite kernels derive their
multipliers from the tensors' parameters when the interpreter is prepared,
so the edit is exact.

**Comparison scales.** TFLite-Micro aborts (SIGABRT, no message) when it
prepares an int8 comparison whose input scale is not in (0, 1), and
LiteRT's result is undefined there. A neuron layer whose potential spans
255 or more on the calibration data would get such a scale, so `convert`
has the step model compare `u * 2**-k >= theta * 2**-k` for that layer
(`step_model.comparison_factors`) and checks every comparison of the
converted model.

Runners: `LiteRTRunner` (ai_edge_litert, in process) and `run_tflm` (the
TFLite-Micro host interpreter, in a subprocess with a time limit, because
TFLM can crash or hang on graphs it does not support).
"""

import json
import os
import sys
import tempfile

import numpy as np

from edge.errors import CalibrationError
from edge.errors import ExportError
from edge.errors import consumer_failure
from edge.errors import run_consumer
from edge.targets.tflite import step_model as step_lib

__all__ = [
    "IntegerReferenceRunner",
    "LiteRTRunner",
    "convert",
    "io_names",
    "name_outputs",
    "op_names",
    "representative_steps",
    "run_tflm",
    "run_tflm_arrays",
    "run_quantized",
]

TFLM_TIMEOUT_S = 300


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _unpack(model_bytes):
    schema = _schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)


def _pack(model):
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _decode(name):
    return name.decode() if isinstance(name, bytes) else name


def io_names(model_bytes):
    """Signature names of the subgraph's inputs and outputs, in order.

    One tensor can carry several output names: when a state output is the
    step's output `y` (a `MembraneReadout` head's potential is both), the
    converter keeps a single tensor and lists it once per name. Each
    output position therefore gets the tuple of its tensor's names, and
    every signature name appears at least once.

    Returns:
        `(input_names, output_names)`: for each position of the main
        subgraph's input tensor list, its signature name; for each position
        of its output tensor list, the tuple of the signature names of that
        tensor.

    Raises:
        ExportError: an input or output tensor has no signature name.
    """
    model = _unpack(model_bytes)
    graph = model.subgraphs[0]
    signature = model.signatureDefs[0]
    by_tensor_in = {}
    for item in signature.inputs:
        by_tensor_in.setdefault(int(item.tensorIndex), []).append(
            _decode(item.name)
        )
    by_tensor_out = {}
    for item in signature.outputs:
        by_tensor_out.setdefault(int(item.tensorIndex), []).append(
            _decode(item.name)
        )
    missing = [int(i) for i in graph.inputs if int(i) not in by_tensor_in]
    missing += [int(i) for i in graph.outputs if int(i) not in by_tensor_out]
    shared = [names for names in by_tensor_in.values() if len(names) > 1]
    if missing or shared:
        raise ExportError(
            "The TFLite model's signature does not name each input and "
            f"output once: unnamed tensors {missing}, inputs sharing a "
            f"tensor {shared}."
        )
    return (
        [by_tensor_in[int(i)][0] for i in graph.inputs],
        [tuple(sorted(by_tensor_out[int(i)])) for i in graph.outputs],
    )


def name_outputs(values, output_names):
    """`{name: value}` from the values of the subgraph's outputs, in order.

    Args:
        values: one array per output position.
        output_names: the second item of `io_names`: one tuple of names per
            position; a value shared by several names goes under each.

    Returns:
        A dict from every signature output name to its value.
    """
    return {
        name: value
        for names, value in zip(output_names, values, strict=True)
        for name in names
    }


def _operators(model):
    """`(builtin name, operator)` for each operator of the main subgraph."""
    codes = {
        value: key
        for key, value in vars(_schema().BuiltinOperator).items()
        if not key.startswith("_")
    }
    names = []
    for code in model.operatorCodes:
        number = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        names.append(codes.get(number, f"CODE_{number}"))
    return [(names[op.opcodeIndex], op) for op in model.subgraphs[0].operators]


def op_names(model_bytes):
    """Sorted builtin op names used by a .tflite model."""
    return sorted({name for name, _ in _operators(_unpack(model_bytes))})


def _share_state_quantization(model_bytes):
    """Gives every state input the quantization of its state output."""
    model = _unpack(model_bytes)
    graph = model.subgraphs[0]
    signature = model.signatureDefs[0]
    outputs = {_decode(t.name): t.tensorIndex for t in signature.outputs}
    for item in signature.inputs:
        name = _decode(item.name)
        if name == step_lib.INPUT:
            continue
        source = graph.tensors[outputs[name]].quantization
        target = graph.tensors[item.tensorIndex]
        if source is None or target.quantization is None:
            raise ExportError(
                f"State {name!r} of the int8 model is not quantized."
            )
        target.quantization.scale = list(source.scale)
        target.quantization.zeroPoint = list(source.zeroPoint)
    return _pack(model)


def _calibration_trace(graph, x):
    """The float reference's trace of every node on the calibration data.

    Raises:
        CalibrationError: `x` is empty.
    """
    from edge import reference

    x = np.asarray(x)
    if x.size == 0:
        raise CalibrationError("Calibration data is empty.")
    return reference.run_float(graph, x, record=True)[1]


def representative_steps(graph, x, limit=1000, seed=0, trace=None):
    """Step inputs for int8 calibration, from the float reference.

    Runs `graph` (fused) on `x` and returns, for every sample and step, the
    dict `{"x": x_t, "v_<node>": state before the step, ...}` with a batch
    of 1 (a random subset of at most `limit` of them).

    Args:
        graph: the fused graph.
        x: the calibration inputs.
        limit: the number of steps returned at most.
        seed: seed of the random subset.
        trace: the float reference's trace on `x` if already computed.

    Raises:
        CalibrationError: `x` is empty or of the wrong shape.
    """
    if trace is None:
        trace = _calibration_trace(graph, x)
    first = trace[graph.nodes[0].name]
    items = []
    for t in range(len(first)):
        for i in range(len(first[t])):
            item = {step_lib.INPUT: first[t][i : i + 1]}
            for node in graph.state_nodes:
                states = trace[f"{node.name}:state"]
                previous = (
                    np.zeros_like(states[0][i : i + 1])
                    if t == 0
                    else states[t - 1][i : i + 1]
                )
                item[step_lib.state_name(node)] = previous
            items.append({k: np.asarray(v, "float32") for k, v in item.items()})
    rng = np.random.default_rng(seed)
    if len(items) > limit:
        items = [items[i] for i in rng.choice(len(items), limit, False)]
    return items


def convert(graph, quantize=None, calibration=None, limit=1000):
    """Converts a fused graph's step model to a .tflite flatbuffer.

    Args:
        graph: a fused `edge.ir.Graph`.
        quantize: `None` for float32, or `"int8"` for a full-integer model
            (int8 inputs and outputs, builtin int8 ops only).
        calibration: inputs (as for `edge.reference.run_float`) used to
            calibrate the int8 model; required for `"int8"`.
        limit: the number of calibration steps used at most.

    Returns:
        The model as `bytes`.

    Raises:
        CalibrationError: `"int8"` without calibration data.
        ExportError: the converter failed; the message says why.
    """
    import tensorflow as tf

    if quantize not in (None, "int8"):
        raise ExportError(
            "Argument `quantize` must be None or 'int8'. Received: "
            f"quantize={quantize!r}"
        )
    if quantize and calibration is None:
        raise CalibrationError(
            "An int8 TFLite model needs calibration data: pass "
            "`calibration_data` (a few hundred training inputs)."
        )
    factors = None
    if quantize:
        trace = _calibration_trace(graph, calibration)
        _check_firing(graph, trace)
        items = representative_steps(graph, calibration, limit, trace=trace)
        factors = step_lib.comparison_factors(graph, trace)
    step = step_lib.build_step_model(
        graph, batch_size=1, comparison_factors=factors
    )
    with tempfile.TemporaryDirectory() as directory:
        step.export(directory, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: iter(items)
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS
            ]
        try:
            model_bytes = converter.convert()
        except Exception as error:
            raise ExportError(
                f"TFLite conversion of '{graph.name}' failed: "
                f"{type(error).__name__}: {error}"
            ) from error
    if quantize:
        model_bytes = _share_state_quantization(model_bytes)
        _check_int8_model(model_bytes, graph)
    return model_bytes


def _check_firing(graph, trace):
    """Refuses calibration data on which a neuron layer's int8 selections
    would get the range [0, 0].

    The converter calibrates `where(u >= theta, 1, 0)` (and, for a soft
    reset, `where(u >= theta, theta, 0)`) from the values it sees: a layer
    that never fires gets a zero range and loses every spike. A hard
    reset's `where(u >= theta, 0, 1)` likewise gets a zero range when
    every neuron of the layer fires at every step, and would then reset
    neurons that did not fire.

    Raises:
        CalibrationError: naming the layers and what happened.
    """
    from edge.quantize import _silent_layers

    samples = len(trace[graph.nodes[0].name][0])
    silent = _silent_layers(graph, trace)
    if silent:
        raise CalibrationError(
            f"The spiking layer(s) {', '.join(silent)} of '{graph.name}' "
            f"never fire on the {samples} calibration samples, so their "
            "int8 spikes would be lost. Train the model (an untrained one "
            "is often silent), lower the threshold, or calibrate with "
            "training inputs scaled as in training."
        )
    saturated = [
        f"'{node.name}' (layer '{node.layer}')"
        for node in graph.state_nodes
        if node.op == "neuron"
        and node.params.get("reset") == "hard"
        and all(np.all(step == 1) for step in trace[node.name])
    ]
    if saturated:
        raise CalibrationError(
            f"Every neuron of the spiking layer(s) {', '.join(saturated)} "
            f"of '{graph.name}' fires at every step on the {samples} "
            "calibration samples, so the int8 hard reset would be lost. "
            "Calibrate with more varied training inputs, or raise the "
            "threshold."
        )


def _scale(tensor):
    """A tensor's (first) scale, or None when it is not quantized."""
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None
    return float(q.scale[0])


def _check_int8_model(model_bytes, graph):
    """Refuses an int8 model that TFLite-Micro cannot run or that lost the
    spikes of a layer.

    The spikes are `where(u >= theta, 1, 0)` (GREATER_EQUAL, SELECT_V2).
    If a layer never fired on the calibration data, the converter gives the
    SELECT_V2 output the range [0, 0], a scale near 0, and the int8 model
    loses every spike of it. An int8 comparison input with a scale outside
    (0, 1) makes TFLite-Micro abort when it prepares the model
    (`QuantizeMultiplierSmallerThanOneExp`); `build_step_model`'s
    comparison factors prevent it, and this check makes sure.
    """
    model = _unpack(model_bytes)
    tensors = model.subgraphs[0].tensors
    for name, op in _operators(model):
        if name == "SELECT_V2":
            scale = _scale(tensors[op.outputs[0]])
            if scale is not None and 0 < scale < 1e-6:
                tensor = _decode(tensors[op.outputs[0]].name)
                raise CalibrationError(
                    f"A neuron layer of '{graph.name}' never fired (or, "
                    "with a hard reset, always fired) on the calibration "
                    f"steps the converter sampled (tensor {tensor!r} got "
                    "the range [0, 0]), so its int8 spikes would be lost. "
                    "Calibrate with more, or more typical, inputs."
                )
        if name == "GREATER_EQUAL":
            for index in op.inputs:
                scale = _scale(tensors[index])
                if scale is not None and not 0 < scale < 1:
                    tensor = _decode(tensors[index].name)
                    raise ExportError(
                        f"The int8 model of '{graph.name}' compares tensor "
                        f"{tensor!r} at scale {scale:.6g}; TFLite-Micro "
                        "accepts only 0 < scale < 1 (the comparison "
                        "factors of the step model should have kept it "
                        "there: please report this model)."
                    )


class LiteRTRunner:
    """Runs a step .tflite model in LiteRT (`ai_edge_litert`).

    Args:
        model_bytes: the .tflite model.
        reference_kernels: use TFLite's reference kernels
            (`OpResolverType.BUILTIN_REF`) instead of the default
            optimized ones and the XNNPACK delegate.

    Call with a dict of named inputs (batch 1) to get the dict of outputs.

    Example:

    >>> runner = LiteRTRunner(convert(fused))
    >>> from edge.targets.tflite import step_model
    >>> scores, per_step = step_model.run_steps(runner, fused, x[:1])
    """

    def __init__(self, model_bytes, reference_kernels=False):
        from ai_edge_litert import interpreter as litert

        kwargs = {}
        if reference_kernels:
            kwargs["experimental_op_resolver_type"] = (
                litert.OpResolverType.BUILTIN_REF
            )
        self.interpreter = litert.Interpreter(
            model_content=bytes(model_bytes), **kwargs
        )
        self.runner = self.interpreter.get_signature_runner()

    def __call__(self, inputs):
        return self.runner(**inputs)


class IntegerReferenceRunner:
    """Runs a step .tflite int8 model in the NumPy TFLM emulator
    (`tflm_reference.TFLiteIntegerReference`; not the integer reference
    `edge.integer`), by signature names.

    Args:
        model_bytes: the int8 .tflite model.

    Example:

    >>> model = convert(fused, "int8", x_train[:500])
    >>> scores, raw = run_quantized(IntegerReferenceRunner(model), fused,
    ...                             model, x_test)
    """

    def __init__(self, model_bytes):
        from edge.targets.tflite.tflm_reference import TFLiteIntegerReference

        self.reference = TFLiteIntegerReference(bytes(model_bytes))
        self.inputs, self.outputs = io_names(model_bytes)

    def __call__(self, inputs):
        values = self.reference.run([inputs[name] for name in self.inputs])
        return name_outputs(values, self.outputs)


def _input_parameters(model_bytes):
    """`{name: (scale, zero_point, dtype)}` of the signature's inputs and
    outputs, read from the flatbuffer."""
    model = _unpack(model_bytes)
    graph = model.subgraphs[0]
    signature = model.signatureDefs[0]
    result = {}
    for group in (signature.inputs, signature.outputs):
        for item in group:
            tensor = graph.tensors[item.tensorIndex]
            q = tensor.quantization
            scale = float(q.scale[0]) if q is not None and q.scale else 0.0
            zero = int(q.zeroPoint[0]) if q is not None and q.scale else 0
            result.setdefault(_decode(item.name), (scale, zero))
    return result


def quantize_input(x, scale, zero_point):
    """The caller's float -> int8 conversion of the step input, as TFLite's
    QUANTIZE op does it (`edge.targets.tflite.tflm_reference.quantize`)."""
    from edge.targets.tflite.tflm_reference import quantize

    return quantize(x, scale, zero_point, np.int8)


def dequantize(q, scale, zero_point):
    """int8 -> float (`edge.targets.tflite.tflm_reference.dequantize`)."""
    from edge.targets.tflite.tflm_reference import dequantize as _dequantize

    return np.asarray(_dequantize(q, scale, zero_point), np.float64)


def run_quantized(step_fn, graph, model_bytes, x, timesteps=None):
    """Runs an int8 step model over time on float inputs, sample by sample.

    The input is quantized with the model's input parameters; states start
    at the quantized zero and are fed back raw; outputs are dequantized and
    aggregated.

    Returns:
        `(output, raw)`: the aggregated float output `(N, ...)` and the raw
        int8 per-step outputs `(N, T, ...)`.
    """
    from edge import reference

    params = _input_parameters(model_bytes)
    steps, x_at = reference.input_steps(graph, x, timesteps)
    scale, zero = params[step_lib.INPUT]
    out_scale, out_zero = params[step_lib.OUTPUT]
    raws = []
    for i in range(len(np.asarray(x))):
        states = {
            step_lib.state_name(node): np.full(
                (1, *node.shape),
                params[step_lib.state_name(node)][1],
                np.int8,
            )
            for node in graph.state_nodes
        }
        per_step = []
        for t in range(steps):
            x_t = quantize_input(x_at(t)[i : i + 1], scale, zero)
            result = step_fn({step_lib.INPUT: x_t, **states})
            per_step.append(np.asarray(result[step_lib.OUTPUT])[0])
            states = {key: result[key] for key in states}
        raws.append(np.stack(per_step))
    raw = np.stack(raws)
    values = dequantize(raw, out_scale, out_zero)
    return reference.aggregate(
        list(values.swapaxes(0, 1)), graph.aggregate
    ), raw


_TFLM_SCRIPT = r"""
import json, sys
import numpy as np
from tflite_micro import runtime
model_path, data_path, out_path = sys.argv[1:4]
names = json.loads(sys.argv[4])
outputs = json.loads(sys.argv[5])
data = np.load(data_path)
x = data["x"]                      # (N, T, 1, ...) int8
states0 = {k: data["state0_" + k] for k in names if k != "x"}
interp = runtime.Interpreter.from_bytes(open(model_path, "rb").read(),
                                        arena_size=int(sys.argv[6]))
ys = []
for i in range(x.shape[0]):
    interp.reset()
    states = dict(states0)
    per_step = []
    for t in range(x.shape[1]):
        for index, name in enumerate(names):
            value = x[i, t] if name == "x" else states[name]
            interp.set_input(value, index)
        interp.invoke()
        result = {n: interp.get_output(j)
                  for j, names in enumerate(outputs) for n in names}
        per_step.append(result["y"][0])
        states = {k: result[k] for k in states}
    ys.append(np.stack(per_step))
np.save(out_path, np.stack(ys))
"""


def run_tflm_arrays(model_bytes, x, states, name, timeout=TFLM_TIMEOUT_S):
    """Runs a step model in the TFLite-Micro host interpreter on raw
    integer inputs, in a subprocess (a crash or hang of TFLM cannot take
    the caller down).

    Args:
        model_bytes: the .tflite model.
        x: `(N, T, 1, ...)` raw inputs of the model's input type.
        states: `{state name: (1, ...) array}`, the raw initial states.
        name: the model's name, for the messages.
        timeout: seconds.

    Returns:
        The raw per-step outputs `y`, `(N, T, ...)`.

    Raises:
        ConsumerError: TFLM failed, crashed or ran past `timeout` seconds.
    """
    in_names, out_names = io_names(model_bytes)
    arrays = {"x": x}
    arrays.update({"state0_" + key: value for key, value in states.items()})
    with tempfile.TemporaryDirectory() as directory:
        model_path = os.path.join(directory, "model.tflite")
        data_path = os.path.join(directory, "data.npz")
        out_path = os.path.join(directory, "out.npy")
        with open(model_path, "wb") as file:
            file.write(model_bytes)
        np.savez(data_path, **arrays)
        arena = max(64 * 1024, 16 * len(model_bytes))
        command = [
            sys.executable,
            "-c",
            _TFLM_SCRIPT,
            model_path,
            data_path,
            out_path,
            json.dumps(in_names),
            json.dumps(out_names),
            str(arena),
        ]
        what = f"TFLite-Micro on '{name}'"
        done = run_consumer(command, what, timeout)
        if done.returncode != 0 or not os.path.exists(out_path):
            raise consumer_failure(what, done)
        return np.load(out_path)


def run_tflm(model_bytes, graph, x, timesteps=None, timeout=TFLM_TIMEOUT_S):
    """Runs an int8 step model in the TFLite-Micro host interpreter.

    Same loop and quantization as `run_quantized`, through
    `run_tflm_arrays`.

    Returns:
        `(output, raw)` as `run_quantized`.

    Raises:
        ConsumerError: TFLM failed, crashed or ran past `timeout` seconds.
    """
    from edge import reference

    params = _input_parameters(model_bytes)
    steps, x_at = reference.input_steps(graph, x, timesteps)
    scale, zero = params[step_lib.INPUT]
    xq = np.stack(
        [quantize_input(x_at(t), scale, zero) for t in range(steps)], 1
    )[:, :, None]
    states = {
        step_lib.state_name(node): np.full(
            (1, *node.shape), params[step_lib.state_name(node)][1], np.int8
        )
        for node in graph.state_nodes
    }
    raw = run_tflm_arrays(model_bytes, xq, states, graph.name, timeout)
    out_scale, out_zero = params[step_lib.OUTPUT]
    values = dequantize(raw, out_scale, out_zero)
    output = reference.aggregate(list(values.swapaxes(0, 1)), graph.aggregate)
    return output, raw
