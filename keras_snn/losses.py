"""Losses for spiking readouts.

- `VotingMSE`: the squared error between the label vector and the voting
  output of `keras_snn.layers.Voting` (Wu et al. 2019, Eq. 11).
- `SpikeCountMSE`: the squared error between each output neuron's spike
  count and a target count for the correct and the other classes.
- `FirstSpikeCrossEntropy`: softmax cross-entropy on minus the (soft)
  first spike time of each output neuron, so the correct neuron learns to
  fire first.

The logits of `keras_snn.layers.Decoding` and
`keras_snn.layers.MembraneReadout` are trained with Keras' own
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)` (Zheng et al.
2021, Eq. 12-13), so no class is needed for them here.
"""

import keras
from keras import ops

from keras_snn import functional
from keras_snn.saving import register

__all__ = ["FirstSpikeCrossEntropy", "SpikeCountMSE", "VotingMSE"]


@register
class VotingMSE(keras.losses.Loss):
    """Squared error between the label vector and the voting output.

    Eq. 11 of Wu et al. 2019, per sample:

    ```
    L = || Y - (1/T) sum_t M o[t] ||_2^2 = sum_c (Y[c] - y_pred[c])^2
    ```

    where `y_pred = (1/T) sum_t M o[t]` is the output of
    `keras_snn.layers.Voting` and `Y` the label vector. The squared norm
    sums over the classes, as written in Eq. 11, so the loss is
    `num_classes` times `keras.losses.MeanSquaredError` (which averages
    over the classes); the reduction then averages over the batch. Half of
    this loss on `u[T] / (T V_th)` is Eq. 6 of Wu et al. 2021 (see
    `keras_snn.layers.MembraneReadout`).

    `y_true` may be integer labels of shape `(batch,)` or `(batch, 1)`,
    which are one-hot encoded, or label vectors of shape
    `(batch, num_classes)` (one-hot or soft targets), used as they are. A
    `(batch, 1)` target with a single class counts as a label vector.

    Args:
        reduction: how the per-sample losses are reduced, as for
            `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: the loss name. Defaults to `"voting_mse"`.
        dtype: dtype of the loss computation, as for `keras.losses.Loss`.
            Defaults to `None` (`keras.backend.floatx()`).

    Call arguments:
        y_true: integer labels `(batch,)` / `(batch, 1)` or label vectors
            `(batch, num_classes)`.
        y_pred: the voting output, shape `(batch, num_classes)`.
        sample_weight: optional per-sample weights.

    Returns:
        The reduced loss (a scalar by default).

    Example:

    ```python
    loss = keras_snn.losses.VotingMSE()
    loss([2, 0], [[0.1, 0.0, 0.8], [0.6, 0.2, 0.0]])
    # ((0.01 + 0 + 0.04) + (0.16 + 0.04 + 0)) / 2 = 0.125
    ```

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, Eq. 11.
    """

    def __init__(
        self, reduction="sum_over_batch_size", name="voting_mse", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_pred.shape) != 2:
            raise ValueError(
                "VotingMSE expects `y_pred` of shape (batch, num_classes), "
                "the output of keras_snn.layers.Voting. Received: y_pred "
                f"shape={tuple(y_pred.shape)}"
            )
        labels = _label_vectors(y_true, y_pred, "VotingMSE")
        return ops.sum(ops.square(labels - y_pred), axis=-1)

    def get_config(self):
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        return config


def _check_spikes(owner, y_pred):
    if len(y_pred.shape) != 3:
        raise ValueError(
            f"{owner} expects `y_pred` of shape (batch, time, classes), the "
            "spikes of the output layer (a spiking layer with "
            "return_sequences=True). Received: y_pred "
            f"shape={tuple(y_pred.shape)}"
        )


def _check_unit(owner, name, value):
    return functional.validate_number(
        value, name, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0, owner
    )


@register
class SpikeCountMSE(keras.losses.Loss):
    """Squared error between spike counts and target counts per class.

    For output spikes `o[t, c]` over `T` steps, the count of class `c` is
    `n[c] = sum_t o[t, c]`, and its target is `correct_rate * T` for the
    labelled class and `incorrect_rate * T` for the others. Per sample:

    ```
    target[c] = T * (incorrect_rate + (correct_rate - incorrect_rate) Y[c])
    L = (1/C) sum_c (n[c] - target[c])^2
    ```

    where `Y` is the (one-hot or soft) label vector and `C` the number of
    classes; the reduction then averages over the batch. The counts are
    sums of the spikes, so the gradient reaches every step of the output
    layer through its surrogate. This is snnTorch's `mse_count_loss`.

    Args:
        correct_rate: float in [0, 1], the target firing rate (spikes per
            step) of the correct class. Defaults to `0.8`.
        incorrect_rate: float in [0, 1], that of the other classes.
            Defaults to `0.2`.
        reduction: as for `keras.losses.Loss`. Defaults to
            `"sum_over_batch_size"`.
        name: the loss name. Defaults to `"spike_count_mse"`.
        dtype: dtype of the loss computation. Defaults to `None`
            (`keras.backend.floatx()`).

    Call arguments:
        y_true: integer labels `(batch,)` / `(batch, 1)` or label vectors
            `(batch, classes)`.
        y_pred: output spikes `(batch, time, classes)`.
        sample_weight: optional per-sample weights.

    Returns:
        The reduced loss (a scalar by default).

    Example:

    ```python
    loss = keras_snn.losses.SpikeCountMSE(correct_rate=1.0,
                                          incorrect_rate=0.0)
    spikes = [[[1.0, 0.0], [1.0, 1.0]]]  # T = 2: counts 2 and 1
    loss([0], spikes)  # ((2 - 2)^2 + (1 - 0)^2) / 2 = 0.5
    ```
    """

    def __init__(
        self,
        correct_rate=0.8,
        incorrect_rate=0.2,
        reduction="sum_over_batch_size",
        name="spike_count_mse",
        dtype=None,
    ):
        owner = type(self).__name__
        correct_rate = _check_unit(owner, "correct_rate", correct_rate)
        incorrect_rate = _check_unit(owner, "incorrect_rate", incorrect_rate)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.correct_rate = correct_rate
        self.incorrect_rate = incorrect_rate

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        _check_spikes(type(self).__name__, y_pred)
        counts = ops.sum(y_pred, axis=1)
        labels = _label_vectors(
            ops.convert_to_tensor(y_true), counts, type(self).__name__
        )
        steps = ops.cast(ops.shape(y_pred)[1], counts.dtype)
        rate = (
            self.incorrect_rate
            + (self.correct_rate - self.incorrect_rate) * labels
        )
        return ops.mean(ops.square(counts - steps * rate), axis=-1)

    def get_config(self):
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        config["correct_rate"] = self.correct_rate
        config["incorrect_rate"] = self.incorrect_rate
        return config


def _soft_first_spike_time(spikes):
    """`sum_{t=1..T} prod_{s<t} (1 - o[s])` over axis 1 of `spikes`.

    Equal to `sum_t t o[t] prod_{s<t} (1 - o[s]) + T prod_s (1 - o[s])`
    (expand `o[t] P[t] = P[t] - P[t+1]` and telescope), which for 0/1
    spikes is the first spike step, or `T` without a spike. The running
    product is a loop (unrolled for a static `T`, which XLA compiles; a
    scan otherwise) rather than `cumprod`, whose TensorFlow gradient is
    wrong where a factor is 0 (a spike).
    """
    steps = spikes.shape[1]
    silent = 1.0 - spikes
    if steps is not None:
        survive = ops.ones_like(silent[:, 0])
        total = ops.zeros_like(survive)
        for t in range(steps):
            survive = survive * silent[:, t]
            total = total + survive
        return total

    def step(survive, silent_t):
        survive = survive * silent_t
        return survive, survive

    silent = ops.moveaxis(silent, 1, 0)
    _, survival = ops.scan(step, ops.ones_like(silent[0]), silent)
    return ops.sum(survival, axis=0)


@register
class FirstSpikeCrossEntropy(keras.losses.Loss):
    """Cross-entropy on the first spike times: the correct class fires first.

    The logits are minus the first spike time of each output neuron,
    scaled: `z[c] = -scale * tau[c]`, then softmax cross-entropy with the
    label (snnTorch's `ce_temporal_loss` with `inverse="negate"`). A neuron
    that never fires gets `tau = T`. To be differentiable through the
    spikes (and the surrogate of the output layer) the time is the soft
    first spike time

    ```
    P[t]   = prod_{s<t} (1 - o[s])           (no spike before step t)
    tau[c] = sum_t t o[t, c] P[t] + T P[T] = sum_{t=1..T} P[t]
    L      = -sum_c Y[c] log softmax(-scale * tau)[c]
    ```

    which for 0/1 spikes is the index of the first spike exactly, and
    whose derivative `d tau / d o[s]` is `s - tau` before the first spike
    (a spike earlier makes the time smaller) and nonzero at it; steps after
    the first spike get no gradient. With a static number of steps the
    loss compiles under XLA (`jit_compile=True`); with a time axis of
    unknown length (`None`) it runs a scan, which XLA does not compile.

    Args:
        scale: float > 0, logits per time step. Defaults to `1.0`.
        reduction: as for `keras.losses.Loss`. Defaults to
            `"sum_over_batch_size"`.
        name: the loss name. Defaults to `"first_spike_cross_entropy"`.
        dtype: dtype of the loss computation. Defaults to `None`
            (`keras.backend.floatx()`).

    Call arguments:
        y_true: integer labels `(batch,)` / `(batch, 1)` or label vectors
            `(batch, classes)`.
        y_pred: output spikes `(batch, time, classes)`.
        sample_weight: optional per-sample weights.

    Returns:
        The reduced loss (a scalar by default).

    Example:

    ```python
    loss = keras_snn.losses.FirstSpikeCrossEntropy()
    spikes = [[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]  # times 1 and T = 3
    loss([0], spikes)  # -log(e^-1 / (e^-1 + e^-3)) = log(1 + e^-2)
    ```

    Reference:
        Eshraghian et al., "Training Spiking Neural Networks Using Lessons
        From Deep Learning", Proc. IEEE 111(9), 2023 (snnTorch).
    """

    def __init__(
        self,
        scale=1.0,
        reduction="sum_over_batch_size",
        name="first_spike_cross_entropy",
        dtype=None,
    ):
        scale = functional.validate_positive(
            scale, "scale", type(self).__name__
        )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.scale = scale

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        _check_spikes(type(self).__name__, y_pred)
        logits = -self.scale * _soft_first_spike_time(y_pred)
        labels = _label_vectors(
            ops.convert_to_tensor(y_true), logits, type(self).__name__
        )
        return keras.losses.categorical_crossentropy(
            labels, logits, from_logits=True
        )

    def get_config(self):
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        config["scale"] = self.scale
        return config


def _label_vectors(y_true, y_pred, owner):
    """`y_true` as label vectors shaped like `y_pred`, in its dtype.

    `owner` (the loss class name) starts the error messages.
    """
    num_classes = y_pred.shape[-1]
    shape = tuple(y_true.shape)
    if len(shape) == 2 and shape[-1] == num_classes:
        return ops.cast(y_true, y_pred.dtype)
    if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        if num_classes is None:
            raise ValueError(
                f"{owner} needs a static number of classes in `y_pred` to "
                "one-hot encode integer labels. Received: y_pred "
                f"shape={tuple(y_pred.shape)}"
            )
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        return ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
    raise ValueError(
        f"{owner} expects `y_true` as integer labels of shape (batch,) or "
        "(batch, 1), or label vectors of shape (batch, num_classes). "
        f"Received: y_true shape={shape}, y_pred shape={tuple(y_pred.shape)}"
    )
