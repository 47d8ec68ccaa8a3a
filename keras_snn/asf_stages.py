"""How ASF-BP sees a model's layers: the chain of stages of `ASFModel`.

`classify(model)` walks a functional or Sequential keras_snn model as a
chain and labels each layer (input encoder, affine, rate-approximated,
spiking neuron, readout head, static), or refuses the model with an error
naming the layer it cannot treat (Wu et al. 2021, Eq. 8-11 need affine
layers between spiking ones).
"""

import keras

from keras_snn.layers.encoding import BernoulliEncoding
from keras_snn.layers.encoding import DirectEncoding
from keras_snn.layers.encoding import PoissonEncoding
from keras_snn.layers.neurons import LIF
from keras_snn.layers.readout import Decoding
from keras_snn.layers.readout import MembraneReadout
from keras_snn.layers.readout import Voting
from keras_snn.layers.wrappers import TimeFolded

__all__ = ["ENCODERS", "HEADS", "classify"]

ENCODERS = (DirectEncoding, PoissonEncoding, BernoulliEncoding)
HEADS = (MembraneReadout, Decoding, Voting, keras.layers.GlobalAveragePooling1D)

# Per-step layers (inside `TimeFolded`) that are affine in their input, so
# that sum_t f(o[t]) = T f(FO / T) exactly (Eq. 8, with biases).
_AFFINE = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.Identity,
)
# Per-step layers that are not linear: the equivalent network uses them on
# the mean rate FO / T for the gradient and the recorded flow as value.
_RATE_APPROXIMATED = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)


class _Stage:
    """One layer of the chain and how ASF-BP treats it."""

    def __init__(self, layer, kind):
        self.layer = layer
        self.kind = kind  # input, affine, rate, neuron, head, static


def _chain(model):
    """The model's layers as a chain, or an error naming the culprit."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Argument `model` must be a keras.Model (functional or "
            f"Sequential). Received: model={model!r}"
        )
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            "Argument `model` must be a built functional or Sequential "
            "model with a known input (e.g. from keras_snn.models.from_spec)"
            f". Received: model={model.name!r}"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "ASF-BP needs a model with one input and one output. Received: "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    layers = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    previous = model.inputs[0]
    for layer in layers:
        node_input = getattr(layer, "input", None)
        if node_input is not previous or len(layer._inbound_nodes) != 1:
            raise ValueError(
                "ASF-BP needs a chain of layers, each fed by the previous "
                f"one only (no branches or shared layers). Layer "
                f"'{layer.name}' ({type(layer).__name__}) breaks the chain."
            )
        previous = layer.output
    if previous is not model.outputs[0]:
        raise ValueError(
            "ASF-BP needs the last layer's output to be the model output. "
            f"Received: model={model.name!r}"
        )
    return layers


def _describe(layer):
    inner = getattr(layer, "layer", None)
    if isinstance(layer, TimeFolded):
        return f"'{layer.name}' (TimeFolded({type(inner).__name__}))"
    return f"'{layer.name}' ({type(layer).__name__})"


_SUPPORTED = (
    "encoders (DirectEncoding, PoissonEncoding, BernoulliEncoding); "
    "TimeFolded around Dense/Conv (linear activation), average or max "
    "pooling, Flatten, Reshape, padding or cropping; LIF/IF with "
    "return_sequences=True and fixed threshold and decay; a head "
    "(MembraneReadout, Decoding, Voting, GlobalAveragePooling1D) followed "
    "by any non-temporal layers"
)


def _unsupported(layer, why):
    return ValueError(
        f"ASF-BP cannot train through layer {_describe(layer)}: {why}. "
        f"Supported: {_SUPPORTED}."
    )


def classify(model):
    """Splits the chain into input stage, temporal stages and head."""
    layers = _chain(model)
    stages = []
    encoder_at = next(
        (i for i, layer in enumerate(layers) if isinstance(layer, ENCODERS)),
        None,
    )
    if encoder_at is None and len(model.inputs[0].shape) < 3:
        raise ValueError(
            "ASF-BP needs a time axis: start the model with an encoder "
            "(keras_snn.layers.DirectEncoding, PoissonEncoding) or give it "
            "inputs of shape (batch, time, ...). Received: input shape="
            f"{tuple(model.inputs[0].shape)}"
        )
    start = 0 if encoder_at is None else encoder_at + 1
    for layer in layers[:start]:
        if layer.trainable_weights:
            raise _unsupported(
                layer,
                "it has trainable weights before the spiking input, which "
                "the accumulated flows cannot reach",
            )
        stages.append(_Stage(layer, "input"))
    head_seen = False
    neurons = 0
    for layer in layers[start:]:
        if head_seen:
            stages.append(_Stage(layer, "static"))
            continue
        if isinstance(layer, LIF):
            if (
                not layer.return_sequences
                or layer.return_potentials
                or layer.return_state
                or layer.stateful
            ):
                raise _unsupported(
                    layer,
                    "it must return its spike sequence only "
                    "(return_sequences=True, return_potentials=False, "
                    "return_state=False, stateful=False)",
                )
            if layer.trainable_threshold or layer.trainable_decay:
                raise _unsupported(
                    layer,
                    "the equivalent network gives no gradient for a "
                    "trainable threshold or decay",
                )
            stages.append(_Stage(layer, "neuron"))
            neurons += 1
        elif isinstance(layer, TimeFolded):
            inner = layer.layer
            activation = getattr(inner, "activation", None)
            if activation is not None and activation not in (
                keras.activations.linear,
                None,
            ):
                raise _unsupported(
                    layer,
                    "its activation must be linear (the spiking neurons "
                    "are the non-linearity)",
                )
            if isinstance(inner, _AFFINE):
                stages.append(_Stage(layer, "affine"))
            elif isinstance(inner, _RATE_APPROXIMATED):
                stages.append(_Stage(layer, "rate"))
            else:
                raise _unsupported(
                    layer,
                    "it is not linear in the spikes (batch normalization "
                    "and dropout use per-step statistics or masks that the "
                    "accumulated flows do not have)",
                )
        elif isinstance(layer, HEADS):
            if isinstance(layer, keras.layers.GlobalAveragePooling1D) and (
                layer.data_format != "channels_last"
            ):
                raise _unsupported(
                    layer, "it must average the time axis (channels_last)"
                )
            stages.append(_Stage(layer, "head"))
            head_seen = True
        else:
            raise _unsupported(layer, "no accumulated-flow rule for it")
    if not head_seen:
        raise ValueError(
            "ASF-BP needs a head that removes the time axis (MembraneReadout,"
            " Decoding, Voting or GlobalAveragePooling1D): the loss of Eq. 6"
            f" is on the accumulated output. Received: model={model.name!r} "
            f"ending with {_describe(layers[-1])}"
        )
    if not neurons:
        raise ValueError(
            "ASF-BP needs at least one spiking layer (keras_snn.layers.LIF "
            f"or IF) before the head. Received: model={model.name!r}"
        )
    return stages
