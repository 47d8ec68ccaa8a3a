"""The `"loihi"` target's export function."""

import os
import tempfile

import numpy as np

from edge.errors import ConsumerError
from edge.targets.loihi.lava_runner import make_stream
from edge.targets.loihi.lava_runner import run_lava
from edge.targets.loihi.netx_writer import write_netx
from edge.targets.loihi.quantization import LAVA_SAMPLES
from edge.targets.loihi.quantization import NETX_FILE
from edge.targets.loihi.quantization import quantize_loihi
from edge.targets.loihi.ranges import check_ranges
from edge.targets.loihi.reference import encode
from edge.targets.loihi.reference import run_loihi
from edge.targets.loihi.reference import run_loihi_reference

__all__ = [
    "export_target",
]


# -- the export target -----------------------------------------------------
def export_target(context):
    """`edge.export`'s `"loihi"` target: a NetX file proven in Lava.

    Quantizes `context.graph` (`quantize_loihi`, with the scales of a
    Loihi QAT model when it is one), writes the NetX file,
    runs the first `LAVA_SAMPLES` evaluation samples through it in Lava in
    one run (samples separated by resets) and compares the whole output
    stream with `run_loihi_reference` on the same stream, spike for spike.
    Accuracy and agreement are the Loihi reference's on every evaluation
    sample (`run_loihi`).

    Args:
        context: an `edge.exporter.ExportContext`.

    Returns:
        A list with one `ArtefactReport` (`loihi-netx`); its file
        `model_loihi.net` is put into `context.files`.

    Raises:
        UnsupportedLayerError: a construct Loihi cannot express.
        ExportError: parameters out of range.
        ConsumerError: Lava is missing or failed, or its spikes differ
            from the reference's.
    """
    graph = context.graph
    # A Loihi QAT model brings its scales (edge.qat.loihi_scales).
    lgraph = quantize_loihi(graph, context.shared.get("loihi_scales"))
    check_ranges(lgraph)
    output, window = run_loihi(lgraph, context.x, context.timesteps)
    subset = context.x[:LAVA_SAMPLES]
    stream, interval = make_stream(
        lgraph, encode(lgraph, subset, context.timesteps)
    )
    expected = run_loihi_reference(lgraph, stream[None], interval)[0]
    with tempfile.TemporaryDirectory(prefix="keras-snn-loihi-") as folder:
        path = os.path.join(folder, NETX_FILE)
        write_netx(lgraph, path)
        with open(path, "rb") as file:
            data = file.read()
        got = run_lava(lgraph, path, stream, interval)
    exact = bool(np.array_equal(got, expected))
    if not exact:
        differ = int(np.sum(got != expected))
        raise ConsumerError(
            f"The NetX file of '{graph.name}' does not run in Lava as the "
            f"Loihi reference: {differ} of {expected.size} output spikes "
            f"differ over {len(stream)} steps."
        )
    checks = {
        "spike_exact": exact,
        "samples_checked": len(subset),
        "steps_checked": len(stream),
        "layers": lgraph.depth,
        "delay_steps": lgraph.depth,
        "reset_interval": interval,
        **lgraph.ranges(),
    }
    float_trace = getattr(context, "float_trace", None)
    if float_trace and lgraph.output_node in float_trace:
        expected_float = np.stack(float_trace[lgraph.output_node], 1)
        checks["float_spike_agreement"] = float(
            np.mean(expected_float == window)
        )
    context.files[NETX_FILE] = data
    kinds = [
        "conv(or)"
        if ly.role == "max_pool"
        else "dense_rec"
        if ly.weight_rec is not None
        else ly.kind
        for ly in lgraph.layers
    ]
    return [
        context.row(
            "loihi-netx",
            "Lava fixed_pt (CPU)",
            output,
            path=NETX_FILE,
            ops=kinds,
            checks=checks,
        )
    ]
