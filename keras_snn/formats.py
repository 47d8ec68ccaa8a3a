"""What a file looks like, from its first bytes: for clear refusals.

The readers of keras_snn (event files, IDX files, `.keras` models) check
their own format; when a file is not what they read, they name what it
looks like instead ("it looks like a PNG image"), using `describe_file`.

Signatures are the files' published magic numbers (PNG, JPEG, GIF, zip,
gzip, NumPy `.npy`, HDF5, PDF, ELF, AEDAT version lines). Each entry says
whether its signature is long enough to be trusted on its own (`strong`):
a headerless format such as N-MNIST can start with any bytes, so a reader
of such a format refuses a file only for a strong signature, and uses a
weak one (2 or 3 bytes) only to explain another failure.
"""

import os
import re
import zipfile

HEAD_BYTES = 4096

# (signature, description, strong)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", True),
    (b"\xff\xd8\xff", "a JPEG image", False),
    (b"GIF87a", "a GIF image", True),
    (b"GIF89a", "a GIF image", True),
    (b"PK\x03\x04", "a zip archive", True),
    (b"PK\x05\x06", "an empty zip archive", True),
    (b"\x93NUMPY", "a NumPy .npy array", True),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (.h5)", True),
    (b"%PDF-", "a PDF document", True),
    (b"\x7fELF", "an ELF executable", True),
    (b"\x1f\x8b", "a gzip-compressed file", False),
    (b"\x80\x04\x95", "a Python pickle", False),
    (b"\x80\x05\x95", "a Python pickle", False),
)

_AEDAT = re.compile(rb"#!AER-DAT(\d+(?:\.\d+)?)")


def aedat_version(head):
    """The version of an AEDAT file's first line ("2.0", "3.1", ...).

    Args:
        head: the first bytes of the file.

    Returns:
        The version as a string, or `None` if `head` does not start with an
        AEDAT version line `#!AER-DAT<version>`.
    """
    match = _AEDAT.match(head)
    return match.group(1).decode("ascii") if match else None


def is_text(head):
    """Whether `head` (bytes) reads as printable UTF-8 text.

    A multi-byte character cut at the end of `head` is allowed.
    """
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        cut = error.reason == "unexpected end of data"
        if not cut or error.start < len(head) - 3:
            return False
        text = head[: error.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def describe(head, path=None):
    """Names the format that the bytes `head` start, if it is a known one.

    Args:
        head: the first bytes of a file (a few hundred are enough).
        path: optional, the file they come from: a zip archive is then
            told apart further (a Keras `.keras` model, a NumPy `.npz`
            archive, another zip archive, or a truncated one).

    Returns:
        `(description, strong)`: e.g. `("a PNG image", True)`, with
        `strong` telling whether the signature is long enough to be
        trusted alone; `(None, False)` if nothing is recognised.
    """
    version = aedat_version(head)
    if version is not None:
        return f"an AEDAT {version} event file", True
    for signature, description, strong in _SIGNATURES:
        if head.startswith(signature):
            if path is not None and description.endswith("zip archive"):
                description = _zip_kind(os.fspath(path))
            return description, strong
    if is_text(head):
        return "a text file", True
    return None, False


def looks_like(data, path=None):
    """The clause a refusal appends to name what a file seems to be.

    Args:
        data: the file's bytes, or its first `HEAD_BYTES` of them.
        path: optional, the file (see `describe`).

    Returns:
        `" (it looks like a PNG image)"` for a recognised format, else
        `""`.
    """
    description, _ = describe(data[:HEAD_BYTES], path)
    return f" (it looks like {description})" if description else ""


def _zip_kind(path):
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "a truncated or corrupt zip archive"
    if "config.json" in names and "metadata.json" in names:
        return "a Keras .keras model archive"
    if names and all(name.endswith(".npy") for name in names):
        return "a NumPy .npz archive"
    return "a zip archive"


def describe_file(path):
    """Names the format of the file at `path`, if it is a known one.

    Zip archives are told apart further (see `describe`).

    Args:
        path: str or path-like, an existing file.

    Returns:
        `(description, strong)` as for `describe`; an empty file gives
        `("an empty file", True)`.
    """
    with open(path, "rb") as file:
        head = file.read(HEAD_BYTES)
    if not head:
        return "an empty file", True
    return describe(head, path)
