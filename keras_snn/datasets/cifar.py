"""CIFAR-10's official "python version": its batches, folder or archive.

`find_cifar` looks in a folder for `cifar-10-batches-py` (`data_batch_1`
... `data_batch_5`, `test_batch`) or the archive `cifar-10-python.tar.gz`;
`read_cifar` reads it into uint8 images `(N, 32, 32, 3)` and labels.
"""

import os
import pickle
import tarfile
import zlib

import numpy as np

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


def find_cifar(folder):
    """Returns `(source, note)`: `("dir"|"tar", path)` or `None` and why."""
    if not os.path.isdir(folder):
        return None, ": no such folder"
    names = _CIFAR_TRAIN + (_CIFAR_TEST,)
    for batches in (os.path.join(folder, CIFAR_FOLDER), folder):
        present = [n for n in names if os.path.isfile(os.path.join(batches, n))]
        if len(present) == len(names):
            return ("dir", batches), ""
        if present:
            missing = sorted(set(names) - set(present))
            return None, f": incomplete, missing {', '.join(missing)}"
    archive = os.path.join(folder, CIFAR_ARCHIVE)
    if os.path.isfile(archive):
        return ("tar", archive), ""
    return None, f": no {CIFAR_FOLDER} or {CIFAR_ARCHIVE}"


def read_cifar(source):
    """Reads a `find_cifar` source into `(train, test)` `(images, labels)`."""
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
            full = f"{CIFAR_FOLDER}/{member}"
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
