"""Static image data sets: digits, MNIST, Fashion-MNIST and CIFAR-10.

Two entry points:

- `load_arrays(name)` returns NumPy arrays
  `((x_train, y_train), (x_test, y_test))`: float32 images in [0, 1] with a
  channel axis, `(N, H, W, C)`, and int32 labels.
- `load(name, split)` returns a batched, prefetching `tf.data.Dataset` of
  `(images, labels)` with the preprocessing of the papers: CIFAR-10 is
  standardised per RGB channel and its training images are randomly cropped
  (4 pixels of zero padding, 32x32 crop) and flipped horizontally; the
  MNIST-like sets stay in [0, 1] and are not augmented.

Where the data comes from, in this order (MNIST, Fashion-MNIST, CIFAR-10):

1. Local files, found at once and read without network:
   - the folder given as `data_dir`, else the folder in the environment
     variable `KERAS_SNN_DATA_DIR`; in that folder, first a subfolder named
     after the data set (`mnist/`, `fashion_mnist/` or `fashion-mnist/`,
     `cifar10/` or `cifar-10/`), then the folder itself;
   - the folders of Debian packages: `/usr/share/datasets/fashion-mnist`
     (package `dataset-fashion-mnist`). Debian has no MNIST or CIFAR-10
     package.

   MNIST and Fashion-MNIST are the four official IDX files
   (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
   `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), gzipped (`.gz`) or
   not. CIFAR-10 is the official "python version": the folder
   `cifar-10-batches-py` (`data_batch_1` ... `data_batch_5`, `test_batch`),
   or the archive `cifar-10-python.tar.gz` itself.
2. tensorflow-datasets, only if it is installed and either has the data set
   prepared already in its data folder (no network needed) or its storage
   server answers a 2 s connection probe.
3. Otherwise a `DatasetNotFoundError` (a `FileNotFoundError`) is raised at
   once, saying where it looked and how to get the data. It never waits on
   an absent network.

`"digits"` is scikit-learn's 8x8 digits data set, which ships with
scikit-learn, split 80/20 as in `examples/quickstart_digits.py`.
"""

import os

import numpy as np

from keras_snn.datasets.catalog import SPLITS
from keras_snn.datasets.catalog import DatasetNotFoundError
from keras_snn.datasets.catalog import info
from keras_snn.datasets.cifar import read_cifar
from keras_snn.datasets.idx import read_idx_set
from keras_snn.datasets.image_pipeline import channel_stats
from keras_snn.datasets.image_pipeline import pipeline
from keras_snn.datasets.sources import find_local
from keras_snn.datasets.sources import not_found_message
from keras_snn.datasets.tfds_fallback import tfds_arrays

__all__ = ["load", "load_arrays"]


def load_arrays(name, data_dir=None):
    """Loads a data set as NumPy arrays.

    See the module docstring for where the data is looked for. Nothing is
    downloaded unless tensorflow-datasets is installed and its server
    answers; with no data and no network this raises at once.

    Args:
        name: str. `"digits"` (scikit-learn's 8x8 digits, a stratified
            80/20 split with seed 0: 1437 training and 360 test images),
            `"mnist"`, `"fashion_mnist"` (28x28x1) or `"cifar10"`
            (32x32x3).
        data_dir: str or path-like, optional. Folder holding the data set's
            files, directly or in a subfolder named after it. Defaults to
            the environment variable `KERAS_SNN_DATA_DIR`. The Debian
            folders are searched after it. Ignored for `"digits"`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images as float32 arrays
        of shape `(N, H, W, C)` with values in [0, 1], labels as int32
        arrays of shape `(N,)`.

    Raises:
        ValueError: if `name` is unknown, or a data file is corrupt
            (the message names the file and what is wrong).
        DatasetNotFoundError: a `FileNotFoundError`, if the data set is
            neither on disk nor downloadable; the message says where it
            looked and how to get the data.
        ImportError: for `"digits"`, if scikit-learn is not installed.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        "fashion_mnist"
    )
    x_train.shape, x_train.dtype  # ((60000, 28, 28, 1), dtype('float32'))
    ```
    """
    (x_train, y_train), (x_test, y_test), scale = _load_raw(name, data_dir)
    train = (_to_unit(x_train, scale), y_train)
    return train, (_to_unit(x_test, scale), y_test)


def load(
    name,
    split="train",
    batch_size=64,
    shuffle=None,
    augment=None,
    normalize=None,
    validation_split=None,
    data_dir=None,
    seed=0,
    drop_remainder=False,
):
    """Loads a data set as a batched `tf.data.Dataset` of `(images, labels)`.

    Images are float32 `(batch, H, W, C)`, labels int32 `(batch,)`. The
    data is read once into memory (as uint8) and converted batch by batch;
    the dataset prefetches, so it can be passed straight to `model.fit`.

    Preprocessing follows the papers:

    - CIFAR-10: the training split is augmented with a random crop (4
      pixels of zero padding on each side, then a random 32x32 crop) and a
      random horizontal flip; then every image is standardised per RGB
      channel, `(x - mean[c]) / std[c]`, with the mean and standard
      deviation of the pixel intensities of the official training split
      (Zheng et al. 2021, App. C).
    - digits, MNIST, Fashion-MNIST: pixel values in [0, 1], no augmentation
      (Wu et al. 2019).

    Shuffling and augmentation are drawn from a `tf.random.Generator`
    seeded with `seed`: two datasets built with the same arguments give the
    same batches, whatever the global TensorFlow seed, and each new pass
    over a dataset (each epoch) draws a new order and new augmentations.

    Args:
        name: str. `"digits"`, `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
        split: str. `"train"`, `"test"`, or `"validation"` (which needs
            `validation_split`). Defaults to `"train"`.
        batch_size: int >= 1. Defaults to `64`.
        shuffle: bool. Reshuffle on every pass. Defaults to `None`: `True`
            for the training split, `False` otherwise.
        augment: bool. Random crop and flip. Defaults to `None`: `True` for
            the training split of CIFAR-10, `False` otherwise. Only
            CIFAR-10 has an augmentation; `True` for another data set
            raises.
        normalize: bool. Standardise per channel with the training split's
            statistics. Defaults to `None`: `True` for CIFAR-10, `False`
            (values in [0, 1]) for the others.
        validation_split: float in (0, 1), optional. Hold out this fraction
            of the official training split, chosen at random with `seed`:
            `split="train"` then gives the rest and `split="validation"`
            the held-out part. Pass the same `seed` to both calls.
            Normalisation statistics always come from the whole official
            training split.
        data_dir: str or path-like, optional. See `load_arrays`.
        seed: int. Seed of the shuffling, the augmentation and the
            validation split. Defaults to `0`.
        drop_remainder: bool. Drop the last batch if it is smaller than
            `batch_size`. Defaults to `False`.

    Returns:
        A `tf.data.Dataset` yielding `(images, labels)` batches, of known
        cardinality.

    Raises:
        ValueError: if an argument is invalid (the message names it and the
            value received) or a data file is corrupt.
        DatasetNotFoundError: see `load_arrays`.

    Example:

    ```python
    train = keras_snn.datasets.load("cifar10", "train", batch_size=128)
    test = keras_snn.datasets.load("cifar10", "test", batch_size=256)
    model.fit(train, validation_data=test, epochs=100)
    ```

    Reference:
        - [Zheng et al. 2021, Going Deeper With Directly-Trained Larger
          Spiking Neural Networks](https://arxiv.org/abs/2011.05280)
    """
    meta = info(name)
    if split not in SPLITS:
        raise ValueError(
            f"Argument `split` must be one of {SPLITS}. Received: "
            f"split={split!r}"
        )
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    if validation_split is not None:
        validation_split = _check_fraction(validation_split)
    elif split == "validation":
        raise ValueError(
            "split='validation' needs `validation_split`, the fraction of "
            "the training split to hold out. Received: validation_split=None"
        )
    for arg, value in (
        ("shuffle", shuffle),
        ("augment", augment),
        ("normalize", normalize),
        ("drop_remainder", drop_remainder),
    ):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"Argument `{arg}` must be True, False or None. Received: "
                f"{arg}={value!r}"
            )
    if augment and not meta.augment:
        raise ValueError(
            f"Argument `augment`: {name!r} has no augmentation (only "
            "cifar10 has one: random crop and horizontal flip). Received: "
            f"augment={augment!r}"
        )
    if shuffle is None:
        shuffle = split == "train"
    if augment is None:
        augment = split == "train" and meta.augment
    if normalize is None:
        normalize = meta.normalize

    (x_train, y_train), (x_test, y_test), scale = _load_raw(name, data_dir)
    stats = channel_stats(x_train, scale) if normalize else None
    if split == "test":
        images, labels = x_test, y_test
    elif validation_split is None:
        images, labels = x_train, y_train
    else:
        order = np.random.default_rng(seed).permutation(len(y_train))
        held_out = min(
            len(order) - 1, max(1, round(validation_split * len(order)))
        )
        if held_out < 1:
            raise ValueError(
                f"Argument `validation_split`: the training split of "
                f"{name!r} has {len(order)} image(s), too few to hold some "
                "out and keep some. Received: "
                f"validation_split={validation_split!r}"
            )
        if split == "validation":
            index = np.sort(order[len(order) - held_out :])
        else:
            index = np.sort(order[: len(order) - held_out])
        images, labels = x_train[index], y_train[index]
    return pipeline(
        images,
        labels,
        scale,
        batch_size=batch_size,
        shuffle=bool(shuffle),
        augment=bool(augment),
        stats=stats,
        seed=seed,
        drop_remainder=bool(drop_remainder),
    )


# --------------------------------------------------------------------------
# Argument checks


def _check_int(value, name, minimum):
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. Received: "
            f"{name}={value!r}"
        )
    return int(value)


def _check_fraction(value):
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not 0.0 < number < 1.0:
        raise ValueError(
            "Argument `validation_split` must be a number in (0, 1). "
            f"Received: validation_split={value!r}"
        )
    return number


# --------------------------------------------------------------------------
# Raw arrays: uint8 images (N, H, W, C), int32 labels, and the scale that
# maps the integer values to [0, 1].


def _to_unit(images, scale):
    return images.astype(np.float32) / np.float32(scale)


def _load_raw(name, data_dir):
    meta = info(name)
    if name == "digits":
        return _load_digits()
    searched = []
    found = find_local(name, data_dir, searched)
    if found is None:
        arrays, note = tfds_arrays(name)
        if arrays is None:
            raise DatasetNotFoundError(not_found_message(name, searched, note))
        train, test = arrays
        source = "tensorflow-datasets"
    elif name == "cifar10":
        train, test = read_cifar(found)
        source = found[1]
    else:
        train, test = read_idx_set(found)
        source = os.path.dirname(found[0])
    train = _check_arrays(train, meta, "training", source)
    test = _check_arrays(test, meta, "test", source)
    return train, test, 255.0


def _load_digits():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError(
            "The 'digits' data set comes from scikit-learn, which is not "
            "installed: pip install scikit-learn"
        ) from err
    data = load_digits()
    images = data.images.astype(np.uint8)[..., None]  # values 0 .. 16
    labels = data.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test), 16.0


def _check_arrays(pair, meta, which, source):
    images, labels = pair
    images = np.asarray(images)
    labels = np.asarray(labels)
    where = f" (from {source})"
    if len(images) == 0:
        raise ValueError(
            f"The {which} split of {meta.name!r}{where} has 0 images; it "
            "needs at least one."
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:] != tuple(meta.input_shape) or images.dtype != np.uint8:
        raise ValueError(
            f"The {which} images of {meta.name!r}{where} have shape "
            f"{images.shape[1:]} and dtype {images.dtype}; expected "
            f"{tuple(meta.input_shape)} and uint8."
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"The {which} labels of {meta.name!r}{where} have shape "
            f"{labels.shape}; expected ({len(images)},), one per image."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"The {which} labels of {meta.name!r}{where} have dtype "
            f"{labels.dtype}; expected integers in [0, "
            f"{meta.num_classes - 1}]."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= meta.num_classes):
        raise ValueError(
            f"The {which} labels of {meta.name!r}{where} range over "
            f"[{labels.min()}, {labels.max()}]; expected integers in "
            f"[0, {meta.num_classes - 1}]."
        )
    return images, labels.astype(np.int32)
