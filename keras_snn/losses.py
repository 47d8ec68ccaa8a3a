"""Losses for spiking readouts.

- `VotingMSE`: the squared error between the label vector and the voting
  output of `keras_snn.layers.Voting` (Wu et al. 2019, Eq. 11).

The logits of `keras_snn.layers.Decoding` and
`keras_snn.layers.MembraneReadout` are trained with Keras' own
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)` (Zheng et al.
2021, Eq. 12-13), so no class is needed for them here.
"""

import keras
from keras import ops

from keras_snn.saving import register

__all__ = ["VotingMSE"]


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
        labels = _label_vectors(y_true, y_pred)
        return ops.sum(ops.square(labels - y_pred), axis=-1)

    def get_config(self):
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        return config


def _label_vectors(y_true, y_pred):
    """`y_true` as label vectors shaped like `y_pred`, in its dtype."""
    num_classes = y_pred.shape[-1]
    shape = tuple(y_true.shape)
    if len(shape) == 2 and shape[-1] == num_classes:
        return ops.cast(y_true, y_pred.dtype)
    if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        if num_classes is None:
            raise ValueError(
                "VotingMSE needs a static number of classes in `y_pred` to "
                "one-hot encode integer labels. Received: y_pred "
                f"shape={tuple(y_pred.shape)}"
            )
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        return ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
    raise ValueError(
        "VotingMSE expects `y_true` as integer labels of shape (batch,) or "
        "(batch, 1), or label vectors of shape (batch, num_classes). "
        f"Received: y_true shape={shape}, y_pred shape={tuple(y_pred.shape)}"
    )
