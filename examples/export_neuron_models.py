"""Export the neuron models beyond LIF to every target, and tabulate it.

Trains two small spiking networks on scikit-learn's digits (offline) and
exports each to every target, one target at a time, so that a target that
cannot express a model refuses it (its message names the layer) without
stopping the others:

- `cuba`: a convolutional network of current-based neurons
  (`keras_snn.layers.CubaLIF`, Loihi's neuron model: a synaptic current
  with its own decay feeds the membrane), without biases;
- `alif-recurrent`: a dense network of adaptive-threshold neurons
  (`keras_snn.layers.ALIF`, Bellec et al. 2018) with recurrent synapses and
  a soft reset.

For every artefact it prints the test accuracy, the agreement with the
Keras model and the consumer's exactness check, as a Markdown table (the
one in docs/deployment/index.md, "Neuron models").

Run:

    python examples/export_neuron_models.py --epochs 15
"""

import argparse
import os
import tempfile

import keras_snn  # first: sets TensorFlow's defaults before it loads

# isort: split

import keras

MODELS = ("cuba", "alif-recurrent")
# The check that says an artefact equals what it must, per target.
EXACT_CHECKS = ("bit_exact", "spike_exact", "within_1e-5", "spike_agreement")
# The integer TFLite model's check, per consumer.
TFLITE_CHECKS = {
    "LiteRT": "litert_equals_integer_reference",
    "LiteRT (reference kernels)": (
        "litert_reference_kernels_equals_integer_reference"
    ),
    "TFLite-Micro": "tflm_equals_integer_reference",
}


def _check(row):
    """`name=value` of the check that says `row`'s artefact is exact."""
    name = TFLITE_CHECKS.get(row.consumer)
    if name in row.checks:
        return f"bit_exact={row.checks[name]}"
    for name in EXACT_CHECKS:
        if name in row.checks:
            return f"{name}={row.checks[name]}"
    return "-"


def build_model(kind, timesteps=4, num_classes=10):
    """The `cuba` or `alif-recurrent` digits network (module docstring)."""
    layers = keras_snn.layers
    fold = layers.TimeFolded
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(timesteps)(inputs)
    if kind == "cuba":
        x = fold(keras.layers.Conv2D(16, 3, padding="same", use_bias=False))(x)
        x = layers.CubaLIF(threshold=0.5, decay=0.5, current_decay=0.5)(x)
        x = fold(keras.layers.AveragePooling2D(2))(x)
        x = fold(keras.layers.Flatten())(x)
        x = fold(keras.layers.Dense(64, use_bias=False))(x)
        x = layers.CubaLIF(threshold=0.5, decay=0.5, current_decay=0.5)(x)
    elif kind == "alif-recurrent":
        x = fold(keras.layers.Flatten())(x)
        x = fold(keras.layers.Dense(64))(x)
        x = layers.ALIF(
            threshold=0.5,
            decay=0.8,
            adaptation=0.3,
            adaptation_decay=0.9,
            reset="soft",
            recurrent=True,
        )(x)
    else:
        raise ValueError(
            f"Argument `kind` must be one of {MODELS}. Received: {kind!r}"
        )
    rate = keras.layers.GlobalAveragePooling1D(name="spike_rate")(x)
    outputs = keras.layers.Dense(num_classes, name="readout")(rate)
    return keras.Model(inputs, outputs, name=kind.replace("-", "_"))


def train(kind, data, epochs, timesteps, seed=0):
    """Trains one network; returns it and its Keras test accuracy."""
    keras.utils.set_random_seed(seed)
    x_train, x_test, y_train, y_test = data
    model = build_model(kind, timesteps)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return model, accuracy


def export_rows(model, data, out_dir, targets):
    """Exports `model` to each target alone; one dict per artefact, or per
    refusal (with `refused`: the target's message)."""
    import edge

    x_train, x_test, _, y_test = data
    rows = []
    for target in targets:
        try:
            report = edge.export(
                model,
                os.path.join(out_dir, target),
                targets=[target],
                calibration_data=x_train[:300],
                eval_data=(x_test, y_test),
                overwrite=True,
                verbose=0,
            )
        except edge.UnsupportedLayerError as error:
            rows.append({"target": target, "refused": str(error)})
            continue
        for row in report.rows:
            if row.target in ("keras", "reference-float", "reference-int"):
                continue
            check = _check(row)
            rows.append(
                {
                    "target": row.target,
                    "consumer": row.consumer,
                    "accuracy": row.accuracy,
                    "agreement": row.agreement,
                    "check": check,
                    "samples": row.samples,
                }
            )
    return rows


def markdown(results, samples):
    """The Markdown table of `{model: (keras accuracy, rows)}` on
    `samples` test images."""
    lines = [
        "| model | artefact | consumer | test images | accuracy | "
        "agreement with Keras | check |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, (accuracy, rows) in results.items():
        lines.append(
            f"| {kind} | Keras | - | {samples} | {accuracy:.4f} | - | - |"
        )
        for row in rows:
            if "refused" in row:
                # "Layer 'x' (Kind) cannot be exported to T: why"
                why = row["refused"].split(": ", 1)[-1]
                lines.append(
                    f"| {kind} | {row['target']} | - | - | - | - | "
                    f"refused: {why} |"
                )
                continue
            lines.append(
                f"| {kind} | {row['target']} | {row['consumer']} | "
                f"{row['samples'] or samples} | {row['accuracy']:.4f} | "
                f"{row['agreement']:.4f} | {row['check']} |"
            )
    return "\n".join(lines)


def main(argv=None):
    import edge

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument(
        "--targets", nargs="+", default=list(edge.TARGETS), help="targets"
    )
    parser.add_argument("--out", default=None, help="export folder")
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, y_test) = keras_snn.datasets.load_arrays(
        "digits"
    )
    data = (x_train, x_test, y_train, y_test)
    out_dir = args.out or tempfile.mkdtemp()
    results = {}
    for kind in args.models:
        model, accuracy = train(kind, data, args.epochs, args.timesteps)
        rows = export_rows(
            model, data, os.path.join(out_dir, kind), args.targets
        )
        results[kind] = (accuracy, rows)
    print(markdown(results, len(y_test)))
    return results


if __name__ == "__main__":
    main()
