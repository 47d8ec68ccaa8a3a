"""edge: deployment of trained keras_snn models.

`edge.export(model, out_dir, targets=..., calibration_data=...)` turns a
trained keras_snn model into checked artefacts: it extracts the per-step
graph (`edge.ir`), folds batch normalization into the weights
(`edge.fuse`), quantizes to integers with a Python reference simulator that
defines the deployed arithmetic (`edge.quantize`, `edge.integer`), writes
each target's artefacts (TFLite float32 and integer 16x8, ONNX, C, Loihi
NetX, NIR: `edge.targets`), runs each artefact in its real consumer
(LiteRT, TFLite-Micro, onnxruntime, gcc and QEMU, Lava, Norse) and reports
accuracy and
agreement (`edge.report`). Targets are plugins (`edge.targets`), registered
under the entry point group `edge.targets`. `edge` may import `keras_snn`;
`keras_snn` never imports `edge`.
Optional dependencies (tf2onnx, onnxruntime, ai-edge-litert, tflite-micro)
are imported when a target needs them; install them with the `edge` extra.
"""

import importlib

_LAZY = {
    "AccuracyDropError": "edge.errors",
    "ArtefactReport": "edge.report",
    "ExportReport": "edge.report",
    "TARGETS": "edge.exporter",
    "export": "edge.exporter",
    "CalibrationError": "edge.errors",
    "ConsumerError": "edge.errors",
    "ExportError": "edge.errors",
    "UnsupportedLayerError": "edge.errors",
}
_SUBMODULES = (
    "errors",
    "exporter",
    "fuse",
    "gate",
    "integer",
    "ir",
    "kernels",
    "neuron_models",
    "output",
    "qat",
    "quantize",
    "reference",
    "report",
    "targets",
)

# Modules that moved into the target packages, still reachable as
# `edge.<old name>` (e.g. `edge.loihi`).
_MOVED = {
    "loihi": "edge.targets.loihi",
    "nir_export": "edge.targets.nir",
    "onnx_export": "edge.targets.onnx.converter",
    "step_model": "edge.targets.tflite.step_model",
    "tflite": "edge.targets.tflite.converter",
}


def __getattr__(name):
    # Imported on first use, so that `keras-snn --help` (which loads the
    # `export` subcommand from edge.cli) does not import TensorFlow.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"edge.{name}")
    if name in _MOVED:
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'edge' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AccuracyDropError",
    "ArtefactReport",
    "CalibrationError",
    "ConsumerError",
    "ExportError",
    "ExportReport",
    "TARGETS",
    "UnsupportedLayerError",
    "export",
    *_SUBMODULES,
]
