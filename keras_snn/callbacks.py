"""Keras callbacks for spiking networks, and crash-safe training files.

`FiringRateLogger` logs the firing rate of every spiking layer. The other
callbacks write the files of a training run so that a killed or failing
process (Ctrl-C, SIGKILL, a full disk) never leaves a half-written file and
a rerun resumes where the last finished epoch left off:

- `HistoryCSV`: the per-epoch history, rewritten atomically each epoch;
  a resumed run keeps the rows of the epochs already done, once each.
- `AtomicCheckpoint`: the whole model (`.keras`) after each epoch.
- `AtomicBackupAndRestore`: Keras' `BackupAndRestore` with atomic files
  and a clear error when the backup belongs to another network.

Put them in this order in `callbacks=[...]` (Keras calls them in list
order): the history row and the checkpoint of an epoch are then on disk
before the backup that marks the epoch done.

```python
out = "runs/a"
callbacks = [
    keras_snn.callbacks.HistoryCSV(f"{out}/history.csv"),
    keras_snn.callbacks.AtomicCheckpoint(f"{out}/checkpoint.keras"),
    keras_snn.callbacks.AtomicBackupAndRestore(f"{out}/backup"),
]
model.fit(x, y, epochs=10, callbacks=callbacks)  # rerun to resume
```
"""

import csv
import json
import math
import os
import time

import keras
import numpy as np
from keras import ops

from keras_snn import analysis
from keras_snn import fileio
from keras_snn import functional

__all__ = [
    "AtomicBackupAndRestore",
    "AtomicCheckpoint",
    "EpochSeconds",
    "FiringRateLogger",
    "HistoryCSV",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "read_history_csv",
    "writes_files",
]


class FiringRateLogger(keras.callbacks.Callback):
    """Logs the firing rate of every spiking layer at the end of each epoch.

    The rate of a layer is its mean spike count per neuron per time step
    (spikes / (neurons * T)) over `data`, as in
    `keras_snn.analysis.firing_rates`. It is written into the epoch's
    `logs` as `f"{prefix}{layer.name}"`, so it appears in the `History`
    returned by `model.fit` (and in any later callback, e.g. CSVLogger),
    and, if `log_dir` is given, as a TensorBoard scalar with the same name.

    Args:
        data: model inputs to measure the rates on (a NumPy array or
            tensor; a few hundred samples suffice).
        log_dir: `None` or a folder for TensorBoard event files (scalar
            summaries, step = epoch). Defaults to `None`.
        prefix: str, prefix of the logged names. Defaults to
            `"firing_rate/"`.
        batch_size: int >= 1, inference batch size. Defaults to `256`.

    Example:

    ```python
    logger = keras_snn.callbacks.FiringRateLogger(x_val[:256], "logs")
    history = model.fit(x, y, epochs=5, callbacks=[logger])
    history.history["firing_rate/lif"]  # one rate per epoch
    ```

    Reference:
        Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
        Neural Networks", AAAI 2021, App. D (spiking activity per layer).
    """

    def __init__(
        self, data, log_dir=None, prefix="firing_rate/", batch_size=256
    ):
        super().__init__()
        if data is None or len(data) == 0:
            raise ValueError(
                "Argument `data` must hold at least one sample. Received: "
                f"data={data!r}"
            )
        if not isinstance(prefix, str):
            raise ValueError(
                f"Argument `prefix` must be a str. Received: prefix={prefix!r}"
            )
        self.data = data
        self.log_dir = None if log_dir is None else str(log_dir)
        self.prefix = prefix
        self.batch_size = functional.validate_count(batch_size, "batch_size")
        self._recorder = None
        self._names = None
        self._writer = None

    def _build(self):
        found = analysis.spiking_layers(self.model)
        if not found:
            raise ValueError(
                f"FiringRateLogger: model '{self.model.name}' has no spiking "
                "layers (keras_snn.layers.LIF or IF). Received: layers="
                f"{[type(layer).__name__ for layer in self.model.layers]}"
            )
        outputs = []
        for layer in found:
            out = layer.output
            out = out[0] if isinstance(out, (list, tuple)) else out
            axes = tuple(range(1, len(out.shape)))
            outputs.append(
                keras.layers.Lambda(
                    lambda s, a=axes: ops.mean(s, axis=a),
                    name=f"{layer.name}_rate",
                )(out)
            )
        self._recorder = keras.Model(self.model.inputs[0], outputs)
        self._names = [layer.name for layer in found]

    def rates(self):
        """Returns `{layer name: firing rate}` on `data` for the model now."""
        if self._recorder is None:
            self._build()
        sums = np.zeros(len(self._names))
        count = 0
        for start in range(0, len(self.data), self.batch_size):
            batch = self.data[start : start + self.batch_size]
            outputs = self._recorder(batch, training=False)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            for i, out in enumerate(outputs):
                sums[i] += float(ops.convert_to_numpy(ops.sum(out)))
            count += len(batch)
        return {
            name: float(total / count)
            for name, total in zip(self._names, sums, strict=True)
        }

    def on_epoch_end(self, epoch, logs=None):
        rates = self.rates()
        if logs is not None:
            for name, rate in rates.items():
                logs[f"{self.prefix}{name}"] = rate
        if self.log_dir is not None and writes_files(self.model):
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            # `tf.summary.write` with the "scalars" plugin metadata is what
            # `tf.summary.scalar` writes, without needing the tensorboard
            # package at training time.
            metadata = tf.compat.v1.SummaryMetadata(
                plugin_data=tf.compat.v1.SummaryMetadata.PluginData(
                    plugin_name="scalars"
                )
            ).SerializeToString()
            with self._writer.as_default():
                for name, rate in rates.items():
                    tf.summary.write(
                        f"{self.prefix}{name}",
                        tf.constant(rate, "float32"),
                        step=epoch,
                        metadata=metadata,
                    )
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {
            "log_dir": self.log_dir,
            "prefix": self.prefix,
            "batch_size": self.batch_size,
        }


def read_history_csv(path):
    """Reads a per-epoch history CSV (`HistoryCSV` or Keras' `CSVLogger`).

    Args:
        path: the CSV file; its first column is `epoch`.

    Returns:
        A dict from column name to its list of values, one per row: ints
        for `"epoch"`, floats otherwise (an empty cell is NaN). `{}` if the
        file does not exist or has no rows.

    Raises:
        ValueError: if the file is not such a CSV (the message names the
            file, the line and the bad cell).
    """
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(
            f"Cannot read the history file {path!r}: {error}"
        ) from error
    if not rows:
        return {}
    if "epoch" not in rows[0]:
        raise ValueError(
            f"The history file {path!r} has no 'epoch' column. Received "
            f"columns: {list(rows[0])}"
        )
    history = {key: [] for key in rows[0]}
    for line, row in enumerate(rows, start=2):
        for key in history:
            cell = row.get(key)
            try:
                if key == "epoch":
                    value = int(cell)
                else:
                    value = math.nan if cell in (None, "") else float(cell)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"The history file {path!r} has a bad value in column "
                    f"{key!r} on line {line}: {cell!r}"
                ) from error
            history[key].append(value)
    return history


def writes_files(model):
    """Whether this process writes the training run's files.

    Every process does, except the non-chief workers of multi-worker
    training (`tf.distribute.MultiWorkerMirroredStrategy`): they train the
    same weights as the chief, which alone writes (TensorFlow's
    `strategy.extended.should_checkpoint`).
    """
    strategy = getattr(model, "distribute_strategy", None)
    return strategy is None or bool(strategy.extended.should_checkpoint)


class EpochSeconds(keras.callbacks.Callback):
    """Adds each epoch's wall-clock seconds to the logs, as `epoch_seconds`.

    The time from the start of the epoch to its end, validation included,
    so that a history read with `read_history_csv` gives accuracy against
    training time (the cumulative sum). Put it before `HistoryCSV` in
    `callbacks=[...]` so that the history row holds it.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[
        keras_snn.callbacks.EpochSeconds(),
        keras_snn.callbacks.HistoryCSV("history.csv")])
    ```
    """

    def __init__(self):
        super().__init__()
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._start is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class HistoryCSV(keras.callbacks.Callback):
    """Writes the history of `fit` to a CSV file, atomically, each epoch.

    Unlike Keras' `CSVLogger`, the whole file is rewritten through a
    temporary file and an atomic rename at the end of each epoch, so it is
    never half-written, and it never mixes runs: when `fit` starts at epoch
    `e` (resumed by `BackupAndRestore`, or `initial_epoch`), the rows of
    epochs `0 ... e-1` already in the file are kept and every later row is
    replaced. Place it before the backup callback in `callbacks=[...]`, so
    an epoch's row is on disk before the backup marks that epoch done.

    Args:
        filename: path of the CSV file. Columns: `epoch`, then the logged
            names in sorted order.

    Raises:
        OutputError: (an `OSError`) during `fit` if the file cannot be
            written, naming the file, the folder and the cause.

    Example:

    ```python
    model.fit(x, y, epochs=5,
              callbacks=[keras_snn.callbacks.HistoryCSV("history.csv")])
    keras_snn.callbacks.read_history_csv("history.csv")["loss"]
    ```
    """

    def __init__(self, filename):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(
            filename
        ):
            raise ValueError(
                "Argument `filename` must be a non-empty path. Received: "
                f"filename={filename!r}"
            )
        self.filename = os.fspath(filename)
        self._rows = None

    def on_train_begin(self, logs=None):
        self._rows = None

    def _load(self, first_epoch):
        history = read_history_csv(self.filename)
        epochs = history.get("epoch", [])
        rows = []
        for i, epoch in enumerate(epochs):
            if epoch < first_epoch:
                rows.append({key: values[i] for key, values in history.items()})
        return rows

    def on_epoch_begin(self, epoch, logs=None):
        if self._rows is None:
            self._rows = self._load(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self._rows is None:
            self._rows = self._load(epoch)
        row = {"epoch": epoch}
        for key, value in (logs or {}).items():
            row[key] = _scalar(value)
        self._rows = [r for r in self._rows if r["epoch"] < epoch] + [row]
        if not writes_files(self.model):
            return
        names = sorted({key for r in self._rows for key in r} - {"epoch"})
        with fileio.atomic_write(self.filename, "w", newline="") as file:
            writer = csv.DictWriter(
                file, fieldnames=["epoch", *names], restval=""
            )
            writer.writeheader()
            writer.writerows(self._rows)

    def get_config(self):
        return {"filename": self.filename}


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` at the first batch whose loss is NaN/inf.

    Keras' `TerminateOnNaN` stops training quietly, and `fit` then returns
    as if it had finished, so a script goes on to save a model of NaN
    weights. This callback raises instead, naming the epoch and batch.
    Under XLA (`jit_compile=True`) the layers' own finiteness checks are
    dropped by the compiler, and a NaN or inf input then shows here, as a
    NaN loss. Put it first in `callbacks=[...]`, so that nothing of the
    failing epoch is recorded.

    Example:

    ```python
    model.fit(x, y, callbacks=[keras_snn.callbacks.StopOnNonFiniteLoss()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = _scalar(loss)
        if isinstance(loss, float) and not math.isfinite(loss):
            raise NonFiniteLossError(
                f"Training diverged: the loss is {loss} at epoch "
                f"{self._epoch + 1}, batch {batch + 1}. Check the inputs for "
                "NaN/inf values and lower the learning rate; the last "
                "finished epoch is kept."
            )


def _scalar(value):
    try:
        return float(ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return str(value)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model to a `.keras` file after each epoch, atomically.

    Keras' `ModelCheckpoint` writes the file in place, so a process killed
    while saving leaves a truncated (often empty) file. This callback saves
    through `keras_snn.fileio.save_model`: a temporary file in the same
    folder, renamed over the old checkpoint once complete.

    Args:
        filepath: path of the `.keras` file.

    Raises:
        OutputError: (an `OSError`) during `fit` if the file cannot be
            written (disk full, read-only folder, ...), naming the file,
            the folder and the cause. The previous checkpoint is kept.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[
        keras_snn.callbacks.AtomicCheckpoint("checkpoint.keras")])
    ```
    """

    def __init__(self, filepath):
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(
            filepath
        ).endswith(".keras"):
            raise ValueError(
                "Argument `filepath` must be a path ending in '.keras'. "
                f"Received: filepath={filepath!r}"
            )
        self.filepath = os.fspath(filepath)

    def on_epoch_end(self, epoch, logs=None):
        if writes_files(self.model):
            fileio.save_model(self.model, self.filepath)

    def get_config(self):
        return {"filepath": self.filepath}


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose files are written atomically.

    Keras' callback overwrites `latest.weights.h5` and then
    `training_metadata.json` in place: a process killed in between leaves
    weights of one epoch beside the epoch number of another, or a
    truncated file. Here each backup writes a new weights file (named
    after its epoch and batch) through a temporary file, then the
    metadata that names it (atomically: this is the commit point), then
    removes the older weights file. A restore therefore always reads a
    complete, matching pair. A backup whose weights do not fit the model
    (a run of another network in the same folder) raises a one-line
    `ValueError` naming the folder instead of Keras' dump of weight
    arrays.

    Args:
        backup_dir: str, folder of the backup; used by nothing else.
        save_freq: `"epoch"` or an int (back up every `save_freq`
            batches), as for Keras' callback. Defaults to `"epoch"`.
        delete_checkpoint: bool, delete the folder when `fit` finishes.
            Defaults to `True`.

    Raises:
        ValueError: at the start of `fit`, if the backup cannot be read or
            does not fit the model.
        OutputError: (an `OSError`) if a backup cannot be written, naming
            the file, the folder and the cause.
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__(
            os.fspath(backup_dir) if backup_dir else backup_dir,
            save_freq=save_freq,
            double_checkpoint=False,
            delete_checkpoint=delete_checkpoint,
        )

    def on_train_begin(self, logs=None):
        self._load_model()

    def _read_metadata(self):
        path = self._training_metadata_path
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as file:
                metadata = json.load(file)
            epoch = int(metadata["epoch"])
            weights = str(metadata.get("weights", "latest.weights.h5"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"The training backup {path!r} is unreadable ({error}). "
                f"Delete the folder {self.backup_dir!r} to train afresh."
            ) from error
        return epoch, os.path.join(self.backup_dir, weights)

    def _load_model(self):
        metadata = self._read_metadata()
        if metadata is None:
            return
        epoch, weights = metadata
        if not self.model.built:
            raise ValueError(
                "AtomicBackupAndRestore: the model must be built before "
                f"`fit`. Model '{self.model.name}' is unbuilt."
            )
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(weights)
        except (ValueError, OSError, KeyError) as error:
            cause = (str(error).strip().splitlines() or [""])[0][:200]
            raise ValueError(
                f"Cannot resume from the training backup in "
                f"{self.backup_dir!r}: it does not fit model "
                f"'{self.model.name}' (a run of another network, or a "
                f"damaged file: {type(error).__name__}: {cause}). Delete "
                "that folder to train afresh, or train into another folder."
            ) from error
        self.model._initial_epoch = epoch

    def on_train_end(self, logs=None):
        if writes_files(self.model):
            super().on_train_end(logs)

    def _save_model(self):
        if not writes_files(self.model):
            return
        fileio.ensure_folder(self.backup_dir)
        name = (
            f"epoch{self._current_epoch}-batch{self._last_batch_seen}"
            ".weights.h5"
        )
        path = os.path.join(self.backup_dir, name)
        with fileio.atomic_path(path, suffix=".weights.h5") as temporary:
            self.model.save_weights(temporary)
        fileio.write_json(
            {
                "epoch": self._current_epoch,
                "batch": self._last_batch_seen,
                "weights": name,
            },
            self._training_metadata_path,
        )
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))
        fileio.remove_stale_temporaries(self.backup_dir)
