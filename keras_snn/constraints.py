"""Constraints that keep trainable neuron parameters in range."""

import keras
from keras import ops

from keras_snn.saving import register

__all__ = ["Clip"]


@register
class Clip(keras.constraints.Constraint):
    """Clips a weight to `[min_value, max_value]` after each update.

    Used for trainable decays (kept in `[0, 1]`) and thresholds (kept
    above a small positive floor).

    Args:
        min_value: float, the lower bound. Defaults to `0.0`.
        max_value: float or `None`, the upper bound; `None` for none.
            Defaults to `None`.

    Example:

    ```python
    keras_snn.constraints.Clip(0.0, 1.0)(keras.ops.array([-0.5, 0.3, 2.0]))
    # [0.0, 0.3, 1.0]
    ```
    """

    def __init__(self, min_value=0.0, max_value=None):
        self.min_value = float(min_value)
        self.max_value = None if max_value is None else float(max_value)
        if self.max_value is not None and self.max_value < self.min_value:
            raise ValueError(
                "Clip: `max_value` must be >= `min_value`. Received: "
                f"min_value={min_value!r}, max_value={max_value!r}"
            )

    def __call__(self, w):
        w = ops.maximum(w, self.min_value)
        if self.max_value is not None:
            w = ops.minimum(w, self.max_value)
        return w

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}
