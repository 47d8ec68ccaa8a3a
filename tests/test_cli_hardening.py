"""The keras-snn CLI refuses bad input early and keeps a run's files whole.

Every train here is a 4-neuron FC network on the embedded digits data with
T = 1 and large batches, so a run takes a few seconds.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest

from keras_snn import callbacks as snn_callbacks
from keras_snn import cli
from keras_snn import datasets

TINY = [
    "--model",
    "4FC-Decoding",
    "--timesteps",
    "1",
    "--batch-size",
    "512",
    "--verbose",
    "0",
]


def train_args(out, *extra, epochs=1):
    return ["train", *TINY, "--epochs", str(epochs), "--out", str(out), *extra]


def history_epochs(out):
    return snn_callbacks.read_history_csv(out / "history.csv")["epoch"]


def no_data_loading(monkeypatch):
    """Makes loading a data set fail the test: errors must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data set was loaded before the error")

    monkeypatch.setattr(datasets, "load_arrays", refuse)


@pytest.mark.parametrize(
    "argv,option,value",
    [
        (["--learning-rate", "nan"], "--learning-rate", "nan"),
        (["--learning-rate", "-1"], "--learning-rate", "-1"),
        (["--learning-rate", "inf"], "--learning-rate", "inf"),
        (["--batch-size", "0"], "--batch-size", "0"),
        (["--batch-size", "-4"], "--batch-size", "-4"),
        (["--epochs", "0"], "--epochs", "0"),
        (["--timesteps", "0"], "--timesteps", "0"),
        (["--threshold", "0"], "--threshold", "0"),
        (["--threshold", "inf"], "--threshold", "inf"),
        (["--decay", "1.5"], "--decay", "1.5"),
        (["--decay", "nan"], "--decay", "nan"),
        (["--dropout", "1"], "--dropout", "1"),
        (["--seed", "-1"], "--seed", "-1"),
    ],
)
def test_numeric_train_options_are_checked_before_anything(
    argv, option, value, tmp_path, capsys
):
    out = tmp_path / "run"
    # The valid tiny options come first; the bad one overrides its default
    # or the tiny value (argparse keeps the last).
    with pytest.raises(SystemExit) as exit_info:
        cli.main(train_args(out, *argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err
    assert f"Received: '{value}'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,option",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--timesteps", "2", "0"], "--timesteps"),
    ],
)
def test_numeric_evaluate_options_are_checked(argv, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", str(tmp_path / "m.keras"), *argv])
    assert exit_info.value.code == 2
    assert f"argument {option}: must be an integer >= 1" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (["--model", "8C3-AP20-Decoding"], r"token 2 \('AP20'\)"),
        (["--model", "Decoding"], "'Decoding' has no spiking layer"),
        (["--neuron", "if", "--decay", "0.3"], "--decay 0.3 has no effect"),
        (["--dataset", "imagenet"], r"--dataset must be one of .*'imagenet'"),
    ],
)
def test_bad_network_refused_before_any_file_or_data(
    argv, pattern, tmp_path, capsys, monkeypatch
):
    no_data_loading(monkeypatch)
    out = tmp_path / "run"
    assert cli.main(train_args(out, *argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-snn train: error: ")
    assert re.search(pattern, err), err
    assert not out.exists()


def test_out_that_is_a_file_or_below_one(tmp_path, capsys, monkeypatch):
    no_data_loading(monkeypatch)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "run"):
        assert cli.main(train_args(out)) == 2
        err = capsys.readouterr().err
        assert str(a_file) in err and "Errno" not in err
        assert err.count("\n") == 1


def test_read_only_out_is_reported_before_loading_data(
    tmp_path, capsys, monkeypatch
):
    no_data_loading(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir and os.path.samefile(dir, out):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    # (chmod would not stop root, who runs some CI containers.)
    monkeypatch.setattr("tempfile.mkstemp", read_only)
    assert cli.main(train_args(out)) == 2
    err = capsys.readouterr().err
    assert f"(folder {str(out)!r}): permission denied" in err


def test_evaluate_json_below_a_file_fails_before_evaluating(
    tmp_path, capsys, monkeypatch
):
    no_data_loading(monkeypatch)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    code = cli.main(
        ["evaluate", str(tmp_path / "m.keras"), "--json", f"{a_file}/a.json"]
    )
    assert code == 2
    assert str(a_file) in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(train_args(out, epochs=2)) == 0
    return out


def test_finished_run_is_not_retrained_silently(finished_run, capsys):
    model_bytes = (finished_run / "model.keras").read_bytes()
    assert cli.main(train_args(finished_run, epochs=2)) == 2
    err = capsys.readouterr().err
    assert "already holds a finished run" in err and "--overwrite" in err
    assert (finished_run / "model.keras").read_bytes() == model_bytes
    assert history_epochs(finished_run) == [0, 1]


def test_overwrite_trains_afresh_without_mixing_histories(
    finished_run, tmp_path
):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    (out / "plots" / "curves.png").unlink()
    assert cli.main(train_args(out, "--overwrite", epochs=1)) == 0
    assert history_epochs(out) == [0]
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 1
    assert (out / "plots" / "curves.png").exists()
    manifest = json.loads((out / cli.MANIFEST).read_text())
    assert manifest["arguments"]["epochs"] == 1


def interrupt_at_epoch(monkeypatch, epoch, error):
    """Raises `error` when `fit` begins epoch `epoch`."""
    real = snn_callbacks.HistoryCSV.on_epoch_begin

    def on_epoch_begin(self, current, logs=None):
        if current == epoch:
            raise error
        return real(self, current, logs)

    monkeypatch.setattr(
        snn_callbacks.HistoryCSV, "on_epoch_begin", on_epoch_begin
    )


def test_ctrl_c_prints_one_line_and_the_run_resumes(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_at_epoch(patch, 1, KeyboardInterrupt())
        assert cli.main(train_args(out, epochs=3)) == 130
    err = capsys.readouterr().err
    assert err == (
        "keras-snn train: interrupted; run the same command again to resume\n"
    )
    assert (out / "backup").is_dir() and history_epochs(out) == [0]
    first_row = (out / "history.csv").read_text().splitlines()[1]

    # Resuming with another network names the differences and backup/.
    other = train_args(out, epochs=3)
    other[other.index("4FC-Decoding")] = "6FC-Decoding"
    assert cli.main(other) == 2
    err = capsys.readouterr().err
    assert "--model '4FC-Decoding' (now '6FC-Decoding')" in err
    assert repr(str(out / "backup")) in err and "Traceback" not in err
    learned = train_args(out, "--trainable-decay", "channel", epochs=3)
    assert cli.main(learned) == 2
    assert "--trainable-decay 'none' (now 'channel')" in (
        capsys.readouterr().err
    )

    # A manifest written before --trainable-* existed still resumes.
    manifest = json.loads((out / cli.MANIFEST).read_text())
    del manifest["arguments"]["trainable_decay"]
    del manifest["arguments"]["trainable_threshold"]
    (out / cli.MANIFEST).write_text(json.dumps(manifest))
    assert cli.main(train_args(out, epochs=3)) == 0
    assert history_epochs(out) == [0, 1, 2]
    assert (out / "history.csv").read_text().splitlines()[1] == first_row
    assert not (out / "backup").exists()


def fail_writes(monkeypatch, name, from_call):
    """Disk full: the `from_call`-th and later atomic writes of `name` fail.

    The failure comes from `os.fsync` of the temporary file, where a full
    disk shows itself once the data no longer fits the page cache.
    """
    real = os.fsync
    calls = []

    def fsync(fd):
        written = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if written.startswith(f".{name}."):
            calls.append(written)
            if len(calls) >= from_call:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc"
)
@pytest.mark.parametrize("name", ["history.csv", "checkpoint.keras"])
def test_disk_full_is_one_line_and_resume_keeps_every_epoch_once(
    name, tmp_path, capsys
):
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        fail_writes(patch, name, from_call=2)  # epoch 1's file
        assert cli.main(train_args(out, epochs=3)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no space left on the device" in err
    assert f"(folder {str(out)!r})" in err
    # Epoch 0 is complete on disk; the checkpoint is whole.
    assert history_epochs(out)[0] == 0
    keras.models.load_model(out / "checkpoint.keras")
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]

    assert cli.main(train_args(out, epochs=3)) == 0
    assert history_epochs(out) == [0, 1, 2]


def test_console_script_never_shows_a_traceback_for_user_errors(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    cases = [
        train_args(tmp_path / "a", "--learning-rate", "nan"),
        train_args(tmp_path / "b", "--model", "8C3-AP20-Decoding"),
        train_args(a_file / "run"),
        ["evaluate", str(tmp_path / "missing.keras")],
    ]
    for argv in cases:
        result = subprocess.run(
            [sys.executable, "-m", "_keras_snn_cli", *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, (argv, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "error:" in result.stderr.splitlines()[-1]


def test_evaluate_on_a_data_set_of_other_images_is_refused_first(
    finished_run, capsys, monkeypatch
):
    no_data_loading(monkeypatch)
    code = cli.main(
        ["evaluate", str(finished_run / "model.keras"), "--dataset", "mnist"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "reads inputs of shape (8, 8, 1)" in err
    assert "mnist has images of shape (28, 28, 1)" in err


def test_plots_are_written_through_fileio(tmp_path):
    from keras_snn import fileio
    from keras_snn import plotting

    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}
    path = plotting.plot_history(history, tmp_path / "plots" / "curves.png")
    assert os.stat(path).st_mode & 0o777 == fileio.file_mode()
    assert os.listdir(tmp_path / "plots") == ["curves.png"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(fileio.OutputError, match="notes.txt"):
        plotting.plot_history(history, a_file / "curves.png")
    curves = {"seed 0": ([1.0, 2.5], [0.8, 0.9])}
    path = plotting.plot_accuracy_vs_time(curves, tmp_path / "t.png", 0.94)
    assert os.stat(path).st_mode & 0o777 == fileio.file_mode()
    with pytest.raises(ValueError, match="'seed 1'.*2 and 1 values"):
        plotting.plot_accuracy_vs_time(
            {"seed 1": ([1.0, 2.0], [0.5])}, tmp_path / "u.png"
        )
    with pytest.raises(ValueError, match="at least one run"):
        plotting.plot_accuracy_vs_time({}, tmp_path / "u.png")
    assert not (tmp_path / "u.png").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit-flipped"])
def test_evaluate_a_damaged_model_file_names_it(
    damage, finished_run, tmp_path, capsys, monkeypatch
):
    no_data_loading(monkeypatch)
    data = bytearray((finished_run / "model.keras").read_bytes())
    if damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path = tmp_path / "damaged.keras"
    path.write_bytes(bytes(data))
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-snn evaluate: error: ")
    assert "damaged.keras" in err and "not found" not in err.lower()


def test_train_refuses_non_finite_images(tmp_path, monkeypatch):
    from keras_snn import cli
    from keras_snn import datasets

    real = datasets.load_arrays

    def with_nan(name, data_dir=None):
        (x, y), test = real(name, data_dir=data_dir)
        x = x.copy()
        x[3, 0, 0, 0] = np.nan
        return (x, y), test

    monkeypatch.setattr(datasets, "load_arrays", with_nan)
    out = tmp_path / "run"
    status = cli.main(
        ["train", "--model", "4FC-Decoding", "--epochs", "1",
         "--timesteps", "1", "--out", str(out), "--verbose", "0"]
    )
    assert status == 2
    assert not (out / "model.keras").exists()


def test_non_finite_loss_raises_naming_epoch_and_batch():
    import keras

    from keras_snn import callbacks

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.ones((8, 2), "float32")
    y = np.ones((8, 1), "float32")
    y[5] = np.inf
    with pytest.raises(callbacks.NonFiniteLossError, match="epoch 1, batch 2"):
        model.fit(
            x, y, batch_size=4, verbose=0, shuffle=False,
            callbacks=[callbacks.StopOnNonFiniteLoss()],
        )
