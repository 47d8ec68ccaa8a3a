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

import dataclasses
import glob
import gzip
import importlib.util
import math
import os
import pickle
import socket
import struct
import tarfile
import threading
import zlib

import numpy as np
import tensorflow as tf

from keras_snn import formats

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetInfo",
    "DatasetNotFoundError",
    "info",
    "load",
    "load_arrays",
    "read_idx",
]

DATA_DIR_ENV = "KERAS_SNN_DATA_DIR"

SPLITS = ("train", "test", "validation")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set.

    Attributes:
        name: the name `load` and `load_arrays` accept.
        input_shape: shape of one image, `(height, width, channels)`.
        num_classes: number of classes; labels are `0 .. num_classes - 1`.
        train_size: number of images in the official training split.
        test_size: number of images in the official test split.
        class_names: one name per label.
        augment: whether `load` augments the training split by default.
        normalize: whether `load` standardises per channel by default.
    """

    name: str
    input_shape: tuple
    num_classes: int
    train_size: int
    test_size: int
    class_names: tuple
    augment: bool = False
    normalize: bool = False


_DIGIT_NAMES = tuple(str(i) for i in range(10))

DATASETS = {
    "digits": DatasetInfo("digits", (8, 8, 1), 10, 1437, 360, _DIGIT_NAMES),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, 60000, 10000, _DIGIT_NAMES),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        (28, 28, 1),
        10,
        60000,
        10000,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (32, 32, 3),
        10,
        50000,
        10000,
        (
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        augment=True,
        normalize=True,
    ),
}

# Subfolders of `data_dir` / $KERAS_SNN_DATA_DIR looked at before the folder
# itself, so that one folder can hold several data sets.
_SUBDIRS = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar10", "cifar-10"),
}

# Folders installed by Debian packages (checked with `dpkg -L`).
_DEBIAN_DIRS = {
    "fashion_mnist": (
        ("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
    ),
}

_IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"

# IDX type codes: the third byte of the magic number.
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_TFDS_HOST = ("storage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 2.0


class DatasetNotFoundError(FileNotFoundError):
    """No local copy of a data set was found and none could be downloaded.

    The message lists the folders searched and the ways to get the data.
    """


def info(name):
    """Returns the `DatasetInfo` of a data set.

    Args:
        name: str. One of `"digits"`, `"mnist"`, `"fashion_mnist"`,
            `"cifar10"`.

    Returns:
        A `DatasetInfo` with the input shape, the number of classes, the
        split sizes, the class names and the defaults of `load`.

    Raises:
        ValueError: if `name` is not a known data set.

    Example:

    ```python
    meta = keras_snn.datasets.info("cifar10")
    meta.input_shape, meta.num_classes  # ((32, 32, 3), 10)
    ```
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"Argument `name` must be one of {sorted(DATASETS)}. Received: "
            f"name={name!r}"
        )
    return DATASETS[name]


def read_idx(path):
    """Reads an IDX file (the format of MNIST) into a NumPy array.

    An IDX file is a 4-byte magic number (two zero bytes, a type code and
    the number of dimensions), one big-endian uint32 per dimension, then
    the values in C order, big-endian. Type codes: 0x08 uint8, 0x09 int8,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Gzipped files are
    recognised by their content, whatever their name.

    Args:
        path: str or path-like. The file to read.

    Returns:
        A NumPy array of the file's shape and type, in native byte order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is not a valid IDX file: a bad magic number,
            a truncated header, a data size that does not match the shape
            in the header, or a corrupt gzip stream. The message names the
            file.

    Example:

    ```python
    labels = keras_snn.datasets.read_idx("t10k-labels-idx1-ubyte.gz")
    labels.shape  # (10000,)
    ```
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        gzipped = file.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as file:
            data = file.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(
            f"Could not read the IDX file {path}: its gzip stream is "
            f"corrupt or truncated ({err})."
        ) from err
    if not data:
        raise ValueError(f"{path} is not an IDX file: it is empty (0 bytes).")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        description, _ = formats.describe(data[: formats.HEAD_BYTES], path)
        looks = f" (it looks like {description})" if description else ""
        raise ValueError(
            f"{path} is not an IDX file: bad magic number "
            f"0x{data[:4].hex()}{looks}. An IDX file starts with two zero "
            "bytes, a type code and the number of dimensions (0x00000803 "
            "for MNIST images, 0x00000801 for labels)."
        )
    if data[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number "
            f"0x{data[:4].hex()}, unknown type code 0x{data[2]:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_TYPES)})."
        )
    dtype = _IDX_TYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path} is truncated: its magic number announces {ndim} "
            f"dimensions ({header} header bytes) but the file has only "
            f"{len(data)} bytes."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape) * dtype.itemsize  # no int64 overflow
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "too long"
        raise ValueError(
            f"{path} is {what}: size mismatch, its header gives shape "
            f"{shape} of {dtype.name} ({expected} data bytes) but the file "
            f"has {actual} data bytes."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


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
    stats = _channel_stats(x_train, scale) if normalize else None
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
    return _pipeline(
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
    found = _find_local(name, data_dir, searched)
    if found is None:
        arrays, note = _tfds_arrays(name)
        if arrays is None:
            raise DatasetNotFoundError(_not_found_message(name, searched, note))
        train, test = arrays
        source = "tensorflow-datasets"
    elif name == "cifar10":
        train, test = _read_cifar(found)
        source = found[1]
    else:
        train, test = _read_idx_set(found)
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


# --------------------------------------------------------------------------
# Local files


def _search_dirs(name, data_dir):
    """Folders to look in, in order, each with where it came from."""
    roots = []
    if data_dir is not None:
        roots.append((os.fspath(data_dir), "data_dir"))
    elif os.environ.get(DATA_DIR_ENV):
        roots.append((os.environ[DATA_DIR_ENV], DATA_DIR_ENV))
    dirs = []
    for root, origin in roots:
        root = os.path.expanduser(root)
        for sub in _SUBDIRS[name]:
            dirs.append((os.path.join(root, sub), origin))
        dirs.append((root, origin))
    for folder, package in _DEBIAN_DIRS.get(name, ()):
        dirs.append((folder, f"Debian package {package}"))
    return dirs


def _find_local(name, data_dir, searched):
    """Returns the first usable local source, or None; fills `searched`."""
    finder = _find_cifar if name == "cifar10" else _find_idx_set
    for folder, origin in _search_dirs(name, data_dir):
        found, note = finder(folder)
        if found is not None:
            return found
        searched.append(f"{folder} ({origin}){note}")
    return None


def _idx_candidates(stem):
    dotted = stem.replace("-idx", ".idx")
    return (stem, stem + ".gz", dotted, dotted + ".gz")


def _find_idx_set(folder):
    if not os.path.isdir(folder):
        return None, ": no such folder"
    paths = []
    for stem in _IDX_STEMS:
        match = None
        for candidate in _idx_candidates(stem):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                match = path
                break
        paths.append(match)
    if all(paths):
        return tuple(paths), ""
    pairs = list(zip(_IDX_STEMS, paths, strict=True))
    if not any(paths):
        return None, ": no IDX files"
    missing = [stem for stem, path in pairs if not path]
    return None, f": incomplete, missing {', '.join(missing)}"


def _read_idx_set(paths):
    arrays = [read_idx(path) for path in paths]
    for path, array, ndim in zip(paths, arrays, (3, 1, 3, 1), strict=True):
        if array.ndim != ndim:
            raise ValueError(
                f"{path} holds an array of shape {array.shape}; expected "
                f"{ndim} dimension(s)."
            )
    for i in (0, 2):
        if len(arrays[i]) == 0:
            raise ValueError(
                f"{paths[i]} holds 0 images (shape {arrays[i].shape}); a "
                "data set split needs at least one."
            )
        if len(arrays[i]) != len(arrays[i + 1]):
            raise ValueError(
                f"{paths[i + 1]} has {len(arrays[i + 1])} labels but "
                f"{paths[i]} has {len(arrays[i])} images."
            )
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def _find_cifar(folder):
    if not os.path.isdir(folder):
        return None, ": no such folder"
    names = _CIFAR_TRAIN + (_CIFAR_TEST,)
    for batches in (os.path.join(folder, _CIFAR_FOLDER), folder):
        present = [n for n in names if os.path.isfile(os.path.join(batches, n))]
        if len(present) == len(names):
            return ("dir", batches), ""
        if present:
            missing = sorted(set(names) - set(present))
            return None, f": incomplete, missing {', '.join(missing)}"
    archive = os.path.join(folder, _CIFAR_ARCHIVE)
    if os.path.isfile(archive):
        return ("tar", archive), ""
    return None, f": no {_CIFAR_FOLDER} or {_CIFAR_ARCHIVE}"


def _read_cifar(source):
    kind, path = source
    if kind == "dir":

        def read(member):
            with open(os.path.join(path, member), "rb") as file:
                return _unpickle_batch(file.read(), os.path.join(path, member))

    else:
        try:
            archive = tarfile.open(path, "r:gz")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(
                f"Could not open the CIFAR-10 archive {path}: {err}"
            ) from err

        def read(member):
            full = f"{_CIFAR_FOLDER}/{member}"
            try:
                file = archive.extractfile(full)
                data = file.read() if file is not None else None
            except KeyError:
                data = None
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                raise ValueError(
                    f"The CIFAR-10 archive {path} is corrupt: {err}"
                ) from err
            if data is None:
                raise ValueError(
                    f"The CIFAR-10 archive {path} has no member {full}."
                )
            return _unpickle_batch(data, f"{path}:{full}")

    try:
        train = [read(member) for member in _CIFAR_TRAIN]
        test = read(_CIFAR_TEST)
    finally:
        if kind == "tar":
            archive.close()
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return (x_train, y_train), test


def _unpickle_batch(data, where):
    # The official CIFAR-10 batches are Python pickles: only read files
    # from a trusted source.
    try:
        batch = pickle.loads(data, encoding="bytes")  # noqa: S301
    except Exception as err:
        raise ValueError(
            f"{where} is not a CIFAR-10 python batch (unpickling failed: "
            f"{err})."
        ) from err
    if not isinstance(batch, dict):
        raise ValueError(f"{where} is not a CIFAR-10 python batch.")
    images = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if images is None or labels is None:
        raise ValueError(
            f"{where} is not a CIFAR-10 python batch: it has no 'data' and "
            "'labels' entries."
        )
    images = np.asarray(images)
    labels = np.asarray(labels)
    if (
        images.ndim != 2
        or images.shape[1] != 3072
        or len(labels) != len(images)
    ):
        raise ValueError(
            f"{where} is not a CIFAR-10 python batch: 'data' has shape "
            f"{images.shape} and 'labels' {labels.shape}; expected (N, 3072) "
            "and (N,)."
        )
    if images.dtype != np.uint8 and (
        images.dtype.kind not in "iu"
        or (images.size and (images.min() < 0 or images.max() > 255))
    ):
        raise ValueError(
            f"{where} is not a CIFAR-10 python batch: 'data' must hold "
            f"pixel values 0..255 (uint8). Received: dtype {images.dtype}"
            + (
                f", values in [{images.min()}, {images.max()}]"
                if images.size and images.dtype.kind in "iuf"
                else ""
            )
        )
    images = images.astype(np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), labels


# --------------------------------------------------------------------------
# tensorflow-datasets fallback. Small functions, so that tests can replace
# each of them.


def _tfds_installed():
    return importlib.util.find_spec("tensorflow_datasets") is not None


def _tfds_data_dir():
    return os.path.expanduser(
        os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    )


def _tfds_prepared(name):
    """Whether tfds has `name` prepared on disk already (no network)."""
    pattern = os.path.join(_tfds_data_dir(), name, "*", "dataset_info.json")
    return bool(glob.glob(pattern))


def _network_available(address=_TFDS_HOST, timeout=_PROBE_TIMEOUT_S):
    """Whether a TCP connection to `address` opens within `timeout` s.

    Runs in a daemon thread so that a slow name lookup cannot make it wait
    longer than `timeout`.
    """
    result = []

    def probe():
        try:
            with socket.create_connection(address, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _tfds_load(name, download):
    """Loads `name` through tfds as uint8 NumPy arrays."""
    import tensorflow_datasets as tfds

    train, test = tfds.as_numpy(
        tfds.load(
            name,
            split=["train", "test"],
            as_supervised=True,
            batch_size=-1,
            download=download,
        )
    )
    return (train[0], train[1]), (test[0], test[1])


def _tfds_arrays(name):
    """Returns `(arrays, note)`; `arrays` is None when tfds cannot help."""
    if not _tfds_installed():
        return None, "tensorflow-datasets is not installed."
    if _tfds_prepared(name):
        return _tfds_load(name, download=False), ""
    host, port = _TFDS_HOST
    if not _network_available():
        return None, (
            f"tensorflow-datasets is installed but has no prepared copy of "
            f"{name!r} in {_tfds_data_dir()}, and {host}:{port} did not "
            f"answer within {_PROBE_TIMEOUT_S:g} s (no network?)."
        )
    return _tfds_load(name, download=True), ""


def _not_found_message(name, searched, note):
    if name == "cifar10":
        files = (
            f"the folder {_CIFAR_FOLDER} (data_batch_1..5, test_batch) or "
            f"the archive {_CIFAR_ARCHIVE}"
        )
        get = (
            f"download {_CIFAR_ARCHIVE} (the CIFAR-10 'python version') "
            "into a folder, extracted or not,"
        )
    else:
        files = "the IDX files " + ", ".join(
            f"{stem}[.gz]" for stem in _IDX_STEMS
        )
        get = "download the four IDX files (gzipped or not) into a folder"
    lines = [
        f"Could not find the {name!r} data set. Looked for {files} in:",
        *(f"  - {entry}" for entry in searched),
    ]
    if not searched:
        lines.append(f"  (no folder: pass `data_dir` or set {DATA_DIR_ENV})")
    lines += [f"No download: {note}", "To get the data, either:"]
    if name in _DEBIAN_DIRS:
        for folder, package in _DEBIAN_DIRS[name]:
            lines.append(
                f"  - on Debian/Ubuntu: apt-get install {package} "
                f"(installs {folder});"
            )
    lines += [
        f"  - {get} and pass it as `data_dir`, or set {DATA_DIR_ENV} to it "
        f"(a subfolder named {_SUBDIRS[name][0]!r} inside it works too);",
        "  - pip install tensorflow-datasets and run once with network "
        "access, which downloads and prepares it.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# tf.data pipeline


def _channel_stats(images, scale):
    """Per-channel mean and standard deviation of `images / scale`.

    Exact, from a histogram of the integer values of each channel.
    """
    values = np.arange(256, dtype=np.float64) / scale
    means, stds = [], []
    for channel in range(images.shape[-1]):
        counts = np.bincount(images[..., channel].ravel(), minlength=256)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(mean)
        stds.append(np.sqrt(var))
    stds = np.maximum(np.array(stds, np.float32), 1e-7)
    return np.array(means, np.float32), stds


def _random_crop_flip(images, generator, padding=4):
    """Pads by `padding` zeros, crops back at random offsets, flips half.

    One offset and one flip per image, drawn from `generator`.
    """
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    padded = tf.pad(
        images, [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    )
    offsets = generator.uniform(
        [batch, 2], minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    flip = generator.uniform([batch, 1]) < 0.5
    cols = tf.where(flip, tf.reverse(cols, axis=[1]), cols)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    out.set_shape(images.shape)
    return out


def _pipeline(
    images,
    labels,
    scale,
    batch_size,
    shuffle,
    augment,
    stats,
    seed,
    drop_remainder,
):
    count = len(labels)
    with tf.device("/cpu:0"):
        images = tf.convert_to_tensor(images)
        labels = tf.convert_to_tensor(labels)
        generator = tf.random.Generator.from_seed(seed)
    if shuffle:
        # A new permutation on each pass: the generator's state advances.
        index = tf.data.Dataset.from_tensors(0).map(
            lambda _: tf.argsort(generator.uniform([count]))
        )
        index = index.unbatch().apply(
            tf.data.experimental.assert_cardinality(count)
        )
    else:
        index = tf.data.Dataset.range(count)
    dataset = index.batch(batch_size, drop_remainder=drop_remainder)
    mean = std = None
    if stats is not None:
        mean = tf.constant(stats[0])
        std = tf.constant(stats[1])

    def prepare(batch_index):
        x = tf.cast(tf.gather(images, batch_index), tf.float32) / scale
        if augment:
            x = _random_crop_flip(x, generator)
        if mean is not None:
            x = (x - mean) / std
        return x, tf.gather(labels, batch_index)

    # Sequential map: the generator is drawn in a fixed order.
    return dataset.map(prepare).prefetch(tf.data.AUTOTUNE)
