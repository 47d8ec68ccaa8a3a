"""The output folder of `edge.export`: checked first, replaced whole.

An export is written into a hidden staging folder beside `out_dir`
(`.<name>.export-<pid>-<random>.tmp`), each file atomically with
`keras_snn.fileio`, and renamed into place only when every check passed;
a previous export is set aside (`.<name>.old-...tmp`) and removed after
the rename. Folders that killed exports left are removed (a previous
export set aside is put back) by the next `check_output_folder`.
"""

import contextlib
import json
import os
import secrets
import shutil

from edge.errors import ExportError
from keras_snn import fileio

__all__ = [
    "OutputFolder",
    "check_output_folder",
    "previous_seconds",
    "write_files",
]

_STAGING_KINDS = ("export", "old")
_REPORT = "report.json"


def _previous_export(path):
    """The model name of the export in folder `path`, or `None`."""
    try:
        with open(os.path.join(path, _REPORT), encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError):
        return None
    if isinstance(saved, dict) and "rows" in saved and "model" in saved:
        return str(saved["model"])
    return None


def _visible_entries(path):
    """Entries of folder `path`, less the hidden temporary files a killed
    writer left (`keras_snn.fileio.remove_stale_temporaries`)."""
    fileio.remove_stale_temporaries(path)
    return sorted(os.listdir(path))


def check_output_folder(out_dir, overwrite=False):
    """Checks that `export` may write `out_dir`.

    Creates nothing; removes what killed exports into `out_dir` left (and
    puts back a previous export that a kill left aside).

    Args:
        out_dir: the output folder.
        overwrite: whether a previous export there may be replaced.

    Returns:
        The absolute path of `out_dir`.

    Raises:
        ExportError: `out_dir` is a file or below one, holds files that
            are not an export, or holds an export and `overwrite` is
            false.
    """
    # A link is followed: the folder it points to is replaced.
    path = os.path.realpath(os.fspath(out_dir))
    folder, name = os.path.split(path)
    if not name:
        raise ExportError(
            f"Argument `out_dir` must name a folder that the export can "
            f"replace whole, not a file system root. Received: {out_dir!r}"
        )
    ancestor = folder
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ExportError(
            f"Argument `out_dir` must be a folder. Received: "
            f"{os.fspath(out_dir)!r}, below {ancestor!r}, which is a file."
        )
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ExportError(
            f"Argument `out_dir` must be a folder. Received: "
            f"{os.fspath(out_dir)!r}, which is a file."
        )
    if os.path.isdir(folder):
        _remove_leftovers(path)
    if not os.path.isdir(path):
        return path
    try:
        entries = _visible_entries(path)
    except OSError as error:
        raise ExportError(
            f"Argument `out_dir` must be a readable folder. Received: "
            f"{os.fspath(out_dir)!r} "
            f"({fileio.describe_os_error(error, path, 'read')})"
        ) from error
    if not entries:
        return path
    model = _previous_export(path)
    if model is None:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ExportError(
            f"Argument `out_dir` must be a new folder, an empty one or a "
            f"previous export: the export replaces it whole. Received: "
            f"{os.fspath(out_dir)!r}, which holds other files ({shown})."
        )
    if not overwrite:
        raise ExportError(
            f"Argument `out_dir` ({os.fspath(out_dir)!r}) holds a previous "
            f"export of '{model}' ({_REPORT}). Pass overwrite=True "
            "(`--overwrite`) to replace it whole, or choose another folder."
        )
    return path


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _remove_leftovers(path):
    """Removes the staging folders of killed exports into `path` (named
    `.<name>.<kind>-<pid>-<random>.tmp`, with a process id that no longer
    runs); a replaced export that a kill left aside is put back first."""
    folder, name = os.path.split(path)
    prefix = f".{name}."
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        kind, _, rest = entry[len(prefix) : -len(".tmp")].partition("-")
        pid = rest.partition("-")[0]
        if kind not in _STAGING_KINDS or not pid.isdigit():
            continue
        if _process_alive(int(pid)):
            continue
        full = os.path.join(folder, entry)
        if kind == "old" and not os.path.lexists(path):
            with contextlib.suppress(OSError):  # else left as it is
                os.rename(full, path)
        else:
            shutil.rmtree(full, ignore_errors=True)


class OutputFolder:
    """The hidden folder an export is written to, renamed to `out_dir` by
    `commit`; `discard` removes it and any folder made for it."""

    def __init__(self, out_dir, overwrite):
        self.path = check_output_folder(out_dir, overwrite)
        self.label = os.fspath(out_dir)
        folder, name = os.path.split(self.path)
        self.made = []  # folders created for out_dir, innermost first
        ancestor = folder
        while not os.path.lexists(ancestor):
            self.made.append(ancestor)
            ancestor = os.path.dirname(ancestor)
        try:
            fileio.ensure_folder(folder)
            self.staging = os.path.join(
                folder,
                f".{name}.export-{os.getpid()}-{secrets.token_hex(4)}.tmp",
            )
            os.mkdir(self.staging)  # mode 0o777 less the umask
        except OSError as error:
            self._remove_made()
            message = fileio.output_error(error, self.path, "create")
            raise ExportError(
                f"Argument `out_dir` must be a writable folder. Received: "
                f"{self.label!r} ({message.strerror or message})"
            ) from error

    def _remove_made(self):
        for folder in self.made:
            try:
                os.rmdir(folder)
            except OSError:
                break

    def discard(self):
        """Removes the staging folder (and the folders made for it)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self._remove_made()

    def commit(self, files):
        """Writes `{relative name: bytes}` and puts the folder in place."""
        write_files(self.staging, files)
        folder, name = os.path.split(self.path)
        old = None
        try:
            if os.path.isdir(self.path):
                if _visible_entries(self.path):
                    old = os.path.join(
                        folder,
                        f".{name}.old-{os.getpid()}-{secrets.token_hex(4)}.tmp",
                    )
                    os.rename(self.path, old)
                else:
                    os.rmdir(self.path)
            os.rename(self.staging, self.path)
        except OSError as error:
            if old is not None and not os.path.lexists(self.path):
                os.rename(old, self.path)
            raise fileio.output_error(error, self.path, "replace") from error
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_files(out_dir, files):
    """Writes `{relative name: bytes}` into `out_dir`, each file
    atomically with `keras_snn.fileio` (created folders included).

    Raises:
        keras_snn.fileio.OutputError: a file could not be written.
    """
    for name, content in files.items():
        final = os.path.join(out_dir, name)
        fileio.ensure_folder(os.path.dirname(final))
        fileio.write_bytes(final, content)


def previous_seconds(path):
    """`seconds` of the export in `path` (what it is about to replace)."""
    try:
        with open(os.path.join(path, _REPORT), encoding="utf-8") as file:
            seconds = json.load(file).get("seconds")
    except (OSError, ValueError, AttributeError):
        return {}
    return seconds if isinstance(seconds, dict) else {}
