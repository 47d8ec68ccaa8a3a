"""One training process of tests/test_distribute.py.

`python distributed_worker.py OUT --strategy one|mirrored|multiworker
[--cpus N] [--epochs E]` trains a small spiking network with synchronized
batch normalization (tdBN, or Keras' inside TimeFolded) through
`keras_snn.training.fit` on fixed random data and writes its
final weights and history to OUT/weights-<task>.npz. Under the multiworker
strategy TF_CONFIG names the cluster; OUT/progress-<task> holds the last
finished "epoch step", for a test that kills a worker mid-epoch.
"""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--strategy", default="one")
parser.add_argument("--cpus", type=int, default=1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch", type=int, default=8, help="per replica")
parser.add_argument("--float64", action="store_true")
parser.add_argument("--step-delay", type=float, default=0.0)
parser.add_argument("--jit", action="store_true")
parser.add_argument("--norm", default="tdbn", choices=("tdbn", "bn"))
parser.add_argument("--unsynchronized", action="store_true")
args = parser.parse_args()

os.makedirs(args.out, exist_ok=True)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_snn  # noqa: E402

if args.cpus > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpus
    )
import keras  # noqa: E402

if args.float64:
    keras.config.set_floatx("float64")
strategy = keras_snn.training.get_strategy(args.strategy)
task = int(
    json.loads(os.environ.get("TF_CONFIG", "{}"))
    .get("task", {})
    .get("index", 0)
)

rng = np.random.default_rng(0)
x = rng.random((64, 6, 6, 1)).astype(keras.config.floatx())
y = rng.integers(0, 3, 64).astype("int32")
x_val, y_val = x[:20], y[:20]

keras.utils.set_random_seed(1)
with strategy.scope():
    model = keras_snn.models.from_spec(
        "4C3-12FC-Decoding",
        input_shape=(6, 6, 1),
        num_classes=3,
        timesteps=2,
        norm=args.norm,
        synchronized=not args.unsynchronized,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.5, momentum=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=args.jit,
    )


class Progress(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        path = os.path.join(args.out, f"progress-{task}")
        with open(path + ".tmp", "w") as file:
            file.write(f"{self.epoch} {batch}\n")
        os.replace(path + ".tmp", path)
        if args.step_delay:
            import time

            time.sleep(args.step_delay)


history = keras_snn.training.fit(
    model,
    x,
    y,
    per_replica_batch_size=args.batch,
    epochs=args.epochs,
    seed=3,
    validation_data=(x_val, y_val),
    callbacks=[
        Progress(),
        keras_snn.callbacks.AtomicBackupAndRestore(
            os.path.join(args.out, "backup"), delete_checkpoint=False
        ),
    ],
    verbose=0,
)
weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
np.savez(
    os.path.join(args.out, f"weights-{task}.npz"),
    history=json.dumps(history.history),
    **weights,
)
print("done", task, flush=True)
sys.exit(0)
