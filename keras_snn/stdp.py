"""Stochastic STDP for binary convolution kernels, then a backprop readout.

Srinivasan et al. (Sec. 3.1, Fig. 1) train binary (1-bit) convolution
kernels layer by layer without labels: the spike timing of a pre-/post-
neuron pair sets the *probability* that the binary synapse switches, and a
fully connected readout is then trained with backpropagation.

Switching probabilities (`stdp_probabilities`). With
`dt = t_post - t_pre` (in time steps) between a post-synaptic spike and
the nearest pre-synaptic spike of the same synapse (the latest one at or
before `t_post`; if there is none, the first one after it, giving
`dt < 0`; if the pre-neuron is silent, `dt = +inf`), and the dead zone
`[d0, d1]`:

```
P_pot(dt) = g_pot exp(-dt / tau_pot)                 0 <= dt < d0   (S1)
P(dt)     = 0                                       d0 <= dt <= d1  (S2)
P_dep(dt) = g_dep (1 - exp(-(dt - d1) / tau_dep))   dt > d1         (S3)
P_dep(dt) = g_dep exp(dt / tau_dep)                  dt < 0         (S4)
```

(S1) is Hebbian potentiation for a small positive timing difference, (S4)
Hebbian depression for a negative one, (S3) anti-Hebbian depression for a
large positive difference (and probability `g_dep` for a pre-neuron that
did not fire), and (S2) the dead zone with zero switching probability
that balances potentiation and depression (Sec. 3.1, Fig. 1). A binary
weight `w` in {0, 1} then switches (`stdp_update`):

```
w <- 1 with probability P_pot(dt)   if w = 0
w <- 0 with probability P_dep(dt)   if w = 1
```

The 004 paper describes this shape (Fig. 1) but its text gives no closed
form; (S1)-(S4) use the exponential timing dependence of its stochastic
STDP references ([11, 12]: Srinivasan et al. 2016, ReStoCNet 2019) and
their amplitudes, time constants and dead zone are arguments.

Layer-wise training (`train_layerwise`). Each image is rate coded
(Bernoulli spikes with probability = intensity) for `T` steps and passed
through the layers already trained; the layer being trained is a
convolution with binary kernels whose output neurons are LIF
(`keras_snn.functional.neuron_step`, hard reset). A map's current is
normalized by its number of ones, `I_f[t] = (w_f . x[t]) / |w_f|`, so a
neuron fires when a large enough fraction of its kernel's pattern is
present. The paper's two diversity mechanisms (Sec. 3.1: "dropout (proxy
for lateral inhibition) and homeostasis (firing threshold adaptation)
among the output maps") are implemented as follows. Homeostasis: map
`f`'s threshold is `threshold + h_f`, with, after each image,

```
h_f <- max(0, (1 - homeostasis_decay) h_f
                + homeostasis (r_f - target_rate))              (H)
```

where `r_f` is the fraction of positions at which map `f` fired during
the image, so that maps that fire everywhere (e.g. on the background)
become harder to excite and silent maps easier (the offsets act during
training only: the returned layers store one `inference_threshold`).
Dropout: per image, a
random fraction `dropout` of the maps is switched off. Winner take all
(lateral inhibition): each remaining map learns at most once per image,
at the position of its earliest spike (ties: larger integrated current,
then at random) where no earlier-firing map has learnt; the
post-synaptic time `t_post` of Eq. (S1)-(S4) is that first spike. The
spikes are max-pooled (a logical OR of binary spikes) into the
next layer.

Reference:
    Srinivasan et al., "Training Deep Spiking Neural Networks for
    Energy-Efficient Neuromorphic Computing", ICASSP 2020, Sec. 3.1.
    Srinivasan and Roy, "ReStoCNet: Residual Stochastic Binary
    Convolutional Spiking Neural Network for Memory-Efficient
    Neuromorphic Computing", Front. Neurosci. 13:189, 2019.
"""

import dataclasses

import keras
import numpy as np

from keras_snn import functional
from keras_snn.layers.encoding import BernoulliEncoding
from keras_snn.layers.neurons import LIF
from keras_snn.layers.readout import Decoding
from keras_snn.layers.wrappers import TimeFolded

__all__ = [
    "StochasticSTDP",
    "binary_snn",
    "kernel_memory",
    "stdp_probabilities",
    "stdp_update",
    "train_layerwise",
]

PADDINGS = ("valid", "same")


def stdp_probabilities(
    dt,
    p_potentiation=0.2,
    tau_potentiation=4.0,
    p_depression=0.2,
    tau_depression=1.0,
    dead_zone=(1.0, 3.0),
):
    """Potentiation and depression probabilities of stochastic STDP.

    Implements Eq. (S1)-(S4) of the module docstring (Srinivasan et al.,
    Sec. 3.1, Fig. 1).

    Args:
        dt: NumPy array (or number) of timing differences
            `t_post - t_pre` in time steps; `+inf` for a silent
            pre-neuron.
        p_potentiation: `g_pot`, the largest potentiation probability, in
            [0, 1]. Defaults to `0.2`.
        tau_potentiation: `tau_pot` > 0, in steps. Defaults to `4.0`.
        p_depression: `g_dep`, the largest depression probability, in
            [0, 1]. Defaults to `0.2`.
        tau_depression: `tau_dep` > 0, in steps. Defaults to `1.0`.
        dead_zone: `(d0, d1)` with `0 <= d0 <= d1`: no switching for
            `d0 <= dt <= d1`. Defaults to `(1.0, 3.0)`.

    Returns:
        Tuple `(p_pot, p_dep)` of float64 arrays of `dt`'s shape; at most
        one of them is non-zero for each `dt`.

    Example:

    ```python
    p_pot, p_dep = stdp_probabilities(np.array([0, 1, 4, 10, -1, np.inf]))
    ```
    """
    rule = StochasticSTDP(
        p_potentiation,
        tau_potentiation,
        p_depression,
        tau_depression,
        dead_zone,
    )
    return rule.probabilities(dt)


def stdp_update(weights, p_pot, p_dep, uniform):
    """Switches binary weights with the given probabilities.

    `w <- 1` where `w == 0 and uniform < p_pot`; `w <- 0` where
    `w == 1 and uniform < p_dep` (Srinivasan et al., Sec. 3.1).

    Args:
        weights: array of 0/1 weights.
        p_pot: potentiation probabilities, broadcastable to `weights`.
        p_dep: depression probabilities, broadcastable to `weights`.
        uniform: uniform [0, 1) samples of `weights`' shape.

    Returns:
        The new 0/1 weights, `weights`' dtype.
    """
    weights = np.asarray(weights)
    on = weights > 0
    potentiate = ~on & (uniform < p_pot)
    depress = on & (uniform < p_dep)
    return np.where(potentiate, 1, np.where(depress, 0, weights)).astype(
        weights.dtype
    )


@dataclasses.dataclass(frozen=True)
class StochasticSTDP:
    """The stochastic STDP rule for binary synapses (Eq. S1-S4).

    Args:
        p_potentiation: `g_pot` in [0, 1]. Defaults to `0.2`.
        tau_potentiation: `tau_pot` > 0 (steps). Defaults to `4.0`.
        p_depression: `g_dep` in [0, 1]. Defaults to `0.2`.
        tau_depression: `tau_dep` > 0 (steps). Defaults to `1.0`.
        dead_zone: `(d0, d1)`, `0 <= d0 <= d1` (steps). Defaults to
            `(1.0, 3.0)`.

    Example:

    ```python
    rule = keras_snn.stdp.StochasticSTDP(p_potentiation=0.2)
    p_pot, p_dep = rule.probabilities(np.arange(-3, 10))
    ```

    Reference:
        Srinivasan et al., ICASSP 2020, Sec. 3.1 and Fig. 1.
    """

    p_potentiation: float = 0.2
    tau_potentiation: float = 4.0
    p_depression: float = 0.2
    tau_depression: float = 1.0
    dead_zone: tuple = (1.0, 3.0)

    def __post_init__(self):
        for name in ("p_potentiation", "p_depression"):
            functional.validate_number(
                getattr(self, name),
                name,
                "a probability in [0, 1]",
                lambda value: 0.0 <= value <= 1.0,
                owner="StochasticSTDP",
            )
        for name in ("tau_potentiation", "tau_depression"):
            functional.validate_positive(
                getattr(self, name), name, owner="StochasticSTDP"
            )
        zone = self.dead_zone
        valid = (
            isinstance(zone, (tuple, list))
            and len(zone) == 2
            and all(isinstance(v, (int, float)) for v in zone)
            and 0 <= zone[0] <= zone[1]
        )
        if not valid:
            raise ValueError(
                "StochasticSTDP: argument `dead_zone` must be a pair "
                "(d0, d1) of numbers with 0 <= d0 <= d1. Received: "
                f"dead_zone={zone!r}"
            )
        object.__setattr__(self, "dead_zone", (float(zone[0]), float(zone[1])))

    def probabilities(self, dt):
        """Returns `(p_pot, p_dep)` for timing differences `dt` (S1-S4)."""
        dt = np.asarray(dt, "float64")
        d0, d1 = self.dead_zone
        with np.errstate(over="ignore", invalid="ignore"):
            hebbian_pot = (dt >= 0) & (dt < d0)
            p_pot = np.where(
                hebbian_pot,
                self.p_potentiation
                * np.exp(-np.where(hebbian_pot, dt, 0) / self.tau_potentiation),
                0.0,
            )
            anti = dt > d1
            late = np.where(anti, dt - d1, 0.0)
            p_anti = self.p_depression * (
                1.0 - np.exp(-late / self.tau_depression)
            )
            early = dt < 0
            p_early = self.p_depression * np.exp(
                np.where(early, dt, 0.0) / self.tau_depression
            )
            p_dep = np.where(anti, p_anti, np.where(early, p_early, 0.0))
        return p_pot, p_dep


def _patches(spikes, kernel_size, padding):
    """im2col: `(T, H, W, C)` -> `(T, positions, kh * kw * C)`."""
    kh, kw = kernel_size
    if padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        spikes = np.pad(
            spikes,
            ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)),
        )
    windows = np.lib.stride_tricks.sliding_window_view(
        spikes, (kh, kw), axis=(1, 2)
    )  # (T, H', W', C, kh, kw)
    steps, rows, cols = windows.shape[:3]
    windows = windows.transpose(0, 1, 2, 4, 5, 3)
    return windows.reshape(steps, rows * cols, -1), (rows, cols)


def _normalized(kernel):
    """`(K, F)` binary kernel divided by each map's number of ones."""
    ones = kernel.sum(axis=0)
    return kernel / np.maximum(ones, 1.0)


def _lif(currents, threshold, decay):
    """Runs LIF neurons over `(T, ...)` currents; returns the spikes."""
    v = np.zeros(currents.shape[1:], currents.dtype)
    spikes = np.empty_like(currents)
    for t in range(currents.shape[0]):
        spikes[t], _, v = functional.neuron_step(
            currents[t], v, threshold, decay, reset="hard"
        )
    return spikes


def _max_pool(spikes, pool_size):
    """OR-pooling of binary spikes `(T, H, W, C)` (max pooling, 'valid')."""
    if pool_size == 1:
        return spikes
    steps, rows, cols, channels = spikes.shape
    rows, cols = rows // pool_size, cols // pool_size
    spikes = spikes[:, : rows * pool_size, : cols * pool_size]
    spikes = spikes.reshape(steps, rows, pool_size, cols, pool_size, channels)
    return spikes.max(axis=(2, 4))


def _layer_output(spikes, layer):
    """Forward pass of a trained binary layer: conv, LIF, OR-pool."""
    kernel = layer["kernel"]
    size = kernel.shape[:2]
    patches, (rows, cols) = _patches(spikes, size, layer["padding"])
    flat = _normalized(kernel.reshape(-1, kernel.shape[-1]).astype("float32"))
    currents = patches @ flat
    out = _lif(currents, layer["threshold"], layer["decay"])
    out = out.reshape(spikes.shape[0], rows, cols, -1)
    return _max_pool(out, layer["pool_size"])


def _timing(pre, t_post):
    """`dt = t_post - t_pre` per synapse of `pre` (T, K); +inf if silent."""
    steps = pre.shape[0]
    times = np.arange(steps)[:, None]
    before = np.where((pre > 0) & (times <= t_post), times, -1).max(axis=0)
    after = np.where((pre > 0) & (times > t_post), times, steps).min(axis=0)
    dt = np.full(pre.shape[1], np.inf)
    dt = np.where(after < steps, t_post - after, dt)
    return np.where(before >= 0, t_post - before, dt)


def _train_layer(images, trained, spec, rule, rng, options):
    """Trains one layer's kernel; `options` are `train_layerwise`'s."""
    filters, kernel_size = spec["filters"], spec["kernel_size"]
    padding = spec["padding"]
    timesteps, epochs = options["timesteps"], options["epochs"]
    threshold, decay = options["threshold"], options["decay"]
    dropout, target_rate = options["dropout"], options["target_rate"]
    homeostasis = options["homeostasis"]
    homeostasis_decay = options["homeostasis_decay"]
    channels = images.shape[-1]
    for layer in trained:
        channels = layer["kernel"].shape[-1]
    size = kernel_size * kernel_size * channels
    kernel = rng.random((size, filters)) < options["initial_density"]
    kernel = kernel.astype("float32")
    offset = np.zeros(filters)
    for _ in range(epochs):
        for index in rng.permutation(len(images)):
            image = images[index]
            spikes = (rng.random((timesteps, *image.shape)) < image).astype(
                "float32"
            )
            for layer in trained:
                spikes = _layer_output(spikes, layer)
            patches, _ = _patches(spikes, (kernel_size, kernel_size), padding)
            currents = patches @ _normalized(kernel)
            active = rng.random(filters) >= dropout
            currents[..., ~active] = 0.0
            out = _lif(currents, threshold + offset, decay)
            fired = out.any(axis=0)  # (positions, filters)
            first = np.where(fired, out.argmax(axis=0), timesteps)
            # Winner order: earliest first spike; ties go to the larger
            # integrated current (charge), remaining ties at random.
            charge = np.take_along_axis(
                currents.cumsum(axis=0),
                np.minimum(first, timesteps - 1)[None],
                axis=0,
            )[0]
            charge = charge + 1e-6 * rng.random(charge.shape)
            key = first - charge / (charge.max() + 1.0)
            offset *= 1.0 - homeostasis_decay
            offset += homeostasis * (fired.mean(axis=0) - target_rate)
            np.maximum(offset, 0.0, out=offset)
            taken = set()
            for f in np.argsort(key.min(axis=0), kind="stable"):
                if not fired[:, f].any():
                    continue
                order = np.argsort(key[:, f], kind="stable")
                free = [p for p in order if fired[p, f] and p not in taken]
                if not free:
                    continue
                position = free[0]
                taken.add(position)
                t_post = first[position, f]
                dt = _timing(patches[:, position], t_post)
                p_pot, p_dep = rule.probabilities(dt)
                kernel[:, f] = stdp_update(
                    kernel[:, f], p_pot, p_dep, rng.random(size)
                )
    return kernel.reshape(kernel_size, kernel_size, channels, filters)


def train_layerwise(
    images,
    layers,
    timesteps=16,
    rule=None,
    epochs=1,
    threshold=0.6,
    decay=0.5,
    dropout=0.2,
    homeostasis=0.5,
    homeostasis_decay=0.01,
    target_rate=0.3,
    initial_density=0.5,
    inference_threshold=None,
    seed=None,
):
    """Trains binary convolution kernels layer by layer with stochastic STDP.

    Greedy, unsupervised and layer-wise (Srinivasan et al., Sec. 3.1): the
    first layer is trained on the rate-coded images, then frozen, and the
    next layer is trained on its pooled output spikes, and so on. See the
    module docstring for the simulation, dropout, homeostasis and winner
    selection; Eq. (S1)-(S4) for the switching probabilities.

    Args:
        images: float array `(N, H, W, C)` in [0, 1] (no labels).
        layers: list of dicts, one per convolution layer, with keys
            `filters` (int), and optionally `kernel_size` (int, default 3),
            `padding` (`"valid"` or `"same"`, default `"valid"`),
            `pool_size` (int, OR-pooling after the layer, default 2).
        timesteps: int >= 1, steps per image. Defaults to `16`.
        rule: a `StochasticSTDP`; `None` uses its defaults.
        epochs: int >= 1, passes over `images` per layer. Defaults to `1`.
        threshold: float > 0, base threshold on the normalized current
            (the fraction of a kernel's ones that receive spikes, summed
            with leak). Defaults to `0.6`.
        decay: float in [0, 1], LIF leak factor. Defaults to `0.5`.
        dropout: float in [0, 1), fraction of maps switched off per image.
            Defaults to `0.2`.
        homeostasis: float >= 0, gain of the threshold adaptation: per
            image, a map's threshold offset grows by `homeostasis` times
            (its firing fraction - `target_rate`). Defaults to `0.5`.
        homeostasis_decay: float in [0, 1], per-image decay of the
            homeostatic offsets. Defaults to `0.01`.
        target_rate: float in [0, 1], fraction of positions at which a
            map should fire per image. Defaults to `0.3`.
        initial_density: float in [0, 1], probability that an initial
            weight is 1. Defaults to `0.5`.
        inference_threshold: `None` or float > 0, the threshold stored
            in the returned layers (used by `binary_snn` and to train the
            next layer). `None` uses `threshold`.
        seed: `None` or int, NumPy random seed. Defaults to `None`.

    Returns:
        A list of dicts, one per layer, with `kernel` (uint8 array
        `(k, k, C_in, filters)` of 0/1), `padding`, `pool_size`,
        `threshold` and `decay`; pass it to `binary_snn`.

    Example:

    ```python
    trained = keras_snn.stdp.train_layerwise(
        x_train, [{"filters": 36}], timesteps=16, seed=0
    )
    ```

    Reference:
        Srinivasan et al., ICASSP 2020, Sec. 3.1.
    """
    images = np.asarray(images, "float32")
    if images.ndim != 4:
        raise ValueError(
            "Argument `images` must have shape (N, H, W, C). Received: "
            f"images.shape={images.shape}"
        )
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(
            "Argument `layers` must be a non-empty list of dicts such as "
            f"{{'filters': 36}}. Received: layers={layers!r}"
        )
    timesteps = functional.validate_count(timesteps, "timesteps")
    epochs = functional.validate_count(epochs, "epochs")
    threshold = functional.validate_positive(threshold, "threshold")
    decay = functional.validate_decay(decay)
    dropout = functional.validate_number(
        dropout, "dropout", "a number in [0, 1)", lambda v: 0 <= v < 1
    )
    if inference_threshold is None:
        inference_threshold = threshold
    inference_threshold = functional.validate_positive(
        inference_threshold, "inference_threshold"
    )
    target_rate = functional.validate_number(
        target_rate, "target_rate", "a number in [0, 1]", lambda v: 0 <= v <= 1
    )
    rule = StochasticSTDP() if rule is None else rule
    if not isinstance(rule, StochasticSTDP):
        raise ValueError(
            "Argument `rule` must be a keras_snn.stdp.StochasticSTDP or "
            f"None. Received: rule={rule!r}"
        )
    options = dict(
        timesteps=timesteps,
        epochs=epochs,
        threshold=threshold,
        decay=decay,
        dropout=dropout,
        homeostasis=homeostasis,
        homeostasis_decay=homeostasis_decay,
        target_rate=target_rate,
        initial_density=initial_density,
    )
    rng = np.random.default_rng(seed)
    trained = []
    for spec in layers:
        spec = _check_spec(spec)
        kernel = _train_layer(images, trained, spec, rule, rng, options)
        trained.append(
            {
                "kernel": kernel.astype("uint8"),
                "padding": spec["padding"],
                "pool_size": spec["pool_size"],
                "threshold": inference_threshold,
                "decay": decay,
            }
        )
    return trained


def _check_spec(spec):
    allowed = {"filters", "kernel_size", "padding", "pool_size"}
    if not isinstance(spec, dict) or "filters" not in spec:
        raise ValueError(
            "Each entry of `layers` must be a dict with a `filters` key. "
            f"Received: {spec!r}"
        )
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(
            f"Unknown layer keys {sorted(unknown)}; accepted: "
            f"{sorted(allowed)}. Received: {spec!r}"
        )
    padding = spec.get("padding", "valid")
    if padding not in PADDINGS:
        raise ValueError(
            f"Argument `padding` must be one of {PADDINGS}. Received: "
            f"padding={padding!r}"
        )
    return {
        "filters": functional.validate_count(spec["filters"], "filters"),
        "kernel_size": functional.validate_count(
            spec.get("kernel_size", 3), "kernel_size"
        ),
        "padding": padding,
        "pool_size": functional.validate_count(
            spec.get("pool_size", 2), "pool_size"
        ),
    }


def random_binary_layers(
    layers, input_channels, density=0.5, threshold=0.6, decay=0.5, seed=None
):
    """Untrained random binary kernels in `train_layerwise`'s format.

    The baseline that shows what STDP adds over random binary features:
    pass the `threshold` and `decay` given to `train_layerwise` so that
    both networks differ only in their kernels.

    Args:
        layers: list of layer dicts, as for `train_layerwise`.
        input_channels: int, channels of the input images.
        density: float in [0, 1], probability that a weight is 1.
            Defaults to `0.5`.
        threshold: float > 0, LIF threshold of the maps. Defaults to `0.6`.
        decay: float in [0, 1], LIF leak factor. Defaults to `0.5`.
        seed: `None` or int, NumPy random seed. Defaults to `None`.
    """
    threshold = functional.validate_positive(threshold, "threshold")
    decay = functional.validate_decay(decay)
    rng = np.random.default_rng(seed)
    result = []
    channels = input_channels
    for spec in layers:
        spec = _check_spec(spec)
        size = spec["kernel_size"]
        kernel = rng.random((size, size, channels, spec["filters"])) < density
        result.append(
            {
                "kernel": kernel.astype("uint8"),
                "padding": spec["padding"],
                "pool_size": spec["pool_size"],
                "threshold": threshold,
                "decay": decay,
            }
        )
        channels = spec["filters"]
    return result


__all__ += ["random_binary_layers"]


def binary_snn(
    trained,
    input_shape,
    num_classes,
    timesteps=16,
    hidden_units=128,
    seed=None,
    name="binary_stdp_snn",
):
    """A Keras SNN with frozen binary STDP kernels and a trainable head.

    `BernoulliEncoding(T)`, then per trained layer a frozen
    `TimeFolded(Conv2D)` holding the binary kernel divided by each map's
    number of ones (the normalization used during STDP) -> `LIF` ->
    `TimeFolded(MaxPooling2D)` (OR of spikes), then `Flatten` ->
    `Dense(hidden_units)` -> `LIF` -> `Decoding(num_classes)`: the
    fully connected layers trained with backpropagation (surrogate
    gradients) as in Srinivasan et al., Sec. 3.1 ("36C3-2P-128FC-10FC").

    Args:
        trained: the list returned by `train_layerwise` (or
            `random_binary_layers`).
        input_shape: tuple `(H, W, C)`.
        num_classes: int >= 1.
        timesteps: int >= 1. Defaults to `16`.
        hidden_units: int >= 1, or 0 for a readout straight on the pooled
            spikes. Defaults to `128`.
        seed: `None` or int, seed of the Bernoulli encoder.
        name: model name.

    Returns:
        An uncompiled `keras.Model` giving logits; only the head is
        trainable.
    """
    timesteps = functional.validate_count(timesteps, "timesteps")
    inputs = keras.Input(tuple(input_shape))
    x = BernoulliEncoding(timesteps, seed=seed, name="encoding")(inputs)
    for index, layer in enumerate(trained):
        kernel = layer["kernel"].astype("float32")
        size = kernel.shape[:2]
        flat = kernel.reshape(-1, kernel.shape[-1])
        scaled = _normalized(flat).reshape(kernel.shape)
        conv = keras.layers.Conv2D(
            kernel.shape[-1],
            size,
            padding=layer["padding"],
            use_bias=False,
            trainable=False,
        )
        folded = TimeFolded(conv, name=f"stdp_conv{index + 1}", trainable=False)
        x = folded(x)
        conv.set_weights([scaled])
        x = LIF(
            threshold=layer["threshold"],
            decay=layer["decay"],
            reset="hard",
            name=f"stdp_lif{index + 1}",
        )(x)
        if layer["pool_size"] > 1:
            x = TimeFolded(
                keras.layers.MaxPooling2D(layer["pool_size"]),
                name=f"pool{index + 1}",
            )(x)
    x = TimeFolded(keras.layers.Flatten(), name="flatten")(x)
    if hidden_units:
        x = TimeFolded(keras.layers.Dense(hidden_units), name="fc")(x)
        x = LIF(threshold=1.0, decay=0.5, name="fc_lif")(x)
    outputs = Decoding(num_classes, name="readout")(x)
    return keras.Model(inputs, outputs, name=name)


def kernel_memory(trained, float_bits=32):
    """Kernel memory of binary STDP layers versus full precision.

    Each binary weight takes 1 bit; each layer also stores its threshold
    as one `float_bits` number (the per-map normalization is the kernel's
    number of ones, computed from the bits). A full-precision SNN stores
    every weight in `float_bits`.

    Args:
        trained: the list returned by `train_layerwise`.
        float_bits: int, bits of a full-precision weight. Defaults to 32.

    Returns:
        Dict with `weights` (count), `binary_bits`, `full_precision_bits`
        and `compression` (`full_precision_bits / binary_bits`).
    """
    weights = sum(int(layer["kernel"].size) for layer in trained)
    binary_bits = weights + float_bits * len(trained)
    full_bits = float_bits * weights
    return {
        "weights": weights,
        "binary_bits": binary_bits,
        "full_precision_bits": full_bits,
        "compression": full_bits / binary_bits,
    }
