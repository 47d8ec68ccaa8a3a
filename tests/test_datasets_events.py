"""Event files, frames, the tf.data pipeline and the saccade converter."""

import gzip
import io
import math
import os
import struct

import numpy as np
import pytest

from keras_snn import datasets as ev
from keras_snn.datasets import saccade

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


# ----------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------


def _hand_events():
    # (t, x, y, p) on a 128x128 sensor.
    return ev.make_events(
        t=[1000, 1999, 2000, 2500, 4999, 5000, 5000, 9999],
        x=[0, 0, 127, 5, 5, 64, 64, 3],
        y=[0, 0, 127, 9, 9, 64, 64, 4],
        p=[1, 1, 0, 1, 0, 1, 1, 0],
    )


def test_frames_time_window():
    frames = ev.events_to_frames(
        _hand_events(),
        (128, 128),
        time_window=1000,
        start_time=0,
        duration=10_000,
    )
    assert frames.shape == (10, 128, 128, 2) and frames.dtype == np.float32
    expected = np.zeros_like(frames)
    expected[1, 0, 0, 1] = 2
    expected[2, 127, 127, 0] = 1
    expected[2, 9, 5, 1] = 1
    expected[4, 9, 5, 0] = 1
    expected[5, 64, 64, 1] = 2
    expected[9, 4, 3, 0] = 1
    np.testing.assert_array_equal(frames, expected)
    binary = ev.events_to_frames(
        _hand_events(),
        (128, 128),
        time_window=1000,
        start_time=0,
        duration=10_000,
        binary=True,
    )
    np.testing.assert_array_equal(binary, np.minimum(expected, 1))


def test_frames_default_span_starts_at_first_event():
    frames = ev.events_to_frames(_hand_events(), (128, 128), time_window=4000)
    # Span 1000 .. 9999 (9000 us) -> 3 windows starting at 1000:
    # [1000, 5000), [5000, 9000), [9000, 10000).
    assert frames.shape[0] == 3
    assert frames[0].sum() == 5 and frames[1].sum() == 2
    assert frames[2].sum() == 1


def test_frames_num_frames():
    frames = ev.events_to_frames(
        _hand_events(),
        (128, 128),
        num_frames=2,
        start_time=0,
        duration=10_000,
    )
    assert frames.shape == (2, 128, 128, 2)
    assert frames[0].sum() == 5 and frames[1].sum() == 3
    # A start time and duration cut the stream.
    cut = ev.events_to_frames(
        _hand_events(),
        (128, 128),
        num_frames=1,
        start_time=2000,
        duration=3000,
    )
    assert cut.sum() == 3


def test_frames_downsample_by_four():
    frames = ev.events_to_frames(
        _hand_events(), (128, 128), num_frames=1, downsample=4
    )
    assert frames.shape == (1, 32, 32, 2)
    assert frames[0, 0, 0, 1] == 2  # (0, 0) twice
    assert frames[0, 31, 31, 0] == 1  # (127, 127)
    assert frames[0, 2, 1].tolist() == [1, 1]  # (y=9, x=5) both polarities
    assert frames[0, 16, 16, 1] == 2  # (64, 64)
    assert frames[0, 1, 0, 0] == 1  # (y=4, x=3)
    assert frames.sum() == 8


def test_frames_to_42_by_floor_binning_and_by_stride_3():
    events = ev.make_events(
        t=[0] * 6,
        x=[0, 3, 4, 126, 127, 64],
        y=[0, 0, 0, 0, 127, 64],
        p=[1] * 6,
    )
    frames = ev.events_to_frames(
        events, (128, 128), num_frames=1, output_size=(42, 42)
    )
    assert frames.shape == (1, 42, 42, 2)
    # floor(x * 42 / 128): 0->0, 3->0, 4->1, 126->41, 127->41, 64->21.
    assert frames[0, 0, 0, 1] == 2
    assert frames[0, 0, 1, 1] == 1
    assert frames[0, 0, 41, 1] == 1
    assert frames[0, 41, 41, 1] == 1
    assert frames[0, 21, 21, 1] == 1
    assert frames.sum() == 6
    # Pooling with stride 3 and no padding: x // 3, and row/column 126 and
    # 127 (126 // 3 = 42) are dropped.
    pooled = ev.events_to_frames(events, (128, 128), num_frames=1, downsample=3)
    assert pooled.shape == (1, 42, 42, 2)
    assert pooled[0, 0, 0, 1] == 1 and pooled[0, 0, 1, 1] == 2
    assert pooled[0, 21, 21, 1] == 1
    assert pooled.sum() == 4


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(), "exactly one of `time_window`"),
        (dict(time_window=10, num_frames=2), "exactly one of `time_window`"),
        (dict(num_frames=0), "num_frames=0"),
        (dict(time_window=2.5), "time_window=2.5"),
        (dict(num_frames=2, downsample=0), "downsample=0"),
        (dict(num_frames=2, output_size=(0, 4)), r"output_size=\(0, 4\)"),
        (dict(num_frames=2, downsample=2, output_size=(4, 4)), "not both"),
        (dict(num_frames=2, sensor_size=(128,)), "sensor_size"),
        (dict(num_frames=2, duration=-5), "duration=-5"),
        (dict(num_frames=2, sensor_size=(4, 4)), "outside sensor_size=.4, 4."),
    ],
)
def test_frames_invalid_arguments(kwargs, pattern):
    kwargs = dict(kwargs)
    sensor_size = kwargs.pop("sensor_size", (128, 128))
    with pytest.raises(ValueError, match=pattern):
        ev.events_to_frames(_hand_events(), sensor_size, **kwargs)


def test_frames_reject_non_event_arrays():
    with pytest.raises(TypeError, match="fields"):
        ev.events_to_frames(np.zeros((3, 4)), (4, 4), num_frames=1)


# ----------------------------------------------------------------------------
# tf.data pipeline
# ----------------------------------------------------------------------------


def test_event_dataset_shapes_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    paths, counts = [], []
    for i in range(3):
        n = 50 + 10 * i
        events = ev.make_events(
            np.sort(rng.integers(0, 20_000, n)),
            rng.integers(0, 34, n),
            rng.integers(0, 34, n),
            rng.integers(0, 2, n),
        )
        path = tmp_path / f"{i}.bin"
        ev.write_nmnist(path, events)
        paths.append(path)
        counts.append(n)
    dataset = ev.event_dataset(
        paths, [7, 8, 9], "nmnist", (34, 34), num_frames=4, batch_size=2
    )
    batches = list(dataset)
    assert [tuple(f.shape) for f, _ in batches] == [
        (2, 4, 34, 34, 2),
        (1, 4, 34, 34, 2),
    ]
    labels = np.concatenate([y.numpy() for _, y in batches])
    np.testing.assert_array_equal(labels, [7, 8, 9])
    totals = np.concatenate(
        [f.numpy().sum(axis=(1, 2, 3, 4)) for f, _ in batches]
    )
    np.testing.assert_array_equal(totals, counts)

    windowed = ev.event_dataset(
        paths,
        [0, 1, 2],
        ev.read_nmnist,
        (34, 34),
        time_window=5000,
        duration=20_000,
        downsample=2,
        batch_size=3,
        shuffle=True,
        seed=1,
        cache=True,
    )
    frames, labels = next(iter(windowed))
    assert tuple(frames.shape) == (3, 4, 17, 17, 2)
    assert sorted(labels.numpy().tolist()) == [0, 1, 2]


def _nmnist_files(tmp_path, count=3, x_max=34):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        events = ev.make_events(
            np.sort(rng.integers(0, 20_000, 20)),
            rng.integers(0, x_max, 20),
            rng.integers(0, 34, 20),
            rng.integers(0, 2, 20),
        )
        paths.append(tmp_path / f"{i}.bin")
        ev.write_nmnist(paths[-1], events)
    return paths


def test_event_dataset_checks_files_before_the_pipeline(tmp_path):
    paths = _nmnist_files(tmp_path)
    options = dict(sensor_size=(34, 34), num_frames=2)
    missing = [paths[0], tmp_path / "gone.bin", paths[1]]
    with pytest.raises(
        FileNotFoundError, match=r"paths\[1\] = .*gone\.bin.*does not exist"
    ):
        ev.event_dataset(missing, [0, 1, 2], "nmnist", **options)
    with pytest.raises(FileNotFoundError, match=r"paths\[0\].*is a folder"):
        ev.event_dataset([tmp_path], [0], "nmnist", **options)
    # A file of another format, anywhere in the list, raises the reader's
    # own message when the dataset is made, not inside TensorFlow.
    aedat = tmp_path / "late.aedat"
    ev.write_aedat2(aedat, ev.make_events([0], [1], [1], [1]))
    with pytest.raises(ValueError, match=r"late\.aedat.*read_aedat2") as e:
        ev.event_dataset(paths + [aedat], [0, 1, 2, 3], "nmnist", **options)
    assert "IteratorGetNext" not in str(e.value)
    nmnist = [str(p) for p in paths]
    with pytest.raises(ValueError, match=r"0\.bin.*no '#!AER-DAT2\.0'"):
        ev.event_dataset(nmnist, [0, 1, 2], ev.read_aedat2, **options)
    with pytest.raises(ValueError, match="not one path"):
        ev.event_dataset(str(paths[0]), [0], "nmnist", **options)


def test_event_dataset_names_the_file_that_does_not_fit(tmp_path):
    paths = _nmnist_files(tmp_path, count=2, x_max=40)
    with pytest.raises(
        ValueError, match=r"0\.bin.* by read_nmnist: .*outside sensor_size"
    ):
        ev.event_dataset(paths, [0, 1], "nmnist", (34, 34), num_frames=2)
    # A callable reader gets the same check of its first file.
    with pytest.raises(ValueError, match=r"0\.bin.* by <lambda>: "):
        ev.event_dataset(
            paths,
            [0, 1],
            lambda p: ev.read_nmnist(p),
            (34, 34),
            num_frames=2,
        )


def test_event_dataset_needs_fixed_length():
    with pytest.raises(ValueError, match="together with `duration`"):
        ev.event_dataset(["a"], [0], "nmnist", (34, 34), time_window=5000)
    with pytest.raises(ValueError, match="reader"):
        ev.event_dataset(["a"], [0], "mp4", (34, 34), num_frames=2)


# ----------------------------------------------------------------------------
# Saccades
# ----------------------------------------------------------------------------


def test_constant_images_give_no_events():
    for value in (0.0, 0.5, 1.0):
        events = saccade.image_to_events(np.full((10, 12), value))
        assert events.size == 0


def test_bright_square_on_dark():
    image = np.zeros((16, 16))
    image[5:11, 5:11] = 1.0
    duration = 300_000
    events = saccade.image_to_events(image, duration_us=duration)
    height, width = saccade.saccade_sensor_size(image.shape)
    assert (height, width) == (22, 22)
    assert events.dtype == ev.EVENT_DTYPE
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() >= 0 and events["t"].max() < duration
    assert events["x"].max() < width and events["y"].max() < height
    on = ev.events_to_frames(events, (height, width), num_frames=1)[0]
    # Closed path: every pixel emits as many ON as OFF events.
    np.testing.assert_array_equal(on[..., 0], on[..., 1])
    n_on = int(on[..., 1].sum())
    # Each edge crossing changes log intensity by log(1.1 / 0.1) = 2.40,
    # 11 or 12 events at threshold 0.2; about 22 x 2 edges x 3 saccades
    # x 6 pixels per edge bounds the count from above.
    assert 500 < n_on < 12 * 6 * 4 * 6 * 3
    # Pixels the square never reaches stay silent.
    assert on[0, 0].sum() == 0 and on[-1, 0].sum() == 0
    # Events concentrate in time: all three saccades produce events.
    thirds = np.bincount(events["t"] * 3 // duration, minlength=3)
    assert np.all(thirds > 0)


def test_one_dimensional_shift_polarity_and_times():
    # A single bright pixel on black moves right by one pixel and back.
    # Pixel 0 goes 1 -> 0 (OFF) then 0 -> 1 (ON); pixel 1 the reverse.
    # log(1 + 0.1) - log(0.1) = log(11) = 2.398 -> 4 events at threshold 0.5.
    duration = 200_000
    events = saccade.image_to_events(
        np.ones((1, 1)),
        duration_us=duration,
        steps_per_saccade=1,
        threshold=0.5,
        vertices=[(0, 0), (0, 1)],
        background=0.0,
        log_eps=0.1,
    )
    assert saccade.saccade_sensor_size((1, 1), vertices=[(0, 0), (0, 1)]) == (
        1,
        2,
    )
    first = events[events["t"] < duration // 2]
    second = events[events["t"] >= duration // 2]
    assert sorted(first[first["x"] == 0]["p"].tolist()) == [0] * 4
    assert sorted(first[first["x"] == 1]["p"].tolist()) == [1] * 4
    assert sorted(second[second["x"] == 0]["p"].tolist()) == [1] * 4
    assert sorted(second[second["x"] == 1]["p"].tolist()) == [0] * 4
    # In one step log intensity changes linearly in time, so crossing j
    # (level j * 0.5 above the start) happens at j * 0.5 / log(11) of it.
    span = math.log(11.0)
    expected = [math.floor(100_000 * 0.5 * j / span) for j in range(1, 5)]
    got = np.sort(first[first["x"] == 1]["t"])
    assert np.all(np.abs(got - expected) <= 1)
    # Going back, pixel 1 falls from log(1.1) through levels 1.5, 1.0, 0.5
    # and 0.0 above log(0.1).
    back = [
        100_000 + math.floor(100_000 * (span - 0.5 * (4 - j)) / span)
        for j in range(1, 5)
    ]
    got = np.sort(second[second["x"] == 1]["t"])
    assert np.all(np.abs(got - back) <= 1)


def test_noise_and_mismatch_are_seeded():
    image = np.zeros((8, 8))
    image[2:6, 2:6] = 1.0
    kwargs = dict(threshold_mismatch=0.1, noise_rate_hz=20.0, seed=3)
    a = saccade.image_to_events(image, **kwargs)
    b = saccade.image_to_events(image, **kwargs)
    np.testing.assert_array_equal(a, b)
    clean = saccade.image_to_events(image)
    assert a.size != clean.size
    assert np.all(np.diff(a["t"]) >= 0)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(image=np.full((4, 4), 2.0)), r"\[0, 1\]"),
        (dict(image=np.zeros(4)), "shape"),
        (dict(threshold=0), "threshold=0"),
        (dict(duration_us=0), "duration_us=0"),
        (dict(steps_per_saccade=1.5), "steps_per_saccade=1.5"),
        (dict(vertices=[(0, 0)]), "vertices"),
        (dict(background=3), "background=3"),
    ],
)
def test_saccade_invalid_arguments(kwargs, pattern):
    kwargs = dict(kwargs)
    image = kwargs.pop("image", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=pattern):
        saccade.image_to_events(image, **kwargs)


@pytest.mark.parametrize(
    "fmt,read", [("nmnist", ev.read_nmnist), ("aedat31", ev.read_aedat31)]
)
def test_convert_images(tmp_path, fmt, read):
    images = np.zeros((3, 8, 8, 1))
    images[0, 2:5, 2:5] = 1.0
    images[1, 1:7, 3] = 0.8
    out = tmp_path / "out"
    paths = saccade.convert_images(
        images,
        [4, 2, 0],
        out,
        format=fmt,
        duration_us=30_000,
        steps_per_saccade=20,
    )
    assert [os.path.basename(p) for p in paths] == [
        f"00000{i}{'.bin' if fmt == 'nmnist' else '.aedat'}" for i in range(3)
    ]
    listed, labels = saccade.read_converted(out)
    assert listed == paths and labels.tolist() == [4, 2, 0]
    for path, image in zip(paths, images, strict=True):
        expected = saccade.image_to_events(
            image, duration_us=30_000, steps_per_saccade=20
        )
        _assert_same(read(path), expected)
    assert read(paths[2]).size == 0  # the blank image
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    dataset = ev.event_dataset(
        paths, labels, fmt, (14, 14), num_frames=3, batch_size=3
    )
    frames, got = next(iter(dataset))
    assert tuple(frames.shape) == (3, 3, 14, 14, 2)
    assert got.numpy().tolist() == [4, 2, 0]


def test_convert_images_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format"):
        saccade.convert_images(np.zeros((1, 4, 4)), [0], tmp_path, format="mp4")
    with pytest.raises(ValueError, match="same length"):
        saccade.convert_images(np.zeros((2, 4, 4)), [0], tmp_path)


def test_read_converted_names_a_bad_label(tmp_path):
    (tmp_path / saccade.LABELS_FILE).write_text(
        "file,label\na.bin,7\nb.bin,x\n"
    )
    with pytest.raises(ValueError, match=r"labels\.csv.*line 3.*'x'"):
        saccade.read_converted(tmp_path)
