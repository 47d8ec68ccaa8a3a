"""Gradient checkpointing: recompute a block in the backward pass.

`Recompute` wraps a layer (typically a `keras.Sequential` block of
convolution, normalization, neuron and pooling layers). In training its
forward pass keeps only the block's input for the backward pass; the
backward pass runs the block again from that input and differentiates the
recomputation. Memory that grows with the number of time steps (the
potentials, activations and normalized currents inside the block) is then
held for one block at a time instead of for the whole network, for the
cost of a second forward pass through the block.
"""

import keras

from keras_snn.layers.wrappers import call_layer
from keras_snn.saving import register

__all__ = ["Recompute", "recompute_gradient"]


def recompute_gradient(function):
    """Wraps `function(x)` so that its gradient recomputes it from `x`.

    The forward pass runs `function` once, with its side effects (a
    `BatchNormalization`'s moving statistics are updated once per step).
    The backward pass calls it again inside a `keras.StatelessScope`, so
    the recomputation assigns no variable, and returns the gradients of
    the recomputed outputs with respect to `x` and to every variable the
    forward pass read. The recomputation is made to depend on the
    incoming gradient, so a compiler (XLA) cannot merge it with the
    forward pass and keep the forward activations alive after all.

    Args:
        function: a function of one tensor returning a tensor or a
            structure of tensors, deterministic given its input and the
            variables' values.

    Returns:
        A function of one tensor, with the same outputs as `function`.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def run(x):
        outputs = function(x)

        def backward(*upstream, variables=None):
            variables = list(variables or [])
            # Zero that the compiler cannot prove zero before the upstream
            # gradient exists: orders the recomputation after it.
            first = tf.reshape(upstream[0], [-1])[:1]
            after = tf.cast(tf.reduce_sum(first * 0.0), x.dtype)
            again_input = x + after
            with tf.GradientTape() as tape:
                tape.watch(again_input)
                tape.watch(variables)
                with keras.StatelessScope():
                    again = function(again_input)
            grads = tape.gradient(
                tf.nest.flatten(again),
                [again_input, *variables],
                output_gradients=list(upstream),
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            return grads[0], grads[1:]

        return outputs, backward

    return run


@register
class Recompute(keras.layers.Wrapper):
    """Recomputes the wrapped layer in the backward pass instead of storing.

    Gradient checkpointing (rematerialization) for a block of a spiking
    network. Training a network of `T` steps stores, for the backward pass,
    each layer's activations at every step: the membrane potentials of
    every spiking layer (the fused neuron's backward pass reads `u[t]`, Wu
    et al. 2019, Eq. 4-5), the normalized currents of every tdBN/BN, the
    inputs of every convolution; this is the part of the memory that grows
    with `T`. Wrapped in `Recompute`, a block stores only its input; when
    the gradient reaches the block, the block runs forward again from that
    input and is differentiated then. The block's internals are held for
    one block at a time, for the cost of one more forward pass of the
    block (`benchmarks/recompute.py` measures both).

    Inference and evaluation (`training` false) run the wrapped layer
    as it is, with no cost. The forward pass of training runs it once with
    its side effects (moving statistics of a `BatchNormalization` updated
    once); the recomputation assigns no variable. The outputs and the
    gradients are those of the wrapped layer without `Recompute`.

    The block must compute the same thing twice from the same input:
    layers that draw random numbers (`Dropout`, noise layers) and stateful
    layers (`stateful=True` neurons, which read a state the forward pass
    has already advanced) are refused.

    Args:
        layer: a `keras.layers.Layer` with one input tensor and one output
            tensor, e.g. a `keras.Sequential` block.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: the wrapped layer's input.
        training: Python bool; only `True` recomputes.

    Returns:
        The wrapped layer's output.

    Example:

    ```python
    import keras
    import keras_snn

    snn = keras_snn.layers
    block = keras.Sequential([
        snn.TimeFolded(keras.layers.Conv2D(32, 3, padding="same")),
        snn.TimeFolded(keras.layers.BatchNormalization()),
        snn.LIF(),
        snn.TimeFolded(keras.layers.AveragePooling2D(2)),
    ])
    inputs = keras.Input((28, 28, 1))
    x = snn.DirectEncoding(8)(inputs)
    x = snn.Recompute(block)(x)  # (None, 8, 14, 14, 32)
    ```
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Argument `layer` of Recompute must be a keras Layer. "
                f"Received: layer={layer!r}"
            )
        _check_repeatable(layer)
        super().__init__(layer, **kwargs)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        if not training or keras.backend.backend() != "tensorflow":
            return call_layer(self.layer, inputs, training)
        return recompute_gradient(lambda x: call_layer(self.layer, x, True))(
            inputs
        )


def _check_repeatable(layer):
    """Refuses a block that would not compute the same thing twice."""
    for sub in [layer, *layer._flatten_layers(include_self=False)]:
        if getattr(sub, "stateful", False):
            reason = "it is stateful (stateful=True)"
        elif any(
            isinstance(value, keras.random.SeedGenerator)
            for value in vars(sub).values()
        ):
            reason = "it draws random numbers"
        else:
            continue
        raise ValueError(
            f"Recompute cannot wrap layer '{sub.name}' "
            f"({type(sub).__name__}): {reason}, so recomputing it in the "
            "backward pass would not reproduce the forward pass. Keep it "
            "outside the Recompute block."
        )
