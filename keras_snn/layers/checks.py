"""Argument and input checks shared by the layers."""

import keras
import numpy as np
from keras import ops

__all__ = [
    "FRACTION",
    "POSITIVE",
    "UNIT_INTERVAL",
    "check_finite",
    "check_float_input",
    "check_number",
    "in_xla_context",
    "propagate_non_finite",
    "silence_warning",
    "layer_label",
    "serialize_options",
]

# (what is accepted, in words; the test on the float value). Non-finite
# values are refused whatever the test says.
POSITIVE = ("a finite number > 0", lambda value: value > 0)
UNIT_INTERVAL = ("a number in [0, 1]", lambda value: 0.0 <= value <= 1.0)
FRACTION = ("a number in [0, 1)", lambda value: 0.0 <= value < 1.0)


def layer_label(layer_class, kwargs):
    """`"LIF 'name'"` for a layer being constructed, or `"LIF"` if unnamed.

    Args:
        layer_class: the class of the layer being constructed.
        kwargs: the base layer keyword arguments it received.

    Returns:
        The label used by `check_number` messages.
    """
    name = kwargs.get("name")
    label = layer_class.__name__
    return f"{label} '{name}'" if name else label


def _compute_dtype(dtype):
    """The compute dtype name of a `dtype` layer argument (or the global)."""
    try:
        if dtype is None:
            policy = keras.config.dtype_policy()
        else:
            policy = keras.dtype_policies.get(dtype)
        return keras.backend.standardize_dtype(policy.compute_dtype)
    except (TypeError, ValueError):
        return "float32"


def _numpy_dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def check_number(layer_class, kwargs, name, value, kind):
    """Checks a numeric constructor argument of a layer; returns a float.

    The value must be a real number (not a bool), finite, satisfy `kind`,
    and still satisfy it once rounded to the layer's compute dtype (so that
    `threshold=1e300` in float32, which would become `inf`, or `1e-50`,
    which would become `0`, is refused at construction, not at call).

    Args:
        layer_class: the class of the layer being constructed.
        kwargs: its base layer keyword arguments (`name`, `dtype`).
        name: the argument's name.
        value: the value received.
        kind: `POSITIVE`, `UNIT_INTERVAL`, `FRACTION`, or another pair
            `(accepted in words, predicate on the float value)`.

    Returns:
        The value as a Python float.

    Raises:
        ValueError: "Argument `threshold` of LIF 'lif' must be a finite
            number > 0. Received: threshold=inf".
    """
    accepted, predicate = kind
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    label = layer_label(layer_class, kwargs)
    if number is None or not np.isfinite(number) or not predicate(number):
        raise ValueError(
            f"Argument `{name}` of {label} must be {accepted}. "
            f"Received: {name}={value!r}"
        )
    dtype = _compute_dtype(kwargs.get("dtype"))
    if keras.backend.is_float_dtype(dtype):
        with np.errstate(over="ignore", under="ignore"):
            rounded = float(np.asarray(number, dtype=_numpy_dtype(dtype)))
        if not np.isfinite(rounded) or not predicate(rounded):
            info = np.finfo(_numpy_dtype(dtype))
            raise ValueError(
                f"Argument `{name}` of {label} must be {accepted} that the "
                f"layer's dtype {dtype} can hold (magnitude between "
                f"{float(info.tiny):.3g} and {float(info.max):.3g}); in "
                f"{dtype} it becomes {rounded!r}. Received: {name}={value!r}"
            )
    return number


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


def check_finite(layer, inputs, what="input"):
    """Makes a call on NaN or infinite `inputs` fail, naming `layer`.

    On the TensorFlow backend, outside XLA (eager, `tf.function`, Keras'
    default `jit_compile="auto"` on CPU), this adds
    `tf.debugging.check_numerics`, which raises `InvalidArgumentError` with
    the layer's name when the tensor holds a NaN or an infinity. XLA
    (`jit_compile=True`) drops that check when it compiles the step; use
    `propagate_non_finite` as well so that the fault then shows up as NaN
    outputs and a NaN loss instead of plausible numbers.

    Args:
        layer: the calling layer (its name and class go in the message).
        inputs: the tensor to check.
        what: what the tensor is, in words, e.g. `"input currents"`.

    Returns:
        `inputs`, checked.
    """
    if keras.backend.backend() != "tensorflow":
        return inputs
    import tensorflow as tf

    # Forward pass only: `check_numerics` on `inputs` itself would also
    # check the gradient, a second pass in every training step.
    checked = tf.debugging.check_numerics(
        tf.stop_gradient(inputs),
        f"Layer '{layer.name}' ({type(layer).__name__}) received non-finite "
        f"{what} (NaN or inf): check the input data (and the weights of the "
        "layers before it, which a NaN input may already have corrupted in "
        "training). Pass check_finite=False to the layer to skip this check",
    )
    with tf.control_dependencies([checked]):
        return tf.identity(inputs)


def in_xla_context():
    """Whether the code being traced will be compiled by XLA.

    True inside a `tf.function(jit_compile=True)` (Keras' `jit_compile=True`
    train, test and predict steps), where TensorFlow assertions are
    dropped. Uses TensorFlow's own test of the graph being built; `False`
    when it cannot tell.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util

        graph = tf_ops.get_default_graph()
        return bool(control_flow_util.GraphOrParentsInXlaContext(graph))
    except (ImportError, AttributeError):
        return False


def propagate_non_finite(outputs, inputs):
    """Returns `outputs`, made NaN wherever `inputs` holds a NaN or inf.

    A spike `H(u - theta)` is 0 for a NaN potential, which would hide a
    NaN input. `outputs + 0 * inputs` is unchanged for finite inputs (and
    passes a zero gradient) and NaN elsewhere. `inputs` must broadcast to
    `outputs`.

    Args:
        outputs: the spikes (or other outputs) of the layer.
        inputs: what they were computed from, element by element.

    Returns:
        The outputs, NaN where the inputs were not finite.
    """
    return outputs + ops.cast(inputs, outputs.dtype) * 0


def silence_warning(layer):
    """The warning text for a spiking `layer` silent on a whole batch.

    Args:
        layer: a `keras_snn.layers.LIF` or `IF` layer.

    Returns:
        A one-paragraph message naming the layer, its threshold and what to
        try.
    """
    return (
        f"Layer '{layer.name}' ({type(layer).__name__}) did not fire at all "
        f"on the first training batch (threshold={layer.threshold:g}): its "
        "spikes are all 0, so the layers after it see no input and no "
        "gradient reaches the layers before it through the spikes, and "
        "training stalls (e.g. at chance accuracy). Normalise its input "
        "currents (keras_snn.layers.TDBatchNormalization, or "
        "TimeFolded(BatchNormalization()) before it), lower its threshold, "
        "or scale the inputs up."
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
