"""Event streams from neuromorphic sensors: the event array and its checks.

An event stream is a 1-D NumPy structured array of dtype `EVENT_DTYPE`:

| field | dtype  | meaning                                          |
|-------|--------|--------------------------------------------------|
| `t`   | int64  | timestamp in microseconds                        |
| `x`   | uint16 | column (0 = left in the file's own convention)   |
| `y`   | uint16 | row                                              |
| `p`   | int8   | polarity: 0 = OFF (darker), 1 = ON (brighter)    |

This module defines the array (`EVENT_DTYPE`, `make_events`) and the
helpers that every file format shares: argument and range checks, the
`ValueError` of a corrupt file (naming the file, the byte offset and what
is wrong), header lines, the AEDAT version check and 32-bit timestamp
unwrapping. One module per file format reads and writes it; every writer
writes a temporary file in the target's folder and renames it over the
target with `os.replace`, so a reader never sees a half-written file:

- `nmnist`: N-MNIST / N-Caltech101 binary files (`read_nmnist`,
  `write_nmnist`).
- `aedat2`: AEDAT 2.0 with DVS128 addresses (`read_aedat2`,
  `write_aedat2`), the jAER format of CIFAR10-DVS.
- `aedat31`: AEDAT 3.1 polarity packets (`read_aedat31`,
  `write_aedat31`), the cAER format of DVS128 Gesture.

`frames.events_to_frames` bins a stream into frames of event counts and
`event_pipeline.event_dataset` turns a list of files into a batched
`tf.data.Dataset` of such frames.
"""

import os

import numpy as np

from keras_snn import formats

__all__ = ["EVENT_DTYPE", "make_events"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])

# The reader of each AEDAT version, named in the refusal of another one.
READER_OF_VERSION = {"2.0": "read_aedat2", "3.1": "read_aedat31"}


# --------------------------------------------------------------------------
# Event arrays
# --------------------------------------------------------------------------


def make_events(t, x, y, p):
    """Builds an event array of dtype `EVENT_DTYPE` from four sequences.

    Args:
        t: timestamps in microseconds (integers).
        x: columns, integers in [0, 65535].
        y: rows, integers in [0, 65535].
        p: polarities, 0 (OFF) or 1 (ON); booleans are accepted.

    Returns:
        A 1-D structured array in the given order (not sorted).
    """
    columns = {}
    for name, values in (("t", t), ("x", x), ("y", y), ("p", p)):
        array = np.asarray(values)
        if array.ndim != 1:
            array = array.reshape(-1)
        if array.size and array.dtype.kind not in "biu":
            if not np.all(np.equal(np.mod(array, 1), 0)):
                raise ValueError(
                    f"Argument `{name}` must hold integers. Received: "
                    f"{name} with dtype {array.dtype}"
                )
        columns[name] = array.astype(np.int64)
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            "Arguments `t`, `x`, `y` and `p` must have the same length. "
            f"Received: lengths {sizes}"
        )
    for name in ("x", "y"):
        check_range(columns[name], name, 0, 65535, "make_events")
    check_range(columns["p"], "p", 0, 1, "make_events")
    events = np.empty(sizes["t"], EVENT_DTYPE)
    for name, values in columns.items():
        events[name] = values
    return events


def check_events(events, owner):
    """Returns `events` if it is a 1-D array with fields t, x, y and p."""
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    missing = [f for f in ("t", "x", "y", "p") if f not in names]
    if missing or np.ndim(events) != 1:
        raise TypeError(
            f"{owner}: `events` must be a 1-D structured array with fields "
            "t, x, y, p (see keras_snn.datasets.EVENT_DTYPE and "
            f"make_events). Received: {type(events).__name__} with dtype "
            f"{getattr(events, 'dtype', None)} and shape "
            f"{np.shape(events)}"
        )
    return events


def check_range(values, name, low, high, owner, why=""):
    """Raises naming the first value of `values` outside [low, high]."""
    values = np.asarray(values)
    bad = np.flatnonzero((values < low) | (values > high))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{owner}: event {i} has {name}={int(values[i])}, outside "
            f"[{low}, {high}]{why} ({bad.size} event(s) out of range)."
        )


# --------------------------------------------------------------------------
# Shared by the file formats
# --------------------------------------------------------------------------


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def corrupt(path, fmt, offset, what):
    return ValueError(
        f"Corrupt {fmt} file {os.fspath(path)!r} at byte offset {offset}: "
        f"{what}."
    )


def header_lines(data, path, fmt, end_line=None):
    """Splits the leading '#' lines off `data`.

    Returns `(lines, offset)`: the lines without their line ending, and the
    offset of the first byte after the header. With `end_line`, the header
    must end with that line (AEDAT 3.1's "#!END-HEADER").
    """
    lines = []
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        if end < 0:
            raise corrupt(
                path, fmt, pos, "header line starting with '#' has no line end"
            )
        lines.append(data[pos:end].rstrip(b"\r").decode("latin-1"))
        pos = end + 1
        if end_line is not None and lines[-1] == end_line:
            return lines, pos
    if end_line is not None:
        raise corrupt(
            path, fmt, pos, f"the header does not end with a {end_line!r} line"
        )
    return lines, pos


def check_version(data, path, fmt, version, owner):
    """Raises unless `data` starts with the AEDAT `version` line.

    The message names the AEDAT version found and its reader, or the
    format the file seems to be in.
    """
    found = formats.aedat_version(data)
    if found == version:
        return
    expected = f"#!AER-DAT{version}"
    others = ", ".join(
        f"{name} for AEDAT {v}" for v, name in READER_OF_VERSION.items()
    )
    if found is not None:
        reader = READER_OF_VERSION.get(found)
        hint = (
            f"use {reader}"
            if reader
            else f"AEDAT {found} files are not supported ({others})"
        )
        raise corrupt(
            path,
            fmt,
            0,
            f"version line '#!AER-DAT{found}', expected {expected!r}: it is "
            f"an AEDAT {found} file; {hint}",
        )
    looks = formats.looks_like(data, path)
    raise corrupt(
        path,
        fmt,
        0,
        f"no {expected!r} version line at the start{looks}; "
        f"{owner} reads AEDAT {version} files ({others}; read_nmnist for "
        "headerless N-MNIST / N-Caltech101 files)",
    )


def unwrap32(stamps):
    """Undoes 32-bit wrap-arounds of non-decreasing timestamps.

    A step back by more than 2**31 is read as a wrap-around and adds 2**32
    to the rest of the stream. Small steps back (the non-monotonic
    timestamps of some old jAER files) are kept as they are.
    """
    stamps = stamps.astype(np.int64)
    if stamps.size < 2:
        return stamps
    wraps = np.diff(stamps) < -(2**31)
    if not wraps.any():
        return stamps
    carry = np.concatenate([[0], np.cumsum(wraps, dtype=np.int64)])
    return stamps + carry * 2**32


def is_int(value):
    """Whether `value` is a Python or NumPy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def size_pair(value, name, owner):
    """`(height, width)` from a pair of integers >= 1, or raises naming it."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(is_int(v) and v >= 1 for v in pair):
        raise ValueError(
            f"{owner}: argument `{name}` must be a pair of integers >= 1, "
            f"(height, width). Received: {name}={value!r}"
        )
    return int(pair[0]), int(pair[1])
