"""Firing-rate regularization: keep a spiking layer near a target rate.

`FiringRate(target, weight)` is a Keras regularizer for the
`activity_regularizer` argument of a spiking layer; the
`FiringRateRegularization` layer adds the same penalty for the spikes it
passes through (place it after a spiking layer). Both penalise, per
sample, the squared distance between the layer's mean firing rate (over
time and neurons) and the target, and average over the batch:

```
r[b] = mean over t and the neurons of o[b, t, ...]     (spikes per step)
L    = weight * (1/B) sum_b (r[b] - target)^2
```
"""

import keras
from keras import ops

from keras_snn import functional
from keras_snn.saving import register

__all__ = ["FiringRate", "FiringRateRegularization"]


def _rate_penalty(spikes, target, weight):
    """`weight * sum_b (r[b] - target)^2`, in float32."""
    spikes = ops.cast(spikes, "float32")
    rank = len(spikes.shape)
    if rank < 2:
        raise ValueError(
            "FiringRate expects spikes with a batch axis, shape "
            f"(batch, time, ...). Received: shape={tuple(spikes.shape)}"
        )
    rates = ops.mean(spikes, axis=tuple(range(1, rank)))
    return weight * ops.sum(ops.square(rates - target))


def _validate(owner, target, weight):
    target = functional.validate_number(
        target, "target", "a number in [0, 1]", lambda v: 0 <= v <= 1, owner
    )
    weight = functional.validate_number(
        weight, "weight", "a finite number >= 0", lambda v: v >= 0, owner
    )
    return target, weight


@register
class FiringRate(keras.regularizers.Regularizer):
    """Penalises a spiking layer's mean firing rate away from a target.

    For spikes `o` of shape `(batch, time, ...)`, with `r[b]` the mean of
    sample `b` over time and neurons, `__call__` returns

    ```
    weight * sum_b (r[b] - target)^2
    ```

    As the `activity_regularizer` of a layer, Keras (3.15 checked) divides
    a penalty by the batch size before adding it to the loss, which makes
    it `weight * (1/B) sum_b (r[b] - target)^2`, the penalty of
    `FiringRateRegularization`. Keras applies an activity regularizer to
    every output of the layer: use it on spiking layers that return only
    their spikes (not `return_potentials=True` or `return_state=True`;
    put a `FiringRateRegularization` layer after those).

    Args:
        target: float in [0, 1], the target rate in spikes per step.
            Defaults to `0.1`.
        weight: float >= 0, the factor of the penalty. Defaults to `1.0`.

    Example:

    ```python
    lif = keras_snn.layers.LIF(
        activity_regularizer=keras_snn.regularizers.FiringRate(0.1, 1e-2))
    ```
    """

    def __init__(self, target=0.1, weight=1.0):
        self.target, self.weight = _validate(
            type(self).__name__, target, weight
        )

    def __call__(self, x):
        return _rate_penalty(x, self.target, self.weight)

    def get_config(self):
        return {"target": self.target, "weight": self.weight}


@register
class FiringRateRegularization(keras.layers.Layer):
    """Passes spikes through and adds a firing-rate penalty to the loss.

    Placed after a spiking layer, it adds (with `add_loss`, at every call)

    ```
    weight * (1/B) sum_b (r[b] - target)^2
    ```

    where `r[b]` is the mean of sample `b`'s spikes over time and neurons,
    and returns its input unchanged. The penalty pulls each layer towards
    its own target rate through the surrogate gradient of the spikes.

    Args:
        target: float in [0, 1], the target rate in spikes per step.
            Defaults to `0.1`.
        weight: float >= 0, the factor of the penalty. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: spikes `(batch, time, ...)`.

    Returns:
        `inputs`, unchanged.

    Example:

    ```python
    x = keras.Input((8, 4))
    spikes = keras_snn.layers.LIF()(keras.layers.Dense(16)(x))
    spikes = keras_snn.regularizers.FiringRateRegularization(0.05)(spikes)
    ```
    """

    def __init__(self, target=0.1, weight=1.0, **kwargs):
        target, weight = _validate(type(self).__name__, target, weight)
        super().__init__(**kwargs)
        self.target = target
        self.weight = weight
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        penalty = _rate_penalty(inputs, self.target, self.weight)
        batch = ops.cast(ops.shape(inputs)[0], penalty.dtype)
        self.add_loss(ops.divide_no_nan(penalty, batch))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(target=self.target, weight=self.weight)
        return config
