"""AEDAT 3.1 event files, polarity packets: `read_aedat31`, `write_aedat31`.

The cAER format of DVS128 Gesture (iniVation "AEDAT file formats"
documentation, section "AEDAT 3.1", and libcaer's `events/common.h` and
`events/polarity.h`). Events are arrays of
`keras_snn.datasets.EVENT_DTYPE`; see `keras_snn.datasets.events`.
"""

import struct
import time

import numpy as np

from keras_snn import fileio
from keras_snn import functional
from keras_snn.datasets.events import EVENT_DTYPE
from keras_snn.datasets.events import check_events
from keras_snn.datasets.events import check_range
from keras_snn.datasets.events import check_version
from keras_snn.datasets.events import corrupt
from keras_snn.datasets.events import header_lines
from keras_snn.datasets.events import read_bytes

__all__ = ["read_aedat31", "write_aedat31"]

_AEDAT31_PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
_POLARITY_EVENT = 1  # AEDAT 3.1 eventType of polarity packets


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
    data = read_bytes(path)
    check_version(data, path, fmt, "3.1", "read_aedat31")
    lines, pos = header_lines(data, path, fmt, end_line="#!END-HEADER")
    for line in lines:
        if line.startswith("#Format:"):
            name = line.split(":", 1)[1].strip()
            if name != "RAW":
                raise corrupt(
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
            raise corrupt(
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
            raise corrupt(
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
            raise corrupt(
                path,
                fmt,
                pos,
                f"truncated packet: its header announces "
                f"{capacity} events of {event_size} bytes ({body} bytes), "
                f"but only {size - pos - head} byte(s) follow",
            )
        if kind == _POLARITY_EVENT:
            if event_size != 8 or ts_offset != 4:
                raise corrupt(
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
                raise corrupt(
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
    events = check_events(events, "write_aedat31")
    owner = "write_aedat31"
    events_per_packet = functional.validate_count(
        events_per_packet, "events_per_packet"
    )
    if not isinstance(source, str) or not source.isprintable():
        raise ValueError(
            "Argument `source` must be a printable string. Received: "
            f"source={source!r}"
        )
    check_range(events["x"], "x", 0, 2**15 - 1, owner, " (15 bits)")
    check_range(events["y"], "y", 0, 2**15 - 1, owner, " (15 bits)")
    check_range(events["p"], "p", 0, 1, owner)
    t = events["t"].astype(np.int64)
    check_range(t, "t", 0, 2**62 - 1, owner)
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


def check_head(path, head, size):
    """Refuses a file whose first bytes are not an AEDAT 3.1 version line.

    Args:
        path: the file, for the message.
        head: its first bytes (`keras_snn.formats.HEAD_BYTES` are enough).
        size: its size in bytes (unused: the packets say their sizes).
    """
    check_version(head, path, "AEDAT 3.1", "3.1", "read_aedat31")
