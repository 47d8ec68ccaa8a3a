"""N-MNIST / N-Caltech101 binary event files: `read_nmnist`, `write_nmnist`.

5 bytes per event and no header (Orchard et al. 2015; layout from the data
set page, garrickorchard.com/datasets/n-mnist). Events are arrays of
`keras_snn.datasets.EVENT_DTYPE`; see `keras_snn.datasets.events`.
"""

import os

import numpy as np

from keras_snn import fileio
from keras_snn import formats
from keras_snn.datasets.events import EVENT_DTYPE
from keras_snn.datasets.events import READER_OF_VERSION
from keras_snn.datasets.events import check_events
from keras_snn.datasets.events import check_range
from keras_snn.datasets.events import corrupt
from keras_snn.datasets.events import read_bytes
from keras_snn.datasets.events import size_pair

__all__ = ["read_nmnist", "write_nmnist"]

_NMNIST_EVENT_BYTES = 5
# read_nmnist refuses a file where more than this fraction of the steps
# between consecutive events go back in time: recordings are sorted (a rare
# step back is tolerated), bytes of another format step back about half
# the time.
_NMNIST_MAX_BACK_STEPS = 0.01


def check_head(path, head, size):
    """Refuses a file that cannot be N-MNIST from its first bytes and size.

    Args:
        path: the file, for the message.
        head: its first bytes (`formats.HEAD_BYTES` are enough).
        size: its size in bytes.
    """
    description, strong = formats.describe(head, path)
    if strong:
        version = formats.aedat_version(head)
        hint = ""
        if version in READER_OF_VERSION:
            hint = f"; read it with {READER_OF_VERSION[version]}"
        raise ValueError(
            f"{os.fspath(path)!r} is not an N-MNIST event file: it looks "
            f"like {description}{hint}. read_nmnist reads N-MNIST / "
            "N-Caltech101 binary files (no header, 5 bytes per event)."
        )
    count, rest = divmod(size, _NMNIST_EVENT_BYTES)
    if rest:
        raise corrupt(
            path,
            "N-MNIST",
            count * _NMNIST_EVENT_BYTES,
            f"truncated event: {rest} byte(s) left, but each event takes "
            f"{_NMNIST_EVENT_BYTES} bytes{formats.looks_like(head, path)}",
        )


def read_nmnist(path, sensor_size=None, check_order=True):
    """Reads an N-MNIST (or N-Caltech101) binary event file.

    Layout (Orchard et al. 2015, "Converting static image datasets to
    spiking neuromorphic datasets using saccades"; format as given on
    garrickorchard.com/datasets/n-mnist): no header, then 40 bits per event,
    most significant byte first:

    | bits  | field                                   |
    |-------|-----------------------------------------|
    | 39-32 | x address (pixels)                      |
    | 31-24 | y address (pixels)                      |
    | 23    | polarity (0 = OFF, 1 = ON)              |
    | 22-0  | timestamp in microseconds (23 bits)     |

    N-MNIST recordings are 34x34 pixels and about 300 ms long; the 23-bit
    timestamp wraps after 8.39 s, which no N-MNIST file reaches, so no
    unwrapping is done.

    Having no header, the format is recognised by what it cannot be: a
    file that starts with the signature of another format (an AEDAT
    version line, PNG, JPEG, zip, HDF5, ...) or is text, whose size is not
    a multiple of 5 bytes, or where more than 1% of the steps from one
    event to the next go back in time (the data sets' files are sorted by
    time) is refused, with the format it seems to be in when that is
    known.

    Args:
        path: file to read.
        sensor_size: optional `(height, width)`; an event with
            `y >= height` or `x >= width` then raises, naming the file.
            N-MNIST is `(34, 34)`. Defaults to `None` (any 8-bit address).
        check_order: refuse a file where more than 1% of the steps
            between events go back in time. Defaults to `True`; `False`
            reads such a file as it is.

    Returns:
        Events of dtype `EVENT_DTYPE`, in file order.

    Raises:
        ValueError: if the file is another format, its size is not a
            multiple of 5 bytes, its timestamps are not sorted, or an event
            lies outside `sensor_size`; the message names the file and the
            byte offset of the first bad event.
    """
    fmt = "N-MNIST"
    data = read_bytes(path)
    check_head(path, data[: formats.HEAD_BYTES], len(data))
    count = len(data) // _NMNIST_EVENT_BYTES
    raw = np.frombuffer(data, np.uint8).reshape(count, 5).astype(np.int64)
    events = np.empty(count, EVENT_DTYPE)
    events["x"] = raw[:, 0]
    events["y"] = raw[:, 1]
    events["p"] = raw[:, 2] >> 7
    events["t"] = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    if check_order:
        back = np.flatnonzero(np.diff(events["t"]) < 0)
        if back.size and back.size > _NMNIST_MAX_BACK_STEPS * (count - 1):
            i = int(back[0]) + 1
            looks = formats.looks_like(data, path)
            raise corrupt(
                path,
                fmt,
                i * _NMNIST_EVENT_BYTES,
                f"event {i} has timestamp {int(events['t'][i])} us, before "
                f"the {int(events['t'][i - 1])} us of the event before it, "
                f"and {back.size} of the {count - 1} steps between events go "
                f"back in time{looks}. N-MNIST files are "
                "sorted by time; pass check_order=False to read this one as "
                "it is",
            )
    if sensor_size is not None:
        height, width = size_pair(sensor_size, "sensor_size", "read_nmnist")
        outside = np.flatnonzero(
            (events["x"] >= width) | (events["y"] >= height)
        )
        if outside.size:
            i = int(outside[0])
            raise corrupt(
                path,
                fmt,
                i * _NMNIST_EVENT_BYTES,
                f"event {i} at x={int(events['x'][i])}, "
                f"y={int(events['y'][i])} lies outside sensor_size="
                f"({height}, {width}) ({outside.size} event(s) outside)",
            )
    return events


def write_nmnist(path, events):
    """Writes events in the N-MNIST binary format (see `read_nmnist`).

    Args:
        path: file to write; replaced atomically.
        events: events of dtype `EVENT_DTYPE` (or with the same fields).
            `x` and `y` must fit in 8 bits, `t` in 23 bits (0 to 8388607
            microseconds).
    """
    events = check_events(events, "write_nmnist")
    owner = "write_nmnist"
    check_range(events["x"], "x", 0, 255, owner, " (8 bits)")
    check_range(events["y"], "y", 0, 255, owner, " (8 bits)")
    check_range(events["p"], "p", 0, 1, owner)
    check_range(events["t"], "t", 0, 2**23 - 1, owner, " (23 bits, in us)")
    t = events["t"].astype(np.int64)
    raw = np.empty((len(events), 5), np.uint8)
    raw[:, 0] = events["x"]
    raw[:, 1] = events["y"]
    raw[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    fileio.write_bytes(path, raw.tobytes())
