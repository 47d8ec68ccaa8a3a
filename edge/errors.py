"""Exceptions raised by the exporter, and how consumers are run.

All of them derive from `ExportError`, itself a `ValueError`, so a caller
can catch every refusal of the exporter with one `except` clause while
ordinary argument checks keep working with `except ValueError`.
`run_consumer` runs a consumer's process (a compiler, QEMU, a worker in
another virtual environment) and turns a run past its time limit into a
`ConsumerError`.
"""

import subprocess

__all__ = [
    "CalibrationError",
    "ConsumerError",
    "ExportError",
    "UnsupportedLayerError",
    "run_consumer",
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


def run_consumer(command, what, timeout=None, **kwargs):
    """Runs `command`, capturing its text output; returns the result.

    Args:
        command: the argument list.
        what: the consumer's name for the error message.
        timeout: seconds, or `None` for no limit.
        **kwargs: more `subprocess.run` arguments (`cwd`, `env`).

    Returns:
        The `subprocess.CompletedProcess`; its exit status is the caller's
        to check.

    Raises:
        ConsumerError: the process ran past `timeout`.
    """
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as error:
        raise ConsumerError(
            f"{what} ran past its time limit of {timeout:g} s."
        ) from error
