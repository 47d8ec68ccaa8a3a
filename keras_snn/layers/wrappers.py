"""`TimeFolded`: apply a per-sample layer to every time step at once."""

import keras
from keras import ops

from keras_snn.saving import register

__all__ = ["TimeFolded", "repeat_over_time"]

# Layers whose output for one sample is a deterministic function of that
# sample's input (a `BatchNormalization` in training mode normalises with
# the mean and biased variance of the batch, which do not change when every
# sample is repeated `T` times). Random layers (Dropout, noise) are not here:
# their draws would become the same at every step.
_TIME_INVARIANT_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Rescaling,
    keras.layers.Activation,
    keras.layers.ReLU,
)


def repeat_over_time(inputs, timesteps):
    """Repeats `(batch, ...)` along a new time axis: `(batch, T, ...)`.

    The result is a broadcast of `inputs`, which `TimeFolded` recognises:
    a time-invariant layer applied to it runs once per sample instead of
    once per sample and step (see `TimeFolded`).

    Args:
        inputs: tensor `(batch, ...)`.
        timesteps: int, `T`.

    Returns:
        Tensor `(batch, timesteps, ...)`.
    """
    shape = ops.shape(inputs)
    return ops.broadcast_to(
        ops.expand_dims(inputs, 1), (shape[0], timesteps, *shape[1:])
    )


def _repeated_source(inputs):
    """The `(batch, ...)` tensor that `inputs` repeats along time, or None.

    Recognises the broadcast made by `repeat_over_time` in a traced graph
    (`tf.function`, `model.fit`), also behind the casts and identities
    Keras inserts between layers; eager tensors give None.
    """
    tensor = inputs
    while True:
        try:
            op = tensor.op
        except AttributeError:  # eager tensors have no op
            return None
        if op.type not in _PASS_THROUGH:
            break
        tensor = op.inputs[0]
    if op.type != "BroadcastTo":
        return None
    source = op.inputs[0]
    shape, rank = inputs.shape, inputs.shape.rank
    if rank is None or source.shape.rank != rank or source.shape[1] != 1:
        return None
    if source.shape[0] != shape[0]:
        return None
    if None in source.shape[2:] or source.shape[2:] != shape[2:]:
        return None
    return ops.cast(ops.squeeze(source, 1), inputs.dtype)


# Elementwise ops that commute with a broadcast along time.
_PASS_THROUGH = ("Cast", "Identity")


def call_layer(layer, inputs, training):
    """`layer(inputs)`, with `training` if the layer's `call` takes it."""
    if getattr(layer, "_call_has_training_arg", False):
        return layer(inputs, training=training)
    return layer(inputs)


@register
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

    When the input is the same at every step, as after `DirectEncoding`
    (the image fed as a constant current), a time-invariant layer (Conv,
    Dense, pooling, Flatten, BatchNormalization, ...; not Dropout or other
    random layers) runs once per sample and its output is repeated along
    time: the same values and gradients as `T` runs (BN statistics over `T`
    identical copies equal those over one), for `1/T` of the compute and
    memory. The next `TimeFolded` layer sees a repeated input again, so the
    whole chain up to the first spiking layer runs once. This happens in
    traced graphs (`model.fit`, `predict`, `tf.function`); eager calls
    take the folded path.

    Args:
        layer: a `keras.layers.Layer` taking `(batch, ...)` inputs.
        time_invariant: `None` (default): run the layer once on inputs that
            repeat along time if it is one of the deterministic per-sample
            layers listed above; `True`: do so for any layer (you assert
            that it treats the `T` copies alike); `False`: never.
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

    def __init__(self, layer, time_invariant=None, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Argument `layer` of TimeFolded must be a keras Layer. "
                f"Received: layer={layer!r}"
            )
        if time_invariant not in (None, True, False):
            raise ValueError(
                "Argument `time_invariant` of TimeFolded must be None, True "
                f"or False. Received: time_invariant={time_invariant!r}"
            )
        super().__init__(layer, **kwargs)
        self.time_invariant = time_invariant
        self.supports_masking = False

    @property
    def runs_once_on_repeated_input(self):
        """Whether a time-repeated input is processed once per sample."""
        if self.time_invariant is None:
            return isinstance(self.layer, _TIME_INVARIANT_LAYERS)
        return self.time_invariant

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

    def _apply(self, inputs, training):
        return call_layer(self.layer, inputs, training)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        if self.runs_once_on_repeated_input:
            source = _repeated_source(inputs)
            if source is not None:
                return repeat_over_time(self._apply(source, training), shape[1])
        folded = ops.reshape(inputs, (-1, *shape[2:]))
        outputs = self._apply(folded, training)
        out_shape = ops.shape(outputs)
        return ops.reshape(outputs, (shape[0], shape[1], *out_shape[1:]))

    def get_config(self):
        config = super().get_config()
        config["time_invariant"] = self.time_invariant
        return config
