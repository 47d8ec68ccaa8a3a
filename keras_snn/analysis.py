"""Spiking activity of a model: which layers spike, how often, and when."""

import keras
import numpy as np

from keras_snn.layers.neurons import LIF

__all__ = ["firing_rates", "spike_trains", "spiking_layers"]


def spiking_layers(model):
    """Returns the model's spiking neuron layers (`LIF`, `IF`) in order."""
    return [layer for layer in model.layers if isinstance(layer, LIF)]


def _spike_model(model):
    found = spiking_layers(model)
    if not found:
        raise ValueError(
            f"Model '{model.name}' has no spiking layers (keras_snn.layers.LIF "
            "or IF) to record. Received: layers="
            f"{[type(layer).__name__ for layer in model.layers]}"
        )
    outputs = []
    for layer in found:
        output = layer.output
        # With return_potentials/return_state the spikes come first.
        outputs.append(
            output[0] if isinstance(output, (list, tuple)) else output
        )
    return keras.Model(model.inputs, outputs), found


def spike_trains(model, x, batch_size=256):
    """Records the spikes of every spiking layer for inputs `x`.

    Args:
        model: a functional or sequential Keras model with keras_snn
            neuron layers.
        x: model inputs (NumPy array or tensor), batch-major.
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        A dict from layer name to a NumPy array of spikes shaped
        `(batch, time, ...)`, in the order the layers appear.

    Example:

    ```python
    trains = keras_snn.analysis.spike_trains(model, x_test[:1])
    ```
    """
    recorder, found = _spike_model(model)
    outputs = recorder.predict(x, batch_size=batch_size, verbose=0)
    if len(found) == 1:
        outputs = [outputs]
    return {
        layer.name: np.asarray(out)
        for layer, out in zip(found, outputs, strict=True)
    }


def firing_rates(model, x, batch_size=256):
    """Mean firing rate (spikes per neuron per time step) of each layer.

    Args:
        model: a Keras model with keras_snn neuron layers.
        x: model inputs.
        batch_size: int, inference batch size. Defaults to `256`.

    Returns:
        A dict from layer name to its mean firing rate in [0, 1].
    """
    return {
        name: float(spikes.mean())
        for name, spikes in spike_trains(model, x, batch_size).items()
    }
