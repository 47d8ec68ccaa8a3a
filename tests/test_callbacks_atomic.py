"""HistoryCSV, AtomicCheckpoint and AtomicBackupAndRestore: whole files.

Each test simulates a crash in the middle of a write (an exception raised
by the writer, as SIGKILL or a full disk would stop it) and checks what a
rerun finds on disk.
"""

import errno
import json
import os

import keras
import numpy as np
import pytest

from keras_snn import callbacks
from keras_snn import fileio


def tiny_model(units=3):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def tiny_data(units=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, rng.normal(size=(16, units)).astype("float32")


class StopAtEpoch(keras.callbacks.Callback):
    """Raises KeyboardInterrupt when `fit` begins epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_history_csv_keeps_done_epochs_once_on_resume(tmp_path):
    path = tmp_path / "history.csv"
    x, y = tiny_data()
    model = tiny_model()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.HistoryCSV(path)])
    first = callbacks.read_history_csv(path)
    assert first["epoch"] == [0, 1, 2]
    # A resume at epoch 1 (e.g. restored by the backup) keeps row 0 and
    # replaces rows 1 and 2; it never appends a second run.
    model.fit(
        x,
        y,
        epochs=3,
        initial_epoch=1,
        verbose=0,
        callbacks=[callbacks.HistoryCSV(path)],
    )
    again = callbacks.read_history_csv(path)
    assert again["epoch"] == [0, 1, 2]
    assert again["loss"][0] == first["loss"][0]
    assert again["loss"][1] < first["loss"][1]  # trained further


def test_read_history_csv_names_the_file_and_line(tmp_path):
    path = tmp_path / "history.csv"
    assert callbacks.read_history_csv(path) == {}
    path.write_text("epoch,loss\n0,0.5\n1,oops\n")
    with pytest.raises(ValueError, match=r"history.csv'.*'loss' on line 3"):
        callbacks.read_history_csv(path)


def test_history_row_write_failure_is_one_output_error(tmp_path, monkeypatch):
    path = tmp_path / "history.csv"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tempfile.mkstemp", full)
    x, y = tiny_data()
    with pytest.raises(fileio.OutputError, match="no space left"):
        tiny_model().fit(
            x, y, epochs=1, verbose=0, callbacks=[callbacks.HistoryCSV(path)]
        )


def test_checkpoint_killed_while_saving_keeps_the_previous_one(
    tmp_path, monkeypatch
):
    path = tmp_path / "checkpoint.keras"
    x, y = tiny_data()
    model = tiny_model()
    checkpoint = callbacks.AtomicCheckpoint(path)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    saved = path.read_bytes()

    def killed_while_saving(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    assert path.read_bytes() == saved
    assert os.listdir(tmp_path) == ["checkpoint.keras"]
    monkeypatch.undo()
    keras.models.load_model(path)


def test_checkpoint_wants_a_keras_path():
    with pytest.raises(ValueError, match="filepath='model.h5'"):
        callbacks.AtomicCheckpoint("model.h5")


def test_backup_crash_between_weights_and_epoch_restores_a_matching_pair(
    tmp_path, monkeypatch
):
    backup = tmp_path / "backup"
    x, y = tiny_data()
    model = tiny_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x,
            y,
            epochs=5,
            verbose=0,
            callbacks=[
                callbacks.AtomicBackupAndRestore(backup),
                StopAtEpoch(2),
            ],
        )
    after_epoch_1 = model.get_weights()
    # The next backup writes its weights, then dies before the metadata
    # that names them (the commit point).
    model.fit(x, y, epochs=1, verbose=0)
    writer = callbacks.AtomicBackupAndRestore(backup)
    writer.set_model(model)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "write_json", no_space)
    with pytest.raises(OSError):
        writer.on_epoch_end(2)
    monkeypatch.undo()

    fresh = tiny_model()
    reader = callbacks.AtomicBackupAndRestore(backup)
    reader.set_model(fresh)
    reader.on_train_begin()
    assert fresh._initial_epoch == 2
    for restored, expected in zip(
        fresh.get_weights(), after_epoch_1, strict=True
    ):
        np.testing.assert_array_equal(restored, expected)
    metadata = json.loads((backup / "training_metadata.json").read_text())
    assert metadata["epoch"] == 2


def test_backup_of_another_network_is_named_not_dumped(tmp_path):
    backup = tmp_path / "backup"
    x, y = tiny_data()
    with pytest.raises(KeyboardInterrupt):
        tiny_model().fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[
                callbacks.AtomicBackupAndRestore(backup),
                StopAtEpoch(1),
            ],
        )
    x, y = tiny_data(units=5)
    with pytest.raises(ValueError, match="does not fit model") as info:
        tiny_model(units=5).fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[callbacks.AtomicBackupAndRestore(backup)],
        )
    message = str(info.value)
    assert repr(str(backup)) in message
    assert "\n" not in message and len(message) < 600
