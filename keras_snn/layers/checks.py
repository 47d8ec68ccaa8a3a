"""Input checks shared by the layers."""

import keras

__all__ = ["check_float_input", "serialize_options"]


def check_float_input(layer, inputs, what="input"):
    """Raises a `TypeError` naming `layer` if `inputs` is not floating point.

    Args:
        layer: the calling layer (its name and class go in the message).
        inputs: the tensor received.
        what: what the layer expects, in words, e.g. `"input currents"`.
    """
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            f"Layer '{layer.name}' ({type(layer).__name__}) expects float "
            f"{what} (float16, bfloat16, float32 or float64). "
            f"Received: input dtype={dtype}"
        )


_SERIALIZERS = {
    "initializer": keras.initializers.serialize,
    "regularizer": keras.regularizers.serialize,
    "constraint": keras.constraints.serialize,
}


def serialize_options(layer, names):
    """Config entries for a layer's initializer/regularizer/constraint args.

    Args:
        layer: the layer holding the attributes.
        names: attribute names ending in `_initializer`, `_regularizer` or
            `_constraint`.

    Returns:
        A dict from each name to its serialized value.
    """
    return {
        name: _SERIALIZERS[name.rsplit("_", 1)[1]](getattr(layer, name))
        for name in names
    }
