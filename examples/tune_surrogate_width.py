"""Tune the fast-sigmoid surrogate width gamma on digits (bisection).

Ledinauskas et al. 2020, Sec. 2.5: gamma is searched by bisection so that
the mean gradient magnitude of the first half of the layers equals that of
the second half. This builds a 7-weight-layer convolutional IF network on
scikit-learn's digits, with batch normalization of the input currents
(Sec. 2.6) so that every layer spikes, prints the per-layer gradient
norms (Zheng et al. 2021, Fig. 2) at a few fixed gammas and at the tuned
one, plots them, and optionally trains with the tuned gamma and with the
starting one.

Run:

    python examples/tune_surrogate_width.py --timesteps 10 \\
        --plot grad_norms.png --epochs 5
"""

import argparse
import time

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras

from keras_snn import tuning

SPEC = "16C3(Encoding)-16C3-16C3-AP2-32C3-32C3-AP2-64FC-Readout"


def build(timesteps, gamma, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras_snn.models.from_spec(
        SPEC,
        input_shape=(8, 8, 1),
        num_classes=10,
        timesteps=timesteps,
        neuron="if",
        norm="bn",
        neuron_kwargs={
            "surrogate": keras_snn.surrogates.FastSigmoid(gamma=gamma),
            "reset": "soft",
        },
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def show(label, norms):
    values = " ".join(f"{v:.2e}" for v in norms.values())
    print(f"{label:>14}: {values}  balance={tuning.balance(norms):+.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--gamma", type=float, default=10.0)
    parser.add_argument("--compare", type=float, nargs="*", default=[1, 100])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, y_test) = (
        keras_snn.datasets.static.load_arrays("digits")
    )
    data = (x_train, y_train)
    model = build(args.timesteps, args.gamma)
    curves = {}
    print("layers:", ", ".join(tuning.gradient_norms(model, data, batches=1)))
    for gamma in sorted({*args.compare, args.gamma}):
        tuning.set_surrogate_parameter(model, "gamma", gamma)
        curves[f"gamma={gamma:g}"] = tuning.gradient_norms(
            model, data, batches=args.batches
        )
        show(f"gamma={gamma:g}", curves[f"gamma={gamma:g}"])
    tuning.set_surrogate_parameter(model, "gamma", args.gamma)
    start = time.perf_counter()
    result = tuning.tune_surrogate_width(model, data, batches=args.batches)
    seconds = time.perf_counter() - start
    tuned = tuning.gradient_norms(model, data, batches=args.batches)
    curves[f"tuned gamma={result.value:.3g}"] = tuned
    show(f"tuned {result.value:.3g}", tuned)
    print(
        f"gamma found: {result.value:.4g} (balance {result.balance:+.3f}, "
        f"{len(result.history)} evaluations, {seconds:.0f} s, "
        f"converged={result.converged})"
    )
    print("history:", [(round(g, 3), round(b, 3)) for g, b in result.history])
    if args.plot:
        tuning.plot_gradient_norms(
            curves, args.plot, title=f"digits, IF, T={args.timesteps}"
        )
        print("plot:", args.plot)
    for gamma in (args.gamma, result.value) if args.epochs else ():
        model = build(args.timesteps, gamma)
        model.fit(
            x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0
        )
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        print(
            f"gamma={gamma:.4g}: test accuracy {accuracy:.4f} after "
            f"{args.epochs} epochs"
        )
    return result


if __name__ == "__main__":
    main()
