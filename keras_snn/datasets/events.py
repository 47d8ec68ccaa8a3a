"""Event streams from neuromorphic sensors: file formats, frames, pipelines.

An event stream is a 1-D NumPy structured array of dtype `EVENT_DTYPE`:

| field | dtype  | meaning                                          |
|-------|--------|--------------------------------------------------|
| `t`   | int64  | timestamp in microseconds                        |
| `x`   | uint16 | column (0 = left in the file's own convention)   |
| `y`   | uint16 | row                                              |
| `p`   | int8   | polarity: 0 = OFF (darker), 1 = ON (brighter)    |

Three file formats are read and written; every writer writes a temporary
file in the target's folder and renames it over the target with
`os.replace`, so a reader never sees a half-written file. A truncated or
corrupt file raises a `ValueError` that names the file, the byte offset and
what is wrong.

- N-MNIST / N-Caltech101 binary files (`read_nmnist`, `write_nmnist`):
  5 bytes per event and no header (Orchard et al. 2015; layout from the
  data set page, garrickorchard.com/datasets/n-mnist).
- AEDAT 2.0 with DVS128 addresses (`read_aedat2`, `write_aedat2`), the
  jAER format of CIFAR10-DVS (iniVation "AEDAT file formats"
  documentation, sections "AEDAT 2.0" and "AEDAT 1.0 / DVS128").
- AEDAT 3.1 (`read_aedat31`, `write_aedat31`), the cAER format of DVS128
  Gesture; polarity packets only (same documentation, section "AEDAT 3.1",
  and libcaer's `events/common.h` and `events/polarity.h`).

`events_to_frames` bins a stream into per-window event counts of shape
`(T, h, w, 2)` (channel 0 = OFF, 1 = ON), with the temporal windows and the
spatial downsampling of the papers: N-MNIST and DVS-CIFAR10 in 5 ms slices,
DVS-CIFAR10 128x128 -> 42x42 (Wu et al. 2019, App. "Data pre-processing";
Zheng et al. 2021, App. C), DVS-Gesture 128x128 -> 32x32 in 30 ms slices
with T = 40 (Zheng et al. 2021, App. C). `event_dataset` turns a list of
files into a batched `tf.data.Dataset` of such frames.
"""

import os
import struct
import time

import numpy as np
import tensorflow as tf

from keras_snn import fileio
from keras_snn import formats
from keras_snn import functional

__all__ = [
    "EVENT_DTYPE",
    "event_dataset",
    "events_to_frames",
    "make_events",
    "read_aedat2",
    "read_aedat31",
    "read_nmnist",
    "write_aedat2",
    "write_aedat31",
    "write_nmnist",
]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])

_NMNIST_EVENT_BYTES = 5
# read_nmnist refuses a file where more than this fraction of the steps
# between consecutive events go back in time: recordings are sorted (a rare
# step back is tolerated), bytes of another format step back about half
# the time.
_NMNIST_MAX_BACK_STEPS = 0.01
_AEDAT2_EVENT_BYTES = 8
_AEDAT31_PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
_POLARITY_EVENT = 1  # AEDAT 3.1 eventType of polarity packets


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
        _check_range(columns[name], name, 0, 65535, "make_events")
    _check_range(columns["p"], "p", 0, 1, "make_events")
    events = np.empty(sizes["t"], EVENT_DTYPE)
    for name, values in columns.items():
        events[name] = values
    return events


def _check_events(events, owner):
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


def _check_range(values, name, low, high, owner, why=""):
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
# File helpers
# --------------------------------------------------------------------------


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _corrupt(path, fmt, offset, what):
    return ValueError(
        f"Corrupt {fmt} file {os.fspath(path)!r} at byte offset {offset}: "
        f"{what}."
    )


def _header_lines(data, path, fmt, end_line=None):
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
            raise _corrupt(
                path, fmt, pos, "header line starting with '#' has no line end"
            )
        lines.append(data[pos:end].rstrip(b"\r").decode("latin-1"))
        pos = end + 1
        if end_line is not None and lines[-1] == end_line:
            return lines, pos
    if end_line is not None:
        raise _corrupt(
            path, fmt, pos, f"the header does not end with a {end_line!r} line"
        )
    return lines, pos


_READER_OF_VERSION = {"2.0": "read_aedat2", "3.1": "read_aedat31"}


def _looks_like(data, path):
    """' (it looks like a PNG image)' for a recognised format, else ''."""
    description, _ = formats.describe(data[: formats.HEAD_BYTES], path)
    return f" (it looks like {description})" if description else ""


def _check_version(data, path, fmt, version, owner):
    """Raises unless `data` starts with the AEDAT `version` line.

    The message names the AEDAT version found and its reader, or the
    format the file seems to be in.
    """
    found = formats.aedat_version(data)
    if found == version:
        return
    expected = f"#!AER-DAT{version}"
    others = ", ".join(
        f"{name} for AEDAT {v}" for v, name in _READER_OF_VERSION.items()
    )
    if found is not None:
        reader = _READER_OF_VERSION.get(found)
        hint = (
            f"use {reader}"
            if reader
            else f"AEDAT {found} files are not supported ({others})"
        )
        raise _corrupt(
            path,
            fmt,
            0,
            f"version line '#!AER-DAT{found}', expected {expected!r}: it is "
            f"an AEDAT {found} file; {hint}",
        )
    raise _corrupt(
        path,
        fmt,
        0,
        f"no {expected!r} version line at the start{_looks_like(data, path)}; "
        f"{owner} reads AEDAT {version} files ({others}; read_nmnist for "
        "headerless N-MNIST / N-Caltech101 files)",
    )


def _unwrap32(stamps):
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


# --------------------------------------------------------------------------
# N-MNIST
# --------------------------------------------------------------------------


def _check_nmnist_head(path, head, size):
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
        if version in _READER_OF_VERSION:
            hint = f"; read it with {_READER_OF_VERSION[version]}"
        raise ValueError(
            f"{os.fspath(path)!r} is not an N-MNIST event file: it looks "
            f"like {description}{hint}. read_nmnist reads N-MNIST / "
            "N-Caltech101 binary files (no header, 5 bytes per event)."
        )
    count, rest = divmod(size, _NMNIST_EVENT_BYTES)
    if rest:
        raise _corrupt(
            path,
            "N-MNIST",
            count * _NMNIST_EVENT_BYTES,
            f"truncated event: {rest} byte(s) left, but each event takes "
            f"{_NMNIST_EVENT_BYTES} bytes{_looks_like(head, path)}",
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
    data = _read_bytes(path)
    _check_nmnist_head(path, data[: formats.HEAD_BYTES], len(data))
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
            raise _corrupt(
                path,
                fmt,
                i * _NMNIST_EVENT_BYTES,
                f"event {i} has timestamp {int(events['t'][i])} us, before "
                f"the {int(events['t'][i - 1])} us of the event before it, "
                f"and {back.size} of the {count - 1} steps between events go "
                f"back in time{_looks_like(data, path)}. N-MNIST files are "
                "sorted by time; pass check_order=False to read this one as "
                "it is",
            )
    if sensor_size is not None:
        height, width = _size_pair(sensor_size, "sensor_size", "read_nmnist")
        outside = np.flatnonzero(
            (events["x"] >= width) | (events["y"] >= height)
        )
        if outside.size:
            i = int(outside[0])
            raise _corrupt(
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
    events = _check_events(events, "write_nmnist")
    owner = "write_nmnist"
    _check_range(events["x"], "x", 0, 255, owner, " (8 bits)")
    _check_range(events["y"], "y", 0, 255, owner, " (8 bits)")
    _check_range(events["p"], "p", 0, 1, owner)
    _check_range(events["t"], "t", 0, 2**23 - 1, owner, " (23 bits, in us)")
    t = events["t"].astype(np.int64)
    raw = np.empty((len(events), 5), np.uint8)
    raw[:, 0] = events["x"]
    raw[:, 1] = events["y"]
    raw[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    fileio.write_bytes(path, raw.tobytes())


# --------------------------------------------------------------------------
# AEDAT 2.0 (jAER, DVS128 addresses)
# --------------------------------------------------------------------------


def read_aedat2(path, flip_y=False):
    """Reads an AEDAT 2.0 file of a DVS128 sensor (e.g. CIFAR10-DVS).

    Layout (iniVation "AEDAT file formats" documentation, section
    "AEDAT 2.0", with the address layout of its "DVS128" table): header
    lines that start with '#' and end with CRLF, the first being the
    version line `#!AER-DAT2.0`; then 8 bytes per event, a big-endian
    32-bit address followed by a big-endian 32-bit timestamp in
    microseconds. DVS128 address bits:

    | bits  | field                                                   |
    |-------|---------------------------------------------------------|
    | 15    | external event (skipped by this reader)                 |
    | 14-8  | y address, (0, 0) in the lower left corner              |
    | 7-1   | x address                                               |
    | 0     | polarity: 1 = increase (ON), 0 = decrease (OFF)         |

    Timestamps are 32 bits; wrap-arounds of a long recording are undone
    (a step back by more than 2**31 us adds 2**32 us to what follows).
    AEDAT 2.0 has no end-of-header line: the body starts at the first line
    that does not begin with '#', which is safe for DVS128 addresses (their
    first byte is 0).

    Args:
        path: file to read.
        flip_y: if `True`, return `y = 127 - y`, i.e. rows counted from the
            top as in images; by default the addresses are returned as
            stored (origin in the lower left corner). The pipeline only
            needs the same choice for every file.

    Returns:
        The polarity events, dtype `EVENT_DTYPE`, in file order.

    Raises:
        ValueError: for a missing or different version line, a truncated
            event, or an address with bits above 15 set (not a DVS128
            address: DAVIS recordings use another AEDAT 2.0 layout).
    """
    fmt = "AEDAT 2.0"
    data = _read_bytes(path)
    _check_version(data, path, fmt, "2.0", "read_aedat2")
    _, start = _header_lines(data, path, fmt)
    count, rest = divmod(len(data) - start, _AEDAT2_EVENT_BYTES)
    if rest:
        raise _corrupt(
            path,
            fmt,
            start + count * _AEDAT2_EVENT_BYTES,
            f"truncated event: {rest} byte(s) left, but each event takes "
            f"{_AEDAT2_EVENT_BYTES} bytes",
        )
    raw = np.frombuffer(data, ">u4", count=2 * count, offset=start)
    raw = raw.reshape(count, 2).astype(np.int64)
    address, stamps = raw[:, 0], raw[:, 1]
    foreign = np.flatnonzero(address > 0xFFFF)
    if foreign.size:
        i = int(foreign[0])
        raise _corrupt(
            path,
            fmt,
            start + i * _AEDAT2_EVENT_BYTES,
            f"address 0x{int(address[i]):08x} has bits above 15 set, so it "
            "is not a DVS128 address (bits 14-8 y, 7-1 x, 0 polarity); "
            "DAVIS recordings use another AEDAT 2.0 layout",
        )
    stamps = _unwrap32(stamps)
    keep = (address >> 15) & 1 == 0
    address, stamps = address[keep], stamps[keep]
    events = np.empty(address.size, EVENT_DTYPE)
    events["t"] = stamps
    events["x"] = (address >> 1) & 0x7F
    y = (address >> 8) & 0x7F
    events["y"] = 127 - y if flip_y else y
    events["p"] = address & 1
    return events


def write_aedat2(path, events, flip_y=False):
    """Writes polarity events as an AEDAT 2.0 DVS128 file (see `read_aedat2`).

    Args:
        path: file to write; replaced atomically.
        events: events of dtype `EVENT_DTYPE`; `x` and `y` in [0, 127],
            `t` >= 0 in microseconds. Timestamps of 2**32 us and more are
            stored wrapped, which `read_aedat2` undoes if the stream is
            sorted by time (checked here).
        flip_y: store `127 - y`, the inverse of `read_aedat2(flip_y=True)`.
    """
    events = _check_events(events, "write_aedat2")
    owner = "write_aedat2"
    _check_range(events["x"], "x", 0, 127, owner, " (DVS128: 7 bits)")
    _check_range(events["y"], "y", 0, 127, owner, " (DVS128: 7 bits)")
    _check_range(events["p"], "p", 0, 1, owner)
    t = events["t"].astype(np.int64)
    _check_range(t, "t", 0, np.iinfo(np.int64).max, owner)
    stored = t % 2**32
    if not np.array_equal(_unwrap32(stored), t):
        raise ValueError(
            "write_aedat2: AEDAT 2.0 keeps 32-bit timestamps, and these "
            "cannot be read back unchanged (a step back of more than 2**31 "
            "us, or times past 2**32 us that are not sorted). Sort the "
            "events by `t` or shift them to start near 0."
        )
    y = events["y"].astype(np.int64)
    if flip_y:
        y = 127 - y
    raw = np.empty((len(events), 2), ">u4")
    raw[:, 0] = (
        (y << 8)
        | (events["x"].astype(np.int64) << 1)
        | (events["p"].astype(np.int64))
    )
    raw[:, 1] = stored
    header = (
        b"#!AER-DAT2.0\r\n"
        b"# Written by keras_snn.datasets.write_aedat2\r\n"
        b"# Per event: big-endian int32 address, int32 timestamp (us)\r\n"
        b"# Address: DVS128 (bit 0 polarity, bits 7-1 x, bits 14-8 y)\r\n"
        b"# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
    )
    fileio.write_bytes(path, header + raw.tobytes())


# --------------------------------------------------------------------------
# AEDAT 3.1 (cAER packets)
# --------------------------------------------------------------------------


def read_aedat31(path):
    """Reads the polarity events of an AEDAT 3.1 file (e.g. DVS128 Gesture).

    Layout (iniVation "AEDAT file formats" documentation, section
    "AEDAT 3.1"; libcaer `include/libcaer/events/common.h`,
    `struct caer_event_packet_header`, and `events/polarity.h`): header
    lines starting with '#', the first `#!AER-DAT3.1`, the last
    `#!END-HEADER`; then event packets, all fields little-endian. Each
    packet is a 28-byte header

    | bytes | field                                              |
    |-------|----------------------------------------------------|
    | 0-1   | eventType (int16; 1 = polarity)                    |
    | 2-3   | eventSource (int16)                                |
    | 4-7   | eventSize, bytes per event (int32)                 |
    | 8-11  | eventTSOffset, offset of the timestamp (int32)     |
    | 12-15 | eventTSOverflow, high part of the timestamp (int32)|
    | 16-19 | eventCapacity (int32; equals eventNumber in files) |
    | 20-23 | eventNumber (int32)                                |
    | 24-27 | eventValid (int32)                                 |

    followed by `eventCapacity * eventSize` bytes of events. A polarity
    event is 8 bytes: a 32-bit data word (bit 0 validity mark, bit 1
    polarity with 1 = ON, bits 2-16 y, bits 17-31 x, (0, 0) in the upper
    left corner) and a 32-bit timestamp; the full timestamp is
    `(eventTSOverflow << 31) | timestamp` microseconds. Packets of other
    types (special, frame, IMU, ...) are skipped, and so are events whose
    validity mark is 0. Events are returned in file order (the format
    orders packets by time for each source).

    Args:
        path: file to read.

    Returns:
        The valid polarity events, dtype `EVENT_DTYPE`.

    Raises:
        ValueError: for a wrong version line, a header without its end
            line, a format other than RAW, a truncated packet header or
            packet, or impossible header fields; the message gives the
            byte offset of the packet.
    """
    fmt = "AEDAT 3.1"
    data = _read_bytes(path)
    _check_version(data, path, fmt, "3.1", "read_aedat31")
    lines, pos = _header_lines(data, path, fmt, end_line="#!END-HEADER")
    for line in lines:
        if line.startswith("#Format:"):
            name = line.split(":", 1)[1].strip()
            if name != "RAW":
                raise _corrupt(
                    path,
                    fmt,
                    0,
                    f"packet format {name!r}; only RAW "
                    "(uncompressed) packets are supported",
                )
    size = len(data)
    chunks = []
    head = _AEDAT31_PACKET_HEADER.size
    while pos < size:
        if size - pos < head:
            raise _corrupt(
                path,
                fmt,
                pos,
                f"truncated packet header: {size - pos} "
                f"byte(s) left, but a packet header takes {head} bytes",
            )
        (kind, _, event_size, ts_offset, overflow, capacity, number, _) = (
            _AEDAT31_PACKET_HEADER.unpack_from(data, pos)
        )
        if (
            event_size <= 0
            or number < 0
            or capacity < number
            or overflow < 0
            or not 0 <= ts_offset <= event_size - 4
        ):
            raise _corrupt(
                path,
                fmt,
                pos,
                "impossible packet header (eventType="
                f"{kind}, eventSize={event_size}, eventTSOffset={ts_offset}, "
                f"eventTSOverflow={overflow}, eventCapacity={capacity}, "
                f"eventNumber={number})",
            )
        body = capacity * event_size
        if size - pos - head < body:
            raise _corrupt(
                path,
                fmt,
                pos,
                f"truncated packet: its header announces "
                f"{capacity} events of {event_size} bytes ({body} bytes), "
                f"but only {size - pos - head} byte(s) follow",
            )
        if kind == _POLARITY_EVENT:
            if event_size != 8 or ts_offset != 4:
                raise _corrupt(
                    path,
                    fmt,
                    pos,
                    "polarity packet with eventSize="
                    f"{event_size} and eventTSOffset={ts_offset} (expected "
                    "8 and 4)",
                )
            raw = np.frombuffer(
                data, "<i4", count=2 * number, offset=pos + head
            )
            raw = raw.reshape(number, 2).astype(np.int64)
            negative = np.flatnonzero(raw[:, 1] < 0)
            if negative.size:
                raise _corrupt(
                    path,
                    fmt,
                    pos + head + 8 * int(negative[0]),
                    "negative event timestamp",
                )
            word = raw[:, 0] & 0xFFFFFFFF
            valid = (word & 1) == 1
            word, stamps = word[valid], raw[valid, 1]
            packet = np.empty(word.size, EVENT_DTYPE)
            packet["t"] = (np.int64(overflow) << 31) | stamps
            packet["x"] = (word >> 17) & 0x7FFF
            packet["y"] = (word >> 2) & 0x7FFF
            packet["p"] = (word >> 1) & 1
            chunks.append(packet)
        pos += head + body
    if not chunks:
        return np.empty(0, EVENT_DTYPE)
    return np.concatenate(chunks)


def write_aedat31(path, events, source="DVS128", events_per_packet=4096):
    """Writes events as an AEDAT 3.1 file of polarity packets.

    See `read_aedat31` for the layout. The header has the required version,
    format (`RAW`), source and start-time lines and the end line. Events go
    into polarity packets of at most `events_per_packet` events; a new
    packet starts wherever the timestamp overflow counter `t >> 31`
    changes, so any `t` in [0, 2**62) is stored exactly.

    Args:
        path: file to write; replaced atomically.
        events: events of dtype `EVENT_DTYPE`; `x` and `y` in [0, 32767].
        source: device name for the `#Source 0:` header line.
        events_per_packet: int >= 1, the largest packet.
    """
    events = _check_events(events, "write_aedat31")
    owner = "write_aedat31"
    events_per_packet = functional.validate_count(
        events_per_packet, "events_per_packet"
    )
    if not isinstance(source, str) or not source.isprintable():
        raise ValueError(
            "Argument `source` must be a printable string. Received: "
            f"source={source!r}"
        )
    _check_range(events["x"], "x", 0, 2**15 - 1, owner, " (15 bits)")
    _check_range(events["y"], "y", 0, 2**15 - 1, owner, " (15 bits)")
    _check_range(events["p"], "p", 0, 1, owner)
    t = events["t"].astype(np.int64)
    _check_range(t, "t", 0, 2**62 - 1, owner)
    word = (
        (events["x"].astype(np.int64) << 17)
        | (events["y"].astype(np.int64) << 2)
        | (events["p"].astype(np.int64) << 1)
        | 1
    )
    overflow = t >> 31
    stamps = t & 0x7FFFFFFF
    header = (
        "#!AER-DAT3.1\r\n"
        "#Format: RAW\r\n"
        f"#Source 0: {source}\r\n"
        f"#Start-Time: {time.strftime('%Y-%m-%d %H:%M:%S (TZ%z)')}\r\n"
        "#!END-HEADER\r\n"
    ).encode("latin-1", errors="replace")
    chunks = [header]
    breaks = np.flatnonzero(np.diff(overflow)) + 1
    runs = np.split(np.arange(len(events)), breaks) if len(events) else []
    for run in runs:
        for first in range(0, run.size, events_per_packet):
            index = run[first : first + events_per_packet]
            n = index.size
            chunks.append(
                _AEDAT31_PACKET_HEADER.pack(
                    _POLARITY_EVENT, 0, 8, 4, int(overflow[index[0]]), n, n, n
                )
            )
            body = np.empty((n, 2), "<u4")
            body[:, 0] = word[index]
            body[:, 1] = stamps[index]
            chunks.append(body.tobytes())
    fileio.write_bytes(path, b"".join(chunks))


_READERS = {
    "nmnist": read_nmnist,
    "aedat2": read_aedat2,
    "aedat31": read_aedat31,
}


def _check_aedat2_file(path, head, size):
    _check_version(head, path, "AEDAT 2.0", "2.0", "read_aedat2")


def _check_aedat31_file(path, head, size):
    _check_version(head, path, "AEDAT 3.1", "3.1", "read_aedat31")


# Checks of a file's first bytes and size, per built-in reader: what
# `event_dataset` runs on every file before building its pipeline.
_HEAD_CHECKS = {
    read_nmnist: _check_nmnist_head,
    read_aedat2: _check_aedat2_file,
    read_aedat31: _check_aedat31_file,
}


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _size_pair(value, name, owner="events_to_frames"):
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise ValueError(
            f"{owner}: argument `{name}` must be a pair of integers >= 1, "
            f"(height, width). Received: {name}={value!r}"
        )
    return int(pair[0]), int(pair[1])


def _frame_geometry(
    sensor_size,
    time_window,
    num_frames,
    downsample,
    output_size,
    duration,
    start_time,
    owner="events_to_frames",
):
    """Checks the frame arguments; returns (H, W, h, w)."""
    height, width = _size_pair(sensor_size, "sensor_size", owner)
    if (time_window is None) == (num_frames is None):
        raise ValueError(
            f"{owner}: pass exactly one of `time_window` (microseconds per "
            "frame) and `num_frames`. Received: "
            f"time_window={time_window!r}, num_frames={num_frames!r}"
        )
    if time_window is not None:
        functional.validate_count(time_window, "time_window", owner)
    else:
        functional.validate_count(num_frames, "num_frames", owner)
    if duration is not None:
        functional.validate_count(duration, "duration", owner)
    if start_time is not None and not _is_int(start_time):
        raise ValueError(
            f"{owner}: argument `start_time` must be an integer (us) or "
            f"None. Received: start_time={start_time!r}"
        )
    factor = functional.validate_count(downsample, "downsample", owner)
    if output_size is not None:
        if factor != 1:
            raise ValueError(
                f"{owner}: pass `downsample` or `output_size`, not both. "
                f"Received: downsample={downsample!r}, "
                f"output_size={output_size!r}"
            )
        out_h, out_w = _size_pair(output_size, "output_size", owner)
    else:
        out_h, out_w = height // factor, width // factor
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"{owner}: argument `downsample` is larger than the sensor. "
                f"Received: downsample={downsample!r}, "
                f"sensor_size={sensor_size!r}"
            )
    return height, width, out_h, out_w


def events_to_frames(
    events,
    sensor_size,
    time_window=None,
    num_frames=None,
    downsample=1,
    output_size=None,
    start_time=None,
    duration=None,
    binary=False,
):
    """Bins an event stream into frames of event counts, `(T, h, w, 2)`.

    Frame `f` covers the times `[start + f * time_window,
    start + (f + 1) * time_window)` (with `time_window`), or the `f`-th of
    `num_frames` equal parts of `[start, start + duration)` (an event at
    time `t` goes to frame `floor((t - start) * num_frames / duration)`).
    Events outside `[start, start + duration)` are left out. Each frame
    holds, per output pixel, the number of OFF (channel 0) and ON
    (channel 1) events; the layout is channels-last, `frames[f, y, x, p]`.

    Spatial binning, from the sensor's `(H, W)` to `(h, w)`:

    - `downsample=k`: `h = H // k`, `w = W // k` and a sensor pixel
      `(y, x)` goes to `(y // k, x // k)`, i.e. sum pooling with kernel =
      stride = k and no padding. 128 -> 32 with k = 4 (DVS-Gesture,
      Zheng et al. 2021, App. C); with k = 3, 128 -> 42 and the last
      128 - 3 * 42 = 2 rows and columns are dropped, which is the
      "stride = 3, padding = 0" of Wu et al. 2019 (App., DVS-CIFAR10).
    - `output_size=(h, w)`: any size; a pixel goes to
      `(floor(y * h / H), floor(x * w / W))`. Every sensor pixel is kept;
      when `H / h` is not an integer the output cells gather
      `floor(H / h)` or `ceil(H / h)` rows (128 -> 42: 3 or 4).

    Args:
        events: events of dtype `EVENT_DTYPE` (any order).
        sensor_size: `(H, W)`, the sensor's rows and columns; an event
            with `x >= W` or `y >= H` raises.
        time_window: int > 0, microseconds per frame, e.g. `5000` for the
            5 ms slices of N-MNIST and DVS-CIFAR10. Exactly one of
            `time_window` and `num_frames` must be given.
        num_frames: int > 0, the number of frames `T`.
        downsample: int >= 1, spatial factor (see above). Defaults to 1.
        output_size: `(h, w)`, instead of `downsample`.
        start_time: first microsecond of frame 0. Defaults to the earliest
            event time (0 for an empty stream).
        duration: int > 0, microseconds covered. With `time_window`,
            `T = ceil(duration / time_window)` (the last frame may be
            shorter); e.g. DVS-Gesture's first 1200 ms in 30 ms slices is
            `time_window=30_000, duration=1_200_000`, T = 40. Defaults to
            the span up to the last event, `t_max - start + 1`.
        binary: if `True`, counts are clipped to 1: a pixel spikes at most
            once per frame and polarity.

    Returns:
        float32 array of shape `(T, h, w, 2)`.
    """
    owner = "events_to_frames"
    events = _check_events(events, owner)
    height, width, out_h, out_w = _frame_geometry(
        sensor_size,
        time_window,
        num_frames,
        downsample,
        output_size,
        duration,
        start_time,
        owner,
    )
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    outside = np.flatnonzero((x < 0) | (x >= width) | (y < 0) | (y >= height))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"{owner}: {outside.size} event(s) lie outside "
            f"sensor_size=({height}, {width}) (x must be < {width} and y < "
            f"{height}); the first is event {i} with x={x[i]}, y={y[i]}."
        )
    bad_p = np.flatnonzero((p != 0) & (p != 1))
    if bad_p.size:
        i = int(bad_p[0])
        raise ValueError(
            f"{owner}: polarity must be 0 (OFF) or 1 (ON); event {i} has "
            f"p={p[i]}."
        )
    if start_time is None:
        start = int(t.min()) if t.size else 0
    else:
        start = int(start_time)
    if duration is None:
        span = int(t.max()) - start + 1 if t.size else 0
        span = max(span, 0)
    else:
        span = int(duration)
    if time_window is not None:
        frames_total = -(-span // int(time_window))
    else:
        frames_total = int(num_frames)
    keep = (t >= start) & (t < start + span)
    t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    if time_window is not None:
        index = (t - start) // int(time_window)
    else:
        index = (t - start) * frames_total // max(span, 1)
    if output_size is not None:
        row = y * out_h // height
        col = x * out_w // width
    else:
        factor = int(downsample)
        row, col = y // factor, x // factor
        inside = (row < out_h) & (col < out_w)
        index, row, col, p = index[inside], row[inside], col[inside], p[inside]
    flat = ((index * out_h + row) * out_w + col) * 2 + p
    counts = np.bincount(flat, minlength=frames_total * out_h * out_w * 2)
    frames = counts.reshape(frames_total, out_h, out_w, 2).astype(np.float32)
    if binary:
        np.minimum(frames, 1.0, out=frames)
    return frames


# --------------------------------------------------------------------------
# tf.data pipeline
# --------------------------------------------------------------------------


def _check_files(paths, reader, owner):
    """Raises unless every path is a file (of `reader`'s format)."""
    check = next((c for r, c in _HEAD_CHECKS.items() if r is reader), None)
    missing = []
    for i, path in enumerate(paths):
        if not os.path.isfile(path):
            missing.append(i)
            continue
        if check is not None:
            with open(path, "rb") as file:
                head = file.read(formats.HEAD_BYTES)
                size = os.fstat(file.fileno()).st_size
            check(path, head, size)
    if missing:
        i = missing[0]
        what = "is a folder" if os.path.isdir(paths[i]) else "does not exist"
        raise FileNotFoundError(
            f"{owner}: {len(missing)} of the {len(paths)} paths are not "
            f"files; the first, paths[{i}] = {paths[i]!r}, {what}."
        )


def _file_frames(path, reader, options, owner):
    """`events_to_frames(reader(path), **options)`, errors naming `path`."""
    events = reader(path)
    try:
        return events_to_frames(events, **options)
    except (TypeError, ValueError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        raise kind(
            f"{owner}: the events read from {path!r} by {_name(reader)}: "
            f"{error}"
        ) from error


def _name(reader):
    return getattr(reader, "__name__", None) or repr(reader)


def event_dataset(
    paths,
    labels,
    reader,
    sensor_size,
    time_window=None,
    num_frames=None,
    downsample=1,
    output_size=None,
    start_time=None,
    duration=None,
    binary=False,
    batch_size=32,
    shuffle=False,
    seed=None,
    cache=False,
    drop_remainder=False,
):
    """A batched `tf.data.Dataset` of `(frames, label)` from event files.

    Each file is read by `reader` and binned by `events_to_frames` inside
    `tf.numpy_function`, in parallel, when the dataset is iterated. Before
    the pipeline is built, the arguments and files are checked here, so
    that a mistake raises the reader's own message rather than one buried
    in a TensorFlow `IteratorGetNext` error: every path must be an
    existing file, the built-in readers check the first bytes of every
    file (format signature, size), and the first file is read and binned
    in full (which catches a wrong reader or `sensor_size`).

    Batches are `(batch, T, h, w, 2)` float32 frames (batch-major, ready
    for `TimeFolded` convolutions) and the labels as given. Every sample
    must give the same `T`, so pass `num_frames`, or `time_window`
    together with `duration` (`T = ceil(duration / time_window)`).
    `start_time` defaults to each file's first event.

    Args:
        paths: sequence of file paths.
        labels: sequence of labels, one per path (class indices, or any
            array of equal-shaped rows).
        reader: `"nmnist"`, `"aedat2"`, `"aedat31"`, or a callable
            `path -> events` (e.g. a `functools.partial` of a reader that
            also cuts one gesture out of a DVS-Gesture recording).
        sensor_size, time_window, num_frames, downsample, output_size,
            start_time, duration, binary: as in `events_to_frames`.
        batch_size: int >= 1. Defaults to 32.
        shuffle: shuffle the samples each epoch. Defaults to `False`.
        seed: seed of the shuffle, for a repeatable order.
        cache: keep the frames in memory after the first epoch (for small
            sets such as N-MNIST slices; DVS-Gesture frames at 32x32 with
            T = 40 take 320 kB per sample). Defaults to `False`.
        drop_remainder: drop the last, smaller batch.

    Returns:
        A prefetching `tf.data.Dataset`.

    Raises:
        ValueError: for an invalid argument, a file in another format, or
            a first file that the reader or `events_to_frames` refuses;
            the message names the argument or the file.
        FileNotFoundError: if a path does not exist or is a folder.
    """
    owner = "event_dataset"
    if isinstance(reader, str):
        if reader not in _READERS:
            raise ValueError(
                f"{owner}: argument `reader` must be one of "
                f"{sorted(_READERS)} or a callable. Received: "
                f"reader={reader!r}"
            )
        reader = _READERS[reader]
    elif not callable(reader):
        raise ValueError(
            f"{owner}: argument `reader` must be one of {sorted(_READERS)} "
            f"or a callable. Received: reader={reader!r}"
        )
    _, _, out_h, out_w = _frame_geometry(
        sensor_size,
        time_window,
        num_frames,
        downsample,
        output_size,
        duration,
        start_time,
        owner,
    )
    if time_window is not None:
        if duration is None:
            raise ValueError(
                f"{owner}: every sample needs the same number of frames; "
                "pass `num_frames`, or `time_window` together with "
                f"`duration`. Received: time_window={time_window!r}, "
                "duration=None"
            )
        timesteps = -(-int(duration) // int(time_window))
    else:
        timesteps = int(num_frames)
    batch_size = functional.validate_count(batch_size, "batch_size", owner)
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ValueError(
            f"{owner}: argument `paths` must be a sequence of file paths, "
            f"not one path. Received: paths={paths!r}"
        )
    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels)
    if labels.dtype.kind in "iub":
        labels = labels.astype(np.int32)
    if not paths or len(paths) != len(labels):
        raise ValueError(
            f"{owner}: `paths` and `labels` must be non-empty and of the "
            f"same length. Received: {len(paths)} paths, {len(labels)} "
            "labels"
        )
    options = dict(
        sensor_size=sensor_size,
        time_window=time_window,
        num_frames=num_frames,
        downsample=downsample,
        output_size=output_size,
        start_time=start_time,
        duration=duration,
        binary=binary,
    )

    def load_frames(path):
        path = path.decode() if isinstance(path, bytes) else str(path)
        return _file_frames(path, reader, options, owner)

    _check_files(paths, reader, owner)
    load_frames(paths[0])

    def load(path, label):
        frames = tf.numpy_function(
            load_frames, [path], tf.float32, stateful=False
        )
        frames.set_shape((timesteps, out_h, out_w, 2))
        return frames, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle and not cache:
        dataset = dataset.shuffle(len(paths), seed=seed)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
        if shuffle:
            dataset = dataset.shuffle(len(paths), seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
