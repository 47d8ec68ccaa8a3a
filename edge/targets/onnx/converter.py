"""ONNX step models through tf2onnx, run in onnxruntime.

The step model of `edge.targets.tflite.step_model` (dynamic batch) is
traced as a `tf.function` with named inputs and converted by
`tf2onnx.convert.from_function` at opset 17; the ONNX graph's outputs are
then renamed to the step model's names: `"y"` and, for every state input
(`"v_<node>"`, and a neuron's other states `"i_<node>"`, `"a_<node>"`,
`"o_<node>"`: `step_model.state_names`), the output `"<state>_next"`
(ONNX forbids an input and an output of the same name). `OnnxRunner`
maps them back, so a caller feeds and reads everything by the same names
as with TFLite.
"""

import numpy as np

from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.targets.tflite import step_model as step_lib

__all__ = ["OPSET", "OnnxRunner", "convert", "op_names"]

OPSET = 17
NEXT = "_next"


def _rename_outputs(model, names):
    graph = model.graph
    mapping = {
        out.name: new for out, new in zip(graph.output, names, strict=True)
    }
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
    for out in graph.output:
        out.name = mapping[out.name]


def convert(graph):
    """Converts a fused graph's step model to an ONNX model (bytes).

    Args:
        graph: a fused `edge.ir.Graph`.

    Returns:
        The serialized ONNX model.

    Raises:
        ExportError: tf2onnx failed.
    """
    import tensorflow as tf
    import tf2onnx

    step = step_lib.build_step_model(graph, batch_size=None, target="onnx")
    names = [tensor.name for tensor in step.inputs]
    specs = [
        tf.TensorSpec((None, *tensor.shape[1:]), tf.float32, name=name)
        for name, tensor in zip(names, step.inputs, strict=True)
    ]
    output_names = [step_lib.OUTPUT] + [n for n in names if n != "x"]

    @tf.function(input_signature=specs)
    def step_fn(*args):
        out = step(dict(zip(names, args, strict=True)), training=False)
        return [out[name] for name in output_names]

    try:
        model, _ = tf2onnx.convert.from_function(
            step_fn, input_signature=specs, opset=OPSET
        )
    except Exception as error:
        raise ExportError(
            f"ONNX conversion of '{graph.name}' failed: "
            f"{type(error).__name__}: {error}"
        ) from error
    _rename_outputs(
        model, [output_names[0]] + [n + NEXT for n in output_names[1:]]
    )
    return model.SerializeToString()


def op_names(model_bytes):
    """Sorted ONNX operator types used by a model."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    return sorted({node.op_type for node in model.graph.node})


class OnnxRunner:
    """Runs an ONNX step model in onnxruntime (CPU).

    Call with a dict of named float32 inputs to get the dict of outputs.

    Args:
        model_bytes: the serialized ONNX model.

    Raises:
        ConsumerError: onnxruntime cannot load the model.

    Example:

    >>> runner = OnnxRunner(convert(fused))
    >>> from edge.targets.tflite import step_model
    >>> scores, per_step = step_model.run_steps(runner, fused, x_test)
    """

    def __init__(self, model_bytes):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(
                bytes(model_bytes), providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise ConsumerError(
                f"onnxruntime could not load the model: {error}"
            ) from error
        self.outputs = [
            out.name.removesuffix(NEXT) for out in self.session.get_outputs()
        ]

    def __call__(self, inputs):
        feeds = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
        return dict(
            zip(self.outputs, self.session.run(None, feeds), strict=True)
        )
