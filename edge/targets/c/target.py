"""The `"c"` target of `edge.export`: C sources, proven on gcc and QEMU."""

import os
import re
import tempfile

import numpy as np

from edge import reference
from edge.errors import ConsumerError
from edge.targets.c import toolchain
from edge.targets.c.codegen import generate
from edge.targets.c.harness import generate_harness
from edge.targets.c.harness import read_outputs
from edge.targets.c.harness import read_states
from edge.targets.c.measure import synaptic_operations

HOST_SAMPLES = 512  # evaluation samples export_target runs on the host
QEMU_SAMPLES = 64  # ... and under QEMU (TCG emulation is slower)
COUNT_SAMPLES = 4  # inferences averaged by the instruction count


def count_instructions(qgraph, x, directory, name="model", timeout=300):
    """Executed Cortex-M4 instructions per inference (reset + `T` steps).

    Method: QEMU 7.2 (Debian 12) runs the quiet harness with `-singlestep
    -d exec,nochain`, which logs one line per executed instruction; the
    harness is built twice, running 0 and `len(x)` samples, and the
    difference of the two counts divided by `len(x)` is the cost of one
    inference (start-up and printing cancel out). These are instruction
    counts, not cycles; the cost is input dependent (event-driven layers
    skip silent inputs), hence the mean over `x`.

    Args:
        qgraph: the `QuantizedGraph`.
        x: a few float inputs (2 to 8).
        directory: build folder.
        name: C name of the model.
        timeout: seconds allowed per QEMU run.

    Returns:
        Mean instructions per inference (int).

    Example:

    >>> count_instructions(qgraph, x_test[:4], "build/c")
    """
    counts = []
    for runs in (0, len(x)):
        files = generate(qgraph, name) | generate_harness(
            qgraph, x, name, runs=runs, quiet=True
        )
        elf = toolchain.build_cortex_m4(
            files, directory, f"{name}_count{runs}.elf"
        )
        counts.append(toolchain.count_trace(elf, directory, timeout))
    return int(round((counts[1] - counts[0]) / len(x)))


def run_c(
    qgraph,
    x,
    directory,
    platform="host",
    name="model",
    timeout=120,
    instances=1,
    record=False,
):
    """Generates, builds and runs the C runtime on `x`; raw per-step outputs.

    Args:
        qgraph: the `QuantizedGraph`.
        x: float inputs as for `edge.integer.run_integer`.
        directory: build folder.
        platform: `"host"`, `"host-sanitize"` or `"cortex-m4"` (QEMU).
        name: C name of the model.
        timeout: seconds allowed for the run.
        instances: model instances the harness runs interleaved, step by
            step, each on its own sample (see `generate_harness`).
        record: also print and return every state of the instances after
            every step (`read_states`).

    Returns:
        `(raw, path)`: the integer outputs `(N, T, *output_shape)`, which
        must equal `edge.integer.run_integer(qgraph, x)[1]`, and the
        executable; with `record`, `(raw, states, path)`, `states` a dict
        trace key -> `(N, T, ...)` whose every entry must equal the
        integer reference's trace (`run_integer(..., record=True)`) under
        that key, stacked over the steps.

    Example:

    >>> raw, _ = run_c(qgraph, x_test[:16], "build/c", "cortex-m4")
    """
    files = generate(qgraph, name) | generate_harness(
        qgraph, x, name, instances=instances, states=record
    )
    if platform == "cortex-m4":
        path = toolchain.build_cortex_m4(files, directory)
        text = toolchain.run_qemu(path, timeout)
    elif platform in ("host", "host-sanitize"):
        path = toolchain.build_host(
            files, directory, platform == "host-sanitize"
        )
        text = toolchain.run_host(path, timeout)
    else:
        raise ValueError(
            "Argument `platform` must be 'host', 'host-sanitize' or "
            f"'cortex-m4'. Received: platform={platform!r}"
        )
    raw = read_outputs(text, qgraph, len(x))
    if record:
        return raw, read_states(text, qgraph, len(x), name), path
    return raw, path


def output_scores(qgraph, raw):
    """The model's scores from the raw per-step outputs of the C runtime.

    Dequantizes with the graph's output scale and aggregates the steps as
    the graph does, as `edge.integer.run_integer` turns its raw outputs
    into its first return value.

    Args:
        qgraph: the `QuantizedGraph`.
        raw: integer outputs `(N, T, *output_shape)`, as `run_c` returns.

    Returns:
        float64 scores, equal to `run_integer(qgraph, x)[0]` when `raw`
        equals `run_integer(qgraph, x)[1]`.

    Raises:
        ValueError: `raw` has fewer than 2 dimensions.

    Example:

    >>> raw, _ = run_c(qgraph, x_test[:16], "build/c")
    >>> classes = output_scores(qgraph, raw).argmax(-1)
    """
    raw = np.asarray(raw)
    if raw.ndim < 2:
        raise ValueError(
            "Argument `raw` must have shape (samples, steps, ...). "
            f"Received: raw.shape={raw.shape}"
        )
    values = [raw[:, t] * qgraph.output_scale for t in range(raw.shape[1])]
    return reference.aggregate(values, qgraph.graph.aggregate)


def export_target(context):
    """The `"c"` target of `edge.export`: C sources, proven on gcc and QEMU.

    Generates the C runtime of `context.qgraph`, builds it with the host
    gcc and with `arm-none-eabi-gcc` for Cortex-M4, runs both (the host on
    the first `HOST_SAMPLES` evaluation inputs, QEMU on the first
    `QEMU_SAMPLES`), and requires their per-step outputs to equal
    `edge.integer.run_integer` bit for bit. Files go to `context.files` as
    `c/<file>` only after every check has passed.

    Args:
        context: an `edge.exporter.ExportContext`.

    Returns:
        Rows `"c-host"` (gcc x86-64) and `"c-cortex-m4"` (QEMU mps2-an386);
        checks: `bit_exact`, `samples`, and for Cortex-M4 `flash_bytes`,
        `ram_bytes` (the model's objects: code, weights, the default
        scratch, plus one instance's state; no stack),
        `instructions_per_inference`, `synaptic_ops_per_inference` (see
        `edge.targets.c.measure`) and `instructions_per_synop` (their
        ratio, on the same `COUNT_SAMPLES` inputs).

    Raises:
        UnsupportedLayerError: a node the C runtime cannot express.
        ConsumerError: a toolchain is missing, a build or run fails, or an
            output differs from the integer reference.
    """
    qgraph = context.ensure_integer()
    files = generate(qgraph)  # refuses unsupported nodes first
    rows = []
    labels = None if context.labels is None else np.asarray(context.labels)
    with tempfile.TemporaryDirectory(prefix="edge-c-") as directory:
        for target, consumer, platform, limit in (
            ("c-host", "gcc x86-64", "host", HOST_SAMPLES),
            ("c-cortex-m4", "QEMU mps2-an386", "cortex-m4", QEMU_SAMPLES),
        ):
            x = context.x[:limit]
            raw, _ = run_c(
                qgraph, x, os.path.join(directory, platform), platform
            )
            expected = context.int_raw[:limit]
            if raw.shape != expected.shape or not np.array_equal(raw, expected):
                wrong = (
                    int(np.sum(raw != expected))
                    if raw.shape == expected.shape
                    else raw.shape
                )
                raise ConsumerError(
                    f"The C runtime of '{qgraph.graph.name}' on {consumer} "
                    "does not equal the integer reference bit for bit "
                    f"({wrong} values differ)."
                )
            scores = output_scores(qgraph, raw)
            checks = {"bit_exact": True, "samples": len(x)}
            if platform == "cortex-m4":
                size = toolchain.model_size_cortex_m4(files, directory)
                checks["flash_bytes"] = size["flash"]
                # + one instance's state, which the caller owns
                checks["ram_bytes"] = size["ram"] + _state_bytes(files)
                counted = x[:COUNT_SAMPLES]
                instructions = count_instructions(qgraph, counted, directory)
                synops = synaptic_operations(qgraph, counted)["total"]
                checks["instructions_per_inference"] = instructions
                checks["synaptic_ops_per_inference"] = int(round(synops))
                checks["instructions_per_synop"] = round(
                    instructions / max(synops, 1.0), 2
                )
            rows.append(
                _row(context, target, consumer, scores, labels, len(x), checks)
            )
    for file, text in files.items():
        context.files[f"c/{file}"] = text.encode()
    return rows


def _row(context, target, consumer, scores, labels, n, checks):
    # edge.report.make_row through the context: accuracy and agreement on
    # the first n samples, max_abs_diff against the integer reference.
    return context.row(
        target,
        consumer,
        scores,
        expected=context.int_out[:n],
        close=False,
        path="c/model.c",
        ops=sorted({node.op for node in context.qgraph.graph.nodes[1:]}),
        checks=checks,
    )


def _state_bytes(files, name="model"):
    match = re.search(
        rf"#define {name.upper()}_STATE_BYTES (\d+)", files[f"{name}.h"]
    )
    return int(match.group(1))
