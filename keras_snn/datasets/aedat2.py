"""AEDAT 2.0 event files with DVS128 addresses: `read_aedat2`, `write_aedat2`.

The jAER format of CIFAR10-DVS (iniVation "AEDAT file formats"
documentation, sections "AEDAT 2.0" and "AEDAT 1.0 / DVS128"). Events are
arrays of `keras_snn.datasets.EVENT_DTYPE`; see `keras_snn.datasets.events`.
"""

import numpy as np

from keras_snn import fileio
from keras_snn.datasets.events import EVENT_DTYPE
from keras_snn.datasets.events import check_events
from keras_snn.datasets.events import check_range
from keras_snn.datasets.events import check_version
from keras_snn.datasets.events import corrupt
from keras_snn.datasets.events import header_lines
from keras_snn.datasets.events import read_bytes
from keras_snn.datasets.events import unwrap32

__all__ = ["read_aedat2", "write_aedat2"]

_AEDAT2_EVENT_BYTES = 8


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
    data = read_bytes(path)
    check_version(data, path, fmt, "2.0", "read_aedat2")
    _, start = header_lines(data, path, fmt)
    count, rest = divmod(len(data) - start, _AEDAT2_EVENT_BYTES)
    if rest:
        raise corrupt(
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
        raise corrupt(
            path,
            fmt,
            start + i * _AEDAT2_EVENT_BYTES,
            f"address 0x{int(address[i]):08x} has bits above 15 set, so it "
            "is not a DVS128 address (bits 14-8 y, 7-1 x, 0 polarity); "
            "DAVIS recordings use another AEDAT 2.0 layout",
        )
    stamps = unwrap32(stamps)
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
    events = check_events(events, "write_aedat2")
    owner = "write_aedat2"
    check_range(events["x"], "x", 0, 127, owner, " (DVS128: 7 bits)")
    check_range(events["y"], "y", 0, 127, owner, " (DVS128: 7 bits)")
    check_range(events["p"], "p", 0, 1, owner)
    t = events["t"].astype(np.int64)
    check_range(t, "t", 0, np.iinfo(np.int64).max, owner)
    stored = t % 2**32
    if not np.array_equal(unwrap32(stored), t):
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


def check_head(path, head, size):
    """Refuses a file whose first bytes are not an AEDAT 2.0 version line.

    Args:
        path: the file, for the message.
        head: its first bytes (`keras_snn.formats.HEAD_BYTES` are enough).
        size: its size in bytes (unused: the body has no fixed size).
    """
    check_version(head, path, "AEDAT 2.0", "2.0", "read_aedat2")
