"""keras_snn.fileio: atomic writes, permissions, clear OS errors."""

import errno
import json
import os
import stat

import pytest

from keras_snn import fileio


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_json_replaces_whole_file_with_umask_permissions(tmp_path):
    path = tmp_path / "m.json"
    old = os.umask(0o027)
    try:
        fileio.write_json({"a": 1}, path)
        assert _mode(path) == 0o640
    finally:
        os.umask(old)
    fileio.write_json({"b": 2}, path)
    assert json.loads(path.read_text()) == {"b": 2}
    assert _mode(path) == 0o666 & ~old
    assert os.listdir(tmp_path) == ["m.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with fileio.atomic_write(path, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["h.csv"]


def test_nan_is_refused_unless_allowed(tmp_path):
    with pytest.raises(ValueError):
        fileio.write_json({"loss": float("nan")}, tmp_path / "x.json")
    assert os.listdir(tmp_path) == []
    fileio.write_json(
        {"loss": float("nan")}, tmp_path / "x.json", allow_nan=True
    )
    assert "NaN" in (tmp_path / "x.json").read_text()


def test_atomic_path_keeps_extension_and_cleans_up(tmp_path):
    path = tmp_path / "model.keras"
    with fileio.atomic_path(path) as temporary:
        assert temporary.endswith(".keras")
        assert os.path.basename(temporary).startswith(".model.keras.")
        with open(temporary, "wb") as f:
            f.write(b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(KeyError):
        with fileio.atomic_path(path) as temporary:
            with open(temporary, "wb") as f:
                f.write(b"half")
            raise KeyError("interrupted")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["model.keras"]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_text("x"), p)[1], "is a file, not a folder"),
    ],
    ids=["missing-folder", "below-a-file"],
)
def test_bad_folders_raise_output_error_naming_the_path(
    tmp_path, make, expected
):
    folder = make(tmp_path / "sub")
    target = folder / "out.json"
    with pytest.raises(fileio.OutputError, match=expected) as info:
        fileio.write_json({}, target)
    assert str(target) in str(info.value)


def test_target_that_is_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(fileio.OutputError, match="is a folder"):
        fileio.write_text(tmp_path / "d", "x")


def test_disk_full_becomes_one_line_output_error(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(fileio.OutputError) as info:
        fileio.write_text(tmp_path / "a.txt", "x")
    message = str(info.value)
    assert "no space left" in message and str(tmp_path) in message
    assert "\n" not in message
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_read_only_folder(tmp_path, monkeypatch):
    # Root (as in CI) may write anywhere, so the refusal is simulated.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(fileio.OutputError, match="permission denied"):
        fileio.write_text(tmp_path / "a.txt", "x")


def test_ensure_folder_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(fileio.OutputError, match="a file of that name"):
        fileio.ensure_folder(tmp_path / "f")
    with pytest.raises(fileio.OutputError, match="create folder"):
        fileio.ensure_folder(tmp_path / "f" / "below")


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".model.c.abc123.tmp").write_text("x")
    (tmp_path / ".model.keras.abc.tmp.keras").write_text("x")
    (tmp_path / "model.c").write_text("keep")
    removed = fileio.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == [
        ".model.c.abc123.tmp",
        ".model.keras.abc.tmp.keras",
    ]
    assert os.listdir(tmp_path) == ["model.c"]
