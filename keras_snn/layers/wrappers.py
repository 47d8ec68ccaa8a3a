"""`TimeFolded`: apply a per-sample layer to every time step at once."""

import keras
from keras import ops

__all__ = ["TimeFolded"]


@keras.saving.register_keras_serializable(package="keras_snn")
class TimeFolded(keras.layers.Wrapper):
    """Applies a layer to every time step by folding time into the batch.

    `(batch, time, ...)` is reshaped to `(batch * time, ...)`, the wrapped
    layer runs once, and the result is reshaped back to
    `(batch, time, ...)`. The result equals `keras.layers.TimeDistributed`
    for layers that treat samples independently (Conv2D, Dense, pooling,
    Flatten, Dropout), but it is one large call instead of one per step,
    which is much faster on CPU. A `BatchNormalization` inside computes its
    statistics over batch *and* time, which is what threshold-dependent BN
    (Zheng et al. 2021) and BN on input currents (Ledinauskas et al. 2020,
    Sec. 2.6) use for spiking networks.

    Args:
        layer: a `keras.layers.Layer` taking `(batch, ...)` inputs.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: tensor `(batch, time, ...)` with a static time length or a
            dynamic one.
        training: Python bool, passed to the wrapped layer.

    Returns:
        `(batch, time, ...)`, the wrapped layer's output per step.

    Example:

    ```python
    x = keras.Input((4, 8, 8, 1))
    y = keras_snn.layers.TimeFolded(keras.layers.Conv2D(16, 3))(x)
    # (None, 4, 6, 6, 16)
    ```
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Argument `layer` of TimeFolded must be a keras Layer. "
                f"Received: layer={layer!r}"
            )
        super().__init__(layer, **kwargs)
        self.supports_masking = False

    def _check_rank(self, shape):
        if len(shape) < 3:
            raise ValueError(
                f"Layer '{self.name}' (TimeFolded) expects input of shape "
                "(batch, time, ...), rank >= 3. "
                f"Received: input shape={tuple(shape)}"
            )

    def build(self, input_shape):
        self._check_rank(input_shape)
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        self.built = True

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        folded = ops.reshape(inputs, (-1, *shape[2:]))
        if self.layer._call_has_training_arg:
            outputs = self.layer(folded, training=training)
        else:
            outputs = self.layer(folded)
        out_shape = ops.shape(outputs)
        return ops.reshape(outputs, (shape[0], shape[1], *out_shape[1:]))
