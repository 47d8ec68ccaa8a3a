"""Normalization for spiking networks: `TDBatchNormalization`, `NeuNorm`.

Both layers take whole batch-major sequences `(batch, time, ...)`.
`TDBatchNormalization` normalizes input currents over batch, time and
space (Zheng et al. 2021); `NeuNorm` normalizes spikes across feature maps
with an auxiliary neuron per location (Wu et al. 2019). Their equations
live in `keras_snn.functional` (`fold_batch_norm`, `neunorm_step`,
`neunorm_output`), shared with the exporters.
"""

import keras
from keras import ops

from keras_snn import functional
from keras_snn.layers.checks import FRACTION
from keras_snn.layers.checks import POSITIVE
from keras_snn.layers.checks import UNIT_INTERVAL
from keras_snn.layers.checks import check_float_input
from keras_snn.layers.checks import check_number
from keras_snn.layers.checks import serialize_options
from keras_snn.layers.neurons import MAX_AUTO_UNROLL
from keras_snn.saving import register

__all__ = ["NeuNorm", "TDBatchNormalization"]


# Default momentum of the moving statistics of keras_snn's batch norms: 0.9,
# PyTorch's default (its momentum=0.1) that the papers used. Keras' 0.99
# leaves the inference statistics unusable after a short run.
MOMENTUM = 0.9


def _check_rank(layer, shape, what):
    shape = tuple(shape)
    if len(shape) < 3:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) expects {what} of "
            "shape (batch, time, ..., channels), rank >= 3; add a time "
            "axis, e.g. with keras_snn.layers.DirectEncoding. "
            f"Received: input shape={shape}"
        )
    return shape


@register
class TDBatchNormalization(keras.layers.Layer):
    """Threshold-dependent batch normalization (tdBN) over batch and time.

    Normalizes the input currents of spiking neurons per channel, with
    statistics over the batch, time and spatial axes together, to a
    variance of `(alpha * V_th)^2` instead of 1. For channel `k` and all
    `x_k` of the batch, time steps and locations:

    ```
    mean_k = mean(x_k)                                   # Eq. 7
    var_k = mean((x_k - mean_k)^2)                       # Eq. 8 (biased)
    x^_k = alpha * V_th * (x_k - mean_k) / sqrt(var_k + eps)   # Eq. 5
    y_k = gamma_k * x^_k + beta_k                        # Eq. 6
    ```

    `gamma` (the paper's `lambda`) starts at 1 and `beta` at 0, so the
    currents start with mean 0 and standard deviation `alpha * V_th`;
    `alpha` and `V_th` are constants, not weights. The paper uses
    `alpha = 1` in serial networks and `alpha = 1 / sqrt(n)` where `n`
    branches are summed (residual blocks), and `V_th` equal to the
    threshold of the neurons that receive the currents.

    In training (`training=True` and `trainable`) the batch statistics are
    used and the moving statistics are updated as in
    `keras.layers.BatchNormalization`:
    `moving = moving * momentum + batch * (1 - momentum)`, with the biased
    batch variance. With the channels last, `synchronized=False` and a
    float16, bfloat16 or float32 input, TensorFlow's fused batch-norm
    kernel computes Eq. 5-8 (fewer passes over the currents, the same
    values); otherwise Keras ops do. In inference the moving statistics
    are used; then the layer is affine per channel and can be folded into
    the preceding layer's weights with
    `keras_snn.functional.fold_batch_norm` (Eq. 9-10).

    With `alpha = threshold = 1` the layer equals
    `keras_snn.layers.TimeFolded(keras.layers.BatchNormalization())`.

    Args:
        alpha: float > 0, the structure-dependent factor `alpha`. Defaults
            to `1.0`.
        threshold: float > 0, the threshold `V_th` of the neurons fed by
            this layer. Defaults to `1.0`.
        axis: int, the channel axis; not the batch (0) or time (1) axis.
            Defaults to `-1`.
        momentum: float in [0, 1), the momentum of the moving statistics.
            Defaults to `0.9` (`MOMENTUM`), PyTorch's default that the
            papers trained with, not Keras' `0.99`: with 0.99 the moving
            statistics keep `0.99**n` of their initial values after `n`
            steps (37% after 100), so after a short run inference uses
            statistics far from the training ones and test accuracy
            collapses while training accuracy is high; with 0.9 they
            follow within a few dozen steps.
        epsilon: float > 0, added to the variance. Defaults to `1e-3`.
        center: bool, whether to add the trainable offset `beta`. Defaults
            to `True`.
        scale: bool, whether to multiply by the trainable `gamma`. Defaults
            to `True`.
        synchronized: bool, whether the batch statistics are reduced across
            all replicas of a `tf.distribute` strategy in training (sums,
            squared sums and counts are all-reduced), so that every replica
            normalizes with the statistics of the global batch. Without a
            strategy it has no effect. Defaults to `False`.
        beta_initializer: initializer of `beta`. Defaults to `"zeros"`.
        gamma_initializer: initializer of `gamma`. Defaults to `"ones"`.
        moving_mean_initializer: initializer of the moving mean. Defaults
            to `"zeros"`.
        moving_variance_initializer: initializer of the moving variance.
            Defaults to `"ones"`.
        beta_regularizer: optional regularizer of `beta`. Defaults to
            `None`.
        gamma_regularizer: optional regularizer of `gamma`. Defaults to
            `None`.
        beta_constraint: optional constraint of `beta`. Defaults to `None`.
        gamma_constraint: optional constraint of `gamma`. Defaults to
            `None`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of shape `(batch, time, ..., channels)`, e.g.
            `(batch, time, units)` after a dense layer or
            `(batch, time, H, W, C)` after a convolution.
        training: Python bool; `True` normalizes with the batch statistics
            and updates the moving ones, `False` or `None` uses the moving
            statistics.

    Returns:
        A tensor of the input's shape.

    Example:

    ```python
    inputs = keras.Input((4, 28, 28, 1))
    x = keras_snn.layers.TimeFolded(keras.layers.Conv2D(16, 3))(inputs)
    x = keras_snn.layers.TDBatchNormalization(alpha=1.0, threshold=0.5)(x)
    spikes = keras_snn.layers.LIF(threshold=0.5)(x)
    ```

    Reference:
        Zheng, Wu, Deng, Hu, Li, "Going Deeper With Directly-Trained Larger
        Spiking Neural Networks", AAAI 2021, Eq. 5-10 and Algorithm 1
        (https://arxiv.org/abs/2011.05280).
    """

    def __init__(
        self,
        alpha=1.0,
        threshold=1.0,
        axis=-1,
        momentum=MOMENTUM,
        epsilon=1e-3,
        center=True,
        scale=True,
        synchronized=False,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        cls = type(self)
        alpha = check_number(cls, kwargs, "alpha", alpha, POSITIVE)
        threshold = check_number(cls, kwargs, "threshold", threshold, POSITIVE)
        momentum = check_number(cls, kwargs, "momentum", momentum, FRACTION)
        epsilon = check_number(cls, kwargs, "epsilon", epsilon, POSITIVE)
        if (
            isinstance(axis, bool)
            or not isinstance(axis, int)
            or axis
            in (
                0,
                1,
            )
        ):
            raise ValueError(
                "Argument `axis` must be an integer naming a channel axis "
                "after the batch (0) and time (1) axes: >= 2, or negative "
                f"(-1 is the last axis). Received: axis={axis!r}"
            )
        super().__init__(**kwargs)
        self.alpha = alpha
        self.threshold = threshold
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.center = bool(center)
        self.scale = bool(scale)
        self.synchronized = bool(synchronized)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(
            moving_mean_initializer
        )
        self.moving_variance_initializer = keras.initializers.get(
            moving_variance_initializer
        )
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.gamma = None
        self.beta = None
        self.moving_mean = None
        self.moving_variance = None
        self._axis = None
        self._reduction_axes = None

    @property
    def output_scale(self):
        """The constant factor `alpha * threshold` of Eq. 5 (read-only)."""
        return self.alpha * self.threshold

    def _channel_axis(self, input_shape):
        rank = len(_check_rank(self, input_shape, "input currents"))
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 2 <= axis < rank:
            raise ValueError(
                f"Layer '{self.name}' (TDBatchNormalization): argument "
                f"`axis` must name a channel axis of a rank-{rank} input "
                f"after the batch and time axes, i.e. in [2, {rank - 1}] or "
                f"[{-rank + 2}, -1]. Received: axis={self.axis}"
            )
        return axis

    def build(self, input_shape):
        axis = self._channel_axis(input_shape)
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(
                f"Layer '{self.name}' (TDBatchNormalization) needs a known "
                f"size of the channel axis {self.axis}. Received: input "
                f"shape={tuple(input_shape)}"
            )
        shape = (int(channels),)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            name="moving_variance",
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )
        rank = len(input_shape)
        self._axis = axis
        self._reduction_axes = [i for i in range(rank) if i != axis]
        self.input_spec = keras.layers.InputSpec(
            ndim=rank, axes={axis: int(channels)}
        )

    def compute_output_shape(self, input_shape):
        self._channel_axis(input_shape)
        return tuple(input_shape)

    def call(self, inputs, training=None):
        train = bool(training) and self.trainable
        if self._fusable(inputs):
            outputs, mean, variance = self._fused(inputs, train)
        else:
            outputs, mean, variance = self._composed(inputs, train)
        if train:
            self._update_moving_statistics(mean, variance)
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs):
        """Whether TensorFlow's fused batch norm computes this call: the
        channels last, statistics of this replica's batch only, and a
        floating type the fused kernel takes (float16, bfloat16 with
        float32 statistics, float32)."""
        return (
            self._axis == len(inputs.shape) - 1
            and not self.synchronized
            and inputs.dtype.name in ("float16", "bfloat16", "float32")
        )

    def _affine(self, dtype):
        """`(gamma * alpha * V_th, beta)` of Eq. 5-6, in `dtype`."""
        gamma = self.output_scale
        if self.gamma is not None:
            gamma = ops.cast(self.gamma, dtype) * gamma
        else:
            gamma = ops.full(self.moving_mean.shape, gamma, dtype)
        if self.beta is not None:
            beta = ops.cast(self.beta, dtype)
        else:
            beta = ops.zeros(self.moving_mean.shape, dtype)
        return gamma, beta

    def _composed(self, inputs, train):
        """Eq. 5-8 from Keras ops (any axis, any float type, statistics
        all-reduced across replicas when `synchronized`)."""
        # Statistics in float32 at least, as keras BatchNormalization does.
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        if train:
            mean, variance = ops.moments(
                inputs, self._reduction_axes, synchronized=self.synchronized
            )
        else:
            mean = ops.cast(self.moving_mean, compute_dtype)
            variance = ops.cast(self.moving_variance, compute_dtype)
        gamma, beta = self._affine(compute_dtype)
        outputs = ops.batch_normalization(
            inputs,
            mean=mean,
            variance=variance,
            axis=self._axis,
            offset=beta,
            scale=gamma,
            epsilon=self.epsilon,
        )
        return outputs, mean, variance

    def _fused(self, inputs, train):
        """Eq. 5-8 as one fused kernel (`FusedBatchNormV3` and its
        gradient) over the batch and time folded into one axis: the same
        statistics as `_composed` in fewer passes over the currents (the
        input's type in and out, float32 statistics)."""
        import tensorflow as tf

        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        if len(inputs.shape) >= 5:  # (batch, time, ..., H, W, C)
            folded = tf.reshape(inputs, tf.concat([[-1], shape[-3:]], 0))
        else:  # (batch, time, C) or (batch, time, W, C)
            folded = tf.reshape(inputs, [-1, 1, 1, channels])
        gamma, beta = self._affine("float32")
        if train:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                folded, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            # The kernel returns the unbiased variance (for moving
            # averages); Eq. 8 and `_composed` keep the biased one.
            count = tf.cast(tf.size(folded) // channels, "float32")
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        else:
            mean = ops.cast(self.moving_mean, "float32")
            variance = ops.cast(self.moving_variance, "float32")
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                folded,
                gamma,
                beta,
                mean=mean,
                variance=variance,
                epsilon=self.epsilon,
                is_training=False,
            )
        return tf.reshape(outputs, shape), mean, variance

    def _update_moving_statistics(self, mean, variance):
        momentum = self.momentum
        for moving, batch in (
            (self.moving_mean, mean),
            (self.moving_variance, variance),
        ):
            value = ops.cast(moving, batch.dtype) * momentum
            value = value + batch * (1.0 - momentum)
            moving.assign(ops.cast(value, moving.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "threshold": self.threshold,
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "synchronized": self.synchronized,
            }
        )
        config.update(
            serialize_options(
                self,
                (
                    "beta_initializer",
                    "gamma_initializer",
                    "moving_mean_initializer",
                    "moving_variance_initializer",
                    "beta_regularizer",
                    "gamma_regularizer",
                    "beta_constraint",
                    "gamma_constraint",
                ),
            )
        )
        return config


@register
class NeuNorm(keras.layers.Layer):
    """Neuron normalization (NeuNorm) of spikes across feature maps.

    At every spatial location an auxiliary neuron integrates, with a leak,
    the spikes of all `F` feature maps there; each neuron's output is then
    reduced by the auxiliary state through a trainable weight `U` of the
    feature map's size. With `k` = `decay` and `v` = `scale`:

    ```
    x[t](i,j) = k * x[t-1](i,j) + (v / F) * sum_f o_f[t](i,j)      # Eq. 9
    y_c[t](i,j) = o_c[t](i,j) - U_c(i,j) * x[t](i,j)                # Eq. 10
    ```

    starting from `x[-1] = 0`. Eq. 10 feeds `y` to the next layer's
    convolution, so put NeuNorm between a spiking layer and the next
    synaptic layer, e.g. `LIF -> NeuNorm -> TimeFolded(Conv2D)`. The output
    is no longer binary and `x` depends on the spikes, so a deployed network
    runs Eq. 9-10 (`keras_snn.functional.neunorm_step`) before that layer.

    Shapes: the last input axis holds the `F` feature maps and the axes
    between time and it are spatial, so `(batch, time, H, W, F)` gives one
    auxiliary neuron per `(i, j)` and `U` of shape `(H, W, F)` (`U_c` has
    "the same size as the FM" for each of the `F` maps). A
    `(batch, time, units)` input is read as a single location with
    `F = units`: one auxiliary neuron per sample tracks the mean spike
    count of the whole layer, and `U` has shape `(units,)`. The paper
    applies NeuNorm to convolutional layers only; the flat case is the
    same equations with `H = W = 1`.

    The paper ties the constants ("for simplicity we set k_tau2 + vF = 1")
    and says Eq. 9 computes "the average response to the input firing rate
    with momentum". keras_snn reads this as `k + v = 1`, which makes `x` an
    exponential moving average of the mean firing rate over the feature
    maps, and uses it when `scale=None` (the default): `v = 1 - k`. Pass
    `scale=(1 - decay) / F` for the literal `k + vF = 1`, or any `v > 0`.
    The paper does not say how `U` is
    initialized; the default zeros make the layer start as the identity,
    and `U` gets a gradient `-x[t]` times the incoming one from the first
    step.

    Args:
        decay: float in [0, 1], the decay factor `k_tau2` of the auxiliary
            neuron. Defaults to `0.9`.
        scale: `None` or float > 0, the constant scaling factor `v`;
            `None` means `1 - decay`. Defaults to `None`.
        weight_initializer: initializer of `U`. Defaults to `"zeros"`.
        weight_regularizer: optional regularizer of `U`. Defaults to
            `None`.
        weight_constraint: optional constraint of `U`. Defaults to `None`.
        unroll: `None`, `True` or `False`. `None` unrolls the time loop
            when the sequence length is static and at most 64 steps, and
            uses a symbolic loop otherwise; `True` and `False` force one or
            the other (a length unknown when tracing always uses the
            symbolic loop). Both compile with XLA. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float spikes `o` of shape `(batch, time, ..., F)` with a
            known feature shape after the time axis.

    Returns:
        `y = o - U * x`, a float tensor of the input's shape.

    Example:

    ```python
    inputs = keras.Input((4, 28, 28, 1))
    x = keras_snn.layers.TimeFolded(keras.layers.Conv2D(16, 3))(inputs)
    x = keras_snn.layers.LIF()(x)
    x = keras_snn.layers.NeuNorm(decay=0.9)(x)  # v = 0.1
    x = keras_snn.layers.TimeFolded(keras.layers.Conv2D(32, 3))(x)
    ```

    Reference:
        Wu, Deng, Li, Zhu, Xie, Shi, "Direct Training for Spiking Neural
        Networks: Faster, Larger, Better", AAAI 2019, Eq. 9-10 and
        Algorithm 2 (https://arxiv.org/abs/1809.05793).
    """

    def __init__(
        self,
        decay=0.9,
        scale=None,
        weight_initializer="zeros",
        weight_regularizer=None,
        weight_constraint=None,
        unroll=None,
        **kwargs,
    ):
        decay = check_number(type(self), kwargs, "decay", decay, UNIT_INTERVAL)
        if scale is not None:
            scale = check_number(type(self), kwargs, "scale", scale, POSITIVE)
        elif decay >= 1.0:
            raise ValueError(
                "NeuNorm with decay=1 needs an explicit `scale` > 0 (the "
                "default scale=None means 1 - decay). Received: decay=1.0, "
                "scale=None"
            )
        if unroll not in (None, True, False):
            raise ValueError(
                "Argument `unroll` must be None, True or False. Received: "
                f"unroll={unroll!r}"
            )
        super().__init__(**kwargs)
        self.decay = decay
        self.scale = scale
        self.weight_initializer = keras.initializers.get(weight_initializer)
        self.weight_regularizer = keras.regularizers.get(weight_regularizer)
        self.weight_constraint = keras.constraints.get(weight_constraint)
        self.unroll = unroll
        self.auxiliary_weight = None

    @property
    def effective_scale(self):
        """The factor `v` of Eq. 9: `scale`, or `1 - decay` if it is None."""
        return 1.0 - self.decay if self.scale is None else self.scale

    def build(self, input_shape):
        input_shape = _check_rank(self, input_shape, "spikes")
        feature_shape = input_shape[2:]
        if any(d is None for d in feature_shape):
            raise ValueError(
                f"Layer '{self.name}' (NeuNorm) needs a known feature shape "
                "after the batch and time axes to size its weight U. "
                f"Received: input shape={input_shape}"
            )
        feature_shape = tuple(int(d) for d in feature_shape)
        self.auxiliary_weight = self.add_weight(
            shape=feature_shape,
            name="auxiliary_weight",
            initializer=self.weight_initializer,
            regularizer=self.weight_regularizer,
            constraint=self.weight_constraint,
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape),
            axes={i + 2: d for i, d in enumerate(feature_shape)},
        )

    def compute_output_shape(self, input_shape):
        return tuple(_check_rank(self, input_shape, "spikes"))

    def auxiliary_states(self, inputs):
        """Returns `x[t]` for all steps, shape `(batch, time, ..., 1)`."""
        decay, scale = self.decay, self.effective_scale

        # A public loop instead of the private `keras.src.backend.rnn`:
        # `tf.scan` (the layers need the TensorFlow backend), not
        # `keras.ops.scan`, whose TensorFlow loop has no
        # `maximum_iterations`, so its gradient does not compile with XLA.
        # Neither unrolls, so a short known sequence is unrolled here in
        # Python, as `keras.layers.RNN(unroll=True)` does.
        timesteps = inputs.shape[1]
        unroll = self.unroll
        if unroll is None:
            unroll = timesteps is not None and timesteps <= MAX_AUTO_UNROLL
        initial = ops.zeros_like(inputs[:, 0, ..., :1])
        if unroll and timesteps is not None:
            x, states = initial, []
            for t in range(timesteps):
                x = functional.neunorm_step(inputs[:, t], x, decay, scale)
                states.append(x)
            return ops.stack(states, axis=1)

        import tensorflow as tf

        states = tf.scan(
            lambda x, spikes: functional.neunorm_step(spikes, x, decay, scale),
            ops.moveaxis(inputs, 1, 0),
            initializer=initial,
        )
        return ops.moveaxis(states, 0, 1)

    def call(self, inputs):
        check_float_input(self, inputs, "spikes")
        states = self.auxiliary_states(inputs)
        weight = ops.cast(self.auxiliary_weight, inputs.dtype)
        return functional.neunorm_output(inputs, states, weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "decay": self.decay,
                "scale": self.scale,
                "unroll": self.unroll,
            }
        )
        config.update(
            serialize_options(
                self,
                (
                    "weight_initializer",
                    "weight_regularizer",
                    "weight_constraint",
                ),
            )
        )
        return config
