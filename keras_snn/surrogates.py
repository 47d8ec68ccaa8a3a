"""Surrogate gradients for the spike non-linearity.

A surrogate is called on `x = u - threshold`. Its forward pass is always the
Heaviside step of `keras_snn.functional.heaviside` (`H(0) = 1`); its backward
pass replaces the step's zero/undefined derivative by the smooth function
`grad(x)`, wired in with `tf.custom_gradient`. The backward pass therefore
never differentiates the surrogate's own formula: `grad` *is* the formula.

Write your own by subclassing `Surrogate` and implementing `grad`:

```python
@keras.saving.register_keras_serializable(package="my_pkg")
class Gaussian(keras_snn.surrogates.Surrogate):
    def __init__(self, sigma=0.5):
        self.sigma = sigma

    def grad(self, x, threshold=1.0):
        return keras.ops.exp(-0.5 * (x / self.sigma) ** 2)

    def get_config(self):
        return {"sigma": self.sigma}
```
"""

import math

import keras
import tensorflow as tf
from keras import ops

from keras_snn.functional import heaviside
from keras_snn.functional import validate_number
from keras_snn.functional import validate_positive
from keras_snn.saving import register

__all__ = [
    "ATan",
    "Exponential",
    "FastSigmoid",
    "LIFPseudoDerivative",
    "Rectangular",
    "Sigmoid",
    "StraightThrough",
    "Surrogate",
    "Triangle",
    "deserialize",
    "get",
    "serialize",
]



@register
class Surrogate:
    """Base class: Heaviside forward pass, `grad(x)` as backward pass.

    Subclasses implement `grad(x, threshold)`, the surrogate derivative of
    the spike with respect to `x = u - threshold`, and `get_config()`.
    Calling the object applies the step with that gradient through
    `tf.custom_gradient`; the gradient with respect to the threshold follows
    from `x = u - threshold` (it is `-grad`).

    Call arguments:
        x: tensor, the membrane potential minus the threshold.
        threshold: the threshold, used only by surrogates whose gradient
            depends on it (`LIFPseudoDerivative`). Defaults to `1.0`.

    Returns:
        Spikes, `1.0` where `x >= 0` and `0.0` elsewhere, in `x`'s dtype.
    """

    def grad(self, x, threshold=1.0):
        raise NotImplementedError(
            f"{type(self).__name__} must implement grad(x, threshold)."
        )

    def __call__(self, x, threshold=1.0):
        threshold = ops.convert_to_tensor(threshold)

        @tf.custom_gradient
        def spike(x):
            def backward(upstream):
                slope = ops.cast(self.grad(x, threshold), upstream.dtype)
                return upstream * slope

            return heaviside(x), backward

        return spike(x)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return (
            type(self) is type(other)
            and self.get_config() == other.get_config()
        )

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.get_config().items())))


@register
class Rectangular(Surrogate):
    """Rectangular window surrogate of Wu et al. 2019, Eq. 14.

    `grad(x) = 1 / width` where `|x| < width / 2`, else `0`.

    Args:
        width: float > 0, the window width `a`. Defaults to `1.0`.

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, Eq. 14.
    """

    def __init__(self, width=1.0):
        self.width = validate_positive(width, "width", "Rectangular")

    def grad(self, x, threshold=1.0):
        inside = ops.less(ops.abs(x), self.width / 2.0)
        return ops.cast(inside, x.dtype) / self.width

    def get_config(self):
        return {"width": self.width}


@register
class FastSigmoid(Surrogate):
    """Fast-sigmoid surrogate of Ledinauskas et al. 2020, Eq. 9.

    `grad(x) = beta / (1 + gamma * |x|) ** 2`. The paper prints the bracket
    without the absolute value; the derivative of the fast sigmoid
    `x / (1 + gamma |x|)` it comes from, and the property `f(0) < f(theta)`
    the paper asks for, need `|x|`.

    Args:
        gamma: float > 0, the inverse width `gamma`; larger is narrower.
            Defaults to `10.0`.
        beta: float > 0, the height `beta` (the paper uses 1). Defaults to
            `1.0`.

    Reference:
        Ledinauskas et al., "Training Deep Spiking Neural Networks", 2020,
        Eq. 8-9.
    """

    def __init__(self, gamma=10.0, beta=1.0):
        self.gamma = validate_positive(gamma, "gamma", "FastSigmoid")
        self.beta = validate_positive(beta, "beta", "FastSigmoid")

    def grad(self, x, threshold=1.0):
        return self.beta / ops.square(1.0 + self.gamma * ops.abs(x))

    def get_config(self):
        return {"gamma": self.gamma, "beta": self.beta}


@register
class Triangle(Surrogate):
    """Triangular surrogate: `grad(x) = max(0, 1 - |x| / width) / width`.

    The area under the gradient is 1, as for `Rectangular`.

    Args:
        width: float > 0, half the base of the triangle. Defaults to `1.0`.
    """

    def __init__(self, width=1.0):
        self.width = validate_positive(width, "width", "Triangle")

    def grad(self, x, threshold=1.0):
        return ops.relu(1.0 - ops.abs(x) / self.width) / self.width

    def get_config(self):
        return {"width": self.width}


@register
class Exponential(Surrogate):
    """SLAYER-style exponential surrogate: `scale * exp(-|x| / tau)`.

    Args:
        tau: float > 0, the decay length of the gradient. Defaults to `1.0`.
        scale: float > 0, the gradient at the threshold. Defaults to `1.0`.

    Reference:
        Shrestha and Orchard, "SLAYER: Spike Layer Error Reassignment in
        Time", NeurIPS 2018 (the spike escape-rate function).
    """

    def __init__(self, tau=1.0, scale=1.0):
        self.tau = validate_positive(tau, "tau", "Exponential")
        self.scale = validate_positive(scale, "scale", "Exponential")

    def grad(self, x, threshold=1.0):
        return self.scale * ops.exp(-ops.abs(x) / self.tau)

    def get_config(self):
        return {"tau": self.tau, "scale": self.scale}


@register
class Sigmoid(Surrogate):
    """Sigmoid surrogate: `grad(x) = alpha s (1 - s)`, `s = sigmoid(alpha x)`.

    Args:
        alpha: float > 0, the slope. Defaults to `4.0`.
    """

    def __init__(self, alpha=4.0):
        self.alpha = validate_positive(alpha, "alpha", "Sigmoid")

    def grad(self, x, threshold=1.0):
        s = ops.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)

    def get_config(self):
        return {"alpha": self.alpha}


@register
class ATan(Surrogate):
    """Arc-tangent surrogate: `grad(x) = alpha / (2 (1 + (pi alpha x / 2)^2))`.

    Args:
        alpha: float > 0, the slope. Defaults to `2.0`.
    """

    def __init__(self, alpha=2.0):
        self.alpha = validate_positive(alpha, "alpha", "ATan")

    def grad(self, x, threshold=1.0):
        z = (math.pi / 2.0) * self.alpha * x
        return (self.alpha / 2.0) / (1.0 + ops.square(z))

    def get_config(self):
        return {"alpha": self.alpha}


@register
class StraightThrough(Surrogate):
    """Straight-through estimator: `grad(x) = 1` everywhere."""

    def grad(self, x, threshold=1.0):
        return ops.ones_like(x)


@register
class LIFPseudoDerivative(Surrogate):
    """Constant LIF pseudo-derivative of Srinivasan et al., Eq. 1.

    `grad(x) = 1 / (threshold + alpha)`, the same at every potential: a
    higher threshold makes the output change more slowly with the input.

    Args:
        alpha: float >= 0, the correction term for the leak. The paper gives
            no value; `1.0` is keras_snn's default. Defaults to `1.0`.

    Reference:
        Srinivasan et al., "Training Deep Spiking Neural Networks for
        Energy-Efficient Neuromorphic Computing", Eq. 1.
    """

    def __init__(self, alpha=1.0):
        self.alpha = validate_number(
            alpha,
            "alpha",
            "a number >= 0",
            _is_non_negative,
            "LIFPseudoDerivative",
        )

    def grad(self, x, threshold=1.0):
        threshold = ops.cast(threshold, x.dtype)
        return ops.ones_like(x) / (threshold + self.alpha)

    def get_config(self):
        return {"alpha": self.alpha}


def _is_non_negative(value):
    return value >= 0


_SURROGATES = {
    "rectangular": Rectangular,
    "fast_sigmoid": FastSigmoid,
    "triangle": Triangle,
    "exponential": Exponential,
    "sigmoid": Sigmoid,
    "atan": ATan,
    "straight_through": StraightThrough,
    "lif_pseudo_derivative": LIFPseudoDerivative,
}
_ALIASES = {
    "rect": "rectangular",
    "boxcar": "rectangular",
    "superspike": "fast_sigmoid",
    "triangular": "triangle",
    "slayer": "exponential",
    "arctan": "atan",
    "ste": "straight_through",
    "pseudo_derivative": "lif_pseudo_derivative",
}


def serialize(surrogate):
    """Returns the Keras config dict of a surrogate instance."""
    return keras.saving.serialize_keras_object(surrogate)


def deserialize(config):
    """Builds a surrogate from the dict written by `serialize`."""
    obj = keras.saving.deserialize_keras_object(config)
    if not isinstance(obj, Surrogate):
        raise ValueError(
            "Could not build a surrogate from this config; it describes "
            f"{type(obj).__name__}. Received: config={config!r}"
        )
    return obj


def get(identifier):
    """Returns a surrogate from a name, a config dict or an instance.

    Args:
        identifier: `None` (the default `Rectangular()`), a name such as
            `"atan"` or `"fast_sigmoid"` (see `keras_snn.surrogates.NAMES`),
            a dict from `serialize`, or a `Surrogate` instance (returned as
            is).

    Returns:
        A `Surrogate` instance.

    Example:

    ```python
    keras_snn.surrogates.get("fast_sigmoid")
    keras_snn.surrogates.get(keras_snn.surrogates.ATan(alpha=3.0))
    ```
    """
    if identifier is None:
        return Rectangular()
    if isinstance(identifier, Surrogate):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        key = _ALIASES.get(key, key)
        if key in _SURROGATES:
            return _SURROGATES[key]()
        raise ValueError(
            f"Unknown surrogate {identifier!r}. Valid names: "
            f"{sorted(_SURROGATES)} (aliases: {sorted(_ALIASES)}). "
            f"Received: surrogate={identifier!r}"
        )
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(
        "Argument `surrogate` must be a name, a config dict or a "
        "keras_snn.surrogates.Surrogate instance. Received: "
        f"surrogate={identifier!r} of type {type(identifier).__name__}"
    )


NAMES = tuple(sorted(_SURROGATES))
