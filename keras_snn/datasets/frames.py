"""Event streams to frames of event counts: `events_to_frames`.

`events_to_frames` bins a stream into per-window event counts of shape
`(T, h, w, 2)` (channel 0 = OFF, 1 = ON), with the temporal windows and the
spatial downsampling of the papers: N-MNIST and DVS-CIFAR10 in 5 ms slices,
DVS-CIFAR10 128x128 -> 42x42 (Wu et al. 2019, App. "Data pre-processing";
Zheng et al. 2021, App. C), DVS-Gesture 128x128 -> 32x32 in 30 ms slices
with T = 40 (Zheng et al. 2021, App. C).
"""

import numpy as np

from keras_snn import functional
from keras_snn.datasets.events import check_events
from keras_snn.datasets.events import is_int
from keras_snn.datasets.events import size_pair

__all__ = ["events_to_frames"]


def frame_geometry(
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
    height, width = size_pair(sensor_size, "sensor_size", owner)
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
    if start_time is not None and not is_int(start_time):
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
        out_h, out_w = size_pair(output_size, "output_size", owner)
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
    events = check_events(events, owner)
    height, width, out_h, out_w = frame_geometry(
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
