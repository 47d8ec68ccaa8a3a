"""Event files to a `tf.data` pipeline of frames: `event_dataset`.

`event_dataset` turns a list of event files (N-MNIST, AEDAT 2.0, AEDAT 3.1
or any reader) into a batched `tf.data.Dataset` of the frames of
`keras_snn.datasets.events_to_frames`.
"""

import os

import numpy as np
import tensorflow as tf

from keras_snn import formats
from keras_snn import functional
from keras_snn.datasets import aedat2
from keras_snn.datasets import aedat31
from keras_snn.datasets import nmnist
from keras_snn.datasets.frames import events_to_frames
from keras_snn.datasets.frames import frame_geometry

__all__ = ["event_dataset"]

# The built-in readers by name, and the check of a file's first bytes and
# size that `event_dataset` runs on every file of each before building its
# pipeline.
_READERS = {
    "nmnist": nmnist.read_nmnist,
    "aedat2": aedat2.read_aedat2,
    "aedat31": aedat31.read_aedat31,
}
_HEAD_CHECKS = {
    nmnist.read_nmnist: nmnist.check_head,
    aedat2.read_aedat2: aedat2.check_head,
    aedat31.read_aedat31: aedat31.check_head,
}


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
    _, _, out_h, out_w = frame_geometry(
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
