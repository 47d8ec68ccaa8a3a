"""The saccade converter of static images to events."""

import math
import os

import numpy as np
import pytest
from test_datasets_events import _assert_same

from keras_snn import datasets as ev
from keras_snn.datasets import saccade

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
