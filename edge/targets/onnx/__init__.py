"""The `"onnx"` target of `edge.export`: the float step model in ONNX.

Converted with tf2onnx (`edge.targets.onnx.converter`), run in onnxruntime and
compared with the Keras step model. Registered under the entry point
group `edge.targets` (see `edge.targets`).
"""

from edge.targets import Requirement
from edge.targets import Target

__all__ = ["TARGET", "export_target"]


def export_target(context):
    """The `"onnx"` target: the float step model in onnxruntime.

    Writes `model.onnx`, converted with tf2onnx and checked against the
    Keras step model.

    Args:
        context: an `edge.targets.ExportContext`.

    Returns:
        One row `"onnx"` (onnxruntime).
    """
    from edge.targets.onnx import converter as onnx_export
    from edge.targets.tflite import keras_step_outputs
    from edge.targets.tflite import step_model

    graph, x, files = context.graph, context.x, context.files

    expected = keras_step_outputs(context)
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


TARGET = Target(
    "onnx",
    export_target,
    requirements=(
        Requirement.module("tf2onnx", "pip install tf2onnx"),
        Requirement.module("onnx", "pip install onnx"),
        Requirement.module("onnxruntime", "pip install onnxruntime"),
    ),
    description="model.onnx (onnxruntime)",
)
