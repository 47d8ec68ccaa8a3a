"""IDX files, the format of MNIST and Fashion-MNIST: `read_idx`.

Also finds and reads the four official IDX files of a data set in a
folder (`find_idx_set`, `read_idx_set`), gzipped or not.
"""

import gzip
import math
import os
import struct
import zlib

import numpy as np

from keras_snn import formats

__all__ = ["read_idx"]

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# IDX type codes: the third byte of the magic number.
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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
        looks = formats.looks_like(data, path)
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


def _idx_candidates(stem):
    dotted = stem.replace("-idx", ".idx")
    return (stem, stem + ".gz", dotted, dotted + ".gz")


def find_idx_set(folder):
    """Returns `(paths, note)`: the four IDX files, or `None` and why."""
    if not os.path.isdir(folder):
        return None, ": no such folder"
    paths = []
    for stem in IDX_STEMS:
        match = None
        for candidate in _idx_candidates(stem):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                match = path
                break
        paths.append(match)
    if all(paths):
        return tuple(paths), ""
    pairs = list(zip(IDX_STEMS, paths, strict=True))
    if not any(paths):
        return None, ": no IDX files"
    missing = [stem for stem, path in pairs if not path]
    return None, f": incomplete, missing {', '.join(missing)}"


def read_idx_set(paths):
    """Reads the four IDX files into `(train, test)` `(images, labels)`."""
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
