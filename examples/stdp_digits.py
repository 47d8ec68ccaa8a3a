"""Stochastic STDP on digits: binary kernels, backprop readout, compression.

Trains 36 binary 3x3 convolution kernels on scikit-learn's digits without
labels, with stochastic STDP (`keras_snn.stdp.train_layerwise`, Srinivasan
et al. 2020, Sec. 3.1), on ON/OFF input channels (`x` and `1 - x`, so
that a kernel can learn where a stroke is absent as well as present). The
kernels are then frozen in a spiking network `36C3-2P-128FC-10FC`
(Bernoulli rate coding, LIF neurons) whose fully connected layers are
trained with backpropagation (surrogate gradients). The same network with
random binary kernels is trained as a baseline. Prints both test
accuracies and the kernel memory compression (1-bit vs 32-bit weights).

Run:

    python examples/stdp_digits.py --epochs 15
"""

import argparse
import time

import keras
import numpy as np

import keras_snn
from keras_snn import stdp


def on_off(images):
    """ON/OFF channels: the image and its negative."""
    return np.concatenate([images, 1.0 - images], axis=-1)


def train_readout(layers, x_train, y_train, x_test, y_test, args):
    keras.utils.set_random_seed(args.seed)
    model = stdp.binary_snn(
        layers,
        x_train.shape[1:],
        10,
        timesteps=args.timesteps,
        hidden_units=args.hidden_units,
        seed=args.seed,
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--filters", type=int, default=36)
    parser.add_argument("--timesteps", type=int, default=16)
    parser.add_argument("--stdp-samples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--hidden-units", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        args.dataset
    )
    x_train, x_test = on_off(x_train), on_off(x_test)
    spec = [{"filters": args.filters, "kernel_size": 3, "pool_size": 2}]
    start = time.perf_counter()
    trained = stdp.train_layerwise(
        x_train[: args.stdp_samples],
        spec,
        timesteps=args.timesteps,
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
            stdp.random_binary_layers(spec, 2, seed=args.seed),
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
