"""Events to frames and the tf.data pipeline of event files."""


import numpy as np
import pytest

from keras_snn import datasets as ev

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
