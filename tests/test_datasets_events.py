"""Event files: round trips and corrupt files of each format."""

import gzip
import io
import struct

import numpy as np
import pytest

from keras_snn import datasets as ev

# ----------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------


def _assert_same(a, b):
    assert a.dtype == ev.EVENT_DTYPE
    for name in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_nmnist_round_trip_and_bit_layout(tmp_path):
    events = ev.make_events(
        t=[0, 1, 255, 65536, 2**23 - 1],
        x=[0, 33, 255, 7, 1],
        y=[0, 33, 0, 255, 2],
        p=[0, 1, 1, 0, 1],
    )
    path = tmp_path / "a.bin"
    ev.write_nmnist(path, events)
    raw = path.read_bytes()
    assert len(raw) == 25
    # Event 4: x=1, y=2, polarity bit 23 set, 23-bit timestamp all ones.
    assert raw[20:25] == bytes([1, 2, 0xFF, 0xFF, 0xFF])
    # Event 3: p=0 and t=65536 -> bit 16 of the timestamp only.
    assert raw[15:20] == bytes([7, 255, 0x01, 0x00, 0x00])
    _assert_same(ev.read_nmnist(path), events)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temp file


def test_nmnist_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="t=8388608"):
        ev.write_nmnist(
            tmp_path / "a.bin", ev.make_events([2**23], [0], [0], [1])
        )
    with pytest.raises(ValueError, match="x=256"):
        ev.write_nmnist(
            tmp_path / "a.bin", ev.make_events([0], [256], [0], [1])
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flip_y", [False, True])
def test_aedat2_round_trip_and_bit_layout(tmp_path, flip_y):
    events = ev.make_events(
        t=[0, 5, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 7],
        x=[0, 127, 3, 64, 1, 2],
        y=[0, 127, 5, 100, 1, 2],
        p=[1, 0, 1, 0, 1, 0],
    )
    path = tmp_path / "a.aedat"
    ev.write_aedat2(path, events, flip_y=flip_y)
    data = path.read_bytes()
    assert data.startswith(b"#!AER-DAT2.0\r\n")
    body = data[-48:]
    address, stamp = struct.unpack(">II", body[8:16])
    y = 0 if flip_y else 127
    assert address == (y << 8) | (127 << 1) | 0
    assert stamp == 5
    # 2**32 + 7 is stored wrapped and unwrapped on reading.
    assert struct.unpack(">II", body[40:48])[1] == 7
    _assert_same(ev.read_aedat2(path, flip_y=flip_y), events)


def test_aedat2_skips_external_events_and_refuses_davis(tmp_path):
    header = b"#!AER-DAT2.0\r\n# test\r\n"
    records = [
        (1 << 15, 10),  # external event
        ((3 << 8) | (4 << 1) | 1, 20),
    ]
    body = b"".join(struct.pack(">II", a, t) for a, t in records)
    path = tmp_path / "a.aedat"
    path.write_bytes(header + body)
    got = ev.read_aedat2(path)
    assert got.tolist() == [(20, 4, 3, 1)]
    path.write_bytes(header + body + struct.pack(">II", 1 << 22, 30))
    offset = len(header) + 16
    with pytest.raises(
        ValueError, match=f"offset {offset}: address 0x00400000"
    ):
        ev.read_aedat2(path)


def test_aedat31_round_trip_with_overflow_packets(tmp_path):
    t = [0, 1, 2**31 - 1, 2**31, 2**32 + 3, 2**40]
    events = ev.make_events(
        t=t,
        x=[0, 127, 345, 1, 2, 32767],
        y=[0, 127, 260, 1, 2, 32767],
        p=[0, 1, 1, 0, 1, 0],
    )
    path = tmp_path / "a.aedat"
    ev.write_aedat31(path, events, events_per_packet=2)
    data = path.read_bytes()
    assert data.startswith(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
    start = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    kind, source, size, ts_offset, overflow, capacity, number, valid = (
        struct.unpack_from("<hhiiiiii", data, start)
    )
    assert (kind, size, ts_offset, overflow, number) == (1, 8, 4, 0, 2)
    word, stamp = struct.unpack_from("<Ii", data, start + 28 + 8)
    assert word == (127 << 17) | (127 << 2) | (1 << 1) | 1 and stamp == 1
    _assert_same(ev.read_aedat31(path), events)


def _packet(kind, size, records, overflow=0):
    body = b"".join(records)
    n = len(records)
    return struct.pack("<hhiiiiii", kind, 0, size, 4, overflow, n, n, n) + body


def _header31():
    return (
        b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 0: DVS128\r\n#!END-HEADER\r\n"
    )


def test_aedat31_skips_other_packets_and_invalid_events(tmp_path):
    special = _packet(0, 8, [struct.pack("<Ii", 1, 5)])
    frame_like = _packet(2, 12, [b"\x01" + bytes(11)] * 2)
    polarity = _packet(
        1,
        8,
        [
            struct.pack("<Ii", (9 << 17) | (8 << 2) | (1 << 1) | 1, 100),
            struct.pack("<Ii", (9 << 17) | (8 << 2) | (1 << 1) | 0, 101),
            struct.pack("<Ii", (1 << 17) | (2 << 2) | 1, 102),
        ],
        overflow=1,
    )
    path = tmp_path / "g.aedat"
    path.write_bytes(_header31() + special + frame_like + polarity)
    got = ev.read_aedat31(path)
    assert got.tolist() == [(2**31 + 100, 9, 8, 1), (2**31 + 102, 1, 2, 0)]


def test_empty_files(tmp_path):
    for write, read in [
        (ev.write_nmnist, ev.read_nmnist),
        (ev.write_aedat2, ev.read_aedat2),
        (ev.write_aedat31, ev.read_aedat31),
    ]:
        path = tmp_path / f"{write.__name__}.dat"
        write(path, np.empty(0, ev.EVENT_DTYPE))
        assert read(path).size == 0


# ----------------------------------------------------------------------------
# Corrupt files
# ----------------------------------------------------------------------------


def test_truncated_nmnist(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(12))
    with pytest.raises(ValueError, match=r"bad\.bin.*offset 10: truncated"):
        ev.read_nmnist(path)


def test_truncated_aedat2(tmp_path):
    path = tmp_path / "bad.aedat"
    header = b"#!AER-DAT2.0\r\n"
    path.write_bytes(header + bytes(8 + 5))
    with pytest.raises(
        ValueError, match=f"offset {len(header) + 8}: truncated"
    ):
        ev.read_aedat2(path)


def test_aedat_version_lines(tmp_path):
    path = tmp_path / "v.aedat"
    path.write_bytes(_header31())
    with pytest.raises(ValueError, match="use read_aedat31"):
        ev.read_aedat2(path)
    path.write_bytes(bytes(16))
    with pytest.raises(ValueError, match="no '#!AER-DAT2.0' version line"):
        ev.read_aedat2(path)
    path.write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(ValueError, match="use read_aedat2"):
        ev.read_aedat31(path)
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
    with pytest.raises(ValueError, match="#!END-HEADER"):
        ev.read_aedat31(path)
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: PNGFrames\r\n#!END-HEADER\r\n")
    with pytest.raises(ValueError, match="only RAW"):
        ev.read_aedat31(path)


def test_truncated_aedat31(tmp_path):
    good = _packet(1, 8, [struct.pack("<Ii", 1, 1)] * 3)
    head = _header31()
    path = tmp_path / "bad.aedat"
    path.write_bytes(head + good + good[:20])
    offset = len(head) + len(good)
    with pytest.raises(
        ValueError, match=f"offset {offset}: truncated packet header"
    ):
        ev.read_aedat31(path)
    path.write_bytes(head + good + good[:-3])
    with pytest.raises(ValueError, match=f"offset {offset}: truncated packet:"):
        ev.read_aedat31(path)
    broken = struct.pack("<hhiiiiii", 1, 0, -8, 4, 0, 1, 1, 1)
    path.write_bytes(head + broken)
    with pytest.raises(ValueError, match=f"offset {len(head)}: impossible"):
        ev.read_aedat31(path)


def _pad5(data):
    """`data` padded with zero bytes to a multiple of 5 bytes, so that the
    size alone does not tell it from an N-MNIST file."""
    return data + bytes(-len(data) % 5)


def _npz_bytes():
    buffer = io.BytesIO()
    np.savez(buffer, a=np.arange(3))
    return buffer.getvalue()


def _npy_bytes():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(7, dtype=np.uint8))
    return buffer.getvalue()


def _aedat2_bytes(tmp_path):
    path = tmp_path / "source.aedat"
    ev.write_aedat2(path, ev.make_events([0, 10], [1, 2], [3, 4], [0, 1]))
    return path.read_bytes()


@pytest.mark.parametrize(
    "make,found",
    [
        (_aedat2_bytes, "an AEDAT 2.0 event file; read it with read_aedat2"),
        (
            lambda _: _header31() + bytes(28),
            "an AEDAT 3.1 event file; read it with read_aedat31",
        ),
        (lambda _: b"#!AER-DAT4.0\r\n" + bytes(40), "an AEDAT 4.0 event file"),
        (lambda _: b"\x89PNG\r\n\x1a\n" + bytes(32), "a PNG image"),
        (lambda _: _npz_bytes(), r"a NumPy \.npz archive"),
        (lambda _: _npy_bytes(), r"a NumPy \.npy array"),
        (lambda _: b"\x89HDF\r\n\x1a\n" + bytes(32), "an HDF5 file"),
        (lambda _: b"x,y,t,p\n1,2,3,1\n4,5,6,0\n\n", "a text file"),
    ],
)
def test_nmnist_refuses_other_formats(tmp_path, make, found):
    path = tmp_path / "not_nmnist.bin"
    path.write_bytes(_pad5(make(tmp_path)))
    with pytest.raises(
        ValueError, match=rf"not_nmnist\.bin.* is not an N-MNIST .*{found}"
    ):
        ev.read_nmnist(path)


def test_nmnist_refuses_timestamps_going_back(tmp_path):
    events = ev.make_events([10, 20, 15, 30], [1, 2, 3, 4], [1] * 4, [0] * 4)
    path = tmp_path / "unsorted.bin"
    ev.write_nmnist(path, events)
    with pytest.raises(
        ValueError,
        match=r"unsorted\.bin.*offset 10: event 2 has timestamp 15 us, "
        r"before the 20 us .*1 of the 3 steps .*check_order=False",
    ):
        ev.read_nmnist(path)
    _assert_same(ev.read_nmnist(path, check_order=False), events)
    # One step back in a recording of 300 events is tolerated.
    t = np.arange(300) * 10
    t[150] = t[149] - 5
    events = ev.make_events(t, np.arange(300) % 34, [0] * 300, [1] * 300)
    ev.write_nmnist(path, events)
    _assert_same(ev.read_nmnist(path), events)


def test_nmnist_garbage_is_refused_by_its_timestamps(tmp_path):
    # A JPEG signature is too short to be trusted for a headerless format;
    # the timestamps of such bytes are not sorted, and the message names
    # what the file looks like.
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.bin"
    path.write_bytes(_pad5(b"\xff\xd8\xff\xe0" + rng.bytes(200)))
    with pytest.raises(ValueError, match=r"photo\.bin.*a JPEG image"):
        ev.read_nmnist(path)


def test_nmnist_truncated_message_names_what_the_file_looks_like(tmp_path):
    path = tmp_path / "frames.bin.gz"
    data = gzip.compress(bytes(100))
    path.write_bytes(data + bytes(1 if len(data) % 5 != 4 else 2))
    with pytest.raises(ValueError, match="truncated.*a gzip-compressed file"):
        ev.read_nmnist(path)


def test_nmnist_sensor_size(tmp_path):
    path = tmp_path / "big.bin"
    ev.write_nmnist(path, ev.make_events([0, 1], [3, 40], [5, 6], [0, 1]))
    assert ev.read_nmnist(path, sensor_size=(34, 41)).size == 2
    with pytest.raises(
        ValueError,
        match=r"big\.bin.*offset 5: event 1 at x=40, y=6 lies outside "
        r"sensor_size=\(34, 34\)",
    ):
        ev.read_nmnist(path, sensor_size=(34, 34))


@pytest.mark.parametrize(
    "data,pattern",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(16), "it looks like a PNG image"),
        (b"#!AER-DAT4.0\r\n", "AEDAT 4.0 files are not supported"),
        (b"#!AER-DAT3.1\r\n#!END-HEADER\r\n", "use read_aedat31"),
    ],
)
def test_aedat2_names_the_format_it_found(tmp_path, data, pattern):
    path = tmp_path / "in.aedat"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"in\.aedat.*{pattern}"):
        ev.read_aedat2(path)


def test_aedat31_names_the_format_it_found(tmp_path):
    path = tmp_path / "in.aedat"
    path.write_bytes(_npz_bytes())
    with pytest.raises(ValueError, match=r"in\.aedat.*a NumPy \.npz archive"):
        ev.read_aedat31(path)


@pytest.mark.parametrize(
    "write", [ev.write_nmnist, ev.write_aedat2, ev.write_aedat31]
)
def test_writers_into_a_missing_folder_name_the_folder(tmp_path, write):
    target = tmp_path / "missing" / "a.dat"
    with pytest.raises(OSError, match="folder .*missing.* does not exist") as e:
        write(target, ev.make_events([0], [1], [1], [1]))
    assert ".tmp" not in str(e.value)
    assert not (tmp_path / "missing").exists()
