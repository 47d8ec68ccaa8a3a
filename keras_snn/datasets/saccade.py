"""Static images to event streams, the way N-MNIST was recorded.

Orchard et al. 2015 ("Converting static image datasets to spiking
neuromorphic datasets using saccades", Frontiers in Neuroscience 9:437)
recorded N-MNIST by showing each MNIST digit on a monitor and moving an
ATIS event camera on a pan-tilt unit through three saccades that trace a
triangle and return to the start, 100 ms each. The 28x28 digits give 34x34
recordings because the image moves across the sensor. This module
simulates that recording; it is a model, not a replay of the original
hardware.

Model:

1. Motion. The image moves relative to the sensor along a closed polygon
   of offsets `(dy, dx)` in pixels, one saccade per edge, each at constant
   speed and lasting `duration_us / len(vertices)`. The default polygon is
   the isosceles triangle `(0, 0) -> (a, a / 2) -> (0, a) -> (0, 0)` with
   `a = amplitude = 6` pixels: down-right, up-right, then straight back
   left, so a 28x28 image gives a 34x34 sensor as in N-MNIST. (The angles
   and the speed profile of the original saccades are not reproduced.)
2. Optics. The sensor sees the image shifted by the current sub-pixel
   offset with bilinear interpolation; outside the image it sees
   `background` (by default the mean of the image's outermost pixels, so
   a constant image is a constant scene).
3. Pixels. Each pixel follows its log intensity `L = log(I + log_eps)`
   (`log_eps` stands for the dark current and keeps the log finite) and
   keeps a reference level `R`, initially the first `L`. Each of the
   `steps_per_saccade` steps of a saccade moves the image a little; when
   `L` has moved `n >= 1` whole thresholds away from `R`, the pixel emits
   `n` events, ON if `L` rose and OFF if it fell, and `R` moves by
   `n` thresholds in that direction (the rest carries over). Within a step
   `L` is taken to change linearly in time, so the `j`-th event is stamped
   at the time `L` crosses `R +/- j * threshold`.
4. Optional non-idealities, off by default and seeded: a per-pixel
   threshold mismatch (`threshold * exp(sigma * N(0, 1))`) and background
   activity (random events at `noise_rate_hz` per pixel).

Since the path is closed and noise is off, every pixel ends where it
started, so each pixel emits as many ON as OFF events.

`convert_images` converts a batch of images to files (N-MNIST binary by
default) with a `labels.csv`, writing every file atomically;
`read_converted` lists them back for `keras_snn.datasets.event_dataset`.
"""

import csv
import io
import math
import os

import numpy as np

from keras_snn import fileio
from keras_snn import functional
from keras_snn.datasets.aedat2 import write_aedat2
from keras_snn.datasets.aedat31 import write_aedat31
from keras_snn.datasets.events import EVENT_DTYPE
from keras_snn.datasets.nmnist import write_nmnist
from keras_snn.functional import validate_number
from keras_snn.functional import validate_positive

__all__ = [
    "LABELS_FILE",
    "convert_images",
    "image_to_events",
    "read_converted",
    "saccade_sensor_size",
    "saccade_vertices",
]

LABELS_FILE = "labels.csv"

_WRITERS = {
    "nmnist": (write_nmnist, ".bin"),
    "aedat2": (write_aedat2, ".aedat"),
    "aedat31": (write_aedat31, ".aedat"),
}

# Tolerance in thresholds: a log intensity that reaches a level to within
# rounding error counts as reaching it (a pixel back at its starting
# intensity lands exactly on a level).
_LEVEL_TOLERANCE = 1e-9


def saccade_vertices(amplitude=6.0, vertices=None):
    """The offsets `(dy, dx)` the saccades visit, shifted to start >= 0.

    Args:
        amplitude: number > 0, side of the default triangle in pixels.
        vertices: optional sequence of at least two `(dy, dx)` offsets in
            pixels, visited in order and then back to the first; overrides
            the default triangle `(0, 0), (a, a / 2), (0, a)`.

    Returns:
        float64 array `(n, 2)` with the smallest `dy` and `dx` equal to 0.
    """
    if vertices is None:
        a = validate_positive(amplitude, "amplitude")
        points = np.array([[0.0, 0.0], [a, a / 2.0], [0.0, a]])
    else:
        points = np.asarray(vertices, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(
                "Argument `vertices` must be a sequence of at least two "
                f"(dy, dx) pairs. Received: vertices={vertices!r}"
            )
        if not np.all(np.isfinite(points)):
            raise ValueError(
                "Argument `vertices` must be finite. Received: "
                f"vertices={vertices!r}"
            )
    return points - points.min(axis=0)


def saccade_sensor_size(image_shape, amplitude=6.0, vertices=None):
    """The `(height, width)` of the simulated sensor for an image shape.

    The sensor covers every position of the moving image:
    `(H + ceil(max dy), W + ceil(max dx))`; 28x28 with the default
    triangle gives 34x34, the N-MNIST size.
    """
    height, width = (int(v) for v in tuple(image_shape)[:2])
    span = saccade_vertices(amplitude, vertices).max(axis=0)
    return height + math.ceil(span[0]), width + math.ceil(span[1])


def _shift(extended, dy, dx, out_shape):
    """Bilinear sample of `extended` at (row - dy + 1, col - dx + 1).

    `extended` is the image with a one-pixel border of background, so
    clipping indices to its edge samples the background.
    """
    last_row, last_col = extended.shape[0] - 1, extended.shape[1] - 1
    rows = np.arange(out_shape[0]) - dy + 1.0
    cols = np.arange(out_shape[1]) - dx + 1.0
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    fr = (rows - r0)[:, None]
    fc = (cols - c0)[None, :]
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    r_lo, r_hi = np.clip(r0, 0, last_row), np.clip(r0 + 1, 0, last_row)
    c_lo, c_hi = np.clip(c0, 0, last_col), np.clip(c0 + 1, 0, last_col)
    top = (
        extended[np.ix_(r_lo, c_lo)] * (1 - fc)
        + extended[np.ix_(r_lo, c_hi)] * fc
    )
    bottom = (
        extended[np.ix_(r_hi, c_lo)] * (1 - fc)
        + extended[np.ix_(r_hi, c_hi)] * fc
    )
    return top * (1 - fr) + bottom * fr


def _check_image(image, name="image"):
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"Argument `{name}` must be a grayscale image of shape (H, W) "
            f"or (H, W, 1). Received: shape {np.shape(image)}"
        )
    if array.dtype.kind not in "fiub":
        raise ValueError(
            f"Argument `{name}` must be numeric. Received: dtype {array.dtype}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"Argument `{name}` must hold intensities in [0, 1] (divide "
            f"uint8 images by 255). Received: values in [{array.min()}, "
            f"{array.max()}]"
        )
    return array


def image_to_events(
    image,
    duration_us=300_000,
    steps_per_saccade=100,
    threshold=0.2,
    amplitude=6.0,
    vertices=None,
    log_eps=0.1,
    background=None,
    threshold_mismatch=0.0,
    noise_rate_hz=0.0,
    seed=None,
):
    """Simulates an event camera making saccades over a static image.

    See the module docstring for the model.

    Args:
        image: grayscale intensities in [0, 1], shape `(H, W)` or
            `(H, W, 1)`.
        duration_us: int > 0, length of the recording in microseconds,
            shared equally by the saccades. Defaults to `300_000` (three
            100 ms saccades, as N-MNIST).
        steps_per_saccade: int >= 1, motion steps per saccade; each step
            moves the image `amplitude / steps_per_saccade` pixels or so,
            and event times are interpolated within a step. Defaults to
            `100` (1 ms steps).
        threshold: number > 0, contrast threshold in log intensity.
            Defaults to `0.2`.
        amplitude: number > 0, side of the default triangle in pixels.
            Defaults to `6.0`.
        vertices: optional `(dy, dx)` offsets replacing the triangle (see
            `saccade_vertices`).
        log_eps: number > 0, added to the intensity before the log.
            Defaults to `0.1`.
        background: intensity in [0, 1] seen outside the image, or `None`
            (default) for the mean of the image's outermost pixels.
        threshold_mismatch: number >= 0, standard deviation `sigma` of the
            per-pixel log-normal threshold spread. Defaults to `0.0`.
        noise_rate_hz: number >= 0, background-activity events per pixel
            per second, with random polarity. Defaults to `0.0`.
        seed: int or `None`, seeds the mismatch and the noise.

    Returns:
        Events of dtype `EVENT_DTYPE` sorted by time, with
        `0 <= t < duration_us`, `x < W'` and `y < H'` for the sensor size
        `(H', W') = saccade_sensor_size(image.shape, amplitude, vertices)`.
    """
    image = _check_image(image)
    duration_us = functional.validate_count(duration_us, "duration_us")
    steps_per_saccade = functional.validate_count(
        steps_per_saccade, "steps_per_saccade"
    )
    threshold = validate_positive(threshold, "threshold")
    log_eps = validate_positive(log_eps, "log_eps")
    mismatch = validate_number(
        threshold_mismatch,
        "threshold_mismatch",
        "a number >= 0",
        lambda v: v >= 0,
    )
    noise_rate = validate_number(
        noise_rate_hz, "noise_rate_hz", "a number >= 0", lambda v: v >= 0
    )
    if background is None:
        border = np.concatenate(
            [image[0], image[-1], image[1:-1, 0], image[1:-1, -1]]
        )
        background = float(border.mean())
    else:
        background = validate_number(
            background,
            "background",
            "a number in [0, 1]",
            lambda v: 0.0 <= v <= 1.0,
        )
    points = saccade_vertices(amplitude, vertices)
    height, width = image.shape
    out_shape = saccade_sensor_size(image.shape, amplitude, vertices)
    rng = np.random.default_rng(seed)

    extended = np.full((height + 2, width + 2), background)
    extended[1:-1, 1:-1] = image
    thresholds = np.full(out_shape, threshold)
    if mismatch > 0:
        thresholds *= np.exp(mismatch * rng.standard_normal(out_shape))

    # Offsets at every step boundary; the last equals the first exactly.
    saccades = len(points)
    steps = saccades * int(steps_per_saccade)
    offsets = np.empty((steps + 1, 2))
    for s in range(saccades):
        a, b = points[s], points[(s + 1) % saccades]
        frac = np.arange(steps_per_saccade)[:, None] / steps_per_saccade
        first = s * steps_per_saccade
        offsets[first : first + steps_per_saccade] = a + (b - a) * frac
    offsets[-1] = points[0]
    times = np.arange(steps + 1) * (float(duration_us) / steps)

    def log_view(k):
        seen = _shift(extended, offsets[k, 0], offsets[k, 1], out_shape)
        return np.log(seen + log_eps)

    previous = log_view(0)
    reference = previous.copy()
    chunks = []
    for k in range(1, steps + 1):
        current = log_view(k)
        change = current - reference
        counts = np.floor(
            np.abs(change) / thresholds + _LEVEL_TOLERANCE
        ).astype(np.int64)
        rows, cols = np.nonzero(counts)
        if rows.size:
            n = counts[rows, cols]
            sign = np.sign(change[rows, cols])
            step = thresholds[rows, cols]
            owner = np.repeat(np.arange(rows.size), n)
            j = np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n) + 1
            level = reference[rows, cols][owner] + (sign * step)[owner] * j
            low = previous[rows, cols][owner]
            high = current[rows, cols][owner]
            rise = np.where(high != low, high - low, 1.0)
            frac = np.clip((level - low) / rise, 0.0, 1.0)
            stamp = times[k - 1] + frac * (times[k] - times[k - 1])
            chunk = np.empty(owner.size, EVENT_DTYPE)
            chunk["t"] = np.minimum(np.floor(stamp), duration_us - 1)
            chunk["y"] = rows[owner]
            chunk["x"] = cols[owner]
            chunk["p"] = (sign[owner] > 0).astype(np.int8)
            chunks.append(chunk)
            reference[rows, cols] += sign * n * step
        previous = current

    if noise_rate > 0:
        expected = noise_rate * duration_us * 1e-6 * out_shape[0] * out_shape[1]
        count = int(rng.poisson(expected))
        noise = np.empty(count, EVENT_DTYPE)
        noise["t"] = rng.integers(0, duration_us, count)
        noise["y"] = rng.integers(0, out_shape[0], count)
        noise["x"] = rng.integers(0, out_shape[1], count)
        noise["p"] = rng.integers(0, 2, count)
        chunks.append(noise)
    if not chunks:
        return np.empty(0, EVENT_DTYPE)
    events = np.concatenate(chunks)
    return events[np.argsort(events["t"], kind="stable")]


def convert_images(images, labels, out_dir, format="nmnist", **kwargs):
    """Converts static images to event files plus a `labels.csv`.

    Writes `out_dir/000000.bin`, `000001.bin`, ... (`.aedat` for the AEDAT
    formats), one per image, and `out_dir/labels.csv` with the columns
    `file,label` (file names relative to `out_dir`). Every file is written
    to a temporary name and renamed, so an interrupted run leaves no
    partial file; `labels.csv` is written last.

    Args:
        images: array `(N, H, W)` or `(N, H, W, 1)` (or a sequence of
            images) with intensities in [0, 1].
        labels: `N` integer labels.
        out_dir: folder to write; created if missing.
        format: `"nmnist"` (default; the sensor must be at most 256x256
            and `duration_us` < 2**23), `"aedat2"` (DVS128 layout, at most
            128x128) or `"aedat31"`.
        **kwargs: passed to `image_to_events` (`duration_us`,
            `threshold`, `seed`, ...). With a `seed`, image `i` uses
            `seed + i`.

    Returns:
        The list of written event file paths, in image order.
    """
    if format not in _WRITERS:
        raise ValueError(
            f"Argument `format` must be one of {sorted(_WRITERS)}. "
            f"Received: format={format!r}"
        )
    writer, suffix = _WRITERS[format]
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            "Argument `labels` must be a 1-D sequence of integers. "
            f"Received: shape {labels.shape}, dtype {labels.dtype}"
        )
    if len(images) != len(labels):
        raise ValueError(
            "Arguments `images` and `labels` must have the same length. "
            f"Received: {len(images)} images, {len(labels)} labels"
        )
    seed = kwargs.pop("seed", None)
    fileio.ensure_folder(out_dir)
    paths = []
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(["file", "label"])
    for i, image in enumerate(images):
        image_seed = None if seed is None else int(seed) + i
        events = image_to_events(image, seed=image_seed, **kwargs)
        name = f"{i:06d}{suffix}"
        path = os.path.join(out_dir, name)
        writer(path, events)
        paths.append(path)
        table.writerow([name, int(labels[i])])
    fileio.write_text(os.path.join(out_dir, LABELS_FILE), rows.getvalue())
    return paths


def read_converted(out_dir):
    """Reads back the `labels.csv` that `convert_images` wrote.

    Returns:
        `(paths, labels)`: the event file paths and an int32 array of
        labels, ready for `keras_snn.datasets.event_dataset`.
    """
    path = os.path.join(out_dir, LABELS_FILE)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["file", "label"]:
        raise ValueError(
            f"{path!r} does not start with the header 'file,label'."
        )
    paths, labels = [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ValueError(
                f"{path!r}, line {number}: expected 'file,label'. "
                f"Received: {row!r}"
            )
        try:
            label = int(row[1])
        except ValueError:
            raise ValueError(
                f"{path!r}, line {number}: the label must be an integer. "
                f"Received: {row[1]!r}"
            ) from None
        paths.append(os.path.join(out_dir, row[0]))
        labels.append(label)
    return paths, np.asarray(labels, np.int32)
