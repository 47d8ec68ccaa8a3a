"""Atomic file output: the one way keras_snn and edge write files.

Every file is written to a temporary file in the target's own folder,
flushed and `fsync`ed, given the permissions a plainly created file would
get (0666 less the process umask; `tempfile.mkstemp` alone would leave
0600), and renamed over the target with `os.replace`, which is atomic on
POSIX and Windows. A reader therefore sees the old file or the new one,
never a half-written one; a killed process leaves at most a hidden
`.<name>.<random>.tmp` file, which `remove_stale_temporaries` cleans.

Operating-system failures (disk full, read-only folder, a path below a
file, ...) are raised as `OutputError`, an `OSError` whose message names
the file, the folder and the cause in one line.

Example:

```python
from keras_snn import fileio

with fileio.atomic_write("runs/a/metrics.json", "w") as f:
    f.write("{}")
fileio.write_json({"accuracy": 0.9}, "runs/a/metrics.json")
with fileio.atomic_path("runs/a/model.keras") as tmp:
    model.save(tmp)  # any library that writes to a path
```
"""

import contextlib
import errno
import json
import os
import tempfile

TEMPORARY_SUFFIX = ".tmp"

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a component of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder",
    errno.ENOENT: "the folder does not exist",
}


class OutputError(OSError):
    """A file could not be written; the message says which and why."""


def describe_os_error(error, path, action="write"):
    """One-line text for an `OSError` met while writing `path`."""
    cause = _CAUSES.get(error.errno) or error.strerror or str(error)
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    return f"Cannot {action} {os.fspath(path)!r} (folder {folder!r}): {cause}."


def output_error(error, path, action="write"):
    """`OutputError` for `error` (an `OSError`) met while writing `path`."""
    if isinstance(error, OutputError):
        return error
    return OutputError(error.errno, describe_os_error(error, path, action))


def file_mode():
    """Permission bits of a newly created plain file: 0o666 & ~umask."""
    umask = _read_umask()
    return 0o666 & ~umask


def _read_umask():
    # /proc gives the umask without changing it (os.umask would, briefly,
    # for every thread of the process).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def ensure_folder(folder):
    """Creates `folder` (and parents); raises `OutputError` if it can't."""
    folder = os.fspath(folder)
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError as error:  # a file stands where the folder goes
        raise OutputError(
            errno.ENOTDIR,
            f"Cannot create folder {folder!r}: a file of that name exists.",
        ) from error
    except OSError as error:
        raise output_error(error, folder, "create folder") from error


def _temporary_in(path):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise OutputError(
                errno.ENOTDIR,
                f"Cannot write {path!r}: {folder!r} is a file, not a folder.",
            )
        raise OutputError(
            errno.ENOENT,
            f"Cannot write {path!r}: the folder {folder!r} does not exist.",
        )
    if os.path.isdir(path):
        raise OutputError(
            errno.EISDIR, f"Cannot write {path!r}: it is a folder."
        )
    try:
        handle, temporary = tempfile.mkstemp(
            dir=folder,
            prefix=f".{os.path.basename(path)}.",
            suffix=TEMPORARY_SUFFIX,
        )
    except OSError as error:
        raise output_error(error, path) from error
    return handle, temporary


def _finish(temporary, path):
    try:
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except OSError as error:
        raise output_error(error, path) from error


def _discard(temporary):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding=None, newline=None):
    """Context manager: a file object whose content replaces `path`.

    Args:
        path: the target file. Its folder must exist.
        mode: "w" (text) or "wb" (binary).
        encoding: text encoding (default UTF-8 in text mode).
        newline: as for `open`.

    The target is replaced only when the block ends without an exception;
    otherwise it is left as it was and the temporary file is removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"Argument `mode` must be 'w' or 'wb'. Got {mode!r}.")
    handle, temporary = _temporary_in(path)
    try:
        if mode == "w":
            file = os.fdopen(
                handle, mode, encoding=encoding or "utf-8", newline=newline
            )
        else:
            file = os.fdopen(handle, mode)
        with file:
            try:
                yield file
                file.flush()
                os.fsync(file.fileno())
            except OSError as error:
                raise output_error(error, path) from error
        _finish(temporary, path)
    except BaseException:
        _discard(temporary)
        raise


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Context manager: a temporary path whose file replaces `path`.

    For libraries that write to a path themselves (`model.save`, h5py,
    matplotlib). The temporary name keeps the target's extension, which
    some of them check; `suffix` (e.g. `".weights.h5"`, which
    `Model.save_weights` requires) replaces that extension.
    """
    path = os.fspath(path)
    handle, temporary = _temporary_in(path)
    os.close(handle)
    extension = os.path.splitext(path)[1] if suffix is None else suffix
    named = temporary[: -len(TEMPORARY_SUFFIX)] + ".tmp" + extension
    try:
        os.replace(temporary, named)
        yield named
        try:
            with open(named, "rb") as file:
                os.fsync(file.fileno())
        except OSError as error:
            raise output_error(error, path) from error
        _finish(named, path)
    except BaseException:
        _discard(named)
        _discard(temporary)
        raise


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_write(path, "wb") as file:
        file.write(data)
    return os.fspath(path)


def write_text(path, text):
    """Writes `text` (str, UTF-8) to `path` atomically."""
    with atomic_write(path, "w") as file:
        file.write(text)
    return os.fspath(path)


def write_json(obj, path, indent=2, allow_nan=False):
    """Writes `obj` as JSON to `path` atomically.

    NaN and infinity are not JSON: they raise `ValueError` unless
    `allow_nan=True` (then they are written as Python's `json` does)."""
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan)
    return write_text(path, text + "\n")


def save_model(model, path):
    """`model.save(path)` through a temporary file and an atomic rename."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    return os.fspath(path)


def remove_stale_temporaries(folder):
    """Removes the hidden `.<name>.*.tmp[.ext]` files a killed writer left
    in `folder`; returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        if name.startswith(".") and (
            name.endswith(TEMPORARY_SUFFIX) or ".tmp." in name
        ):
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                _discard(full)
                removed.append(name)
    return removed
