"""The training loop of `keras_snn.training.fit` across worker processes.

Keras 3's `fit` fails under `MultiWorkerMirroredStrategy` (it converts
`PerReplica` input to a tensor, and reduces scalar logs along an axis they
do not have), so until it supports that strategy this loop runs the
model's own `train_step` in `strategy.run` and drives Keras' callbacks as
`fit` does: `on_train_begin` (where `BackupAndRestore` restores the weights
and the epoch to start from), `on_epoch_begin`, `on_train_batch_begin/end`
with the step's logs averaged over all replicas, `on_epoch_end` with the
validation logs, `on_train_end`; a `History` and, on the chief, a progress
bar. Every worker runs the same collectives in the same order: the step,
the reductions of its logs and the reads of the metrics.
"""

import keras
import tensorflow as tf

__all__ = ["fit"]


def _to_numpy(logs):
    return {name: float(value) for name, value in logs.items()}


def _first_local_batch(data):
    """One batch of `data` on this worker, for building the model."""
    for batch in data.take(1):
        return batch
    raise ValueError("The training data has no batch.")


def fit(model, data, *, steps, epochs, validation_data, callbacks, verbose):
    """Trains `model` under its multi-worker strategy; returns its History.

    Args:
        model: compiled under the strategy's scope.
        data: `tf.data.Dataset` of global batches (each worker takes its
            share by the dataset's auto-shard policy).
        steps: steps per epoch, or `None` to run each epoch to the end of
            the data (then every worker must see the same number).
        epochs: int.
        validation_data: `(x, y)` arrays or `None`.
        callbacks: list of Keras callbacks.
        verbose: 0, 1, 2 or "auto" as for `fit`; only the chief prints.
    """
    from keras_snn.training import is_chief

    strategy = model.distribute_strategy
    chief = is_chief(strategy)
    # Keras has no public way to create the optimizer's and the compiled
    # metrics' variables before the first step; creating them inside the
    # distributed step would fail. This is what `fit` itself calls.
    model._maybe_symbolic_build(data_batch=_first_local_batch(data))
    distributed = strategy.experimental_distribute_dataset(data)

    def replica_step(batch):
        return model.train_step(batch)

    @tf.function
    def train_step(iterator):
        logs = strategy.run(replica_step, args=(next(iterator),))
        return {
            name: strategy.reduce("MEAN", value, axis=None)
            for name, value in logs.items()
        }

    if verbose == "auto":
        verbose = 1
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=chief and verbose != 0,
        verbose=verbose if chief else 0,
        epochs=epochs,
        steps=steps,
        model=model,
    )
    validation = _Validation(model, validation_data)
    model.stop_training = False
    model._initial_epoch = None  # set by BackupAndRestore when resuming
    callback_list.on_train_begin()
    initial_epoch = getattr(model, "_initial_epoch", None) or 0
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        iterator = iter(distributed)
        step, logs = 0, {}
        while steps is None or step < steps:
            callback_list.on_train_batch_begin(step)
            try:
                logs = _to_numpy(train_step(iterator))
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            callback_list.on_train_batch_end(step, logs)
            step += 1
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        epoch_logs.update(validation.logs())
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs=epoch_logs)
    return model.history


class _Validation:
    """The `val_` logs: `test_step` on every replica, metrics reduced."""

    def __init__(self, model, validation_data):
        self.model = model
        self.distributed = None
        if validation_data is None:
            return
        x, y = validation_data
        strategy = model.distribute_strategy
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(
            max(1, strategy.num_replicas_in_sync) * 64
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        self.distributed = strategy.experimental_distribute_dataset(
            data.with_options(options)
        )

        @tf.function
        def test_step(batch):
            strategy.run(model.test_step, args=(batch,))

        self.test_step = test_step

    def logs(self):
        if self.distributed is None:
            return {}
        self.model.reset_metrics()
        for batch in self.distributed:
            self.test_step(batch)
        # Read across replicas: each metric's totals and counts are summed
        # over every replica of every worker.
        results = self.model.get_metrics_result()
        return {f"val_{name}": float(v) for name, v in results.items()}
