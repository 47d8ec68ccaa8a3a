"""Activity and energy report of the quickstart digits SNN.

Trains the quickstart model (`examples/quickstart_digits.py`:
direct encoding, [conv-BN-LIF-pool] x 2, dense-LIF, rate readout) and prints
`keras_snn.analysis.energy_report` on the test split: spikes per neuron per
layer (Zheng et al. 2021, Fig. 6), accumulates (AC) of the spike-driven
layers and multiply-accumulates (MAC) of the encoding and readout layers
(Table 6), and the energy at 45 nm (0.9 pJ per AC, 4.6 pJ per MAC, 32-bit
float; Horowitz 2014) against the equivalent ANN. The firing rates per
epoch are logged with `keras_snn.callbacks.FiringRateLogger`.

Run:

    python examples/energy_digits.py --epochs 30 --timesteps 4
"""

import argparse
import json
import os
import sys

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras
import numpy as np

from keras_snn.callbacks import FiringRateLogger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from quickstart_digits import build_model  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        "digits"
    )
    model = build_model(args.timesteps)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    logger = FiringRateLogger(x_test[:256], log_dir=args.log_dir)
    history = model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.epochs,
        verbose=0,
        callbacks=[logger],
    )
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"digits SNN, T={args.timesteps}: test accuracy {accuracy:.4f}")
    rates = {
        key: [round(v, 4) for v in values]
        for key, values in history.history.items()
        if key.startswith("firing_rate/")
    }
    print("firing rate per epoch (first, last):")
    for key, values in rates.items():
        print(f"  {key}: {values[0]} -> {values[-1]}")
    report = keras_snn.analysis.energy_report(model, x_test)
    print(report.table())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report.to_dict(), handle, indent=2)
    return report


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
