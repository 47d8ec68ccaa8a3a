"""The accuracy gate of `edge.export`.

An export fails (and writes nothing) when an artefact predicts the Keras
model's class on fewer than `min_agreement` of the evaluation samples, or
when its accuracy is lower than the Keras model's on the same samples by
more than `max_accuracy_drop`. This module imports only NumPy, so that
`keras-snn export --help` can show the defaults without TensorFlow.
"""

from edge import report

__all__ = [
    "DEFAULT_MAX_ACCURACY_DROP",
    "DEFAULT_MIN_AGREEMENT",
    "accuracy_gate",
]

# The quickstart's artefacts agree with its Keras model on >= 0.997 of
# the test digits and lose no accuracy; int8 models that agreed on 0.56
# (TFLite) and 0.81 (C) used to pass unnoticed.
DEFAULT_MIN_AGREEMENT = 0.9
DEFAULT_MAX_ACCURACY_DROP = 0.05


def accuracy_gate(
    rows,
    keras_out,
    labels,
    min_agreement=DEFAULT_MIN_AGREEMENT,
    max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP,
    allow_accuracy_drop=False,
):
    """The accuracy gate over the artefact rows (those with a file).

    Agreement is measured by each target against the Keras model on the
    samples it ran; the accuracy drop compares a row's accuracy with the
    Keras model's on the same samples (the first `row.samples` ones when
    the row says so, else all).

    Args:
        rows: the `edge.report.ArtefactReport`s.
        keras_out: the Keras model's outputs on the evaluation samples.
        labels: their labels, or `None` (agreement only).
        min_agreement: see `edge.export`.
        max_accuracy_drop: see `edge.export`.
        allow_accuracy_drop: see `edge.export`.

    Returns:
        The `gate` dict of `edge.report.ExportReport`.
    """
    gate = {
        "min_agreement": min_agreement,
        "max_accuracy_drop": max_accuracy_drop,
        "lowest_agreement": None,
        "lowest_agreement_row": None,
        "largest_accuracy_drop": None,
        "largest_accuracy_drop_row": None,
        "failures": [],
    }
    for row in rows:
        if row.path is None or row.agreement is None:
            continue
        name = f"{row.target} on {row.consumer}"
        if (
            gate["lowest_agreement"] is None
            or row.agreement < gate["lowest_agreement"]
        ):
            gate["lowest_agreement"] = row.agreement
            gate["lowest_agreement_row"] = name
        if row.agreement < min_agreement:
            gate["failures"].append(
                f"  {name}: agreement with the Keras model "
                f"{row.agreement:.4f} < min_agreement {min_agreement:g}"
            )
        if row.accuracy is None or labels is None:
            continue
        count = len(keras_out) if row.samples is None else row.samples
        keras_accuracy = report.accuracy(keras_out[:count], labels[:count])
        drop = keras_accuracy - row.accuracy
        if (
            gate["largest_accuracy_drop"] is None
            or drop > gate["largest_accuracy_drop"]
        ):
            gate["largest_accuracy_drop"] = drop
            gate["largest_accuracy_drop_row"] = name
        if drop > max_accuracy_drop:
            gate["failures"].append(
                f"  {name}: accuracy {row.accuracy:.4f} is {drop:.4f} below "
                f"the Keras model's {keras_accuracy:.4f} (on the same "
                f"{count} samples) > max_accuracy_drop {max_accuracy_drop:g}"
            )
    gate["passed"] = not gate["failures"]
    gate["allowed"] = bool(allow_accuracy_drop and not gate["passed"])
    return gate
