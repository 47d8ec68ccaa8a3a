"""Stochastic STDP on digits: binary kernels, backprop readout, compression.

Trains 36 binary 3x3 convolution kernels on scikit-learn's digits without
labels, with stochastic STDP (`keras_snn.stdp.train_layerwise`, Srinivasan
et al. 2020, Sec. 3.1), on ON/OFF input channels (`x` and `1 - x`, so
that a kernel can learn where a stroke is absent as well as present):
Eq. (S1)-(S4) with `g_dep = 0.4` and dead zone `[1, 1]`, winner take all
per position, dropout and firing-rate homeostasis (Eq. H; target: a map
fires at 30% of the positions of an image), learning threshold 1.4, three
passes (`--input dog`: ON/OFF difference-of-Gaussians contrast instead,
so that the uniform background gives no input). The kernels are then
frozen in a spiking network
`BernoulliEncoding -> 36C3 (LIF, threshold 1.0) -> 2P -> Decoding(10)`
whose readout, the time-averaged linear decoding of the pooled spike
counts, is trained with backpropagation (Adam, on 4 Bernoulli samples of
the frozen layer's spike trains per training image, 60 epochs); the
whole spiking model is evaluated on the test set. `--hidden-units 128`
gives the paper's `36C3-2P-128FC-10FC` head instead. The same network and
readout with random binary kernels (same size, same thresholds) is the
baseline. Prints both test accuracies and the kernel memory compression
(1-bit vs 32-bit weights). About 1 minute on 2 CPU cores.

Run:

    python examples/stdp_digits.py --seed 0
"""

import argparse
import time

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras
import numpy as np

from keras_snn import stdp


def on_off(images):
    """ON/OFF channels: the image and its negative."""
    return np.concatenate([images, 1.0 - images], axis=-1)


def dog_on_off(images, sigma=1.0):
    """ON/OFF centre-surround channels (difference of Gaussians).

    `c = x - G_sigma * x`, scaled per image to a maximum of 1; ON = max(c, 0)
    and OFF = max(-c, 0). Uniform regions (the background) give no input,
    as with the DoG filters of STDP networks such as Kheradpisheh et al.
    2018, so kernels can only learn from edges.
    """
    from scipy import ndimage

    blur = ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0))
    contrast = images - blur
    peak = np.abs(contrast).max(axis=(1, 2, 3), keepdims=True)
    contrast = contrast / np.maximum(peak, 1e-6)
    channels = [np.maximum(contrast, 0.0), np.maximum(-contrast, 0.0)]
    return np.concatenate(channels, axis=-1).astype("float32")


INPUTS = {"on_off": on_off, "dog": dog_on_off}


def spike_trains(features, images, draws):
    """`draws` Bernoulli samples of the frozen layers' output spikes."""
    out = []
    for _ in range(draws):
        for i in range(0, len(images), 256):
            batch = features(images[i : i + 256], training=True)
            out.append(keras.ops.convert_to_numpy(batch))
    return np.concatenate(out)


def train_readout(layers, x_train, y_train, x_test, y_test, args):
    """Trains the head of `binary_snn` with backprop; returns test accuracy.

    The binary layers are frozen, so their output spike trains are
    computed once (`--draws` Bernoulli samples per training image) and
    the head (`Decoding`, or `Dense -> LIF -> Decoding`) is trained on
    them; the full spiking model is then evaluated on the test images.
    """
    keras.utils.set_random_seed(args.seed)
    model = stdp.binary_snn(
        layers,
        x_train.shape[1:],
        10,
        timesteps=args.timesteps,
        hidden_units=args.hidden_units,
        seed=args.seed,
    )
    flatten = model.get_layer("flatten")
    features = keras.Model(model.input, flatten.output)
    spikes = spike_trains(features, x_train, args.draws)
    labels = np.tile(y_train, args.draws)
    head_in = keras.Input(spikes.shape[1:])
    x = head_in
    for layer in model.layers[model.layers.index(flatten) + 1 :]:
        x = layer(x)
    head = keras.Model(head_in, x)
    head.compile(
        keras.optimizers.Adam(args.lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    head.fit(
        spikes,
        labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=0,
    )
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument(
        "--input",
        default="on_off",
        choices=sorted(INPUTS),
        help="ON/OFF channels: the image and its negative, or DoG contrast",
    )
    parser.add_argument("--filters", type=int, default=36)
    parser.add_argument("--timesteps", type=int, default=16)
    parser.add_argument("--stdp-samples", type=int, default=None)
    parser.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="use the first N training images for the readout too",
    )
    parser.add_argument("--stdp-epochs", type=int, default=3)
    parser.add_argument("--stdp-threshold", type=float, default=1.4)
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--homeostasis", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--hidden-units", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        args.dataset
    )
    x_train, y_train = (
        x_train[: args.train_subset],
        y_train[: args.train_subset],
    )
    channels = INPUTS[args.input]
    x_train, x_test = channels(x_train), channels(x_test)
    spec = [{"filters": args.filters, "kernel_size": 3, "pool_size": 2}]
    start = time.perf_counter()
    trained = stdp.train_layerwise(
        x_train[: args.stdp_samples],
        spec,
        timesteps=args.timesteps,
        rule=stdp.StochasticSTDP(p_depression=0.4, dead_zone=(1.0, 1.0)),
        epochs=args.stdp_epochs,
        threshold=args.stdp_threshold,
        homeostasis=args.homeostasis,
        target_rate=0.3,
        inference_threshold=args.threshold,
        seed=args.seed,
    )
    stdp_s = time.perf_counter() - start
    density = float(trained[0]["kernel"].mean())
    print(
        f"STDP: {args.filters} binary 3x3x2 kernels in {stdp_s:.1f} s, "
        f"fraction of ones {density:.3f}"
    )
    memory = stdp.kernel_memory(trained)
    results = {
        "stochastic STDP": train_readout(
            trained, x_train, y_train, x_test, y_test, args
        ),
        "random binary (baseline)": train_readout(
            stdp.random_binary_layers(
                spec, 2, threshold=args.threshold, seed=args.seed
            ),
            x_train,
            y_train,
            x_test,
            y_test,
            args,
        ),
    }
    print("\n| kernels | test accuracy |")
    print("|---|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:.4f} |")
    print(
        f"\nkernel memory: {memory['weights']} weights, "
        f"{memory['binary_bits']} bits binary (incl. one 32-bit threshold) "
        f"vs {memory['full_precision_bits']} bits float32: "
        f"{memory['compression']:.1f}x compression"
    )
    return results, memory


if __name__ == "__main__":
    main()
