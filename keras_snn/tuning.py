"""Surrogate-gradient width tuning and per-layer gradient diagnostics.

Ledinauskas et al. 2020 (Sec. 2.5) show that each spiking layer multiplies
the variance of the backpropagated gradient by `<f(u)^2>`, the mean square
of the surrogate derivative over the distribution of the potential:

```
var[du_l] = <f(u_l)^2> var[ds_l]                                  (Eq. 11)
<f(u)^2> ~ beta / (gamma sigma_u)                                 (Eq. 12)
var[ds_{l-1}] ~ var[w_l] <f(u_l)^2> var[ds_l]                     (Eq. 13)
```

so the gradient explodes towards the input when the surrogate is too wide
(small `gamma` of the fast sigmoid, Eq. 9) and vanishes when it is too
narrow. Because the relation is monotonic, `gamma` is found by bisection
so that "the average magnitude of the gradient of the layers in the first
half of the network would be as close as possible to the second half"
(Sec. 3). `tune_surrogate_width` does this on a model and data;
`bisect_balance` is the search itself on any gradient profile.

`gradient_norms` is the diagnostic of Zheng et al. 2021, Fig. 2: the mean
norm of the gradient of each layer's weights over a few training batches;
`plot_gradient_norms` draws it per layer (log scale).
"""

import dataclasses
import math

import keras
import numpy as np

from keras_snn import surrogates
from keras_snn.layers.neurons import LIF

__all__ = [
    "BisectionResult",
    "WIDTH_PARAMETERS",
    "balance",
    "bisect_balance",
    "gradient_norms",
    "layer_gradient_magnitudes",
    "plot_gradient_norms",
    "set_surrogate_parameter",
    "tune_surrogate_width",
]

# The width parameter of each surrogate and a default search bracket.
WIDTH_PARAMETERS = {
    surrogates.FastSigmoid: ("gamma", (0.5, 200.0)),
    surrogates.Rectangular: ("width", (0.05, 20.0)),
    surrogates.Triangle: ("width", (0.05, 20.0)),
    surrogates.Exponential: ("tau", (0.05, 20.0)),
    surrogates.Sigmoid: ("alpha", (0.1, 100.0)),
    surrogates.ATan: ("alpha", (0.1, 100.0)),
}

STATISTICS = ("mean_abs", "l2")


@dataclasses.dataclass
class BisectionResult:
    """What `bisect_balance` and `tune_surrogate_width` return.

    Attributes:
        value: the parameter found (e.g. `gamma`).
        balance: `balance(profile(value))`, the log ratio of the mean
            gradient magnitude of the first half of the layers to that of
            the second half (0 is perfect balance).
        history: list of `(value, balance)` for every evaluation, in order.
        converged: whether `|balance| <= atol` or the bracket shrank below
            `rtol` before `max_iter` evaluations.
        magnitudes: per-layer gradient magnitudes at `value` (a dict for
            `tune_surrogate_width`, the profile's output otherwise).
        parameter: the name of the tuned surrogate parameter, if any.
    """

    value: float
    balance: float
    history: list
    converged: bool
    magnitudes: object = None
    parameter: str = None


def balance(magnitudes):
    """Log ratio of the first half's mean gradient magnitude to the second's.

    With `n` layers in order from input to output, the first half is the
    first `n // 2` layers and the second half the last `n // 2` (the middle
    layer of an odd count is in neither):

    ```
    balance = log(mean(m[:n//2])) - log(mean(m[n - n//2:]))
    ```

    It is positive when the gradient grows towards the input (exploding)
    and negative when it shrinks (vanishing); Ledinauskas et al. 2020
    (Sec. 2.5, Sec. 3) tune `gamma` to make it 0.

    Args:
        magnitudes: sequence (or dict, in insertion order) of per-layer
            gradient magnitudes, at least 2, all >= 0.

    Returns:
        A float; `+inf`/`-inf` if one half has no gradient at all.
    """
    if isinstance(magnitudes, dict):
        magnitudes = list(magnitudes.values())
    values = np.asarray(magnitudes, "float64").reshape(-1)
    if values.size < 2 or np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError(
            "Argument `magnitudes` must hold at least 2 finite per-layer "
            "gradient magnitudes >= 0. Received: "
            f"magnitudes={np.asarray(magnitudes).tolist()}"
        )
    half = values.size // 2
    first = float(values[:half].mean())
    second = float(values[values.size - half :].mean())
    if first == 0.0 and second == 0.0:
        return 0.0
    if second == 0.0:
        return math.inf
    if first == 0.0:
        return -math.inf
    return math.log(first) - math.log(second)


def bisect_balance(profile, low, high, atol=0.02, rtol=1e-3, max_iter=30):
    """Finds the parameter where `balance(profile(p)) = 0` by bisection.

    The search is on a log scale (the next point is `sqrt(low * high)`),
    since widths span orders of magnitude, and needs `balance` to change
    sign between `low` and `high`; it works whether the balance increases
    or decreases with the parameter. This is the bisection search of
    Ledinauskas et al. 2020, Sec. 2.5.

    Args:
        profile: function of the parameter returning per-layer gradient
            magnitudes (input layer first), as accepted by `balance`.
        low: float > 0, lower end of the bracket.
        high: float > low, upper end of the bracket.
        atol: float >= 0, stop when `|balance| <= atol`. Defaults to
            `0.02` (first and second halves within 2%).
        rtol: float > 0, stop when `high / low <= 1 + rtol`. Defaults to
            `1e-3`.
        max_iter: int >= 1, the most evaluations inside the bracket.
            Defaults to `30`.

    Returns:
        A `BisectionResult`.

    Raises:
        ValueError: for a bad bracket or tolerance, or when the balance
            has the same sign at both ends (the message gives both values).

    Example:

    ```python
    # Gradients multiplied by gamma0 / gamma per layer towards the input.
    profile = lambda g: [(4.0 / g) ** (5 - l) for l in range(6)]
    keras_snn.tuning.bisect_balance(profile, 0.5, 50.0).value  # ~4.0
    ```

    Reference:
        Ledinauskas et al., "Training Deep Spiking Neural Networks", 2020,
        Sec. 2.5.
    """
    low, high = _check_bracket(low, high)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not (
            isinstance(value, (int, float)) and value >= 0
        ):
            raise ValueError(
                f"Argument `{name}` must be a number >= 0. Received: "
                f"{name}={value!r}"
            )
    if (
        isinstance(max_iter, bool)
        or not isinstance(max_iter, int)
        or (max_iter < 1)
    ):
        raise ValueError(
            "Argument `max_iter` must be an integer >= 1. Received: "
            f"max_iter={max_iter!r}"
        )
    history = []

    def evaluate(value):
        magnitudes = profile(value)
        result = balance(magnitudes)
        history.append((value, result))
        return result, magnitudes

    b_low, m_low = evaluate(low)
    b_high, m_high = evaluate(high)
    for value, b, m in ((low, b_low, m_low), (high, b_high, m_high)):
        if abs(b) <= atol:
            return BisectionResult(value, b, history, True, m)
    if np.sign(b_low) == np.sign(b_high):
        raise ValueError(
            "The gradient balance has the same sign at both ends of the "
            f"bracket (balance={b_low:+.3g} at low={low:g}, {b_high:+.3g} "
            f"at high={high:g}), so it has no root there; widen the "
            "bracket. Received: "
            f"low={low!r}, high={high!r}"
        )
    value, b, magnitudes = low, b_low, m_low
    converged = False
    for _ in range(max_iter):
        value = math.sqrt(low * high)
        b, magnitudes = evaluate(value)
        if abs(b) <= atol:
            converged = True
            break
        if np.sign(b) == np.sign(b_low):
            low, b_low = value, b
        else:
            high = value
        if high / low <= 1.0 + rtol:
            converged = True
            break
    return BisectionResult(value, b, history, converged, magnitudes)


def _check_bracket(low, high):
    valid = all(
        not isinstance(v, bool)
        and isinstance(v, (int, float, np.floating))
        and math.isfinite(v)
        and v > 0
        for v in (low, high)
    )
    if not valid or not low < high:
        raise ValueError(
            "Arguments `low` and `high` must be finite numbers with "
            f"0 < low < high. Received: low={low!r}, high={high!r}"
        )
    return float(low), float(high)


def _spiking_layers(model):
    found = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, LIF)
    ]
    if not found:
        raise ValueError(
            f"Argument `model` ('{model.name}') has no spiking layers "
            "(keras_snn.layers.LIF or IF) whose surrogate could be tuned. "
            f"Received: model={model.name!r}"
        )
    return found


def set_surrogate_parameter(model, parameter, value):
    """Sets a surrogate parameter on every spiking layer of `model`.

    Each `LIF`/`IF` layer gets a new surrogate of the same class with
    `parameter=value` (the other arguments kept), and the model's compiled
    train/test/predict functions are cleared so that the next call traces
    the new surrogate.

    Args:
        model: a Keras model with keras_snn neuron layers.
        parameter: str, the surrogate argument, e.g. `"gamma"`.
        value: float > 0, its new value.

    Returns:
        The list of the spiking layers changed.
    """
    layers = _spiking_layers(model)
    for layer in layers:
        surrogate = layer.cell.surrogate
        config = surrogate.get_config()
        if parameter not in config:
            raise ValueError(
                f"Layer '{layer.name}' uses the surrogate "
                f"{type(surrogate).__name__}, which has no parameter "
                f"`{parameter}`; it has {sorted(config)}. Received: "
                f"parameter={parameter!r}"
            )
        config[parameter] = float(value)
        layer.cell.surrogate = type(surrogate)(**config)
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    return layers


def _batches(data, batch_size, batches):
    """Yields up to `batches` `(x, y)` batches from arrays or a dataset."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        if isinstance(x, np.ndarray) or hasattr(x, "shape"):
            count = len(x)
            if len(y) != count:
                raise ValueError(
                    "Argument `data` must be `(x, y)` with as many labels as "
                    f"inputs. Received: {count} inputs and {len(y)} labels"
                )
            for start in range(0, min(count, batch_size * batches), batch_size):
                yield (
                    x[start : start + batch_size],
                    y[start : start + batch_size],
                )
            return
    if hasattr(data, "__iter__") and not isinstance(data, (str, dict)):
        for index, item in enumerate(data):
            if index >= batches:
                return
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise ValueError(
                    "Argument `data` must yield `(x, y)` batches. Received: "
                    f"an item of type {type(item).__name__}"
                )
            yield item[0], item[1]
        return
    raise ValueError(
        "Argument `data` must be a tuple `(x, y)` of arrays or an iterable "
        "(e.g. a tf.data.Dataset) of `(x, y)` batches. Received: "
        f"data of type {type(data).__name__}"
    )


def _loss_function(model, loss):
    if loss is not None:
        return keras.losses.get(loss)
    if getattr(model, "compiled", False) and getattr(model, "loss", None):

        def compiled(y, y_pred):
            return model.compute_loss(y=y, y_pred=y_pred, training=True)

        return compiled
    raise ValueError(
        "Argument `loss` is required when the model is not compiled with a "
        f"loss. Received: loss=None for model '{model.name}'"
    )


def _weighted_layers(model):
    """Layers with trainable kernels (ndim >= 2), input to output."""
    found = []
    for layer in model.layers:
        kernels = [w for w in layer.trainable_weights if len(w.shape) >= 2]
        if kernels:
            found.append((layer.name, kernels))
    if not found:
        raise ValueError(
            f"Model '{model.name}' has no layers with trainable kernels to "
            "measure gradients of."
        )
    return found


def layer_gradient_magnitudes(
    model, data, loss=None, statistic="mean_abs", batch_size=64, batches=4
):
    """Per-layer size of the loss gradient of the weights, batch-averaged.

    For every layer with trainable kernels (weights with 2 or more axes:
    Dense, Conv, readout kernels; biases and thresholds are left out), the
    gradient of the loss with respect to those kernels is computed on each
    of `batches` batches in training mode (no weights are changed) and
    reduced to one number, then averaged over the batches:

    - `"mean_abs"`: the mean absolute value of its entries, the "average
      magnitude of loss gradient" of Ledinauskas et al. 2020, Fig. 3;
    - `"l2"`: its Euclidean norm, the "gradient norm" of Zheng et al. 2021,
      Fig. 2.

    Args:
        model: a Keras model (spiking or not).
        data: `(x, y)` arrays, or an iterable of `(x, y)` batches.
        loss: a loss (name, instance or function of `(y_true, y_pred)`);
            `None` uses the model's compiled loss. Defaults to `None`.
        statistic: `"mean_abs"` or `"l2"`. Defaults to `"mean_abs"`.
        batch_size: int >= 1, batch size for array data. Defaults to `64`.
        batches: int >= 1, how many batches to average. Defaults to `4`.

    Returns:
        A dict from layer name to the averaged statistic, in layer order.
    """
    import tensorflow as tf

    if statistic not in STATISTICS:
        raise ValueError(
            f"Argument `statistic` must be one of {STATISTICS}. Received: "
            f"statistic={statistic!r}"
        )
    for name, value in (("batch_size", batch_size), ("batches", batches)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"Argument `{name}` must be an integer >= 1. Received: "
                f"{name}={value!r}"
            )
    loss_fn = _loss_function(model, loss)
    layers = _weighted_layers(model)
    variables = [w for _, kernels in layers for w in kernels]

    # A new tf.function per call: the surrogate is read when tracing.
    @tf.function(reduce_retracing=True)
    def gradients(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            value = loss_fn(y, y_pred)
            value = tf.reduce_mean(value)
        return tape.gradient(value, variables)

    totals = np.zeros(len(layers))
    count = 0
    for x, y in _batches(data, batch_size, batches):
        grads = gradients(tf.convert_to_tensor(x), tf.convert_to_tensor(y))
        index = 0
        for position, (_, kernels) in enumerate(layers):
            parts = []
            for _ in kernels:
                grad = grads[index]
                index += 1
                parts.append(
                    np.zeros(1)
                    if grad is None
                    else np.asarray(grad, "float64").reshape(-1)
                )
            flat = np.concatenate(parts)
            if statistic == "l2":
                totals[position] += float(np.sqrt(np.sum(flat**2)))
            else:
                totals[position] += float(np.mean(np.abs(flat)))
        count += 1
    if not count:
        raise ValueError("Argument `data` gave no batches. Received: empty")
    return {
        name: float(total / count)
        for (name, _), total in zip(layers, totals, strict=True)
    }


def gradient_norms(model, data, loss=None, batch_size=64, batches=4):
    """Mean gradient norm of each layer's weights (Zheng et al. 2021, Fig. 2).

    `layer_gradient_magnitudes` with `statistic="l2"`: for each layer with
    trainable kernels, the Euclidean norm of the loss gradient with respect
    to them, averaged over `batches` training batches. Flat values mean the
    gradient neither vanishes nor explodes through depth.

    Args:
        model: a Keras model.
        data: `(x, y)` arrays, or an iterable of `(x, y)` batches.
        loss: a loss; `None` uses the compiled loss. Defaults to `None`.
        batch_size: int >= 1, batch size for array data. Defaults to `64`.
        batches: int >= 1, how many batches to average. Defaults to `4`.

    Returns:
        A dict from layer name to its mean gradient norm, input first.

    Example:

    ```python
    norms = keras_snn.tuning.gradient_norms(model, (x_train, y_train))
    keras_snn.tuning.plot_gradient_norms(norms, "grad_norms.png")
    ```

    Reference:
        Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
        Neural Networks", AAAI 2021, Fig. 2.
    """
    return layer_gradient_magnitudes(
        model,
        data,
        loss=loss,
        statistic="l2",
        batch_size=batch_size,
        batches=batches,
    )


def tune_surrogate_width(
    model,
    data,
    loss=None,
    parameter=None,
    low=None,
    high=None,
    atol=0.05,
    rtol=0.01,
    max_iter=20,
    batch_size=64,
    batches=4,
):
    """Tunes the surrogate width so gradients are balanced through depth.

    Ledinauskas et al. 2020, Sec. 2.5: the surrogate's width parameter
    (`gamma` of the fast sigmoid, Eq. 9) sets `<f(u)^2>` (Eq. 12), the
    factor by which each spiking layer scales the gradient variance
    (Eq. 11, 13). This searches it by bisection (`bisect_balance`) so that
    the mean gradient magnitude (`layer_gradient_magnitudes`,
    `"mean_abs"`) of the first half of the weighted layers equals that of
    the second half, then leaves the model with the value found: every
    `LIF`/`IF` layer gets a surrogate of its class with that parameter
    (`set_surrogate_parameter`). Weights are not changed. Call it before
    `fit`, on a few batches of training data.

    Args:
        model: a built Keras model with keras_snn neuron layers; all of
            them must use the same surrogate class.
        data: `(x, y)` arrays, or an iterable of `(x, y)` batches.
        loss: a loss; `None` uses the compiled loss. Defaults to `None`.
        parameter: the surrogate argument to tune; `None` takes it from
            `WIDTH_PARAMETERS` (`"gamma"` for `FastSigmoid`, `"width"` for
            `Rectangular`, ...). Defaults to `None`.
        low: float > 0, lower end of the bracket; `None` for the
            surrogate's default. Defaults to `None`.
        high: float > low, upper end; `None` for the default. Defaults
            to `None`.
        atol: float >= 0, stop when the log ratio of the halves is within
            `atol`. Defaults to `0.05`.
        rtol: float > 0, stop when the bracket is narrower than this
            relative width. Defaults to `0.01`.
        max_iter: int >= 1, the most evaluations inside the bracket.
            Defaults to `20`.
        batch_size: int >= 1, for array data. Defaults to `64`.
        batches: int >= 1, batches per evaluation. Defaults to `4`.

    Returns:
        A `BisectionResult`: `value` is the parameter found (now set on
        the model), `magnitudes` the per-layer gradient magnitudes there,
        `history` every `(value, balance)` tried.

    Example:

    ```python
    model = keras_snn.models.from_spec(
        "32C3(Encoding)-AP2-64C3-AP2-128FC-Readout", (8, 8, 1), 10,
        timesteps=10, neuron="if",
        neuron_kwargs={"surrogate": "fast_sigmoid"})
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    result = keras_snn.tuning.tune_surrogate_width(model, (x, y))
    result.value  # the gamma now used by every IF layer
    ```

    Reference:
        Ledinauskas et al., "Training Deep Spiking Neural Networks", 2020,
        Sec. 2.5, Eq. 9-13.
    """
    layers = _spiking_layers(model)
    kinds = {type(layer.cell.surrogate) for layer in layers}
    if len(kinds) != 1:
        raise ValueError(
            "All spiking layers must use the same surrogate class to tune "
            "one width. Received: "
            f"{sorted(k.__name__ for k in kinds)}"
        )
    kind = kinds.pop()
    default_name, (default_low, default_high) = WIDTH_PARAMETERS.get(
        kind, (None, (None, None))
    )
    parameter = parameter or default_name
    if parameter is None:
        raise ValueError(
            f"The surrogate {kind.__name__} has no known width parameter; "
            "pass `parameter`. Received: parameter=None"
        )
    low = default_low if low is None else low
    high = default_high if high is None else high
    if low is None or high is None:
        raise ValueError(
            "Arguments `low` and `high` are required for the surrogate "
            f"{kind.__name__}. Received: low={low!r}, high={high!r}"
        )
    _check_bracket(low, high)
    original = layers[0].cell.surrogate.get_config().get(parameter)
    if original is None:
        set_surrogate_parameter(model, parameter, low)  # raises, named

    def profile(value):
        set_surrogate_parameter(model, parameter, value)
        return layer_gradient_magnitudes(
            model,
            data,
            loss=loss,
            statistic="mean_abs",
            batch_size=batch_size,
            batches=batches,
        )

    try:
        result = bisect_balance(
            profile, low, high, atol=atol, rtol=rtol, max_iter=max_iter
        )
    except Exception:
        set_surrogate_parameter(model, parameter, original)
        raise
    set_surrogate_parameter(model, parameter, result.value)
    result.parameter = parameter
    return result


def plot_gradient_norms(norms, path, title="gradient norm per layer"):
    """Per-layer gradient norms on a log scale (Zheng et al. 2021, Fig. 2).

    Args:
        norms: a dict from layer name to value (from `gradient_norms`), or
            a dict from a label (e.g. `"gamma=1"`, `"tuned"`) to such
            dicts, drawn as one line each.
        path: where to write the PNG.
        title: the figure title. Defaults to `"gradient norm per layer"`.

    Returns:
        The path written.
    """
    from keras_snn import plotting

    if not isinstance(norms, dict) or not norms:
        raise ValueError(
            "Argument `norms` must be a non-empty dict from layer name to "
            "value, or from label to such dicts. Received: "
            f"norms={norms!r}"
        )
    first = next(iter(norms.values()))
    curves = norms if isinstance(first, dict) else {None: norms}
    plt = plotting._pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.5))
    names = list(next(iter(curves.values())))
    for label, values in curves.items():
        ax.plot(
            range(len(values)),
            [max(v, 1e-30) for v in values.values()],
            marker="o",
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_xlabel("layer (input to output)")
    ax.set_ylabel("gradient norm")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if None not in curves:
        ax.legend()
    return plotting._save(fig, path)
