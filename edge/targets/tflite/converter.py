"""TFLite step models: float32 conversion, runners and the TFLM driver.

The step model of `edge.targets.tflite.step_model` is saved as a
SavedModel with a fixed batch of 1 and converted with
`tf.lite.TFLiteConverter.from_saved_model`
(`from_concrete_functions` on a Keras 3 model and Keras' own
`export(format="litert")`, which allows Flex ops, are avoided: see
TOOLCHAIN.md). Only builtin ops are allowed. The integer model is not
converted: `edge.targets.tflite.integer_model` writes it from the quantized
graph so that it computes the integer reference's integers (the
converter's post-training int8 quantization picks its own scales; see
`benchmarks/integer_fidelity.py` and the deployment docs for how the two
compared).

Runners: `LiteRTRunner` (ai_edge_litert, in process) and
`run_tflm_arrays` (the TFLite-Micro host interpreter, in a subprocess with
a time limit, because TFLM can crash or hang on graphs it does not
support).
"""

import contextlib
import json
import os
import sys
import tempfile

import numpy as np

from edge.errors import ExportError
from edge.errors import consumer_failure
from edge.errors import run_consumer
from edge.targets.tflite import step_model as step_lib

__all__ = [
    "LiteRTRunner",
    "convert",
    "io_names",
    "name_outputs",
    "op_names",
    "run_tflm_arrays",
]

TFLM_TIMEOUT_S = 300


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _unpack(model_bytes):
    schema = _schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)


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


def _converter_logs_hidden():
    """Hides the converter's native log lines ("Reading SavedModel from",
    loader.cc, ...) when TensorFlow's C++ logging is turned down
    (`TF_CPP_MIN_LOG_LEVEL` >= 1, as `keras-snn` sets it); its errors
    still reach the `ExportError` and other stderr text is kept."""
    from keras_snn import native_logs

    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if level.isdigit() and int(level) >= 1:
        return native_logs.native_logs_hidden()
    return contextlib.nullcontext()


def convert(graph):
    """Converts a fused graph's float32 step model to a .tflite flatbuffer.

    Args:
        graph: a fused `edge.ir.Graph`.

    Returns:
        The model as `bytes`.

    Raises:
        ExportError: the converter failed; the message says why.
    """
    import tensorflow as tf

    step = step_lib.build_step_model(graph, batch_size=1)
    with tempfile.TemporaryDirectory() as directory:
        step.export(directory, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            with _converter_logs_hidden():
                return converter.convert()
        except Exception as error:
            raise ExportError(
                f"TFLite conversion of '{graph.name}' failed: "
                f"{type(error).__name__}: {error}"
            ) from error


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


_TFLM_SCRIPT = r"""
import json, sys
import numpy as np
from tflite_micro import runtime
model_path, data_path, out_path = sys.argv[1:4]
names = json.loads(sys.argv[4])
outputs = json.loads(sys.argv[5])
data = np.load(data_path)
x = data["x"]                      # (N, T, 1, ...) raw integers
states0 = {k: data["state0_" + k] for k in names if k != "x"}
interp = runtime.Interpreter.from_bytes(open(model_path, "rb").read(),
                                        arena_size=int(sys.argv[6]))
runs = {}
for i in range(x.shape[0]):
    interp.reset()
    states = dict(states0)
    per_step = {}
    for t in range(x.shape[1]):
        for index, name in enumerate(names):
            value = x[i, t] if name == "x" else states[name]
            interp.set_input(value, index)
        interp.invoke()
        result = {n: interp.get_output(j)
                  for j, names in enumerate(outputs) for n in names}
        states = {k: result[k] for k in states}
        for key in ["y", *states]:
            per_step.setdefault(key, []).append(result[key][0])
    for key, values in per_step.items():
        runs.setdefault(key, []).append(np.stack(values))
np.savez(out_path, **{key: np.stack(value) for key, value in runs.items()})
"""


def run_tflm_arrays(
    model_bytes, x, states, name, timeout=TFLM_TIMEOUT_S, record=False
):
    """Runs a step model in the TFLite-Micro host interpreter on raw
    integer inputs, in a subprocess (a crash or hang of TFLM cannot take
    the caller down).

    Args:
        model_bytes: the .tflite model.
        x: `(N, T, 1, ...)` raw inputs of the model's input type.
        states: `{state name: (1, ...) array}`, the raw initial states.
        name: the model's name, for the messages.
        timeout: seconds.
        record: also return the states after every step.

    Returns:
        The raw per-step outputs `y`, `(N, T, ...)`; with `record=True`,
        `(y, states)` where `states` maps each state name to its values
        after every step, `(N, T, ...)`.

    Raises:
        ConsumerError: TFLM failed, crashed or ran past `timeout` seconds.
    """
    in_names, out_names = io_names(model_bytes)
    arrays = {"x": x}
    arrays.update({"state0_" + key: value for key, value in states.items()})
    with tempfile.TemporaryDirectory() as directory:
        model_path = os.path.join(directory, "model.tflite")
        data_path = os.path.join(directory, "data.npz")
        out_path = os.path.join(directory, "out.npz")
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
        with np.load(out_path) as result:
            values = {key: result[key] for key in result.files}
        y = values.pop("y")
        return (y, values) if record else y
