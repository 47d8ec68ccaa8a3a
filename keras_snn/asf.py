"""ASF-BP: training through the network of accumulated spiking flows.

Wu et al. 2021 ("Training Spiking Neural Networks with Accumulated Spiking
Flow", AAAI 2021) keep the forward pass of a spiking network exactly as it
is, `T` time steps of spiking neurons, and replace backpropagation through
time by backpropagation through an *equivalent network* whose inputs and
outputs are the spike counts over the whole time window:

```
FI[n] = sum_t x[t, n],   FO[n] = sum_t o[t, n]                     (Eq. 7)
FI[n] = W[n] FO[n-1]                                               (Eq. 8)
FO[n] ~ S[n] FI[n]                                (linear model, Eq. 9-11)
dL/dFO[N-1] = (u[T, N] / (T V_th) - Y) W[N] / (T V_th)             (Eq. 9)
dL/dFO[n] = sum_j dL/dFO[n+1]_j S[n+1] W[n+1]_ji                   (Eq. 10)
dL/dW[n]_ji = dL/dFO[n]_j S[n] FO[n-1]_i                           (Eq. 11)
S[n] = sum_i FO[n]_i / sum_i FI[n]_i          (one per layer, Eq. 12)
```

`ASFModel` wraps a spiking Keras model and implements this as its
`train_step`, so `model.fit` trains with ASF-BP while `predict`, `evaluate`
and saving use the spiking network unchanged. See `ASFModel` for the
supported layers and how the scale factors are refreshed.
"""

import keras
import numpy as np
from keras import ops

from keras_snn import functional
from keras_snn.asf_stages import ENCODERS
from keras_snn.asf_stages import classify
from keras_snn.layers.wrappers import call_layer
from keras_snn.saving import register

__all__ = [
    "ASFModel",
    "ScaleFactorRefresh",
    "accumulated_flows",
    "scale_factor",
]


def accumulated_flows(inputs, spikes):
    """The accumulated spiking flows of a layer (Wu et al. 2021, Eq. 7).

    ```
    FI[i] = sum_t x[t, i]        FO[i] = sum_t o[t, i]
    ```

    Args:
        inputs: input currents `x` of shape `(batch, time, ...)`.
        spikes: output spikes `o`, the same shape.

    Returns:
        Tuple `(FI, FO)`, each of shape `(batch, ...)`: the sums over the
        time axis (axis 1). NumPy in, NumPy out.

    Example:

    ```python
    flow_in, flow_out = keras_snn.asf.accumulated_flows(currents, spikes)
    ```

    Reference:
        Wu et al., "Training Spiking Neural Networks with Accumulated
        Spiking Flow", AAAI 2021, Eq. 7.
    """
    _check_time_axis(inputs, "inputs")
    _check_time_axis(spikes, "spikes")
    if isinstance(inputs, np.ndarray) and isinstance(spikes, np.ndarray):
        return inputs.sum(axis=1), spikes.sum(axis=1)
    return ops.sum(inputs, axis=1), ops.sum(spikes, axis=1)


def scale_factor(flow_in, flow_out, active_only=True, default=None):
    """The layer-wise scale factor `S_u` of Wu et al. 2021, Eq. 12.

    ```
    S_u = sum_i FO[i] / sum_i FI[i]
    ```

    summed over the neurons of the layer (and every sample given). With
    `active_only=True` the sums run over the neurons with `FI[i] > 0`
    only: a neuron with non-positive accumulated input cannot fire in
    proportion to it (an IF neuron approximates a ReLU, Wu et al. 2021,
    "SNN Model"), and with signed weights the total input of a layer can
    be near zero or negative, which makes the literal ratio meaningless;
    the authors' code likewise leaves such neurons out. `active_only=False`
    is Eq. 12 literally. The ratio is a usable slope of the linear model
    `FO ~ S FI` only when both sums are positive; otherwise `default` is
    returned (`ASFModel` then keeps the previous factor).

    Args:
        flow_in: accumulated input flows `FI`, any shape (NumPy array).
        flow_out: accumulated output flows `FO` (spike counts), same shape.
        active_only: bool, sum over the neurons with `FI > 0` only.
            Defaults to `True`.
        default: what to return when `sum FI <= 0` or `sum FO <= 0`.
            Defaults to `None`.

    Returns:
        The scale factor as a Python float, or `default`.

    Example:

    ```python
    keras_snn.asf.scale_factor([[2.0, 4.0]], [[1.0, 2.0]])  # 0.5
    ```

    Reference:
        Wu et al., "Training Spiking Neural Networks with Accumulated
        Spiking Flow", AAAI 2021, Eq. 12 and Algorithm 1 (lines 11-13).
    """
    flow_in = np.asarray(flow_in, "float64")
    flow_out = np.asarray(flow_out, "float64")
    if flow_in.shape != flow_out.shape:
        raise ValueError(
            "Arguments `flow_in` and `flow_out` must have the same shape. "
            f"Received: flow_in.shape={flow_in.shape}, "
            f"flow_out.shape={flow_out.shape}"
        )
    if active_only:
        active = flow_in > 0
        flow_in, flow_out = flow_in[active], flow_out[active]
    total_in = float(np.sum(flow_in))
    total_out = float(np.sum(flow_out))
    if total_in <= 0.0 or total_out <= 0.0:
        return default
    return total_out / total_in


def _check_time_axis(value, name):
    if len(value.shape) < 3:
        raise ValueError(
            f"Argument `{name}` must have shape (batch, time, features...), "
            f"rank >= 3. Received: {name}.shape={tuple(value.shape)}"
        )


@register
class ASFModel(keras.Model):
    """Trains a spiking model with ASF-BP (accumulated spiking flows).

    The forward pass is the spiking network itself, simulated over its `T`
    time steps (no gradient tape is kept). The backward pass goes through
    the *equivalent network* of Wu et al. 2021 (Fig. 2b), whose values are
    the accumulated flows of that forward pass:

    ```
    FO[0] = sum_t s[t]                    (encoded input, Eq. 7)
    FI[n] = T f_n(FO[n-1] / T)            (= sum_t f_n(o[t]), Eq. 8)
    FO[n] = S[n] g[n] FI[n] + stop_gradient(FO_spiking[n] - S[n] g[n] FI[n])
    y     = h(R) + stop_gradient(y_spiking - h(R)),  R = FO[N-1] / T
    ```

    where `f_n` is the synaptic layer (a `TimeFolded` Dense/Conv, pooling,
    flatten; affine, so the second line is exact, biases included),
    `FO_spiking[n]` is the spike count of the `n`-th spiking layer in the
    forward pass, `g[n] = 1[FI[n] > 0]` with `active_only=True` (else 1),
    and `h(R)` is the head applied to the constant-rate sequence `R`
    repeated `T` times (for `MembraneReadout(mode="last", decay=1)` this
    is `W FO[N-1] + T b = u[T, N]` exactly). Every value is therefore the
    spiking network's own; the loss is computed on the spiking output and
    its gradient follows Eq. 9 into the head, Eq. 10 through each spiking
    layer (`dL/dFI = S dL/dFO`) and Eq. 11 into the weights
    (`dL/dW = S dL/dFO FO[n-1]`), in one pass without a time loop.

    Scale factors (Eq. 12, Algorithm 1 lines 11-13). One `S[n]` per
    spiking layer, `sum FO / sum FI` over its (active) neurons. The first
    training batch sets them; afterwards every batch adds its flows to
    running sums, and every `scale_update_every` epochs (the paper: "we
    update the scale factors every a few epochs") `refresh_scales()` sets
    `S = sum FO / sum FI` over those epochs and clears the sums. `fit`
    adds the `ScaleFactorRefresh` callback that does this. A layer whose
    sums are not both positive keeps its previous factor (before the first
    batch: `1 / threshold`, the ratio many schemes assume).

    Supported chains: optional static layers without weights, an encoder
    (or an input already shaped `(batch, time, ...)`), then
    `TimeFolded` synaptic layers with linear activation (Dense, Conv*,
    average pooling, Flatten, Reshape; max pooling is allowed and
    differentiated on the mean rate), `LIF`/`IF` layers with fixed
    threshold and decay, a head that removes the time axis
    (`MembraneReadout`, `Decoding`, `Voting`, `GlobalAveragePooling1D`)
    and any ordinary layers after it. Batch normalization, dropout and
    trainable thresholds inside the time axis raise a `ValueError` naming
    the layer. The paper's IF neurons with hard reset and its
    `MembraneReadout(mode="last", decay=1)` head are the exact setting;
    LIF neurons and other heads use the same linear model ("with minor
    changes", Wu et al. 2021).

    Args:
        model: a built functional or Sequential spiking model, e.g. from
            `keras_snn.models.from_spec(..., neuron="if")`.
        scale_update_every: int >= 1, the `k` of "every k epochs": how
            often `fit` refreshes the scale factors. Defaults to `1`.
        active_only: bool. `True`: the slope `dFO/dFI` is `S` for the
            neurons with positive accumulated input `FI > 0` and 0 for the
            others, and `S` (Eq. 12) sums over those neurons only, as an IF
            neuron approximates a ReLU (see `scale_factor`). `False`:
            Eq. 10-12 literally, slope `S` for every neuron and sums over
            all neurons. Defaults to `True`.
        **kwargs: Base model keyword arguments, such as `name`.

    Call arguments:
        inputs: the wrapped model's input.
        training: Python bool, passed to the wrapped model.

    Returns:
        The wrapped model's output (the spiking forward pass).

    Example:

    ```python
    snn = keras_snn.models.from_spec(
        "wu2021_lenet", input_shape=(28, 28, 1), num_classes=10,
        timesteps=20, neuron="if", neuron_kwargs={"reset": "hard"})
    model = keras_snn.asf.ASFModel(snn, scale_update_every=1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5)
    model.scale_factors  # {"conv0_if": 0.41, ...}
    ```

    Reference:
        Wu et al., "Training Spiking Neural Networks with Accumulated
        Spiking Flow", AAAI 2021, Eq. 6-12 and Algorithm 1.
        https://arxiv.org/abs/2012.04416 (code: github.com/neural-lab/ASF-BP)
    """

    def __init__(self, model, scale_update_every=1, active_only=True, **kwargs):
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        scale_update_every = functional.validate_count(
            scale_update_every, "scale_update_every"
        )
        stages = classify(model)
        super().__init__(**kwargs)
        self.network = model
        self.scale_update_every = scale_update_every
        self.active_only = bool(active_only)
        self._stages = stages
        neurons = [s.layer for s in stages if s.kind == "neuron"]
        self._neuron_names = [layer.name for layer in neurons]
        self.scales = []
        self.flow_in_sums = []
        self.flow_out_sums = []
        for layer in neurons:
            self.scales.append(
                self._state(f"{layer.name}_scale", 1.0 / layer.threshold)
            )
            self.flow_in_sums.append(self._state(f"{layer.name}_sum_fi", 0.0))
            self.flow_out_sums.append(self._state(f"{layer.name}_sum_fo", 0.0))
        self.scales_set = self._state("scales_set", 0.0)

    def _state(self, name, value):
        return self.add_weight(
            shape=(),
            name=name,
            initializer=keras.initializers.Constant(value),
            trainable=False,
            dtype="float32",
        )

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    @property
    def scale_factors(self):
        """Dict from spiking layer name to its current scale factor `S`."""
        return {
            name: float(ops.convert_to_numpy(scale))
            for name, scale in zip(self._neuron_names, self.scales, strict=True)
        }

    def refresh_scales(self):
        """Sets every `S = sum FO / sum FI` of the flows summed since the
        last refresh (Eq. 12) and clears the sums.

        A layer whose sums are not both positive keeps its factor.

        Returns:
            The new `scale_factors` dict.
        """
        for scale, flow_in, flow_out in zip(
            self.scales, self.flow_in_sums, self.flow_out_sums, strict=True
        ):
            new = scale_factor(
                ops.convert_to_numpy(flow_in),
                ops.convert_to_numpy(flow_out),
                active_only=False,
                default=None,
            )
            if new is not None:
                scale.assign(new)
            flow_in.assign(0.0)
            flow_out.assign(0.0)
        return self.scale_factors

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, plus the callback refreshing the scales."""
        callbacks = list(callbacks or [])
        if not any(isinstance(c, ScaleFactorRefresh) for c in callbacks):
            callbacks.append(ScaleFactorRefresh(self.scale_update_every))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def spiking_forward(self, x, training=True):
        """Runs the spiking network and records the accumulated flows.

        Returns:
            Tuple `(y, flows)`: the model output and a list whose first
            entry is the time sum of the model input when it is already a
            spike sequence (no encoder), else `None`, followed by one entry
            per layer of the chain: the recorded sum over time of that
            layer's output where the equivalent network needs it (the
            input stage's output, every spiking and max-pooling layer;
            the output itself for the head), else `None`.
        """
        has_input_stage = self._stages[0].kind == "input"
        # Without an encoder the model input is the spike sequence FO[0].
        flows = [None if has_input_stage else ops.sum(x, axis=1)]
        for stage in self._stages:
            x = call_layer(stage.layer, x, training)
            if stage.kind in ("input", "neuron", "rate"):
                flows.append(ops.sum(x, axis=1))
            else:
                flows.append(None)
            if stage.kind == "head":
                flows[-1] = x
        return x, flows

    def equivalent_forward(self, flows, timesteps, training=True):
        """The equivalent network on recorded flows (differentiable).

        Args:
            flows: the list from `spiking_forward`.
            timesteps: the number of time steps `T` (int or scalar tensor).
            training: Python bool, passed to the layers.

        Returns:
            Tuple `(y, flow_pairs)`: the output, whose value is the spiking
            output and whose gradient is that of Eq. 9-11, and a list of
            `(FI, FO)` tensors per spiking layer.
        """
        steps = ops.cast(timesteps, "float32")
        x = flows[0]
        pairs = []
        scales = iter(self.scales)
        for stage, recorded in zip(self._stages, flows[1:], strict=True):
            layer = stage.layer
            if stage.kind == "input":
                x = recorded
            elif stage.kind == "affine":
                # Eq. 8: sum_t f(o[t]) = T f(FO / T) for an affine f.
                x = steps * call_layer(layer.layer, x / steps, training)
            elif stage.kind == "rate":
                rate = steps * call_layer(layer.layer, x / steps, training)
                x = rate + ops.stop_gradient(recorded - rate)
            elif stage.kind == "neuron":
                scale = ops.cast(next(scales), x.dtype)
                if self.active_only:
                    # dFO/dFI = S for FI > 0, else 0 (Eq. 10-11, gated).
                    gate = ops.cast(ops.greater(x, 0), x.dtype)
                    scale = scale * ops.stop_gradient(gate)
                else:
                    gate = ops.ones_like(x)
                linear = scale * x
                pairs.append((gate * x, gate * recorded))
                x = linear + ops.stop_gradient(recorded - linear)
            elif stage.kind == "head":
                rates = ops.repeat(
                    ops.expand_dims(x / steps, 1), timesteps, axis=1
                )
                y = call_layer(layer, rates, training)
                x = y + ops.stop_gradient(recorded - y)
            else:
                x = call_layer(layer, x, training)
        return x, pairs

    def train_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        _, flows = self.spiking_forward(x, training=True)
        timesteps = self._timesteps(x)
        flows = [None if f is None else ops.stop_gradient(f) for f in flows]
        with tf.GradientTape() as tape:
            y_pred, pairs = self.equivalent_forward(flows, timesteps)
            loss = self.compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=True,
            )
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights, strict=True))
        self._update_flows(pairs)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _timesteps(self, x):
        encoder = next(
            (s.layer for s in self._stages if isinstance(s.layer, ENCODERS)),
            None,
        )
        if encoder is not None:
            return encoder.timesteps
        steps = self.network.inputs[0].shape[1]
        return steps if steps is not None else ops.shape(x)[1]

    def _update_flows(self, pairs):
        first = ops.equal(self.scales_set, 0.0)
        for scale, flow_in, flow_out, (fi, fo) in zip(
            self.scales,
            self.flow_in_sums,
            self.flow_out_sums,
            pairs,
            strict=True,
        ):
            total_in = ops.cast(ops.sum(ops.stop_gradient(fi)), "float32")
            total_out = ops.cast(ops.sum(fo), "float32")
            flow_in.assign_add(total_in)
            flow_out.assign_add(total_out)
            valid = ops.logical_and(total_in > 0.0, total_out > 0.0)
            batch_scale = total_out / ops.where(valid, total_in, 1.0)
            scale.assign(
                ops.where(ops.logical_and(first, valid), batch_scale, scale)
            )
        self.scales_set.assign(1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.network),
                "scale_update_every": self.scale_update_every,
                "active_only": self.active_only,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        return cls(model, **config)


class ScaleFactorRefresh(keras.callbacks.Callback):
    """Refreshes an `ASFModel`'s scale factors every `k` epochs (Eq. 12).

    `ASFModel.fit` adds one automatically; pass your own to `fit` to choose
    another `every`.

    Args:
        every: int >= 1, refresh after every `every`-th epoch. Defaults to
            `1`.

    Reference:
        Wu et al., "Training Spiking Neural Networks with Accumulated
        Spiking Flow", AAAI 2021, text after Eq. 12.
    """

    def __init__(self, every=1):
        super().__init__()
        self.every = functional.validate_count(every, "every")
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if not isinstance(self.model, ASFModel):
            raise ValueError(
                "ScaleFactorRefresh works with a keras_snn.asf.ASFModel. "
                f"Received: model={type(self.model).__name__}"
            )
        if (epoch + 1) % self.every == 0:
            scales = self.model.refresh_scales()
            self.history.append((epoch + 1, scales))
            if logs is not None:
                for name, value in scales.items():
                    logs[f"scale_{name}"] = value
