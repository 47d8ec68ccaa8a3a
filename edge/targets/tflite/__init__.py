"""The `"tflite"` target of `edge.export`: TFLite float32 and int8.

The float32 step model runs in LiteRT and must equal the Keras step model;
the int8 step model runs in LiteRT (reference kernels) and TFLite-Micro,
both of which must equal the TFLM emulator (`edge.targets.tflite.converter`,
`edge.targets.tflite.tflm_reference`) bit for bit. Registered under the entry point
group `edge.targets` (see `edge.targets`); TensorFlow is imported only
when the target runs.
"""

import numpy as np

from edge.errors import ConsumerError
from edge.targets import Requirement
from edge.targets import Target

__all__ = ["TARGET", "export_target", "keras_step_outputs"]


def keras_step_outputs(context):
    """The Keras step model's aggregated output on `context.x`: the float
    that the step artefacts (TFLite float32, ONNX) must equal; computed
    once per export (kept in `context.shared`)."""
    if "keras_step_out" not in context.shared:
        from edge.targets.tflite import step_model

        graph = context.graph
        step = step_model.build_step_model(graph, batch_size=None)

        def run(inputs):
            return {k: np.asarray(v) for k, v in step(inputs).items()}

        output = step_model.run_steps(run, graph, context.x)[0]
        context.shared["keras_step_out"] = output
    return context.shared["keras_step_out"]


def export_target(context):
    """The `"tflite"` target: float32 and int8 step models in LiteRT and
    TFLite-Micro (see `edge.targets.tflite.converter`).

    Writes `model_float32.tflite` (checked against the Keras step model)
    and `model_int8.tflite` (LiteRT and TFLite-Micro must equal the TFLM
    emulator `edge.targets.tflite.tflm_reference` bit for bit).

    Args:
        context: an `edge.targets.ExportContext`.

    Returns:
        Rows `"tflite-float32"` (LiteRT) and `"tflite-int8"` (LiteRT,
        TFLite-Micro).

    Raises:
        ConsumerError: the int8 model does not run bit for bit as the
            TFLM emulator.
    """
    from edge.targets.tflite import converter as tflite
    from edge.targets.tflite import step_model

    graph, x, files = context.graph, context.x, context.files

    expected = keras_step_outputs(context)
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
        "litert_equals_tflm_emulator": bool(
            np.array_equal(litert_raw, emulated_raw)
        ),
        "tflm_equals_tflm_emulator": bool(
            np.array_equal(tflm_raw, emulated_raw)
        ),
    }
    if not all(checks.values()):
        raise ConsumerError(
            f"The int8 TFLite model of '{graph.name}' does not run bit for "
            f"bit as the TFLM emulator: {checks}"
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


TARGET = Target(
    "tflite",
    export_target,
    requirements=(
        Requirement.module("tensorflow", "pip install tensorflow"),
        Requirement.module(
            "ai_edge_litert", "pip install ai-edge-litert", name="LiteRT"
        ),
        Requirement.module(
            "tflite_micro", "pip install tflite-micro", name="TFLite-Micro"
        ),
    ),
    description="model_float32.tflite and model_int8.tflite (LiteRT, "
    "TFLite-Micro)",
)
