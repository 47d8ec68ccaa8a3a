"""Exceptions raised by the exporter.

All of them derive from `ExportError`, itself a `ValueError`, so a caller
can catch every refusal of the exporter with one `except` clause while
ordinary argument checks keep working with `except ValueError`.
"""

__all__ = [
    "CalibrationError",
    "ConsumerError",
    "ExportError",
    "UnsupportedLayerError",
]


class ExportError(ValueError):
    """The model or an argument cannot be exported as asked."""


class UnsupportedLayerError(ExportError):
    """A layer (or a use of a layer) that the exporter cannot express."""


class CalibrationError(ExportError):
    """Calibration data is missing, empty or of the wrong shape."""


class ConsumerError(ExportError):
    """A consumer (LiteRT, TFLite-Micro, onnxruntime, ...) failed to run an
    artefact, or crashed, or ran past its time limit."""
