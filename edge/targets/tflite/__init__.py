"""The `"tflite"` and `"tflite-int16x8"` targets of `edge.export`.

The float32 step model (`edge.targets.tflite.converter`) runs in LiteRT
and must equal the Keras step model; the integer step model
(`edge.targets.tflite.integer_model`: int16 activations and states, int8
weights, written from the quantized graph) runs in LiteRT (default and
reference kernels) and TFLite-Micro, each of which must compute the
integer reference's (`edge.integer`) integers bit for bit. Registered under the entry point
group `edge.targets` (see `edge.targets`); TensorFlow is imported only
when the target runs.
"""

import numpy as np

from edge.errors import ConsumerError
from edge.targets import Requirement
from edge.targets import Target

__all__ = [
    "INTEGER_FILE",
    "INTEGER_TARGET",
    "TARGET",
    "export_integer_target",
    "export_target",
    "keras_step_outputs",
]

INTEGER_FILE = "model_int16x8.tflite"


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
    """The `"tflite"` target: the float32 step model in LiteRT (see
    `edge.targets.tflite.converter`).

    Writes `model_float32.tflite`, checked against the Keras step model.

    Args:
        context: an `edge.targets.ExportContext`.

    Returns:
        The row `"tflite-float32"` (LiteRT).
    """
    from edge.targets.tflite import converter as tflite
    from edge.targets.tflite import step_model

    graph, x, files = context.graph, context.x, context.files
    expected = keras_step_outputs(context)
    context.log("  tflite: converting the float32 step model")
    float_bytes = tflite.convert(graph)
    context.log(f"  tflite: float32 in LiteRT on {len(x)} samples")
    runner = tflite.LiteRTRunner(float_bytes)
    outputs = [
        step_model.run_steps(runner, graph, x[i : i + 1])[0]
        for i in range(len(x))
    ]
    files["model_float32.tflite"] = float_bytes
    return [
        context.row(
            "tflite-float32",
            "LiteRT",
            np.concatenate(outputs),
            expected,
            path="model_float32.tflite",
            ops=tflite.op_names(float_bytes),
        )
    ]


def export_integer_target(context):
    """The `"tflite-int16x8"` target: the integer step model
    (`edge.targets.tflite.integer_model`) in LiteRT and TFLite-Micro.

    Writes `model_int16x8.tflite`; LiteRT (default and reference kernels)
    and TFLite-Micro must compute the integers of
    `edge.integer.run_integer` bit for bit.

    Args:
        context: an `edge.targets.ExportContext`.

    Returns:
        Rows `"tflite-int16x8"` (LiteRT, LiteRT with reference kernels,
        TFLite-Micro).

    Raises:
        ConsumerError: a consumer's integers differ from the integer
            reference's.
        UnsupportedLayerError: the graph has no integer form.
    """
    from edge import integer
    from edge.targets.tflite import converter as tflite
    from edge.targets.tflite import integer_model

    graph, x, files = context.graph, context.x, context.files
    rows = []
    context.log("  tflite: writing the integer (16x8) step model")
    qgraph = context.ensure_integer()
    int_bytes = integer_model.build_integer_model(qgraph)
    expected_raw = context.int_raw
    files[INTEGER_FILE] = int_bytes
    consumers = (
        ("LiteRT", "litert", False),
        ("LiteRT (reference kernels)", "litert_reference_kernels", True),
    )
    results = []
    for consumer, key, reference_kernels in consumers:
        context.log(f"  tflite: 16x8 in {consumer} on {len(x)} samples")
        runner = tflite.LiteRTRunner(int_bytes, reference_kernels)
        out, raw = integer_model.run_integer_steps(runner, qgraph, x)
        results.append((consumer, key, out, raw))
    context.log(f"  tflite: 16x8 in TFLite-Micro on {len(x)} samples")
    out, raw = integer_model.run_integer_tflm(int_bytes, qgraph, x)
    results.append(("TFLite-Micro", "tflm", out, raw))
    checks = {
        f"{key}_equals_integer_reference": bool(
            np.array_equal(raw, expected_raw)
        )
        for _, key, _, raw in results
    }
    if not all(checks.values()):
        raise ConsumerError(
            f"The integer TFLite model of '{graph.name}' does not compute "
            f"the integer reference's integers bit for bit: {checks}"
        )
    for consumer, _, out, _ in results:
        rows.append(
            context.row(
                "tflite-int16x8",
                consumer,
                out,
                path=INTEGER_FILE,
                ops=tflite.op_names(int_bytes),
                checks=dict(checks),
            )
        )
    return rows


_REQUIREMENTS = (
    Requirement.module("tensorflow", "pip install tensorflow"),
    Requirement.module(
        "ai_edge_litert", "pip install ai-edge-litert", name="LiteRT"
    ),
)

TARGET = Target(
    "tflite",
    export_target,
    requirements=_REQUIREMENTS,
    description="model_float32.tflite (LiteRT)",
)

INTEGER_TARGET = Target(
    "tflite-int16x8",
    export_integer_target,
    requirements=_REQUIREMENTS
    + (
        Requirement.module(
            "tflite_micro", "pip install tflite-micro", name="TFLite-Micro"
        ),
    ),
    description="model_int16x8.tflite (LiteRT, TFLite-Micro), the integer "
    "reference's integers",
    integer=True,
)
