"""tensorflow-datasets as the last source of a static data set.

Used only if it is installed and either has the data set prepared already
in its data folder (no network needed) or its storage server answers a
2 s connection probe; it never waits on an absent network. Small
functions, so that tests can replace each of them.
"""

import glob
import importlib.util
import os
import socket
import threading

_TFDS_HOST = ("storage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 2.0


def _tfds_installed():
    return importlib.util.find_spec("tensorflow_datasets") is not None


def _tfds_data_dir():
    return os.path.expanduser(
        os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    )


def _tfds_prepared(name):
    """Whether tfds has `name` prepared on disk already (no network)."""
    pattern = os.path.join(_tfds_data_dir(), name, "*", "dataset_info.json")
    return bool(glob.glob(pattern))


def _network_available(address=_TFDS_HOST, timeout=_PROBE_TIMEOUT_S):
    """Whether a TCP connection to `address` opens within `timeout` s.

    Runs in a daemon thread so that a slow name lookup cannot make it wait
    longer than `timeout`.
    """
    result = []

    def probe():
        try:
            with socket.create_connection(address, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _tfds_load(name, download):
    """Loads `name` through tfds as uint8 NumPy arrays."""
    import tensorflow_datasets as tfds

    train, test = tfds.as_numpy(
        tfds.load(
            name,
            split=["train", "test"],
            as_supervised=True,
            batch_size=-1,
            download=download,
        )
    )
    return (train[0], train[1]), (test[0], test[1])


def tfds_arrays(name):
    """Returns `(arrays, note)`; `arrays` is None when tfds cannot help."""
    if not _tfds_installed():
        return None, "tensorflow-datasets is not installed."
    if _tfds_prepared(name):
        return _tfds_load(name, download=False), ""
    host, port = _TFDS_HOST
    if not _network_available():
        return None, (
            f"tensorflow-datasets is installed but has no prepared copy of "
            f"{name!r} in {_tfds_data_dir()}, and {host}:{port} did not "
            f"answer within {_PROBE_TIMEOUT_S:g} s (no network?)."
        )
    return _tfds_load(name, download=True), ""
