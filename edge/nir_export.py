"""NIR export (`--targets nir`): a `nir` graph checked in Norse and snnTorch.

`to_nir(graph)` turns a fused `edge.ir.Graph` into a `nir.NIRGraph` (NIR
1.0, the Neuromorphic Intermediate Representation), `write(nir_graph,
path)` writes it atomically and reads it back, `run(path, x, consumer)`
executes the file in Norse or snnTorch in their own virtual environment
(`.venv-nir`, made by `.ci/install_nir.sh`) through the worker script
`edge/_nir_worker.py`, and `export_target(context)` is the `nir` target of
`edge.export`.

Conventions (those under which Norse 1.1, snnTorch 1.0 and a NumPy
discrete-time reference agree spike for spike):

- Layout: NIR tensors are channels-first without a batch axis: inputs and
  feature maps `(C, H, W)`, convolution kernels `(C_out, C_in, kh, kw)`,
  `Affine` weights `(out, in)`. `Flatten(start_dim=0)` flattens a whole
  `(C, H, W)` map in C-H-W order, so the rows of a dense layer after a
  Keras `Flatten` (H-W-C order) are permuted.
- Time: NIR stores no time step. The file assumes forward Euler with
  `dt = NIR_DT = 1e-4` (what snnTorch hard-codes; pass `dt=1e-4` to
  `norse.torch.from_nir`). Our LIF `u = k v + I` (decay `k`) becomes
  `LIF(tau=dt/(1-k), r=1, v_leak=0, v_threshold=theta (1-k), v_reset=0)`:
  Euler gives `v' = k v + (1-k) I`, the potential scaled by `1-k`, so the
  scaled threshold fires at the same steps. Our IF (`k = 1`) becomes
  `IF(r=1, v_threshold=theta, v_reset=0)`. Parameters are broadcast to the
  layer's shape. The readout (Decoding, Voting, a Dense after the time
  mean) is an `Affine` whose per-step output the caller combines as
  `graph.aggregate` says (the mean over time).
- Average pooling: Norse imports `SumPool2d` but not `AvgPool2d`, so a
  `k x k` average pool is written as `SumPool2d` and its `1/k^2` is folded
  into the next convolution or dense layer (or into the next neuron's
  threshold).
- Threshold: keras_snn fires at `u >= theta`, NIR (and Norse, snnTorch) at
  `v > theta`. The two differ only when the potential equals the
  threshold exactly, a set of measure zero for real-valued weights and
  inputs; the consumers also compute in float32 where the reference uses
  float64, so a potential within rounding of the threshold may fire in one
  and not the other. `export_target` therefore checks that every
  disagreement starts at such a near-tie (see `compare_spikes`).

Refused before anything is written, with an `UnsupportedLayerError` that
names the layer: subtractive ("soft") reset and `reset="none"` (NIR only
resets to `v_reset`), max pooling (no NIR primitive), residual additions,
batch norms that could not be folded (an affine on spikes: Norse and
snnTorch import no `Scale`), the membrane-potential readout (a leaky
integrator: neither importer reads `LI`), "same" padding that TensorFlow
makes asymmetric (PyTorch pads both sides alike), padded average pooling.

Reference: Pedersen et al. 2024, "Neuromorphic intermediate
representation: a unified instruction set for interoperable brain-inspired
computing", Nature Communications 15, 8122.
"""

import dataclasses
import json
import os
import tempfile

import numpy as np

from edge import kernels
from edge import reference
from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from edge.errors import run_consumer
from keras_snn import fileio

__all__ = [
    "CONSUMERS",
    "NIR_DT",
    "NIR_SAMPLES",
    "NIRConversion",
    "compare_spikes",
    "convert",
    "export_target",
    "lif_parameters",
    "nir_python",
    "read_back",
    "run",
    "to_nir",
    "write",
]

NIR_DT = 1e-4
NIR_SAMPLES = 64  # evaluation samples run in each consumer
NIR_TIMEOUT = 600  # seconds per consumer run
NEAR_TIE = 1e-4  # |u - theta| below which float32 and float64 may disagree
CONSUMERS = {"norse": "Norse 1.1", "snntorch": "snnTorch 1.0"}
INSTALL_SCRIPT = ".ci/install_nir.sh"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_nir_worker.py"
)


def _refuse(node, reason):
    return UnsupportedLayerError(
        f"Layer '{node.layer or node.name}' cannot be exported to NIR: {reason}"
    )


def lif_parameters(threshold, decay, shape, gain=1.0, dt=NIR_DT):
    """NIR parameters of a keras_snn LIF/IF neuron layer.

    Args:
        threshold: keras_snn threshold `theta` (fires at `u >= theta`).
        decay: leak factor `k` in [0, 1]; 1 is an IF neuron.
        shape: the layer's NIR shape, `(C, H, W)` or `(n,)`.
        gain: the NIR input current is `gain` times ours (an average pool
            written as a sum pool before the neuron), so the threshold is
            multiplied by it.
        dt: the time step the file assumes.

    Returns:
        `("IF" | "LIF", dict of NumPy arrays of shape `shape`)`: the class
        name and keyword arguments of the `nir` node.

    Example:

    >>> kind, params = lif_parameters(1.0, 0.5, (4,))
    >>> kind, float(params["tau"][0]), float(params["v_threshold"][0])
    ('LIF', 0.0002, 0.5)
    """
    shape = tuple(int(s) for s in shape)

    def full(value):
        return np.full(shape, value, np.float64)

    theta, decay = float(threshold), float(decay)
    if decay == 1.0:
        return "IF", {
            "r": full(1.0),
            "v_threshold": full(theta * gain),
            "v_reset": full(0.0),
        }
    if not 0.0 <= decay < 1.0:
        raise ExportError(f"decay must be in [0, 1]; received {decay}")
    return "LIF", {
        "tau": full(dt / (1.0 - decay)),
        "r": full(1.0),
        "v_leak": full(0.0),
        "v_threshold": full(theta * (1.0 - decay) * gain),
        "v_reset": full(0.0),
    }


@dataclasses.dataclass
class NIRConversion:
    """A `nir.NIRGraph` and how its tensors map to the step graph's.

    Attributes:
        nir_graph: the `nir.NIRGraph`.
        graph: the `edge.ir.Graph` it was made from.
        names: step-graph node name -> NIR node name.
        neurons: step-graph names of the neuron nodes, in order.
        nir_input_shape, nir_output_shape: NIR shapes (channels first).
        has_flatten: the graph has a `Flatten` (run unbatched).
        kinds: step-graph neuron name -> `"LIF"` or `"IF"`.
    """

    nir_graph: object
    graph: object
    names: dict
    neurons: list
    nir_input_shape: tuple
    nir_output_shape: tuple
    has_flatten: bool
    kinds: dict
    _perms: dict = dataclasses.field(default_factory=dict, repr=False)
    _shapes: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_nir_layout(self, x):
        """`(N, T, *keras shape)` input -> `(N, T, *NIR shape)`."""
        x = np.asarray(x)
        if x.ndim == 5:
            return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))
        return x

    def from_nir_layout(self, name, value):
        """`(N, T, *NIR shape)` of step-graph node `name` -> Keras layout."""
        value = np.asarray(value)
        if value.ndim == 5:
            return value.transpose(0, 1, 3, 4, 2)
        perm = self._perms.get(name)
        if perm is not None:
            out = np.empty_like(value)
            out[..., perm] = value
            return out
        return value

    @property
    def consumers(self):
        """The consumers that import this graph faithfully: Norse always;
        snnTorch only without IF neurons (snnTorch 1.0.0 imports `nir.IF`
        as a leaky neuron with subtractive reset)."""
        if any(kind == "IF" for kind in self.kinds.values()):
            return ["norse"]
        return ["norse", "snntorch"]


def _nir_shape(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return (shape[2], shape[0], shape[1])
    return shape


def _conv_padding(node, in_shape):
    if node.params["padding"] == "valid":
        return (0, 0)
    pads = []
    for axis in range(2):
        before, after = kernels.same_padding(
            in_shape[axis],
            node.params["kernel"].shape[axis],
            node.params["strides"][axis],
        )
        if before != after:
            raise _refuse(
                node,
                f"padding='same' pads axis {axis} by ({before}, {after}) "
                "(TensorFlow puts the extra row/column after); NIR Conv2d "
                "and the PyTorch importers pad both sides alike. Use an "
                "odd kernel with strides 1, or padding='valid'.",
            )
        pads.append(before)
    return tuple(pads)


def convert(graph):
    """Converts a fused step graph to NIR, with the layout bookkeeping.

    Args:
        graph: a fused `edge.ir.Graph` (`edge.fuse.fuse`).

    Returns:
        A `NIRConversion`.

    Raises:
        UnsupportedLayerError: a layer NIR (or its importers) cannot
            express; the message names it and says why.
        ExportError: `graph` still has batch norms (not fused).

    Example:

    >>> conversion = edge.nir_export.convert(edge.fuse.fuse(graph))
    >>> conversion.nir_graph.nodes.keys()
    """
    import nir

    nodes, edges = {}, []
    names, perms, gains, shapes, kinds = {}, {}, {}, {}, {}
    neurons = []
    used = {"input", "output"}
    has_flatten = False

    def nir_name(node):
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in node.name)
        name, i = base, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        return name

    first = graph.nodes[0]
    if len(first.shape) not in (1, 3):
        raise _refuse(
            first,
            f"inputs of per-step shape {first.shape}; NIR export takes "
            "flat (features,) or image (H, W, C) inputs",
        )
    names[first.name] = "input"
    shapes[first.name] = _nir_shape(first.shape)
    gains[first.name] = 1.0
    nodes["input"] = nir.Input(input_type=np.array(shapes[first.name]))
    for node in graph.nodes:
        if node.op == "add":
            raise _refuse(
                node,
                "residual additions are not exported: NIR 1.0 has no add "
                "primitive (the sum of several input edges is left to each "
                "importer) and Norse's importer does not sum them",
            )
    for node in graph.nodes[1:]:
        op, p = node.op, node.params
        if op == "batch_norm":
            raise ExportError(
                f"Node '{node.name}' is a batch norm: fuse the graph first "
                "(edge.fuse.fuse)."
            )
        if op == "max_pool":
            raise _refuse(
                node,
                "max pooling has no NIR 1.0 primitive; use "
                "AveragePooling2D (exported as SumPool2d)",
            )
        if op == "affine":
            raise _refuse(
                node,
                "a batch norm that cannot be folded into a convolution or "
                "dense layer (an affine on spikes) is not exported: Norse "
                "and snnTorch do not import NIR Scale",
            )
        if op == "integrator":
            raise _refuse(
                node,
                "the membrane-potential readout (a leaky integrator, NIR "
                "LI) is not imported by Norse or snnTorch; use Decoding or "
                "Voting",
            )
        if op == "neuron" and p["reset"] != "hard":
            raise _refuse(
                node,
                f"reset='{p['reset']}': NIR neurons only reset to v_reset "
                "(no subtractive reset, no reset-free spiking neuron); "
                "train with reset='hard'",
            )
        if len(node.inputs) != 1:
            raise _refuse(node, "nodes with several inputs are not exported")
        source = node.inputs[0]
        in_shape = tuple(graph.node(source).shape)
        perm, gain = perms.get(source), gains[source]
        name = nir_name(node)
        out_perm, out_gain = None, 1.0
        if op == "conv2d":
            kernel = np.asarray(p["kernel"], np.float64) / gain
            nir_node = nir.Conv2d(
                input_shape=np.array(in_shape[:2]),
                weight=kernel.transpose(3, 2, 0, 1).astype(np.float32),
                stride=tuple(int(s) for s in p["strides"]),
                padding=_conv_padding(node, in_shape),
                dilation=(1, 1),
                groups=1,
                bias=np.asarray(p["bias"], np.float32),
            )
        elif op == "dense":
            kernel = np.asarray(p["kernel"], np.float64) / gain
            if perm is not None:
                kernel = kernel[perm]
            nir_node = nir.Affine(
                weight=np.ascontiguousarray(kernel.T).astype(np.float32),
                bias=np.asarray(p["bias"], np.float32),
            )
        elif op == "avg_pool":
            pool, strides = tuple(p["pool_size"]), tuple(p["strides"])
            if p["padding"] != "valid":
                pads = [
                    kernels.same_padding(in_shape[a], pool[a], strides[a])
                    for a in range(2)
                ]
                if any(sum(pad) for pad in pads):
                    raise _refuse(
                        node,
                        "average pooling with padding: TensorFlow averages "
                        "over the real inputs only, and Norse's SumPool2d "
                        "ignores padding; use padding='valid' or sizes "
                        "divisible by the pool",
                    )
            nir_node = nir.SumPool2d(
                kernel_size=np.array(pool),
                stride=np.array(strides),
                padding=np.array([0, 0]),
            )
            out_gain = gain * pool[0] * pool[1]
        elif op == "flatten":
            has_flatten = True
            if len(in_shape) == 3:
                h, w, c = in_shape
                out_perm = np.arange(h * w * c).reshape(h, w, c)
                out_perm = out_perm.transpose(2, 0, 1).ravel()
            else:
                out_perm = perm
            nir_node = nir.Flatten(
                input_type={"input": np.array(_nir_shape(in_shape))},
                start_dim=0,
                end_dim=-1,
            )
            out_gain = gain
        elif op == "neuron":
            kind, params = lif_parameters(
                p["threshold"], p["decay"], _nir_shape(node.shape), gain
            )
            nir_node = getattr(nir, kind)(**params)
            kinds[node.name] = kind
            neurons.append(node.name)
            out_perm = perm
        else:
            raise _refuse(node, f"operation '{op}' has no NIR mapping")
        names[node.name] = name
        perms[node.name], gains[node.name] = out_perm, out_gain
        shapes[node.name] = _nir_shape(node.shape)
        nodes[name] = nir_node
        edges.append((names[source], name))
    for node in graph.nodes[:-1]:
        if node.name != graph.output and not graph.consumers(node.name):
            raise _refuse(node, "its output is not used by the model")
    if gains[graph.output] != 1.0:
        raise _refuse(
            graph.node(graph.output),
            "the model's output is an average pool; add a layer after it",
        )
    out_shape = shapes[graph.output]
    nodes["output"] = nir.Output(output_type=np.array(out_shape))
    edges.append((names[graph.output], "output"))
    nir_graph = nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={
            "producer": "keras-snn",
            "model": graph.name,
            "dt": NIR_DT,
            "integration": "forward Euler",
            "reset": "hard (to v_reset = 0)",
            "layout": "channels first (C, H, W), no batch axis",
            "readout": f"per-step output; {graph.aggregate} over time",
        },
    )
    return NIRConversion(
        nir_graph=nir_graph,
        graph=graph,
        names=names,
        neurons=neurons,
        nir_input_shape=shapes[first.name],
        nir_output_shape=out_shape,
        has_flatten=has_flatten,
        kinds=kinds,
        _perms=perms,
        _shapes=shapes,
    )


def to_nir(graph):
    """Converts a fused step graph to a `nir.NIRGraph`.

    Args:
        graph: a fused `edge.ir.Graph` (`edge.fuse.fuse(edge.ir.extract(
            model))`).

    Returns:
        A `nir.NIRGraph` with nodes `input`, one node per step-graph node
        (Conv2d, Affine, SumPool2d, Flatten, LIF or IF; named after it)
        and `output`. Its per-step output is the readout; average it over
        time as `graph.aggregate` says.

    Raises:
        UnsupportedLayerError: a layer NIR cannot express (see the module
            docstring), named in the message.

    Example:

    >>> import nir
    >>> graph = edge.fuse.fuse(edge.ir.extract(model))
    >>> nir.write("model.nir", edge.nir_export.to_nir(graph))

    Reference: https://neuroir.org/docs/primitives.html
    """
    return convert(graph).nir_graph


def _same(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    try:
        a, b = np.asarray(a), np.asarray(b)
    except Exception:  # noqa: BLE001
        return a == b
    return a.shape == b.shape and bool(np.all(a == b))


def read_back(path, nir_graph):
    """Reads `path` with `nir.read` and checks it equals `nir_graph`.

    Args:
        path: a file written by `nir.write`.
        nir_graph: the `nir.NIRGraph` that was written.

    Returns:
        The graph read back.

    Raises:
        ExportError: the node names, node types, parameters or edges read
            back differ from `nir_graph`.
    """
    import nir

    read = nir.read(path)
    problems = []
    if set(read.nodes) != set(nir_graph.nodes):
        problems.append(
            f"nodes {sorted(read.nodes)} != {sorted(nir_graph.nodes)}"
        )
    for name, node in nir_graph.nodes.items():
        other = read.nodes.get(name)
        if other is None:
            continue
        if type(other) is not type(node):
            problems.append(
                f"{name}: {type(other).__name__} != {type(node).__name__}"
            )
            continue
        for field in dataclasses.fields(node):
            a, b = getattr(node, field.name), getattr(other, field.name)
            if field.name == "metadata":
                continue
            if not _same(a, b):
                problems.append(f"{name}.{field.name} differs")
    if {tuple(e) for e in read.edges} != {tuple(e) for e in nir_graph.edges}:
        problems.append("edges differ")
    if problems:
        raise ExportError(
            f"The NIR file {path} does not read back as written: "
            + "; ".join(problems)
        )
    return read


def write(nir_graph, path):
    """Writes `nir_graph` with `nir.write` atomically and reads it back.

    The file is written to a temporary name in the target folder, read back
    with `nir.read` and compared (`read_back`), then renamed to `path`; on
    failure nothing is left behind.

    Args:
        nir_graph: a `nir.NIRGraph` (`to_nir`).
        path: the `.nir` file to write.

    Returns:
        `path`.

    Raises:
        ExportError: the file does not read back as written.
    """
    import nir

    with fileio.atomic_path(path) as temporary:
        nir.write(temporary, nir_graph)
        read_back(temporary, nir_graph)
    return path


def nir_python():
    """The Python of the NIR environment: `$KERAS_SNN_NIR_PYTHON`, else
    `.venv-nir/bin/python` at the repository root.

    Raises:
        ConsumerError: it does not exist (run `.ci/install_nir.sh`).
    """
    python = os.environ.get("KERAS_SNN_NIR_PYTHON") or os.path.join(
        _ROOT, ".venv-nir", "bin", "python"
    )
    if not os.path.exists(python):
        raise ConsumerError(
            f"The NIR consumers' environment is missing ({python} not "
            f"found). Create it with {INSTALL_SCRIPT} (torch CPU, nir, "
            "nirtorch, snntorch, norse), or set KERAS_SNN_NIR_PYTHON."
        )
    return python


def run(path, x, consumer="norse", record=(), batched=False, timeout=None):
    """Runs a NIR file in Norse or snnTorch (in `.venv-nir`).

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


def _potentials(graph, trace, name, samples):
    """Potentials before reset `u` `(N, T, ...)` from a float trace."""
    node = graph.node(name)
    currents = np.stack(trace[node.inputs[0]], 1)[:samples]
    states = np.stack(trace[f"{name}:state"], 1)[:samples]
    previous = np.concatenate(
        [np.zeros_like(states[:, :1]), states[:, :-1]], axis=1
    )
    return node.params["decay"] * previous + currents


def compare_spikes(graph, trace, spikes, near_tie=NEAR_TIE):
    """Compares a consumer's spikes with the float reference's, per layer.

    A spike flips between float32 (the consumers) and float64 (the
    reference) only if the potential is within rounding of the threshold;
    one flip then changes what follows in that sample. So every sample
    whose spikes differ is checked at its first difference (earliest step,
    then earliest layer): the reference potential there must be within
    `near_tie * max(1, |theta|)` of the threshold.

    Args:
        graph: the fused step graph.
        trace: `edge.reference.run_float(graph, x, record=True)[1]`.
        spikes: step-graph neuron name -> consumer spikes `(n, T, ...)`,
            Keras layout, for the first `n` samples of the trace.
        near_tie: relative distance to the threshold that counts as a tie.

    Returns:
        Dict: `spike_agreement` (fraction of equal (sample, step, neuron)
        spikes over all layers), `per_layer` (name -> fraction),
        `exact_samples` (fraction of samples with all spikes equal),
        `unexplained` (samples whose first difference is not a near-tie,
        with the layer, step and distance).
    """
    names = list(spikes)
    samples = len(spikes[names[0]]) if names else 0
    equal = total = 0
    per_layer = {}
    differs = np.zeros(samples, bool)
    first = [None] * samples
    for order, name in enumerate(names):
        ref = np.stack(trace[name], 1)[:samples]
        got = np.asarray(spikes[name], np.float64)
        if got.shape != ref.shape:
            raise ConsumerError(
                f"Spikes of '{name}' have shape {got.shape}; expected "
                f"{ref.shape}"
            )
        same = got == ref
        equal += int(same.sum())
        total += same.size
        per_layer[name] = float(same.mean())
        bad = ~same.reshape(samples, ref.shape[1], -1)
        for i in np.flatnonzero(bad.any(axis=(1, 2))):
            differs[i] = True
            step = int(np.flatnonzero(bad[i].any(axis=1))[0])
            key = (step, order)
            if first[i] is None or key < first[i][0]:
                first[i] = (key, name, np.flatnonzero(bad[i, step]))
    unexplained = []
    for i in np.flatnonzero(differs):
        (step, _), name, where = first[i]
        u = _potentials(graph, trace, name, samples)[i, step].reshape(-1)
        theta = float(graph.node(name).params["threshold"])
        distance = float(np.max(np.abs(u[where] - theta)))
        if distance > near_tie * max(1.0, abs(theta)):
            unexplained.append(
                {
                    "sample": int(i),
                    "layer": name,
                    "step": step,
                    "distance": distance,
                }
            )
    return {
        "spike_agreement": equal / max(total, 1),
        "per_layer": per_layer,
        "exact_samples": float(1.0 - differs.mean()) if samples else 1.0,
        "unexplained": unexplained,
    }


def export_target(context, samples=NIR_SAMPLES):
    """The `nir` target of `edge.export`: `model.nir`, checked in Norse
    (and snnTorch for graphs without IF neurons).

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
