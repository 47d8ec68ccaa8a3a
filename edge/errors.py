"""Exceptions raised by the exporter, and how consumers are run.

All of them derive from `ExportError`, itself a `ValueError`, so a caller
can catch every refusal of the exporter with one `except` clause while
ordinary argument checks keep working with `except ValueError`.
`run_consumer` runs a consumer's process (a compiler, QEMU, a worker in
another virtual environment) and turns a run past its time limit into a
`ConsumerError`.
"""

import contextlib
import contextvars
import os
import signal
import subprocess
import time

__all__ = [
    "AccuracyDropError",
    "CalibrationError",
    "ConsumerError",
    "ExportError",
    "UnsupportedLayerError",
    "consumer_failure",
    "consumer_progress",
    "run_consumer",
]

# The progress function of the export in progress (see consumer_progress).
_PROGRESS = contextvars.ContextVar("edge_consumer_progress", default=None)


class ExportError(ValueError):
    """The model or an argument cannot be exported as asked."""


class UnsupportedLayerError(ExportError):
    """A layer (or a use of a layer) that the exporter cannot express."""


class CalibrationError(ExportError):
    """Calibration data is missing, empty or of the wrong shape."""


class AccuracyDropError(ExportError):
    """An artefact agrees with the Keras model, or scores, less than the
    accuracy gate of `edge.export` allows.

    Attributes:
        report: the `ExportReport` of the export that was not written
            (`report.gate` lists the rows past a threshold).
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


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
    say = _PROGRESS.get()
    # Its name without the command line and temporary folders.
    name = " ".join(
        os.path.basename(word) if os.path.isabs(word) else word
        for word in what.split(" (")[0].split()
    )[:72]
    if say is not None:
        limit = "" if timeout is None else f" (time limit {timeout:g} s)"
        say(f"    {name}: started{limit}")
    start = time.perf_counter()
    try:
        done = subprocess.run(
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
    if say is not None:
        say(
            f"    {name}: exit status {done.returncode} after "
            f"{time.perf_counter() - start:.1f} s"
        )
    return done


@contextlib.contextmanager
def consumer_progress(progress):
    """Context manager: `run_consumer` reports to `progress` (a function
    of one line of text) when each consumer process starts and ends.

    `edge.export` uses it to show its progress inside the C builds, QEMU,
    TFLite-Micro and the NIR workers.
    """
    token = _PROGRESS.set(progress)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def consumer_failure(what, done, limit=2000):
    """The `ConsumerError` for a consumer process that failed.

    Args:
        what: the consumer's name for the message.
        done: its `subprocess.CompletedProcess` (text output captured).
        limit: the number of characters of output kept (the tail).

    Returns:
        A `ConsumerError` whose message says how the process ended (its
        exit status, or the signal that killed it, e.g. "killed by
        SIGABRT") and ends with the tail of its own error output (or of
        its standard output when that is all it wrote).
    """
    code = done.returncode
    if code is not None and code < 0:
        try:
            ending = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            ending = f"killed by signal {-code}"
    else:
        ending = f"exit status {code}"
    text = (done.stderr or "").strip() or (done.stdout or "").strip()
    text = text[-limit:] if text else "(it printed nothing)"
    return ConsumerError(f"{what} failed ({ending}): {text}")
