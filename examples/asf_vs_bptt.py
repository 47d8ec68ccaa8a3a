"""ASF-BP versus surrogate-gradient BPTT: training time per epoch, accuracy.

The same spiking network (IF neurons with hard reset, as in Wu et al. 2021,
Eq. 3; non-spiking output neurons that accumulate their current, Eq. 6),
the same initial weights, data order, optimizer and loss are trained twice
at each simulation length `T`:

- `bptt`: ordinary `model.fit`, backpropagation through the `T` steps with
  the rectangular surrogate gradient (Wu et al. 2019, Eq. 14);
- `asf`: `keras_snn.asf.ASFModel(model).fit`, backward pass through the
  equivalent network of accumulated flows (Wu et al. 2021, Eq. 7-12), scale
  factors refreshed every `--scale-every` epochs.

The machine may be shared, so the two methods alternate epoch by epoch
(both see the same load) and the time per epoch is the median over the
epochs after the first (which includes tracing). The ratio is
`bptt / asf`. Test accuracy is measured after the last epoch with the
spiking forward pass (the same for both).

Run (digits, about 15 min on 2 CPU cores):

    python examples/asf_vs_bptt.py --dataset digits --timesteps 20 100 \\
        --epochs 10

Fashion-MNIST (Debian package `dataset-fashion-mnist`), a training subset:

    python examples/asf_vs_bptt.py --dataset fashion_mnist \\
        --train-subset 10000 --timesteps 20 100 --epochs 3
"""

import argparse
import json
import statistics
import time

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras
import numpy as np

from keras_snn import asf

NETWORKS = {
    "digits": "16C3(Encoding)-AP2-32C3-AP2-128FC-Readout",
    "fashion_mnist": "wu2021_lenet",
}


def build(spec, input_shape, timesteps, threshold, seed):
    """The spiking network; the readout is divided by `T V_th` (Eq. 6)."""
    keras.utils.set_random_seed(seed)
    snn = keras_snn.models.from_spec(
        spec,
        input_shape=input_shape,
        num_classes=10,
        timesteps=timesteps,
        neuron="if",
        neuron_kwargs={"threshold": threshold, "reset": "hard"},
    )
    scaled = keras.layers.Rescaling(
        1.0 / (timesteps * threshold), name="eq6_scale"
    )(snn.output)
    return keras.Model(snn.input, scaled, name=f"snn_T{timesteps}")


def loss_fn(name):
    if name == "ce":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return _Eq6Loss()


class _Eq6Loss(keras.losses.Loss):
    """`1/2 ||Y - u[T] / (T V_th)||^2` with one-hot `Y` (Eq. 6)."""

    def call(self, y_true, y_pred):
        y_true = keras.ops.one_hot(
            keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"),
            y_pred.shape[-1],
        )
        return 0.5 * keras.ops.sum(keras.ops.square(y_true - y_pred), -1)


def run(args, timesteps, data):
    (x_train, y_train), (x_test, y_test) = data
    spec = NETWORKS[args.dataset]
    models = {}
    for method in args.methods:
        model = build(
            spec, x_train.shape[1:], timesteps, args.threshold, args.seed
        )
        if method == "asf":
            model = asf.ASFModel(model, scale_update_every=args.scale_every)
        model.compile(
            keras.optimizers.Adam(args.lr),
            loss_fn(args.loss),
            metrics=["accuracy"],
        )
        models[method] = model
    times = {m: [] for m in models}
    logs = {m: [] for m in models}
    for epoch in range(args.epochs):
        for method, model in models.items():
            keras.utils.set_random_seed(args.seed + epoch)
            start = time.perf_counter()
            history = model.fit(
                x_train,
                y_train,
                batch_size=args.batch_size,
                epochs=1,
                shuffle=True,
                verbose=0,
            )
            times[method].append(time.perf_counter() - start)
            logs[method].append(
                {k: float(v[-1]) for k, v in history.history.items()}
            )
            print(
                f"T={timesteps} {method} epoch {epoch + 1}: "
                f"{times[method][-1]:.1f} s, "
                f"train acc {logs[method][-1]['accuracy']:.3f}",
                flush=True,
            )
    result = {"timesteps": timesteps}
    for method, model in models.items():
        _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        steady = times[method][1:] or times[method]
        result[method] = {
            "s_per_epoch": statistics.median(steady),
            "first_epoch_s": times[method][0],
            "test_accuracy": float(accuracy),
            "train_accuracy": logs[method][-1]["accuracy"],
        }
        if method == "asf":
            result[method]["scale_factors"] = model.scale_factors
    if {"asf", "bptt"} <= set(models):
        result["speedup"] = (
            result["bptt"]["s_per_epoch"] / result["asf"]["s_per_epoch"]
        )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=NETWORKS)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--loss", default="eq6", choices=["eq6", "ce"])
    parser.add_argument("--scale-every", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", nargs="+", default=["asf", "bptt"], choices=["asf", "bptt"]
    )
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args(argv)
    (x_train, y_train), test = keras_snn.datasets.static.load_arrays(
        args.dataset
    )
    if args.train_subset:
        rng = np.random.default_rng(args.seed)
        keep = rng.permutation(len(x_train))[: args.train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
    data = ((x_train, y_train), test)
    print(
        f"{args.dataset}: {len(x_train)} train, {len(test[0])} test, "
        f"network {NETWORKS[args.dataset]}, loss {args.loss}",
        flush=True,
    )
    results = [run(args, t, data) for t in args.timesteps]
    print("\n| T | method | s/epoch | test accuracy |")
    print("|---|---|---|---|")
    for result in results:
        for method in args.methods:
            r = result[method]
            print(
                f"| {result['timesteps']} | {method} | "
                f"{r['s_per_epoch']:.2f} | {r['test_accuracy']:.4f} |"
            )
        if "speedup" in result:
            print(
                f"| {result['timesteps']} | BPTT/ASF time ratio | "
                f"{result['speedup']:.2f}x | |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
