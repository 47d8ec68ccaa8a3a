"""Model builders: the papers' network notation and spiking ResNets.

`from_spec` reads the notation of Wu et al. 2019 (Tables 1-2), e.g.
`"128C3(Encoding)-AP2-128C3-AP2-512FC-Voting"`, and `spiking_resnet` builds
the ResNet-17/19/34/50 of Zheng et al. 2021 (Table 4) from the basic block
of their Fig. 5b. The notation itself is parsed in `keras_snn.specs`
(`parse_spec`, `PAPER_NETWORKS` and `SpecError` are re-exported here).
"""

import math

import keras

from keras_snn import functional
from keras_snn import layers
from keras_snn.specs import PAPER_NETWORKS
from keras_snn.specs import SpecError
from keras_snn.specs import parse_spec
from keras_snn.specs import parse_with_places

__all__ = [
    "PAPER_NETWORKS",
    "SpecError",
    "from_spec",
    "parse_spec",
    "residual_block",
    "spiking_resnet",
    "with_timesteps",
]

NEURONS = {"lif": layers.LIF, "if": layers.IF}

# Momentum of the moving statistics of the BN layers the builders create:
# 0.9, PyTorch's default (momentum 0.1 there) used by the papers, so short
# runs have usable inference statistics; Keras' own default is 0.99.
BN_MOMENTUM = layers.normalization.MOMENTUM
NORMS = (None, "tdbn", "bn", "neunorm")


def _neuron(neuron, neuron_kwargs, name):
    if neuron not in NEURONS:
        raise ValueError(
            f"Argument `neuron` must be one of {sorted(NEURONS)}. Received: "
            f"neuron={neuron!r}"
        )
    return NEURONS[neuron](**neuron_kwargs, name=name)


def _threshold(neuron_kwargs):
    return float(neuron_kwargs.get("threshold", 1.0))


def from_spec(
    spec,
    input_shape,
    num_classes,
    timesteps=None,
    neuron="lif",
    norm=None,
    neuron_kwargs=None,
    voting_population=10,
    dropout=0.0,
    name=None,
    synchronized=False,
):
    """Builds a spiking network from the papers' notation.

    Each convolution or FC token becomes a synaptic layer (on all time
    steps at once, `keras_snn.layers.TimeFolded`), the optional
    normalisation, and a layer of spiking neurons. `norm` chooses:

    - `None`: nothing;
    - `"tdbn"`: `TDBatchNormalization(alpha=1, threshold=theta)` on the
      currents (Zheng et al. 2021, Eq. 5-8);
    - `"bn"`: Keras `BatchNormalization` on the currents over batch and
      time (Ledinauskas et al. 2020, Sec. 2.6);
    - `"neunorm"`: `NeuNorm` on the spikes of each convolutional layer
      (Wu et al. 2019, Eq. 9-10).

    A static input of shape `(H, W, C)` is repeated over `timesteps` steps
    (`DirectEncoding`, so the first convolution is the encoding layer); an
    input of shape `(T, H, W, C)` (event frames) is used as it is. A flatten
    is inserted before the first FC token. The heads:

    - `Voting`: FC of `num_classes * voting_population` spiking neurons and
      `layers.Voting` (Wu et al. 2019, "Decoding"; train with
      `losses.VotingMSE`, Eq. 11);
    - `Decoding`: `layers.Decoding`, logits for softmax cross-entropy
      (Zheng et al. 2021, Eq. 11-13);
    - `Readout`: `layers.MembraneReadout`, non-spiking neurons that
      integrate their current (Wu et al. 2021, Eq. 6).

    Args:
        spec: str, the network string, e.g.
            `"128C3(Encoding)-AP2-128C3-AP2-512FC-Voting"`, or a key of
            `PAPER_NETWORKS`.
        input_shape: tuple, `(H, W, C)` for static images or
            `(T, H, W, C)` for event frames.
        num_classes: int > 0, the number of classes.
        timesteps: int, the number of steps for static input (required
            then); must be `None` or equal `T` for event frames.
        neuron: `"lif"` or `"if"`. Defaults to `"lif"`.
        norm: `None`, `"tdbn"`, `"bn"` or `"neunorm"`. Defaults to `None`.
        neuron_kwargs: dict of keyword arguments for every neuron layer
            (`threshold`, `decay`, `reset`, `surrogate`, ...).
        voting_population: int > 0, neurons per class of the Voting head.
            Defaults to `10`.
        dropout: float in [0, 1), dropout rate on the spikes entering the
            head, with one mask for all time steps (Ledinauskas et al. 2020
            use 0.5 "before the last layer"). Defaults to `0.0`.
        name: optional model name.
        synchronized: bool, batch statistics of `"tdbn"` and `"bn"`
            reduced over every replica of a `tf.distribute` strategy (the
            global batch; Zheng et al. 2021 train with synchronized BN
            across GPUs). Defaults to `False`.

    Returns:
        A `keras.Model` from the input to `(batch, num_classes)` outputs.

    Example:

    ```python
    model = keras_snn.models.from_spec(
        "128C3(Encoding)-AP2-128C3-AP2-512FC-Voting",
        input_shape=(32, 32, 3), timesteps=8, num_classes=10, norm="tdbn")
    ```

    Reference:
        Wu et al., "Direct Training for Spiking Neural Networks: Faster,
        Larger, Better", AAAI 2019, Tables 1-2.
    """
    spec = PAPER_NETWORKS.get(spec, spec)
    parsed, places = parse_with_places(spec)
    if norm not in NORMS:
        raise ValueError(
            f"Argument `norm` must be one of {NORMS}. Received: norm={norm!r}"
        )
    num_classes = functional.validate_count(num_classes, "num_classes")
    dropout = functional.validate_number(
        dropout, "dropout", "a number in [0, 1)", _is_rate
    )
    neuron_kwargs = dict(neuron_kwargs or {})
    threshold = _threshold(neuron_kwargs)
    inputs = keras.Input(tuple(input_shape))
    x = _add_time_axis(inputs, input_shape, timesteps)
    fold = layers.TimeFolded
    counter = {"conv": 0, "pool": 0, "fc": 0}

    def synapse_norm_neuron(layer, kind):
        nonlocal x
        index = counter[kind]
        counter[kind] += 1
        x = fold(layer, name=f"{kind}{index}")(x)
        if norm == "tdbn":
            x = layers.TDBatchNormalization(
                alpha=1.0,
                threshold=threshold,
                momentum=BN_MOMENTUM,
                synchronized=synchronized,
                name=f"{kind}{index}_tdbn",
            )(x)
        elif norm == "bn":
            x = fold(
                keras.layers.BatchNormalization(
                    momentum=BN_MOMENTUM, synchronized=synchronized
                ),
                name=f"{kind}{index}_bn",
            )(x)
        x = _neuron(neuron, neuron_kwargs, f"{kind}{index}_{neuron}")(x)
        if norm == "neunorm" and kind == "conv":
            x = layers.NeuNorm(name=f"{kind}{index}_neunorm")(x)

    use_bias = norm not in ("tdbn", "bn")
    for item, where in zip(parsed, places, strict=True):
        if item["kind"] == "conv":
            if len(x.shape) != 5:
                raise SpecError(
                    f"A convolution cannot follow an FC layer: {where}. "
                    "Put every convolution and pooling token before the "
                    "first <N>FC token."
                )
            synapse_norm_neuron(
                keras.layers.Conv2D(
                    item["filters"],
                    item["kernel"],
                    padding="same",
                    use_bias=use_bias,
                ),
                "conv",
            )
        elif item["kind"] == "pool":
            _check_pool(item["size"], x, where, input_shape)
            pool_cls = (
                keras.layers.AveragePooling2D
                if item["type"] == "AP"
                else keras.layers.MaxPooling2D
            )
            index = counter["pool"]
            counter["pool"] += 1
            x = fold(pool_cls(item["size"]), name=f"pool{index}")(x)
        elif item["kind"] == "dense":
            x = _flatten(x)
            synapse_norm_neuron(
                keras.layers.Dense(item["units"], use_bias=use_bias), "fc"
            )
        else:
            x = _flatten(x)
            if dropout:
                # One mask per sample and neuron, shared by all time steps.
                x = keras.layers.Dropout(
                    dropout, noise_shape=(None, 1, x.shape[-1]), name="dropout"
                )(x)
            x = _head(
                item["head"],
                x,
                num_classes,
                voting_population,
                neuron,
                neuron_kwargs,
            )
    return keras.Model(inputs, x, name=name)


def _is_rate(value):
    return 0.0 <= value < 1.0


def _check_pool(size, x, where, input_shape):
    """Raises `SpecError` if a `size`x`size` pooling cannot apply to `x`."""
    if len(x.shape) != 5:
        raise SpecError(
            f"A pooling layer cannot follow an FC layer: {where}. Put every "
            "convolution and pooling token before the first <N>FC token."
        )
    height, width = x.shape[2], x.shape[3]
    if height is not None and width is not None and size > min(height, width):
        raise SpecError(
            f"Pooling of {size}x{size} cannot apply to the {height}x{width} "
            f"feature map: {where} (input shape {tuple(input_shape)}). "
            f"Use a pool size of at most {min(height, width)} there, or "
            "fewer pooling layers."
        )


def _add_time_axis(inputs, input_shape, timesteps):
    input_shape = tuple(input_shape)
    if len(input_shape) == 3:
        if timesteps is None:
            raise ValueError(
                "Argument `timesteps` is required for a static input of "
                f"shape (H, W, C). Received: input_shape={input_shape}, "
                "timesteps=None"
            )
        return layers.DirectEncoding(timesteps, name="encoding")(inputs)
    if len(input_shape) == 4:
        if timesteps not in (None, input_shape[0]):
            raise ValueError(
                "For event frames of shape (T, H, W, C), `timesteps` must "
                f"be None or T. Received: input_shape={input_shape}, "
                f"timesteps={timesteps}"
            )
        return inputs
    raise ValueError(
        "Argument `input_shape` must be (H, W, C) for static images or "
        f"(T, H, W, C) for event frames. Received: input_shape={input_shape}"
    )


def _flatten(x):
    if len(x.shape) > 3:
        x = layers.TimeFolded(keras.layers.Flatten(), name="flatten")(x)
    return x


def _head(head, x, num_classes, population, neuron, neuron_kwargs):
    if head == "Voting":
        population = functional.validate_count(population, "voting_population")
        x = layers.TimeFolded(
            keras.layers.Dense(num_classes * population), name="voting_fc"
        )(x)
        x = _neuron(neuron, neuron_kwargs, f"voting_{neuron}")(x)
        return layers.Voting(num_classes, population, name="voting")(x)
    if head == "Decoding":
        return layers.Decoding(num_classes, name="decoding")(x)
    return layers.MembraneReadout(num_classes, name="readout")(x)


# Zheng et al. 2021, Table 4: (conv1 kernel, conv1 filters, conv1 stride,
# [(filters, blocks, first block downsamples)], fc units before the
# decoding layer (None: global average pooling only), bottleneck).
# The first residual stage of ResNet-19 is not marked * in Table 4.
_RESNETS = {
    17: (3, 64, 1, [(64, 3, True), (128, 4, True)], 256, False),
    19: (
        3,
        128,
        1,
        [(128, 3, False), (256, 3, True), (512, 2, True)],
        256,
        False,
    ),
    34: (
        7,
        64,
        2,
        [(64, 3, True), (128, 4, True), (256, 6, True), (512, 3, True)],
        None,
        False,
    ),
    50: (
        7,
        64,
        2,
        [(64, 3, True), (128, 4, True), (256, 6, True), (512, 3, True)],
        None,
        True,
    ),
}

SHORTCUT_ALPHA = 1.0 / math.sqrt(2.0)


def residual_block(
    x,
    filters,
    stride=1,
    bottleneck=False,
    neuron="lif",
    neuron_kwargs=None,
    name="block",
):
    """The spiking basic block of Zheng et al. 2021, Fig. 5b.

    Main path: conv3x3 - tdBN(alpha=1) - LIF - conv3x3 -
    tdBN(alpha=1/sqrt(2)). Shortcut: the input (through a 1x1 convolution
    with the block's stride when the shape changes) and tdBN(alpha =
    1/sqrt(2)). The two are added and go through the final LIF. The
    tdBN layers before the final activation and in the shortcut have
    alpha = 1/sqrt(2) so that the sum of the two branches, each normalised
    to N(0, (alpha Vth)^2), reaches the final neuron as N(0, Vth^2) (Zheng
    et al. 2021, "Basic block"). With `bottleneck=True` the main path is
    conv1x1 - conv3x3 - conv1x1 (4x the filters out), as in ResNet-50.

    Args:
        x: Keras tensor of spikes `(batch, time, H, W, C)`.
        filters: int, the block's channels (x4 at the output of a
            bottleneck).
        stride: int, 1 or 2 (downsampling in the first conv).
        bottleneck: bool. Defaults to `False`.
        neuron: `"lif"` or `"if"`. Defaults to `"lif"`.
        neuron_kwargs: dict for the neuron layers.
        name: str, a prefix for the layer names.

    Returns:
        The block's output spikes.

    Reference:
        Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
        Neural Networks", AAAI 2021, Fig. 5b and Eq. 5-8.
    """
    neuron_kwargs = dict(neuron_kwargs or {})
    threshold = _threshold(neuron_kwargs)
    fold = layers.TimeFolded

    def conv_bn(y, out_filters, kernel, conv_stride, alpha, suffix):
        y = fold(
            keras.layers.Conv2D(
                out_filters,
                kernel,
                strides=conv_stride,
                padding="same",
                use_bias=False,
            ),
            name=f"{name}_{suffix}_conv",
        )(y)
        return layers.TDBatchNormalization(
            alpha=alpha,
            threshold=threshold,
            momentum=BN_MOMENTUM,
            name=f"{name}_{suffix}_tdbn",
        )(y)

    if bottleneck:
        out_filters = 4 * filters
        plan = [(filters, 1, 1), (filters, 3, stride), (out_filters, 1, 1)]
    else:
        out_filters = filters
        plan = [(filters, 3, stride), (filters, 3, 1)]
    y = x
    for i, (f, kernel, s) in enumerate(plan):
        last = i == len(plan) - 1
        y = conv_bn(y, f, kernel, s, SHORTCUT_ALPHA if last else 1.0, i)
        if not last:
            y = _neuron(neuron, neuron_kwargs, f"{name}_{i}_{neuron}")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = fold(
            keras.layers.Conv2D(out_filters, 1, strides=stride, use_bias=False),
            name=f"{name}_shortcut_conv",
        )(shortcut)
    shortcut = layers.TDBatchNormalization(
        alpha=SHORTCUT_ALPHA,
        threshold=threshold,
        momentum=BN_MOMENTUM,
        name=f"{name}_shortcut_tdbn",
    )(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return _neuron(neuron, neuron_kwargs, f"{name}_out_{neuron}")(y)


def spiking_resnet(
    depth,
    input_shape,
    num_classes,
    timesteps=None,
    large=False,
    neuron="lif",
    neuron_kwargs=None,
    recompute=False,
    name=None,
):
    """The spiking ResNet-17/19/34/50 of Zheng et al. 2021, Table 4.

    conv1 (the encoding layer) - tdBN - LIF, then stages of
    `residual_block`s (the first block of a stage marked * in Table 4
    downsamples with stride 2; channels double when the map is halved),
    then for ResNet-17/19 2x2 average pooling and a 256-neuron FC spiking
    layer ("average pool/2, 256-d fc"), for ResNet-34/50 global average
    pooling, and the `Decoding` layer (logits for softmax cross-entropy,
    Eq. 11-13).

    ```
    depth  conv1                     stages (filters x blocks)
    17     3x3, 64                   64 x 3*, 128 x 4*
    19     3x3, 128                  128 x 3, 256 x 3*, 512 x 2*
    34     7x7, 64 (128 large), s2   64 x 3*, 128 x 4*, 256 x 6*, 512 x 3*
    50     7x7, 64, s2               bottleneck: the same stages, x4 out
    ```

    Args:
        depth: 17, 19, 34 or 50.
        input_shape: `(H, W, C)` static or `(T, H, W, C)` event frames.
        num_classes: int > 0.
        timesteps: int, steps for static input.
        large: bool, the "large" ResNet-34 (twice the channels). Defaults to
            `False`.
        neuron: `"lif"` or `"if"`. Defaults to `"lif"`.
        neuron_kwargs: dict for every neuron layer.
        recompute: bool, wrap each residual block (as a nested
            `keras.Model`) in `keras_snn.layers.Recompute`: training keeps
            only the blocks' inputs and recomputes each block in the
            backward pass (gradient checkpointing), less memory for more
            time (`benchmarks/recompute.py` measures both). The same
            weights, in the same order, as `recompute=False`: export a
            copy built without it (`flat.set_weights(model.get_weights())`).
            Defaults to `False`.
        name: optional model name.

    Returns:
        A `keras.Model` giving `(batch, num_classes)` logits.

    Example:

    ```python
    model = keras_snn.models.spiking_resnet(
        19, input_shape=(32, 32, 3), num_classes=10, timesteps=2)
    ```

    Reference:
        Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
        Neural Networks", AAAI 2021, Table 4 and Fig. 5b.
    """
    if depth not in _RESNETS:
        raise ValueError(
            f"Argument `depth` must be one of {sorted(_RESNETS)}. Received: "
            f"depth={depth!r}"
        )
    if large and depth != 34:
        raise ValueError(
            "Argument `large=True` exists for ResNet-34 only (Table 4). "
            f"Received: depth={depth}, large={large}"
        )
    kernel, filters, stride, stages, fc_units, bottleneck = _RESNETS[depth]
    width = 2 if large else 1
    neuron_kwargs = dict(neuron_kwargs or {})
    threshold = _threshold(neuron_kwargs)
    inputs = keras.Input(tuple(input_shape))
    x = _add_time_axis(inputs, input_shape, timesteps)
    x = layers.TimeFolded(
        keras.layers.Conv2D(
            filters * width,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
        ),
        name="conv1",
    )(x)
    x = layers.TDBatchNormalization(
        threshold=threshold, momentum=BN_MOMENTUM, name="conv1_tdbn"
    )(x)
    x = _neuron(neuron, neuron_kwargs, f"conv1_{neuron}")(x)
    for stage, (stage_filters, blocks, downsample) in enumerate(stages):
        for block in range(blocks):
            block_name = f"stage{stage + 1}_block{block + 1}"
            block_input = keras.Input(x.shape[1:]) if recompute else x
            y = residual_block(
                block_input,
                stage_filters * width,
                stride=2 if (downsample and block == 0) else 1,
                bottleneck=bottleneck,
                neuron=neuron,
                neuron_kwargs=neuron_kwargs,
                name=block_name,
            )
            if recompute:
                block_model = keras.Model(block_input, y, name=block_name)
                y = layers.Recompute(block_model, name=f"{block_name}_remat")(x)
            x = y
    if fc_units:
        # "average pool/2, 256-d fc" (Table 4, ResNet-17/19).
        x = layers.TimeFolded(keras.layers.AveragePooling2D(2), name="pool")(x)
        x = _flatten(x)
        x = layers.TimeFolded(keras.layers.Dense(fc_units), name="fc")(x)
        x = _neuron(neuron, neuron_kwargs, f"fc_{neuron}")(x)
    else:
        # "average pool, 1000-d fc" (ResNet-34/50): global average pooling.
        x = layers.TimeFolded(
            keras.layers.GlobalAveragePooling2D(), name="pool"
        )(x)
    outputs = layers.Decoding(num_classes, name="decoding")(x)
    return keras.Model(inputs, outputs, name=name or f"spiking_resnet{depth}")


_ENCODERS = (
    layers.DirectEncoding,
    layers.BernoulliEncoding,
    layers.PoissonEncoding,
)


def with_timesteps(model, timesteps):
    """A copy of `model` that simulates `timesteps` steps, same weights.

    The encoders (`DirectEncoding`, `BernoulliEncoding`, `PoissonEncoding`)
    of the copy produce `timesteps` steps; every other layer works for any
    sequence length, so the copy shares the trained weights. Used to
    measure accuracy versus simulation length (Wu et al. 2019, Fig. 5;
    Ledinauskas et al. 2020, Fig. 6).

    Args:
        model: a functional Keras model with at least one keras_snn encoder.
        timesteps: int >= 1.

    Returns:
        A new `keras.Model` with the weights of `model`.

    Raises:
        ValueError: if the model has no encoder (e.g. it reads event frames,
            whose length is set by the data).
    """
    timesteps = functional.validate_count(timesteps, "timesteps")
    if not any(isinstance(layer, _ENCODERS) for layer in model.layers):
        raise ValueError(
            f"Model '{model.name}' has no keras_snn encoder layer, so its "
            "number of time steps is set by its input data and cannot be "
            "changed. Received: layers="
            f"{[type(layer).__name__ for layer in model.layers]}"
        )

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, _ENCODERS):
            config["timesteps"] = timesteps
        return type(layer).from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
