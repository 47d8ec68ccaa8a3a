"""TensorFlow's native log lines, kept out of the command line's output.

TensorFlow's C++ code writes its log lines (absl's warning before its
logging is set up, oneDNN's and cpu_feature_guard's notices, the TFLite
converter's chatter) to file descriptor 2 directly, past `sys.stderr`.
`import_tensorflow` and `native_logs_hidden` keep them out of the
`keras-snn` commands' output unless `keras-snn --verbose` is given; they
change logging only, never `TF_ENABLE_ONEDNN_OPTS` (numerics). This module
imports neither TensorFlow nor Keras.
"""

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["NATIVE_LOG_LINE", "import_tensorflow", "native_logs_hidden"]

# A line that TensorFlow's native code writes to stderr by itself: absl's
# warning before its logging is set up, a log line "I0000 00:00:... 123
# port.cc:153] ..." (any severity; the time is the epoch before absl's
# set-up) and the second line of cpu_feature_guard's notice.
NATIVE_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    r"|To enable the following instructions: "
)


def import_tensorflow(verbose=False):
    """Imports TensorFlow, by default without its native log lines.

    Unless `verbose`, sets `TF_CPP_MIN_LOG_LEVEL=3` (TensorFlow's C++
    logging off; kept if the user has set it) and imports TensorFlow and
    lists its physical devices inside `native_logs_hidden()`, for the lines
    printed while it loads (and while it looks for a GPU). Only
    logging changes: `TF_ENABLE_ONEDNN_OPTS` (numerics) is left alone.

    Args:
        verbose: keep TensorFlow's logging as it is.

    Returns:
        The `tensorflow` module.
    """
    if verbose:
        import tensorflow

        return tensorflow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_logs_hidden():
        import tensorflow

        # Listing the physical devices loads the GPU platforms now: on a
        # machine without a GPU driver the `tensorflow` wheel logs a failed
        # cuInit then, whatever TF_CPP_MIN_LOG_LEVEL says. It leaves the
        # runtime uninitialized (a multi-worker strategy can still be made).
        tensorflow.config.list_physical_devices()
    return tensorflow


@contextlib.contextmanager
def native_logs_hidden():
    """Hides the TensorFlow log lines native code writes to stderr.

    Such lines bypass `sys.stderr`: file descriptor 2 is pointed to a
    temporary file for the duration of the block, then restored, and what
    was written there is written back to `sys.stderr` except the lines of
    TensorFlow's native logging (`NATIVE_LOG_LINE`). Python's warnings and
    errors are therefore kept (printed at the end of the block); an
    exception raised in the block propagates unchanged. Where file
    descriptor 2 cannot be redirected, nothing is hidden.

    Example:

    >>> with native_logs_hidden():
    ...     tflite_bytes = converter.convert()
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not NATIVE_LOG_LINE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
