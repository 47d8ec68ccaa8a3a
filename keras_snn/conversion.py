"""ANN-to-SNN conversion with spike-norm or percentile threshold balancing.

A Keras ANN of ReLU units is mapped onto a keras_snn model of
integrate-and-fire neurons with reset by subtraction (Srinivasan et al.,
Sec. 3.2, Fig. 3):

1. batch normalization is folded into the preceding convolution or dense
   layer (`keras_snn.functional.fold_batch_norm`), which gives the
   BN-free ANN that step 1 of Sec. 3.2 asks for;
2. the (folded) weights are transferred to the SNN;
3. every ReLU becomes an `IF` layer whose threshold is balanced so that
   its firing rate follows the ReLU activation ("threshold balancing").

The IF neuron with soft reset (`keras_snn.functional.neuron_step`,
`decay = 1`, `reset="soft"`) integrates its input current `I[t]`:

```
u[t] = v[t-1] + I[t],   o[t] = H(u[t] - theta),   v[t] = u[t] - theta o[t]
```

so over `T` steps its rate is `sum_t o[t] / T ~= clip(mean_t I[t] / theta,
0, 1)`, the ReLU of the mean current scaled by `1/theta`.

Thresholds (`threshold=`):

- `"spike_norm"` (Sengupta et al. 2019, summarized in Srinivasan et al.,
  Sec. 3.2): layer by layer, the calibration data is propagated through
  the SNN built so far (whose earlier thresholds are already set) for `T`
  steps, and layer `l`'s threshold is the maximum weighted input it
  receives over all calibration samples, neurons and time steps:

  ```
  theta_l = max_{n, i, t} I_l[n, i, t],   I_l[t] = W_l s_{l-1}[t] + b'_l
  ```

- `"percentile"` (data-based normalization, Rueckauer et al. 2017,
  Sec. 2.2): `lambda_l` is the `percentile`-th percentile of the ANN's
  positive ReLU activations of layer `l` over the calibration data, and
  `theta_l = lambda_l / lambda_{l-1}` (`lambda_0 = 1` for inputs in
  [0, 1]), which is the weight normalization `W_l lambda_{l-1} / lambda_l`
  written as a threshold.

Biases (which Sec. 3.2 removes from the ANN; kept here) are divided by the
scale of the layer's input, `lambda_{l-1} = theta_1 ... theta_{l-1}`, so
that the current of layer `l` is the ANN pre-activation divided by
`lambda_{l-1}` (Rueckauer et al. 2017, Eq. 4-5). The output layer is a
`keras_snn.layers.Decoding` with the same weights, whose logits are the
time average of the output current, i.e. the ANN logits divided by
`lambda_{L-1}` (same argmax).

Reference:
    Srinivasan et al., "Training Deep Spiking Neural Networks for
    Energy-Efficient Neuromorphic Computing", ICASSP 2020, Sec. 3.2.
    Sengupta et al., "Going Deeper in Spiking Neural Networks: VGG and
    Residual Architectures", Front. Neurosci. 2019 (spike-norm).
    Rueckauer et al., "Conversion of Continuous-Valued Deep Networks to
    Efficient Event-Driven Networks for Image Classification", Front.
    Neurosci. 2017 (percentile normalization, biases).
"""

import keras
import numpy as np
from keras import ops

from keras_snn import functional
from keras_snn.layers.encoding import BernoulliEncoding
from keras_snn.layers.encoding import DirectEncoding
from keras_snn.layers.encoding import PoissonEncoding
from keras_snn.layers.neurons import IF
from keras_snn.layers.readout import Decoding
from keras_snn.layers.wrappers import TimeFolded

__all__ = ["SUPPORTED_LAYERS", "THRESHOLD_METHODS", "convert_ann"]

THRESHOLD_METHODS = ("spike_norm", "percentile")
ENCODINGS = ("direct", "bernoulli", "poisson")
SUPPORTED_LAYERS = (
    "InputLayer",
    "Conv2D",
    "Dense",
    "ReLU",
    "Activation('relu')",
    "BatchNormalization (after Conv2D/Dense)",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "Flatten",
    "Dropout",
)


def convert_ann(
    ann,
    calibration_data,
    timesteps,
    threshold="spike_norm",
    percentile=99.9,
    encoding="direct",
    calibration_timesteps=None,
    batch_size=256,
    seed=None,
    name=None,
):
    """Converts a trained ReLU ANN into an SNN of IF neurons (soft reset).

    Every `Conv2D`/`Dense` with a ReLU (as its activation or as a following
    `ReLU`/`Activation("relu")` layer, optionally with a
    `BatchNormalization` in between, which is folded) becomes
    `TimeFolded(Conv2D/Dense)` followed by `keras_snn.layers.IF(threshold,
    reset="soft")`. Pooling, `Flatten` and `Dropout` (the identity at
    inference) are wrapped in `TimeFolded`. The last `Dense` without ReLU
    becomes a `keras_snn.layers.Decoding` readout (logits averaged over
    time), followed by a softmax if the ANN ends with one. See the module
    docstring for the threshold equations.

    Args:
        ann: a built Keras `Sequential` or functional model whose layers
            form a chain (one input, no branches), made of the layers in
            `SUPPORTED_LAYERS`, ending with a `Dense` layer (linear or
            softmax).
        calibration_data: NumPy array of ANN inputs (e.g. a few hundred
            training images) used to set the thresholds.
        timesteps: int >= 1, the number of time steps `T` of the returned
            SNN (change it later with `keras_snn.models.with_timesteps`).
        threshold: `"spike_norm"` or `"percentile"`. Defaults to
            `"spike_norm"`.
        percentile: float in (0, 100], the percentile of the positive ReLU
            activations for `threshold="percentile"`. Defaults to `99.9`.
        encoding: how the input is presented: `"direct"` (the analog input
            as a constant current, `DirectEncoding`), `"bernoulli"` (rate
            coding, spike probability = intensity, `BernoulliEncoding`) or
            `"poisson"` (`PoissonEncoding`). Defaults to `"direct"`.
        calibration_timesteps: int >= 1 or `None`, the number of steps
            simulated for spike-norm; `None` uses `timesteps`.
        batch_size: int >= 1, batch size of the calibration runs. Defaults
            to `256`.
        seed: `None` or int, seed of a random encoder. Defaults to `None`.
        name: `None` or str, the name of the returned model. Defaults to
            the ANN's name with `"_snn"` appended.

    Returns:
        A `keras.Model` mapping the ANN's input to class logits (or
        probabilities), simulated for `timesteps` steps. Its IF layers
        carry the thresholds (`layer.threshold`, in order in
        `keras_snn.analysis.spiking_layers(model)`).

    Raises:
        ValueError: for an unsupported layer or activation (the message
            names the layer and lists `SUPPORTED_LAYERS`), a model that is
            not a chain, or an invalid argument.

    Example:

    ```python
    snn = keras_snn.conversion.convert_ann(
        ann, x_train[:500], timesteps=32, threshold="spike_norm"
    )
    snn.compile(metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(True))
    snn.evaluate(x_test, y_test)
    ```

    Reference:
        Srinivasan et al., ICASSP 2020, Sec. 3.2 and Fig. 3; Sengupta et
        al. 2019 (spike-norm); Rueckauer et al. 2017, Sec. 2.2 (percentile
        and biases).
    """
    timesteps = functional.validate_count(timesteps, "timesteps")
    if calibration_timesteps is None:
        calibration_timesteps = timesteps
    calibration_timesteps = functional.validate_count(
        calibration_timesteps, "calibration_timesteps"
    )
    batch_size = functional.validate_count(batch_size, "batch_size")
    if threshold not in THRESHOLD_METHODS:
        raise ValueError(
            f"Argument `threshold` must be one of {THRESHOLD_METHODS}. "
            f"Received: threshold={threshold!r}"
        )
    if encoding not in ENCODINGS:
        raise ValueError(
            f"Argument `encoding` must be one of {ENCODINGS}. Received: "
            f"encoding={encoding!r}"
        )
    percentile = functional.validate_number(
        percentile,
        "percentile",
        "a number in (0, 100]",
        lambda value: 0.0 < value <= 100.0,
    )
    if not isinstance(ann, keras.Model) or not ann.built:
        raise ValueError(
            f"Argument `ann` must be a built keras.Model. Received: ann={ann!r}"
        )
    calibration_data = np.asarray(calibration_data, "float32")
    steps = _parse_chain(ann)
    if not steps or steps[-1]["kind"] != "output":
        raise ValueError(
            "The ANN must end with a Dense layer without ReLU (linear or "
            "softmax), which becomes the readout. Received: layers="
            f"{[type(layer).__name__ for layer in ann.layers]}"
        )

    percentiles = None
    if threshold == "percentile":
        percentiles = _activation_percentiles(
            ann, steps, calibration_data, percentile, batch_size
        )

    inputs = keras.Input(tuple(ann.input_shape[1:]), name="input")

    def encode(steps_count):
        if encoding == "direct":
            return DirectEncoding(steps_count, name="encoding")
        if encoding == "bernoulli":
            return BernoulliEncoding(steps_count, seed=seed, name="encoding")
        return PoissonEncoding(steps_count, seed=seed, name="encoding")

    x = encode(calibration_timesteps)(inputs)
    # `scale` is lambda_{l-1}: SNN value = ANN value / scale.
    scale = 1.0
    relu_index = 0
    thresholds = []
    for step in steps:
        layer = step["layer"]
        if step["kind"] == "passthrough":
            x = TimeFolded(_clone(layer), name=f"{layer.name}_tf")(x)
            continue
        kernel, bias = _folded_weights(layer, step["bn"])
        if step["kind"] == "output":
            if len(x.shape) != 3:
                raise ValueError(
                    f"The output layer '{layer.name}' must receive flat "
                    "features (add a Flatten or GlobalAveragePooling2D "
                    "before it). Received: input shape="
                    f"{tuple(x.shape[2:])}"
                )
            readout = Decoding(kernel.shape[-1], name=layer.name)
            x = readout(x)
            readout.set_weights([kernel, bias / scale])
            if step["softmax"]:
                x = keras.layers.Softmax(name=f"{layer.name}_softmax")(x)
            break
        synapse = TimeFolded(_clone(layer, linear=True), name=layer.name)
        current = synapse(x)
        synapse.layer.set_weights([kernel, bias / scale])
        if threshold == "spike_norm":
            probe = keras.Model(inputs, current)
            theta = _max_current(probe, calibration_data, batch_size)
            new_scale = scale * theta
        else:
            new_scale = percentiles[relu_index]
            theta = new_scale / scale
        if not np.isfinite(theta) or theta <= 0:
            raise ValueError(
                f"Layer '{layer.name}' never receives a positive input on "
                "the calibration data, so no threshold can be set for it "
                "(all its neurons are silent). Use more or other "
                f"calibration data. Received: threshold={theta!r}"
            )
        x = IF(threshold=float(theta), reset="soft", name=f"{layer.name}_if")(
            current
        )
        thresholds.append(float(theta))
        scale = new_scale
        relu_index += 1

    snn = keras.Model(inputs, x, name=name or f"{ann.name}_snn")
    if calibration_timesteps != timesteps:
        from keras_snn.models import with_timesteps

        snn = with_timesteps(snn, timesteps)
    return snn


def _parse_chain(ann):
    """Groups the ANN's layers into conversion steps; raises if unsupported.

    Returns a list of dicts with `kind` in `"relu"` (a weighted layer with
    ReLU), `"output"` (the final weighted layer) or `"passthrough"`
    (pooling, Flatten), with the weighted layer, its `bn` (or None) and,
    for the output, `softmax`.
    """
    layers = [
        layer
        for layer in ann.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    _check_chain(ann, layers)
    steps = []
    pending = None  # a weighted step still waiting for BN / ReLU
    nonnegative = False  # whether the current values are >= 0
    for layer in layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            if type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
                _unsupported(layer)
            if pending is not None:
                _close(pending, layer, steps)
            activation = _activation_name(layer)
            if activation not in ("relu", "linear", "softmax"):
                _unsupported(layer, f"activation={activation!r}")
            pending = {
                "kind": "relu" if activation == "relu" else "output",
                "layer": layer,
                "bn": None,
                "softmax": activation == "softmax",
            }
            if activation == "relu":
                steps.append(pending)
                pending = None
                nonnegative = True
            else:
                nonnegative = False
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            if pending is None or pending["bn"] is not None:
                raise ValueError(
                    f"BatchNormalization layer '{layer.name}' can only be "
                    "folded when it directly follows a Conv2D or Dense "
                    "layer without activation. Received: layers="
                    f"{[type(x).__name__ for x in layers]}"
                )
            pending["bn"] = layer
            continue
        if _is_relu(layer):
            if pending is not None:
                pending["kind"] = "relu"
                steps.append(pending)
                pending = None
                nonnegative = True
            elif not nonnegative:
                raise ValueError(
                    f"ReLU layer '{layer.name}' must follow a Conv2D or "
                    "Dense layer (optionally with BatchNormalization) to "
                    "become IF neurons."
                )
            continue
        if isinstance(layer, keras.layers.Activation) and _activation_name(
            layer
        ) in ("softmax", "linear"):
            if pending is None:
                raise ValueError(
                    f"Activation layer '{layer.name}' must follow the "
                    "output Dense layer."
                )
            pending["softmax"] = _activation_name(layer) == "softmax"
            continue
        if isinstance(
            layer,
            (
                keras.layers.AveragePooling2D,
                keras.layers.GlobalAveragePooling2D,
                keras.layers.Flatten,
            ),
        ):
            if pending is not None:
                _close(pending, layer, steps)
                pending = None
            steps.append({"kind": "passthrough", "layer": layer})
            continue
        _unsupported(layer, f"type {kind}")
    if pending is not None:
        steps.append(pending)
    return steps


def _close(pending, layer, steps):
    raise ValueError(
        f"Layer '{pending['layer'].name}' has no ReLU but is followed by "
        f"'{layer.name}'; only the last Dense layer may be linear (it "
        "becomes the readout). Add a ReLU."
    )


def _check_chain(ann, layers):
    if isinstance(ann, keras.Sequential):
        return
    previous = ann.inputs
    for layer in layers:
        nodes = layer._inbound_nodes
        if len(nodes) != 1 or len(ann.inputs) != 1:
            raise ValueError(
                "convert_ann supports models whose layers form a single "
                f"chain; layer '{layer.name}' is called {len(nodes)} times "
                f"or the model has {len(ann.inputs)} inputs."
            )
        arguments = nodes[0].input_tensors
        if len(arguments) != 1 or arguments[0] is not previous[0]:
            raise ValueError(
                "convert_ann supports models whose layers form a single "
                f"chain (no branches or skip connections); layer "
                f"'{layer.name}' does not take the previous layer's output."
            )
        previous = [layer.output]


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    return name


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        plain = (
            layer.max_value is None
            and float(layer.negative_slope) == 0.0
            and float(layer.threshold) == 0.0
        )
        if not plain:
            _unsupported(
                layer,
                "ReLU with max_value, negative_slope or threshold "
                f"(max_value={layer.max_value}, "
                f"negative_slope={layer.negative_slope}, "
                f"threshold={layer.threshold})",
            )
        return True
    return (
        isinstance(layer, keras.layers.Activation)
        and _activation_name(layer) == "relu"
    )


def _unsupported(layer, what=None):
    what = what or f"type {type(layer).__name__}"
    raise ValueError(
        f"convert_ann cannot convert layer '{layer.name}' ({what}). "
        f"Supported layers: {', '.join(SUPPORTED_LAYERS)}; a final Dense "
        f"may be linear or softmax. Received: layer={type(layer).__name__}"
    )


def _clone(layer, linear=False):
    config = layer.get_config()
    if linear:
        config["activation"] = "linear"
        config["use_bias"] = True
    return type(layer).from_config(config)


def _folded_weights(layer, bn):
    kernel = ops.convert_to_numpy(layer.kernel)
    bias = None if layer.bias is None else ops.convert_to_numpy(layer.bias)
    if bn is None:
        if bias is None:
            bias = np.zeros(kernel.shape[-1], kernel.dtype)
        return kernel, bias
    return functional.fold_batch_norm(
        kernel, bias, *functional.batch_norm_parameters(bn)
    )


def _max_current(probe, data, batch_size):
    """Max of the probe's output over samples, time steps and neurons."""
    maximum = -np.inf
    for start in range(0, len(data), batch_size):
        out = probe(data[start : start + batch_size], training=False)
        maximum = max(maximum, float(ops.convert_to_numpy(ops.max(out))))
    return maximum


def _activation_percentiles(ann, steps, data, percentile, batch_size):
    """`percentile` of each ReLU layer's positive ANN activations."""
    outputs = []
    names = []
    for step in steps:
        if step["kind"] != "relu":
            continue
        layer = step["layer"]
        names.append(layer.name)
        tensor = layer.output
        if _activation_name(layer) != "relu":
            # The ReLU is a later layer: take the first ReLU after it.
            index = ann.layers.index(layer)
            for later in ann.layers[index + 1 :]:
                if _is_relu(later):
                    tensor = later.output
                    break
        outputs.append(tensor)
    probe = keras.Model(ann.inputs[0], outputs)
    values = [[] for _ in outputs]
    for start in range(0, len(data), batch_size):
        result = probe(data[start : start + batch_size], training=False)
        if not isinstance(result, (list, tuple)):
            result = [result]
        for store, out in zip(values, result, strict=True):
            out = ops.convert_to_numpy(out).ravel()
            store.append(out[out > 0])
    scales = []
    for step_values, name in zip(values, names, strict=True):
        positive = np.concatenate(step_values)
        if positive.size == 0:
            raise ValueError(
                f"The ReLU output of layer '{name}' is zero on all the "
                "calibration data, so no percentile threshold can be set. "
                "Use more or other calibration data."
            )
        scales.append(float(np.percentile(positive, percentile)))
    return scales
