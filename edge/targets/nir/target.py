"""The `"nir"` target's export function."""

import os
import tempfile

from edge.errors import ConsumerError
from edge.targets.nir.compare import compare_spikes
from edge.targets.nir.convert import CONSUMERS
from edge.targets.nir.convert import NIR_SAMPLES
from edge.targets.nir.convert import convert
from edge.targets.nir.nirfile import write
from edge.targets.nir.run import run_conversion

__all__ = [
    "export_target",
]


def export_target(context, samples=NIR_SAMPLES):
    """The `nir` target of `edge.export`: `model.nir`, checked in Norse
    (and snnTorch for graphs without IF neurons, per-neuron parameters or
    recurrent layers: `NIRConversion.consumers`).

    Converts `context.graph`, writes and reads back the file, runs it in
    each consumer on the first `samples` evaluation inputs, compares the
    spikes of every neuron layer with the float reference
    (`compare_spikes`) and the outputs with the Keras model.

    Args:
        context: the `edge.exporter.ExportContext`.
        samples: evaluation samples run in the consumers.

    Returns:
        A list of `ArtefactReport` rows `"nir"`, one per consumer, with
        checks `spike_agreement`, `exact_samples`, `samples_checked`,
        `max_abs_diff` against the float reference's output.

    Raises:
        UnsupportedLayerError: the graph has a construct NIR cannot
            express (before anything is written).
        ConsumerError: a consumer failed, or a spike differs from the
            float reference where the potential was not at the threshold.

    Example:

    >>> report = edge.export(model, "build", targets="nir",
    ...                      calibration_data=x_train[:256])
    >>> report.row("nir").checks["spike_agreement"]
    1.0
    """
    graph = context.graph
    conversion = convert(graph)
    x = context.x[:samples]
    count = len(x)
    float_out = context.float_out[:count]
    rows = []
    with tempfile.TemporaryDirectory(prefix="keras-snn-nir-") as folder:
        path = write(conversion.nir_graph, os.path.join(folder, "model.nir"))
        with open(path, "rb") as file:
            data = file.read()
        for consumer in conversion.consumers:
            output, _, spikes, versions = run_conversion(
                conversion, path, x, consumer
            )
            result = compare_spikes(graph, context.float_trace, spikes)
            name = CONSUMERS[consumer]
            if result["unexplained"]:
                raise ConsumerError(
                    f"{name} does not reproduce the spikes of "
                    f"'{graph.name}': spike agreement "
                    f"{result['spike_agreement']:.6f}; differences not at "
                    f"a threshold tie: {result['unexplained'][:5]}"
                )
            rows.append(
                context.row(
                    "nir",
                    name,
                    output,
                    expected=float_out,
                    close=False,
                    path="model.nir",
                    ops=sorted(
                        {
                            type(n).__name__
                            for n in conversion.nir_graph.nodes.values()
                        }
                    ),
                    checks={
                        "spike_agreement": result["spike_agreement"],
                        "exact_samples": result["exact_samples"],
                        "samples_checked": count,
                        "torch": versions.get("torch"),
                    },
                )
            )
    context.files["model.nir"] = data
    return rows
