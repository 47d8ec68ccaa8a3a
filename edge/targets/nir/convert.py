"""The conversion of a fused step graph to a NIR graph (`convert`).

See `edge.targets.nir` for the conventions.
"""

import dataclasses

import numpy as np

from edge import kernels
from edge import neuron_models
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError

__all__ = [
    "CONSUMERS",
    "NIRConversion",
    "NIR_DT",
    "NIR_SAMPLES",
    "convert",
    "cuba_parameters",
    "lif_parameters",
    "to_nir",
]


NIR_DT = 1e-4
NIR_SAMPLES = 64  # evaluation samples run in each consumer
NIR_TIMEOUT = 600  # seconds per consumer run
NEAR_TIE = 1e-4  # |u - theta| below which float32 and float64 may disagree
CONSUMERS = {"norse": "Norse 1.1", "snntorch": "snnTorch 1.0"}
# The neuron features (`edge.neuron_models.FEATURES`) this target has:
# a CubaLIF is a `nir.CubaLIF`; NIR's neuron parameters are per-neuron
# arrays, so a per-channel threshold or decay is broadcast into them.
# A recurrent layer is an `Affine` from the neuron back to itself (Norse
# only). ALIF is refused (`_refuse_models`).
NEURON_FEATURES = ("channel", "current", "recurrent")
INSTALL_SCRIPT = "keras-snn consumers install --targets nir"


def _refuse(node, reason):
    return UnsupportedLayerError(
        f"Layer '{node.layer or node.name}' cannot be exported to NIR: {reason}"
    )


def _full(value, shape):
    """A parameter (a float, or an array in the NIR layout) as an array."""
    return np.array(np.broadcast_to(value, shape), np.float64)


def lif_parameters(threshold, decay, shape, gain=1.0, dt=NIR_DT):
    """NIR parameters of a keras_snn LIF/IF neuron layer.

    Args:
        threshold: keras_snn threshold `theta` (fires at `u >= theta`): a
            float, or an array broadcastable to `shape` (one per neuron,
            in the NIR layout).
        decay: leak factor `k` in [0, 1]; 1 is an IF neuron (a float or an
            array, as `threshold`).
        shape: the layer's NIR shape, `(C, H, W)` or `(n,)`.
        gain: the NIR input current is `gain` times ours (an average pool
            written as a sum pool before the neuron), so the threshold is
            multiplied by it.
        dt: the time step the file assumes.

    Returns:
        `("IF" | "LIF", dict of NumPy arrays of shape `shape`)`: the class
        name and keyword arguments of the `nir` node.

    Raises:
        ExportError: a decay outside [0, 1], or one that is 1 (IF) for
            some neurons of the layer and below 1 for others.

    Example:

    >>> kind, params = lif_parameters(1.0, 0.5, (4,))
    >>> kind, float(params["tau"][0]), float(params["v_threshold"][0])
    ('LIF', 0.0002, 0.5)
    """
    shape = tuple(int(s) for s in shape)
    theta, decay = _full(threshold, shape), _full(decay, shape)
    if np.all(decay == 1.0):
        return "IF", {
            "r": _full(1.0, shape),
            "v_threshold": theta * gain,
            "v_reset": _full(0.0, shape),
        }
    if not np.all((0.0 <= decay) & (decay < 1.0)):
        raise ExportError(
            f"decay must be in [0, 1) for every neuron of a NIR LIF (1 "
            f"only for all of them, an IF); received {np.unique(decay)}"
        )
    return "LIF", {
        "tau": dt / (1.0 - decay),
        "r": _full(1.0, shape),
        "v_leak": _full(0.0, shape),
        "v_threshold": theta * (1.0 - decay) * gain,
        "v_reset": _full(0.0, shape),
    }


def cuba_parameters(
    threshold, decay, current_decay, shape, gain=1.0, dt=NIR_DT
):
    """NIR `CubaLIF` parameters of a keras_snn CubaLIF layer.

    Forward Euler of `nir.CubaLIF` (as Norse 1.1 and snnTorch 1.0 import
    it) is `I' = (1 - dt/tau_syn) I + (dt/tau_syn) w_in S`, then
    `v' = (1 - dt/tau_mem) v + (dt/tau_mem) r I'` (the new current), fire
    at `v' > v_threshold`, reset to `v_reset`. With `tau_syn = dt/(1-a)`,
    `w_in = 1/(1-a)`, `tau_mem = dt/(1-k)`, `r = 1/(1-k)` it is keras_snn's
    `i = a i + I`, `u = k v + i` exactly, and the threshold is `theta`.
    snnTorch reads exactly this form (`r = tau_mem/dt`, `w_in dt/tau_syn =
    1`) as `snn.Synaptic(alpha=a, beta=k)`.

    Args:
        threshold: keras_snn threshold `theta` (float or array, as for
            `lif_parameters`).
        decay: the membrane's leak `k`, in [0, 1) (float or array).
        current_decay: the current's leak `a`, in [0, 1) (float or array).
        shape: the layer's NIR shape.
        gain: as for `lif_parameters`.
        dt: the time step the file assumes.

    Returns:
        `("CubaLIF", dict of NumPy arrays of shape `shape`)`.

    Raises:
        ExportError: `k` or `a` outside [0, 1): with a leak of 1 (no
            decay) a time constant is infinite, which the importers'
            `dt / tau` and `r` cannot hold.

    Example:

    >>> kind, p = cuba_parameters(0.5, 0.75, 0.5, (3,))
    >>> float(p["tau_syn"][0]), float(p["w_in"][0]), float(p["r"][0])
    (0.0002, 2.0, 4.0)
    """
    shape = tuple(int(s) for s in shape)
    k, a = _full(decay, shape), _full(current_decay, shape)
    for name, value in (("decay", k), ("current_decay", a)):
        if not np.all((0.0 <= value) & (value < 1.0)):
            raise ExportError(
                f"A NIR CubaLIF needs {name} in [0, 1): 1 (no leak) is an "
                "infinite time constant that Norse and snnTorch cannot run; "
                f"received {np.unique(value)}"
            )
    return "CubaLIF", {
        "tau_syn": dt / (1.0 - a),
        "tau_mem": dt / (1.0 - k),
        "r": 1.0 / (1.0 - k),
        "v_leak": _full(0.0, shape),
        "v_threshold": _full(threshold, shape) * gain,
        "v_reset": _full(0.0, shape),
        "w_in": 1.0 / (1.0 - a),
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
        kinds: step-graph neuron name -> `"LIF"`, `"IF"` or `"CubaLIF"`.
        varying: step-graph names of the neurons whose parameters differ
            between neurons (per channel or per neuron).
        recurrent: step-graph names of the recurrent neurons (an `Affine`
            from the neuron back to itself).
    """

    nir_graph: object
    graph: object
    names: dict
    neurons: list
    nir_input_shape: tuple
    nir_output_shape: tuple
    has_flatten: bool
    kinds: dict
    varying: tuple = ()
    recurrent: tuple = ()
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
        as a leaky neuron with subtractive reset), without parameters
        that differ between neurons (it asserts one `v_threshold` per
        layer and rescales a LIF by the first `dt / tau` only) and without
        recurrent layers (snnTorch 1.0's `import_from_nir` fails on the
        cycle under nirtorch 2.6: `'GraphModule' object has no attribute
        'items'`)."""
        if self.varying or self.recurrent:
            return ["norse"]
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


def _nir_values(value, shape, perm):
    """A neuron parameter in the NIR layout: a float stays one; an array
    (per channel or per neuron, Keras layout) is broadcast to the node's
    `shape`, made channels-first and put in the NIR order `perm`."""
    if np.ndim(value) == 0:
        return float(value)
    value = np.broadcast_to(np.asarray(value, np.float64), tuple(shape))
    if value.ndim == 3:
        value = value.transpose(2, 0, 1)
    return value if perm is None else value[perm]


def _refuse_models(graph):
    """Refuses the neuron models NIR 1.0 (or its importers) cannot run."""
    for node in graph.nodes:
        if node.op != "neuron":
            continue
        kind = node.params.get("model", "LIF")
        if "adaptation" in node.params:
            raise _refuse(
                node,
                f"an {kind}'s adaptive threshold has no NIR 1.0 primitive "
                "(its neurons have a fixed v_threshold); use LIF or CubaLIF",
            )


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

    >>> conversion = edge.targets.nir.convert(edge.fuse.fuse(graph))
    >>> conversion.nir_graph.nodes.keys()
    """
    _refuse_models(graph)
    neuron_models.require(graph, "nir", NEURON_FEATURES)
    import nir

    nodes, edges = {}, []
    names, perms, gains, shapes, kinds = {}, {}, {}, {}, {}
    varying, recurrent = [], []
    neurons = []
    used = {"input", "output"}
    has_flatten = False

    def nir_name(node):
        text = getattr(node, "name", node)
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
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
            values = {
                key: _nir_values(p[key], node.shape, perm)
                for key in ("threshold", "decay", "current_decay")
                if key in p
            }
            shape = _nir_shape(node.shape)
            try:
                if "current_decay" in values:
                    kind, params = cuba_parameters(
                        **values, shape=shape, gain=gain
                    )
                else:
                    kind, params = lif_parameters(
                        **values, shape=shape, gain=gain
                    )
            except ExportError as error:
                raise _refuse(node, str(error)) from None
            if any(np.ndim(v) for v in values.values()):
                varying.append(node.name)
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
        if op == "neuron" and "recurrent_kernel" in p:
            # o[t-1] @ W_rec: an Affine from the neuron to itself, which
            # Norse runs with one step of delay (the cycle's state).
            loop = nir_name(f"{node.name}_recurrent")
            kernel = np.asarray(p["recurrent_kernel"], np.float64) * gain
            nodes[loop] = nir.Affine(
                weight=np.ascontiguousarray(kernel.T).astype(np.float32),
                bias=np.zeros(len(kernel), np.float32),
            )
            edges += [(name, loop), (loop, name)]
            recurrent.append(node.name)
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
        varying=tuple(varying),
        recurrent=tuple(recurrent),
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
    >>> nir.write("model.nir", edge.targets.nir.to_nir(graph))

    Reference: https://neuroir.org/docs/primitives.html
    """
    return convert(graph).nir_graph
