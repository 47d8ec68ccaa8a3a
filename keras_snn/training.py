"""Training on one device, several devices or several machines.

`tf.distribute` is the distributed engine here; this module picks a
strategy by name and runs `fit` under it the way Keras users expect:

- one device (`"one"`): `model.fit`;
- several devices of one machine (`"mirrored"`, `MirroredStrategy`):
  `model.fit`, keeping XLA where every replica is a GPU and turning it off
  with a one-line warning where it is not (XLA cannot place the replicas
  of logical CPU devices);
- several machines (`"multiworker"`, `MultiWorkerMirroredStrategy`, the
  workers named by `TF_CONFIG`): a loop of `strategy.run(model.train_step)`
  that keeps Keras' callbacks, progress bar (on the chief), history,
  checkpointing and `BackupAndRestore`, because Keras 3's `fit` cannot
  run under this strategy yet (it fails converting `PerReplica` values).

The global batch is the per-replica batch times the number of replicas;
the learning rate is used as given. Arrays are served by `EpochBatches`,
whose order and augmentation depend only on the seed and the epoch: every
worker cuts the same global batches (each takes its share: the auto-shard
policy `DATA`), and an epoch repeated after a restart sees the same data,
so a resumed run ends with the weights of an uninterrupted one.

Example:

```python
strategy = keras_snn.training.get_strategy("auto")
with strategy.scope():
    model = keras_snn.models.from_spec("8C3-AP2-32FC-Decoding",
                                       input_shape=(8, 8, 1),
                                       num_classes=10, timesteps=2)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True),
                  metrics=["accuracy"])
keras_snn.training.fit(model, x, y, per_replica_batch_size=32, epochs=3)
```
"""

import json
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_snn import functional

__all__ = [
    "STRATEGIES",
    "EpochBatches",
    "augmentation",
    "describe",
    "fit",
    "get_strategy",
    "is_chief",
    "is_multi_worker",
    "jit_supported",
    "local_cluster",
]

STRATEGIES = ("auto", "one", "mirrored", "multiworker")


def _tf_config():
    """The parsed `TF_CONFIG`, checked; raises ValueError naming it."""
    text = os.environ.get("TF_CONFIG", "")
    accepted = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host0:port", "host1:port"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    if not text.strip():
        raise ValueError(
            "The multiworker strategy needs TF_CONFIG, the cluster and "
            f"this worker's place in it, as TensorFlow documents: {accepted}."
            " TF_CONFIG is not set."
        )
    try:
        config = json.loads(text)
        cluster = config["cluster"]
        task = config["task"]
        kind, index = task["type"], task["index"]
        members = cluster[kind]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"TF_CONFIG is not a cluster description ({type(error).__name__}:"
            f" {error}). Expected, for example: {accepted}. Received: "
            f"TF_CONFIG={text!r}"
        ) from None
    if not isinstance(index, int) or not 0 <= index < len(members):
        raise ValueError(
            f"TF_CONFIG: task index {index!r} is not a position in the "
            f"{len(members)} '{kind}' addresses {members}."
        )
    return config


def local_cluster(workers):
    """`TF_CONFIG` values for `workers` processes of this machine.

    For trying multi-worker training on one machine (tests, benchmarks):
    the workers listen on 127.0.0.1 only, on ports the system reports free
    now (another program may take one before the workers start).

    Args:
        workers: int >= 1, the number of worker processes.

    Returns:
        A list of `workers` JSON strings; give the i-th to worker i as its
        `TF_CONFIG` environment variable.
    """
    import socket

    workers = functional.validate_count(workers, "workers")
    sockets = []
    try:
        for _ in range(workers):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [
        json.dumps(
            {
                "cluster": {"worker": addresses},
                "task": {"type": "worker", "index": index},
            }
        )
        for index in range(workers)
    ]


def get_strategy(name="auto", devices=None):
    """Returns the `tf.distribute` strategy named `name`.

    Create the strategy first in the program (before any TensorFlow
    computation; `"multiworker"` requires it), build and compile the model
    inside `strategy.scope()`, then call `fit`.

    Args:
        name: one of `STRATEGIES`. `"auto"`: `"mirrored"` when more than
            one GPU is visible, else `"one"`. `"one"`: TensorFlow's
            default strategy (one device). `"mirrored"`:
            `MirroredStrategy` over `devices` (default: every GPU, or every
            logical CPU device when there is no GPU). `"multiworker"`:
            `MultiWorkerMirroredStrategy` over the workers of `TF_CONFIG`.
        devices: device names for `"mirrored"`; `None` for the default.

    Raises:
        ValueError: an unknown name, `devices` with another strategy, or
            `"multiworker"` without a valid `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Argument `name` must be one of {STRATEGIES}. Received: "
            f"name={name!r}"
        )
    if devices is not None and name != "mirrored":
        raise ValueError(
            "Argument `devices` is for the mirrored strategy only. Received: "
            f"name={name!r}, devices={devices!r}"
        )
    if name == "multiworker":
        _tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one"
    if name == "one":
        return tf.distribute.get_strategy()
    if devices is None:
        devices = gpus or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
    return tf.distribute.MirroredStrategy(devices=list(devices))


def is_multi_worker(strategy):
    """Whether `strategy` spans several worker processes."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """Whether this process writes the run's files (the chief worker).

    `True` except on the non-chief workers of a multi-worker strategy,
    which train the same weights and write nothing.
    """
    return bool(strategy.extended.should_checkpoint)


def _replica_devices(strategy):
    try:
        return tuple(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError, NotImplementedError):
        first = tf.config.list_logical_devices()
        return (first[0].name,) if first else ()


def jit_supported(strategy):
    """Whether XLA can compile the training step under `strategy`.

    Yes with one replica, and with several replicas of one worker that
    are all GPUs. Not on several logical CPU devices (XLA's compiled step
    cannot be placed on all of them) nor, here, across workers.
    """
    if strategy.num_replicas_in_sync == 1:
        return True
    if is_multi_worker(strategy):
        return False
    return all(":GPU:" in name.upper() for name in _replica_devices(strategy))


def describe(strategy, per_replica_batch_size):
    """The numbers `keras-snn train --dry-run` prints, as a dict.

    Keys: `strategy` (its name), `devices` (this worker's replica
    devices), `workers`, `task` (this worker's index), `replicas`,
    `per_replica_batch_size`, `global_batch_size`, `jit` (whether XLA can
    be used, `jit_supported`).
    """
    per_replica_batch_size = functional.validate_count(
        per_replica_batch_size, "per_replica_batch_size"
    )
    workers, task = 1, 0
    if is_multi_worker(strategy):
        config = _tf_config()
        workers = sum(len(v) for k, v in config["cluster"].items() if k != "ps")
        task = int(strategy.cluster_resolver.task_id)
    replicas = int(strategy.num_replicas_in_sync)
    if is_multi_worker(strategy):
        name = "MultiWorkerMirroredStrategy"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "MirroredStrategy"
    else:
        name = "one device"
    return {
        "strategy": name,
        "devices": list(_replica_devices(strategy)),
        "workers": workers,
        "task": task,
        "replicas": replicas,
        "per_replica_batch_size": per_replica_batch_size,
        "global_batch_size": per_replica_batch_size * replicas,
        "jit": jit_supported(strategy),
    }


# Random erasing (Zhong et al. 2020, Algorithm 1): the erased area as a
# fraction of the image (s_l, s_h) and the least aspect ratio r_1 (the
# rectangle's height / width lies in [r_1, 1 / r_1]), the paper's values.
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = 0.3


def augmentation(flip=False, shift=0, erase=0.0):
    """A stateless image augmentation for `EpochBatches` (or `fit`).

    Args:
        flip: bool, a random horizontal flip.
        shift: int >= 0, a random shift of up to `shift` pixels in each
            direction (zero padding, then a crop to the original size).
        erase: float in [0, 1], the probability of random erasing (Zhong
            et al. 2020, Algorithm 1), applied after the flip and the
            shift: a rectangle of `ERASE_AREA` of the image's area, with
            height / width in `[ERASE_ASPECT, 1 / ERASE_ASPECT]`, filled
            with uniform noise in [0, 1) (the images' range, as
            `keras_snn.datasets.load_arrays` gives them). Where the paper
            draws again until the rectangle fits, this clips it to the
            image.

    Returns:
        A function `(image, label, seed) -> (image, label)` for one
        example of shape `(H, W, C)`, whose randomness is drawn from the
        `(2,)` int32 `seed` only; `None` if it would change nothing.
    """
    if shift != int(shift) or shift < 0:
        raise ValueError(
            f"Argument `shift` must be an integer >= 0. Received: "
            f"shift={shift!r}"
        )
    if not 0 <= erase <= 1:
        raise ValueError(
            f"Argument `erase` must be a probability in [0, 1]. Received: "
            f"erase={erase!r}"
        )
    shift = int(shift)
    if not flip and not shift and not erase:
        return None

    def augment(image, label, seed):
        seeds = tf.random.experimental.stateless_split(seed, num=2)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[0])
        if shift:
            shape = tf.shape(image)
            padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
            image = tf.image.stateless_random_crop(padded, shape, seeds[1])
        if erase:
            # A seed of its own: flips and shifts stay those of runs
            # made without erasing.
            fold = tf.random.experimental.stateless_fold_in(seed, 1)
            image = _erase(image, erase, fold)
        return image, label

    return augment


def _erase(image, probability, seed):
    """`augmentation`'s random erasing of one `(H, W, C)` image."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    draw = tf.random.stateless_uniform([5], seeds[0])
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    low, high = ERASE_AREA
    area = (low + (high - low) * draw[0]) * height * width
    log_aspect = np.log(ERASE_ASPECT) * (1.0 - 2.0 * draw[1])
    aspect = tf.exp(log_aspect)

    def side(length, limit):
        return tf.clip_by_value(tf.round(length), 1.0, limit)

    rows = side(tf.sqrt(area * aspect), height)
    cols = side(tf.sqrt(area / aspect), width)
    top = tf.floor(draw[2] * (height - rows + 1.0))
    left = tf.floor(draw[3] * (width - cols + 1.0))
    y = tf.range(height)[:, None]
    x = tf.range(width)[None, :]
    inside = (y >= top) & (y < top + rows) & (x >= left) & (x < left + cols)
    inside = inside & (draw[4] < probability)
    noise = tf.random.stateless_uniform(shape, seeds[1], dtype=image.dtype)
    return tf.where(inside[:, :, None], noise, image)


class EpochBatches:
    """Batches of arrays whose order depends only on the seed and epoch.

    Each epoch is a permutation drawn from `(seed, epoch)` with a stateless
    generator, and each example's augmentation from `(seed, epoch, its
    index)`: every worker that builds it cuts the same batches, and an
    epoch run again after a restart sees the same data. `dataset` reads the
    epoch from a variable that `callback` (or `set_epoch`) sets at the start
    of each epoch.

    Args:
        x: array of inputs, `(examples, ...)`.
        y: array of labels, `(examples, ...)`, or `None`.
        batch_size: int, the (global) batch size.
        seed: int, the seed of the permutations and the augmentation.
        augment: a function `(image, label, seed) -> (image, label)` with
            `seed` a `(2,)` int32 tensor for TensorFlow's stateless random
            ops, or `None`.
        drop_remainder: bool, drop the last partial batch.
    """

    def __init__(
        self, x, y, batch_size, seed=0, augment=None, drop_remainder=False
    ):
        x = np.asarray(x)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(
                    f"`x` has {len(x)} examples and `y` {len(y)}; they must "
                    "be the same."
                )
        self.batch_size = functional.validate_count(batch_size, "batch_size")
        if not len(x):
            raise ValueError("`x` has no examples.")
        if drop_remainder and len(x) < self.batch_size:
            raise ValueError(
                f"The global batch of {self.batch_size} is larger than the "
                f"{len(x)} examples: no full batch. Use a smaller batch."
            )
        self.x, self.y = x, y
        self.seed = int(seed)
        self.augment = augment
        self.drop_remainder = bool(drop_remainder)
        with tf.init_scope():
            self._epoch = tf.Variable(
                0, dtype=tf.int32, trainable=False, name="epoch"
            )
        batches = len(x) / self.batch_size
        self.steps = int(batches if drop_remainder else np.ceil(batches))

    def set_epoch(self, epoch):
        """The epoch that the next iterator of `dataset()` serves."""
        self._epoch.assign(int(epoch))

    @property
    def callback(self):
        """A Keras callback that calls `set_epoch` at each epoch's start."""
        batches = self

        class _SetEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                batches.set_epoch(epoch)

        return _SetEpoch()

    def dataset(self):
        """The `tf.data.Dataset` of batches (auto-shard policy `DATA`)."""
        count = len(self.x)
        epoch_variable = self._epoch
        seed = self.seed
        arrays = (self.x,) if self.y is None else (self.x, self.y)
        augment = self.augment

        def epoch_order(_):
            epoch = epoch_variable.read_value()
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count), seed=tf.stack([seed, epoch])
            )
            epochs = tf.fill([count], epoch)
            return tf.data.Dataset.from_tensor_slices((order, epochs))

        def example(index, epoch):
            items = tuple(tf.gather(a, index) for a in tensors)
            if augment is not None:
                example_seed = tf.stack([seed, epoch * count + index])
                items = augment(*items, example_seed)
            return items

        def gather(indices, _):
            return tuple(tf.gather(a, indices) for a in tensors)

        tensors = tuple(tf.constant(a) for a in arrays)
        data = tf.data.Dataset.from_tensors(0).flat_map(epoch_order)
        data = data.apply(tf.data.experimental.assert_cardinality(count))
        batch = {"batch_size": self.batch_size}
        batch["drop_remainder"] = self.drop_remainder
        if augment is None:
            # Gather whole batches: one op per batch, not per example.
            data = data.batch(**batch).map(gather)
        else:
            data = data.map(example, num_parallel_calls=tf.data.AUTOTUNE)
            data = data.batch(**batch)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        options.deterministic = True
        return data.with_options(options).prefetch(tf.data.AUTOTUNE)


def _check_model(model, strategy):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Argument `model` must be a keras.Model. Received: {model!r}"
        )
    if strategy is not None and model.distribute_strategy is not strategy:
        raise ValueError(
            f"Model '{model.name}' was not created under the given strategy "
            f"({type(strategy).__name__}): build and compile it inside "
            "`with strategy.scope():`."
        )
    if model.optimizer is None:
        raise ValueError(
            f"Model '{model.name}' is not compiled: call `model.compile` "
            "inside `strategy.scope()` before `fit`."
        )


def _resolve_jit(model, strategy, jit_compile):
    """Sets `model.jit_compile` as asked, where the strategy allows it."""
    if jit_compile not in ("auto", True, False):
        raise ValueError(
            "Argument `jit_compile` must be 'auto', True or False. "
            f"Received: jit_compile={jit_compile!r}"
        )
    wanted = model.jit_compile if jit_compile == "auto" else jit_compile
    if wanted and not jit_supported(strategy):
        if is_chief(strategy):
            warnings.warn(
                f"XLA is off: it cannot compile one training step for the "
                f"{strategy.num_replicas_in_sync} replicas of "
                f"{type(strategy).__name__} on "
                f"{', '.join(_replica_devices(strategy)) or 'these devices'}.",
                stacklevel=3,
            )
        wanted = False
    model.jit_compile = bool(wanted)


def fit(
    model,
    x,
    y=None,
    *,
    per_replica_batch_size=32,
    epochs=1,
    seed=0,
    augment=None,
    validation_data=None,
    callbacks=None,
    verbose="auto",
    jit_compile="auto",
    strategy=None,
):
    """Trains `model` under the strategy it was created with.

    With one replica or a `MirroredStrategy` this is `model.fit`; under a
    `MultiWorkerMirroredStrategy` it is a `strategy.run` loop with the same
    callbacks, progress bar (the chief's), history and `BackupAndRestore`.
    Call it outside `strategy.scope()`.

    Args:
        model: a compiled `keras.Model`, built and compiled inside the
            strategy's scope.
        x: array of inputs (served by `EpochBatches`), or a
            `tf.data.Dataset` of batches of the global batch size.
        y: array of labels with an array `x`; `None` with a dataset.
        per_replica_batch_size: int, examples per replica and step; the
            global batch is this times `strategy.num_replicas_in_sync`.
            Ignored for a dataset `x`.
        epochs: int, the number of epochs.
        seed: int, the seed of `EpochBatches` (shuffling, augmentation).
        augment: the augmentation of `EpochBatches`, or `None`.
        validation_data: `(x_val, y_val)` arrays or `None`; evaluated at the
            end of each epoch (`val_` logs).
        callbacks: list of `keras.callbacks.Callback`.
        verbose: as for `model.fit`; non-chief workers print nothing.
        jit_compile: `"auto"` (the model's setting), `True` or `False`.
            XLA is turned off, with one warning, where `jit_supported` says
            the strategy does not allow it.
        strategy: if given, checked to be the model's strategy.

    Returns:
        The `keras.callbacks.History` of the run.

    Raises:
        ValueError: a model not compiled (or not under `strategy`), bad
            batch sizes, epochs or arrays.
    """
    _check_model(model, strategy)
    strategy = model.distribute_strategy
    epochs = functional.validate_count(epochs, "epochs")
    callbacks = list(callbacks or [])
    multi_worker = is_multi_worker(strategy)
    batches = None
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                "Argument `y` must be None when `x` is a tf.data.Dataset "
                "(it yields (inputs, labels) batches)."
            )
        data = x
        steps = None
    else:
        per_replica_batch_size = functional.validate_count(
            per_replica_batch_size, "per_replica_batch_size"
        )
        batches = EpochBatches(
            x,
            y,
            per_replica_batch_size * strategy.num_replicas_in_sync,
            seed=seed,
            augment=augment,
            # Every replica of every worker gets a full share of each step.
            drop_remainder=multi_worker,
        )
        data = batches.dataset()
        steps = batches.steps
        callbacks.insert(0, batches.callback)
    _resolve_jit(model, strategy, jit_compile)
    if not multi_worker:
        return model.fit(
            data,
            epochs=epochs,
            validation_data=validation_data,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
    from keras_snn import distributed_loop

    return distributed_loop.fit(
        model,
        data,
        steps=steps,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=verbose,
    )
