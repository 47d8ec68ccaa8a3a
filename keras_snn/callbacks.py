"""Keras callbacks for spiking networks."""

import keras
import numpy as np
from keras import ops

from keras_snn import analysis
from keras_snn import functional

__all__ = ["FiringRateLogger"]


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
        if self.log_dir is not None:
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
