"""Random small keras_snn networks: drawing a specification, building it."""

import numpy as np

HEADS = (
    "decoding",
    "voting",
    "membrane-last",
    "membrane-mean",
    "membrane-max",
    "rate",
)
RATE_RANGE = (0.03, 0.7)  # mean firing rates the weight scaling aims at
SCALING_ROUNDS = 8
# Weight given to every input of a layer's first output channel, in units
# of the layer's largest weight, or 0 for none: a silent (-20) or saturated
# (+20) channel beside ordinary ones, as training leaves them, stretches
# the integer scales.
OUTLIERS = (0.0, 0.0, 0.0, -20.0, 20.0)


# -- drawing ---------------------------------------------------------------
class RandomChooser:
    """Draws with a NumPy generator (the long run).

    Args:
        rng: a `numpy.random.Generator`.
    """

    def __init__(self, rng):
        self.rng = rng

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def integer(self, low, high):
        """An int in `[low, high]` (both included)."""
        return int(self.rng.integers(low, high + 1))

    def uniform(self, low, high):
        """A float in `[low, high]`, to three decimals."""
        return round(float(self.rng.uniform(low, high)), 3)


class HypothesisChooser:
    """Draws with Hypothesis (`data.draw` of `st.data()`), so that a
    failing network shrinks.

    Args:
        draw: `data.draw`, or the `draw` of a `@st.composite` strategy.
    """

    def __init__(self, draw):
        from hypothesis import strategies

        self.draw = draw
        self.st = strategies

    def choice(self, options):
        return self.draw(self.st.sampled_from(options))

    def integer(self, low, high):
        return self.draw(self.st.integers(low, high))

    def uniform(self, low, high):
        # Thousandths, so that a drawn value prints as it is.
        return self.draw(self.st.integers(low * 1000, high * 1000)) / 1000


def _neuron(chooser, chain=False):
    kind = chooser.choice(("LIF", "IF"))
    return {
        "type": kind,
        "threshold": chooser.uniform(0.2, 1.5),
        "decay": chooser.uniform(0.2, 0.95) if kind == "LIF" else 1.0,
        "reset": "hard" if chain else chooser.choice(("hard", "soft")),
    }


def draw_spec(chooser):
    """Draws the description of a small random network.

    Args:
        chooser: a `RandomChooser` or a `HypothesisChooser`.

    Half of the networks are drawn as a "chain": hard reset, no residual
    block, average pooling, a spike-count head and at least two spiking
    layers, what the NIR and Loihi targets accept; the others use every
    construct (and those targets refuse most of them).

    Returns:
        A JSON-serializable dict for `build`.
    """
    chain = chooser.choice((False, True))
    spec = {
        "timesteps": chooser.integer(1, 8),
        "input": chooser.choice(("image", "features", "sequence")),
        "seed": chooser.integer(0, 9999),
        "chain": chain,
    }
    blocks = []
    if spec["input"] == "image":
        spec["shape"] = [6, 6, chooser.integer(1, 2)]
        size = 6
        for _ in range(chooser.integer(0, 2)):
            kind = chooser.choice(("conv", "conv", "residual"))
            if chain:
                kind = "conv"
            if kind == "residual" and size >= 2:
                stride = chooser.integer(1, 2)
                blocks.append(
                    {
                        "kind": "residual",
                        "filters": chooser.integer(2, 4),
                        "stride": stride,
                        "neuron": chooser.choice(("lif", "if")),
                    }
                )
                size = -(-size // stride)
                continue
            kernel = chooser.integer(1, 3)
            padding = chooser.choice(("same", "valid"))
            if size < kernel:
                padding = "same"
            strides = chooser.integer(1, 2)
            size = (
                -(-size // strides)
                if padding == "same"
                else (size - kernel) // strides + 1
            )
            block = {
                "kind": "conv",
                "filters": chooser.integer(2, 5),
                "kernel": kernel,
                "strides": strides,
                "padding": padding,
                "use_bias": chooser.choice((True, False)),
                "outlier": chooser.choice(OUTLIERS),
                "norm": chooser.choice(("none", "bn", "tdbn")),
                "neuron": _neuron(chooser, chain),
                "pool": chooser.choice(("none", "avg", "max")),
                "pool_padding": chooser.choice(("valid", "same")),
            }
            if chain and block["pool"] == "max":
                block["pool"] = "avg"
            if size < 2:
                block["pool"] = "none"
            elif block["pool"] != "none":
                size = (
                    size // 2
                    if block["pool_padding"] == "valid"
                    else -(-size // 2)
                )
            blocks.append(block)
        dense = chooser.integer(0, 2)
    else:
        # Static features repeated T times by a DirectEncoding, or a
        # sequence (N, T, 8) read step by step (no encoding layer).
        spec["shape"] = [8]
        if spec["input"] == "sequence":
            spec["shape"] = [spec["timesteps"], 8]
        dense = chooser.integer(1, 2)
    # At least one spiking layer before the head, two in a chain.
    dense = max(dense, (2 if chain else 1) - len(blocks))
    for _ in range(dense):
        blocks.append(
            {
                "kind": "dense",
                "units": chooser.integer(4, 12),
                "norm": chooser.choice(("none", "bn", "tdbn")),
                "outlier": chooser.choice(OUTLIERS),
                "neuron": _neuron(chooser, chain),
            }
        )
    spec["blocks"] = blocks
    spec["head"] = chooser.choice(HEADS[:2] if chain else HEADS)
    spec["classes"] = chooser.integer(2, 4)
    if spec["head"] == "voting":
        spec["head_neuron"] = _neuron(chooser, chain)
    if spec["head"].startswith("membrane"):
        spec["head_decay"] = chooser.uniform(0.5, 1.0)
    return spec


# -- building --------------------------------------------------------------
def _neuron_layer(neuron, name):
    from keras_snn import layers

    if neuron["type"] == "IF":
        return layers.IF(
            threshold=neuron["threshold"], reset=neuron["reset"], name=name
        )
    return layers.LIF(
        threshold=neuron["threshold"],
        decay=neuron["decay"],
        reset=neuron["reset"],
        name=name,
    )


def _normalization(norm, threshold, name):
    import keras

    from keras_snn import layers

    if norm == "bn":
        return layers.TimeFolded(keras.layers.BatchNormalization(), name=name)
    if norm == "tdbn":
        return layers.TDBatchNormalization(
            alpha=1.0, threshold=threshold, name=name
        )
    return None


def _block(x, block, index):
    import keras

    from keras_snn import layers
    from keras_snn import models

    fold = layers.TimeFolded
    name = f"b{index}"
    if block["kind"] == "residual":
        return models.residual_block(
            x,
            block["filters"],
            stride=block["stride"],
            neuron=block["neuron"],
            name=f"{name}_res",
        )
    if block["kind"] == "conv":
        x = fold(
            keras.layers.Conv2D(
                block["filters"],
                block["kernel"],
                strides=block["strides"],
                padding=block["padding"],
                use_bias=block["use_bias"],
            ),
            name=f"{name}_conv",
        )(x)
    else:
        if len(x.shape) > 3:
            x = fold(keras.layers.Flatten(), name=f"{name}_flatten")(x)
        x = fold(keras.layers.Dense(block["units"]), name=f"{name}_dense")(x)
    norm = _normalization(
        block["norm"], block["neuron"]["threshold"], f"{name}_norm"
    )
    if norm is not None:
        x = norm(x)
    x = _neuron_layer(block["neuron"], f"{name}_neuron")(x)
    pool = block.get("pool", "none")
    if pool != "none":
        cls = (
            keras.layers.AveragePooling2D
            if pool == "avg"
            else keras.layers.MaxPooling2D
        )
        x = fold(cls(2, padding=block["pool_padding"]), name=f"{name}_pool")(x)
    return x


def _head(x, spec):
    import keras

    from keras_snn import layers

    fold = layers.TimeFolded
    classes = spec["classes"]
    if len(x.shape) > 3:
        x = fold(keras.layers.Flatten(), name="head_flatten")(x)
    head = spec["head"]
    if head == "decoding":
        return layers.Decoding(classes, name="head")(x)
    if head == "voting":
        x = fold(keras.layers.Dense(3 * classes), name="head_dense")(x)
        x = _neuron_layer(spec["head_neuron"], "head_neuron")(x)
        return layers.Voting(classes, name="head")(x)
    if head.startswith("membrane"):
        return layers.MembraneReadout(
            classes,
            decay=spec["head_decay"],
            mode=head.split("-")[1],
            name="head",
        )(x)
    rate = keras.layers.GlobalAveragePooling1D(name="head_rate")(x)
    return keras.layers.Dense(classes, name="head")(rate)


def randomize_normalization(model, rng):
    """Gives every batch norm non-trivial gamma, beta and moving statistics,
    so that folding them is tested (also used by the tests' models).

    Args:
        model: a Keras model; its batch norms are changed in place.
        rng: a `numpy.random.Generator`.

    Returns:
        `model`.
    """
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if getattr(inner, "moving_variance", None) is None:
            continue
        channels = inner.moving_variance.shape[0]
        if getattr(inner, "gamma", None) is not None:
            inner.gamma.assign(rng.uniform(0.5, 2.0, channels))
        if getattr(inner, "beta", None) is not None:
            inner.beta.assign(rng.uniform(-0.3, 0.3, channels))
        inner.moving_mean.assign(rng.uniform(-0.2, 0.2, channels))
        inner.moving_variance.assign(rng.uniform(0.05, 0.5, channels))
    return model


def inputs_for(spec, count, seed):
    """`count` random inputs in `[0, 1]` of the network's input shape."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *spec["shape"])).astype("float32")


def _neuron_layers(model):
    from keras_snn import layers

    return [layer for layer in model.layers if isinstance(layer, layers.LIF)]


def _synaptic_sources(layer):
    """The Conv2D / Dense layers whose currents reach `layer` (through
    batch norm, pooling, flatten and additions)."""
    import keras

    found, seen = [], set()
    pending = list(keras.tree.flatten(layer.input))
    while pending:
        tensor = pending.pop()
        source = tensor._keras_history.operation
        if id(source) in seen:
            continue
        seen.add(id(source))
        inner = getattr(source, "layer", source)
        if isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
            found.append(inner)
        elif not isinstance(source, keras.layers.InputLayer):
            from keras_snn import layers

            if not isinstance(source, (layers.LIF, layers.DirectEncoding)):
                pending += keras.tree.flatten(source.input)
    return found


def firing_rates(model, x):
    """Mean firing rate of every spiking layer on `x`, by layer name."""
    import keras

    neurons = _neuron_layers(model)
    probe = keras.Model(model.input, [layer.output for layer in neurons])
    outputs = probe(x, training=False)
    if len(neurons) == 1:
        outputs = [outputs]
    return {
        layer.name: float(np.mean(keras.ops.convert_to_numpy(out)))
        for layer, out in zip(neurons, outputs, strict=True)
    }


def _scale_to_fire(model, x):
    """Scales the weights feeding each spiking layer, first to last, until
    its firing rate on `x` is in `RATE_RANGE` (or after `SCALING_ROUNDS`).
    A layer that stays silent gets the magnitudes of its weights (with
    negative weights only, no scale makes it fire)."""
    low, high = RATE_RANGE
    for layer in _neuron_layers(model):
        sources = _synaptic_sources(layer)
        for round_ in range(SCALING_ROUNDS):
            rate = firing_rates(model, x)[layer.name]
            if low <= rate <= high or not sources:
                break
            factor = 2.0 if rate < low else 0.5
            silent = rate == 0.0 and round_ >= SCALING_ROUNDS // 2
            for source in sources:
                for weight in source.weights:
                    value = weight * factor
                    weight.assign(abs(value) if silent else value)


def _set_outliers(model, spec):
    """Gives every input of each block's first output channel the weight
    `outlier` times the largest weight of its layer."""
    for index, block in enumerate(spec["blocks"]):
        if block.get("outlier"):
            name = f"b{index}_{block['kind']}"
            kernel = model.get_layer(name).layer.kernel
            value = np.array(kernel.numpy())
            value[..., 0] = block["outlier"] * np.max(np.abs(value))
            kernel.assign(value)


def build(spec):
    """Builds the Keras model of `spec`, with weights that make it fire.

    Args:
        spec: a dict from `draw_spec`.

    Returns:
        A built `keras.Model` named `fuzz_<seed>`.
    """
    import keras

    from keras_snn import layers

    keras.utils.set_random_seed(spec["seed"])
    inputs = keras.Input(tuple(spec["shape"]))
    x = inputs
    if spec["input"] != "sequence":
        x = layers.DirectEncoding(spec["timesteps"])(inputs)
    for index, block in enumerate(spec["blocks"]):
        x = _block(x, block, index)
    outputs = _head(x, spec)
    model = keras.Model(inputs, outputs, name=f"fuzz_{spec['seed']}")
    randomize_normalization(model, np.random.default_rng(spec["seed"]))
    x = inputs_for(spec, 32, spec["seed"])
    _scale_to_fire(model, x)
    _set_outliers(model, spec)
    _scale_to_fire(model, x)  # the outliers change what follows
    return model
