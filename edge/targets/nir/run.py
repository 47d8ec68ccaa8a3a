"""Running a NIR file in Norse or snnTorch, in their environment (`run`)."""

import json
import os
import tempfile

import numpy as np

from edge import consumers
from edge import reference
from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import run_consumer
from edge.targets.nir.convert import CONSUMERS
from edge.targets.nir.convert import NIR_DT
from edge.targets.nir.convert import NIR_TIMEOUT

__all__ = [
    "nir_python",
    "run",
]

_WORKER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_nir_worker.py"
)


def nir_python():
    """The Python of the NIR consumers' environment (Norse, snnTorch).

    Found by `edge.consumers` (`$KERAS_SNN_NIR_PYTHON`, the per-user
    consumers folder, a source checkout's `.venv-nir`); made by
    `keras-snn consumers install --targets nir`.

    Raises:
        ConsumerError: it is missing (the message names the command that
            installs it).
    """
    return consumers.python("nir")


def run(path, x, consumer="norse", record=(), batched=False, timeout=None):
    """Runs a NIR file in Norse or snnTorch (in `nir_python()`).

    Args:
        path: the `.nir` file.
        x: `(N, T, *input)` inputs of every step, NIR layout (channels
            first).
        consumer: `"norse"` (`norse.torch.from_nir(graph, dt=1e-4)`) or
            `"snntorch"` (`snntorch.import_nir.import_from_nir(graph)`).
        record: NIR names of the neuron nodes whose spikes to return.
        batched: run all samples at once; `False` runs them one at a time
            without a batch axis (needed with `Flatten(start_dim=0)`).
        timeout: seconds (default `NIR_TIMEOUT`).

    Returns:
        Dict: `output` `(N, T, *output)`, `spikes/<name>` `(N, T, *shape)`
        per recorded node, and `versions` (the packages' versions).

    Raises:
        ConsumerError: the environment is missing, the consumer failed,
            or it ran past `timeout`.

    Example:

    >>> out = run("model.nir", x_steps, "norse", record=["lif_1"])
    >>> out["output"].shape
    """
    if consumer not in CONSUMERS:
        raise ExportError(
            f"Argument `consumer` must be one of {sorted(CONSUMERS)}. "
            f"Received: consumer={consumer!r}"
        )
    python = nir_python()
    timeout = timeout or NIR_TIMEOUT
    with tempfile.TemporaryDirectory(prefix="keras-snn-nir-") as folder:
        inputs = os.path.join(folder, "inputs.npz")
        outputs = os.path.join(folder, "outputs.npz")
        np.savez(inputs, x=np.asarray(x, np.float32))
        request = os.path.join(folder, "request.json")
        with open(request, "w") as file:
            json.dump(
                {
                    "model": os.path.abspath(path),
                    "consumer": consumer,
                    "inputs": inputs,
                    "outputs": outputs,
                    "record": list(record),
                    "dt": NIR_DT,
                    "batched": bool(batched),
                },
                file,
            )
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.setdefault("OMP_NUM_THREADS", "1")
        done = run_consumer(
            [python, _WORKER, request],
            f"{CONSUMERS[consumer]} on {path}",
            timeout,
            env=env,
            cwd=folder,
        )
        if done.returncode != 0 or not os.path.exists(outputs):
            tail = (done.stderr or done.stdout or "")[-3000:]
            raise ConsumerError(
                f"{CONSUMERS[consumer]} failed to run {path} (exit "
                f"{done.returncode}):\n{tail}"
            )
        with np.load(outputs) as data:
            result = {key: np.array(data[key]) for key in data.files}
    result["versions"] = json.loads(str(result["versions"]))
    return result


def run_conversion(conversion, path, x, consumer="norse", timeout=None):
    """Runs the NIR file of `conversion` on Keras-layout inputs.

    Args:
        conversion: the `NIRConversion` the file was written from.
        path: the `.nir` file.
        x: inputs as the Keras model takes them: `(N, *input_shape)` for a
            direct-encoding model, or `(N, T, *input_shape)`.
        consumer: `"norse"` or `"snntorch"`.
        timeout: seconds.

    Returns:
        `(output, steps, spikes, versions)`: the aggregated output (as
        `graph.aggregate` says), the per-step outputs `(N, T, ...)`, a dict
        step-graph neuron name -> spikes `(N, T, ...)`, all in the Keras
        layout, and the consumer's package versions.
    """
    graph = conversion.graph
    steps, x_at = reference.input_steps(graph, x)
    x_steps = np.stack([np.asarray(x_at(t)) for t in range(steps)], axis=1)
    record = [conversion.names[name] for name in conversion.neurons]
    result = run(
        path,
        conversion.to_nir_layout(x_steps),
        consumer,
        record,
        batched=not conversion.has_flatten,
        timeout=timeout,
    )
    per_step = conversion.from_nir_layout(graph.output, result["output"])
    spikes = {
        name: conversion.from_nir_layout(
            name, result[f"spikes/{conversion.names[name]}"]
        )
        for name in conversion.neurons
    }
    output = reference.aggregate(
        list(per_step.transpose(1, 0, *range(2, per_step.ndim))),
        graph.aggregate,
    )
    return output, per_step, spikes, result["versions"]
