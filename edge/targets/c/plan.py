"""Planning of the C runtime: validate the graph, choose buffers and types.

`Plan(qgraph, name)` checks every node of a quantized graph before any C
is written (an unsupported construct fails naming the node, with nothing
generated) and assigns each node its `Buffer`: storage, element type and
value range, spikes as `uint8_t`, currents as `int32_t`, and the fields of
the instance's state (`StateField`): every membrane potential, and the
synaptic currents (CubaLIF), adaptations (ALIF) and previous spikes
(recurrent synapses) of the neuron models of `edge.neuron_models`.
"""

import re

import numpy as np

from edge import neuron_models
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from keras_snn import fixed_point

# The neuron features (`edge.neuron_models.FEATURES`) this target has.
NEURON_FEATURES = ("current", "adaptation", "recurrent", "channel")
SUPPORTED_OPS = (
    "input",
    "conv2d",
    "dense",
    "affine",
    "avg_pool",
    "max_pool",
    "flatten",
    "add",
    "neuron",
    "integrator",
)
_INT32_MAX = fixed_point.INT32_MAX
_CTYPES = (  # smallest C type first
    ("uint8_t", 0, 255),
    ("int8_t", -128, 127),
    ("int16_t", -(1 << 15), (1 << 15) - 1),
    ("int32_t", fixed_point.INT32_MIN, _INT32_MAX),
)


class Buffer:
    """A node's per-step values in C: storage, element type and range."""

    def __init__(self, node, cname, lo, hi, spiking, expr=None, ctype=None):
        self.node = node
        self.cname = cname
        self.lo, self.hi = int(lo), int(hi)
        self.spiking = spiking  # spikes or pooled spike counts
        self.size = int(np.prod(node.shape))
        # Currents are int32: the buffer is also the accumulator.
        self.ctype = ctype or _ctype(self.lo, self.hi)
        self.owned = expr is None  # else an alias (input, flatten)
        self.offset = None  # in the scratch arena, once allocated
        self.expr = expr or f"s->{cname}"

    @property
    def binary(self):
        return self.lo == 0 and self.hi == 1


class StateField:
    """One array of the instance's state struct.

    Attributes:
        node: the neuron or integrator node it belongs to.
        cname: the field's name in `<name>_state_t`.
        ctype: its element type.
        size: its element count (the node's size).
        key: the key of the same values in the integer reference's trace
            (`edge.integer.run_integer(..., record=True)`): `"<node>:state"`
            (the membrane), `":current"`, `":adaptation"` or `":spikes"`.
    """

    def __init__(self, node, cname, ctype, size, key):
        self.node, self.cname, self.ctype = node, cname, ctype
        self.size, self.key = int(size), key

    @property
    def nbytes(self):
        return self.size * _bytes(self.ctype)


def model_features(node):
    """The features of `edge.neuron_models` a neuron node uses (`[]` for
    a LIF/IF neuron with per-layer parameters, and for other nodes)."""
    return neuron_models.features(node) if node.op == "neuron" else []


def param_layout(node, key):
    """How a neuron parameter is stored: `"layer"` (one integer),
    `"channel"` (one per channel, shape `(C,)`) or `"neuron"` (the node's
    shape); `None` for another shape."""
    shape = np.shape(node.params[key])
    if shape == ():
        return "layer"
    if shape == (int(node.shape[-1]),):
        return "channel"
    if shape == tuple(node.shape):
        return "neuron"
    return None


def _bytes(ctype):
    return int(re.sub(r"\D", "", ctype)) // 8


def _clash(a, b):
    """Whether C forbids buffers of these types to share bytes."""
    return a != b and "uint8_t" not in (a, b)


def _ctype(lo, hi):
    for name, low, high in _CTYPES:
        if low <= lo and hi <= high:
            return name
    raise ValueError(f"No C type holds [{lo}, {hi}]")


_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern "
    "float for goto if inline int long register restrict return short signed "
    "sizeof static struct switch typedef union unsigned void volatile while "
    "bool true false".split()
)


def _cname(name, taken):
    base = re.sub(r"\W", "_", name) or "node"
    if base[0].isdigit() or base in _C_KEYWORDS:
        base = "n_" + base
    cname, i = base, 1
    while cname in taken:
        cname, i = f"{base}_{i}", i + 1
    taken.add(cname)
    return cname


def unsupported(node, reason):
    return UnsupportedLayerError(
        f"Node '{node.name}' (layer '{node.layer}', {node.op}) cannot be "
        f"generated as C: {reason}"
    )


def pads(node, in_shape, kernel_hw):
    """`(top, left)` padding (TensorFlow's "same" rule, as edge.kernels)."""
    from edge import kernels

    p = node.params
    if p.get("padding") not in ("valid", "same"):
        raise unsupported(node, f"padding {p.get('padding')!r}")
    if p["padding"] == "valid":
        return 0, 0
    return tuple(
        kernels.same_padding(in_shape[i], kernel_hw[i], p["strides"][i])[0]
        for i in (0, 1)
    )


def fast_requant_exact(bounds, multipliers, shifts, biases):
    """Whether `ksnn_requant_fast` equals `ksnn_requantize_one` on a layer.

    Args:
        bounds: per channel, the largest `|acc|` the layer can produce.
        multipliers, shifts, biases: the channels' requantization.

    Returns:
        True when every channel has `1 <= n <= 30` and
        `(|acc| + |bias|) * m + 2^(n-1) < 2^31` (the sum, its product
        and the rounding term fit int32), the conditions stated in
        `ksnn_runtime.h`.
    """
    channels = zip(bounds, multipliers, shifts, biases, strict=True)
    for bound, m, n, b in channels:
        total = int(bound) + abs(int(b))
        m, n = int(m), int(n)
        if not 1 <= n <= 30 or total * m + (1 << (n - 1)) >= 1 << 31:
            return False
    return True


class Plan:
    """Checks every node and assigns its buffer, before any C is written."""

    def __init__(self, qgraph, name):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ExportError(
                "Argument `name` must be a C identifier. Received: "
                f"name={name!r}"
            )
        graph = qgraph.graph
        neuron_models.require(graph, "c", NEURON_FEATURES)
        self.qgraph, self.graph, self.name = qgraph, graph, name
        self.bits = int(qgraph.state_bits)
        if not 8 <= self.bits <= 32:
            raise ExportError(
                "The C runtime holds states in at most 32 bits. Received: "
                f"state_bits={self.bits}"
            )
        # The range of currents and states: fixed_point.saturate's.
        self.sat_min, self.sat_max = (
            int(v)
            for v in fixed_point.saturate(
                [fixed_point.INT32_MIN, fixed_point.INT32_MAX], self.bits
            )
        )
        self.state_ctype = "int16_t" if self.bits <= 16 else "int32_t"
        taken = {"input", "output"}
        self.buffers = {}
        self.states = []  # (node, cname): the membrane potentials
        self.state_fields = []  # StateField, in node order
        # Recurrent neuron -> the scratch buffer of its accumulators.
        self.recurrent = {}
        # Synaptic node -> whether ksnn_requantize_fast is exact for it.
        self.fast_requant = {}
        nodes = graph.nodes
        if not nodes or nodes[0].op != "input":
            raise ExportError("The graph must start with its input node.")
        for node in nodes:
            if node.op not in SUPPORTED_OPS:
                raise unsupported(
                    node,
                    f"the C runtime supports the ops {SUPPORTED_OPS}"
                    + (
                        " (fold batch norms with edge.fuse.fuse first)"
                        if node.op == "batch_norm"
                        else ""
                    ),
                )
            if node.op == "input":
                if node is not nodes[0]:
                    raise unsupported(node, "a second input")
                self.buffers[node.name] = Buffer(
                    node, "input", -127, 127, False, expr="input"
                )
                continue
            arity_ok = (
                len(node.inputs) >= 2
                if node.op == "add"
                else (len(node.inputs) == 1)
            )
            if not arity_ok or any(i not in self.buffers for i in node.inputs):
                raise unsupported(
                    node, f"unexpected inputs {node.inputs} (or out of order)"
                )
            self.buffers[node.name] = self._plan_node(node, taken)
        if graph.output not in self.buffers:
            raise ExportError(f"Unknown output node {graph.output!r}")
        self.output = self.buffers[graph.output]
        self.requant_in_neuron = self._fusions()
        self.scratch_bytes = self._allocate()

    def narrow_neuron(self, node):
        """Whether `ksnn_neuron_step16` is exact for a neuron/integrator:
        16-bit states and inputs below 2^30 (`|v * decay_q| <= 2^30`)."""
        src = self.source(node)
        return self.bits <= 16 and max(abs(src.lo), abs(src.hi)) < 1 << 30

    def _fusions(self):
        """Synaptic node name -> the neuron that requantizes its output.

        Where a synaptic layer's only reader is a spiking neuron with
        16-bit states and its requantization is `ksnn_requant_fast`, the
        neuron requantizes each accumulator as it reads it
        (`ksnn_requantize_neuron16`): one pass instead of two.
        """
        readers = {}
        for node in self.graph.nodes:
            for name in node.inputs:
                readers.setdefault(name, []).append(node)
        fused = {}
        for node in self.graph.nodes:
            if (
                node.op != "neuron"
                or model_features(node)
                or not self.narrow_neuron(node)
            ):
                continue
            name = node.inputs[0]
            if (
                self.fast_requant.get(name)
                and readers[name] == [node]
                and name != self.graph.output
            ):
                fused[name] = node
        return fused

    def _allocate(self):
        """Places the owned buffers in one scratch arena; returns its bytes.

        A buffer lives from the node that writes it to the last node that
        reads it (the graph's output to the end of the step); the
        accumulators of recurrent synapses live within their node. Buffers whose
        lifetimes do not overlap share bytes (first fit, in node order), so
        a node never writes over one of its own inputs. int16 and int32
        buffers never share bytes (C's aliasing rules; uint8_t, a character
        type, may share with both).
        """
        nodes = self.graph.nodes
        owner, first, last = {}, {}, {}
        for j, node in enumerate(nodes):
            buf = self.buffers[node.name]
            if buf.owned:
                owner[node.name] = buf
                first[buf.cname] = last[buf.cname] = j
            elif node.op == "flatten":
                owner[node.name] = owner.get(node.inputs[0])
            if node.name in self.recurrent:  # used within the node only
                extra = self.recurrent[node.name]
                first[extra.cname] = last[extra.cname] = j
            for name in node.inputs:
                if owner.get(name) is not None:
                    last[owner[name].cname] = j
        if owner.get(self.graph.output) is not None:
            last[owner[self.graph.output].cname] = len(nodes)
        placed = []  # (offset, end, buffer)
        owned = []
        for node in nodes:
            if self.buffers[node.name].owned:
                owned.append(self.buffers[node.name])
            if node.name in self.recurrent:
                owned.append(self.recurrent[node.name])
        for buf in owned:
            size = -(-buf.size * _bytes(buf.ctype) // 4) * 4
            taken = sorted(
                (o, e)
                for o, e, other in placed
                if _clash(other.ctype, buf.ctype)
                or not (
                    last[other.cname] < first[buf.cname]
                    or first[other.cname] > last[buf.cname]
                )
            )
            offset = 0
            for o, e in taken:
                if offset + size <= o:
                    break
                offset = max(offset, e)
            buf.offset = offset
            placed.append((offset, offset + size, buf))
        for name, buf in self.buffers.items():
            home = owner.get(name)
            if home is not None:
                buf.offset = home.offset
                buf.expr = f"(({buf.ctype} *)(void *)&s[{home.offset}])"
        for buf in self.recurrent.values():
            buf.expr = f"(({buf.ctype} *)(void *)&s[{buf.offset}])"
        return max((e for _, e, _ in placed), default=0)

    def source(self, node, i=0):
        return self.buffers[node.inputs[i]]

    def _plan_node(self, node, taken):
        op, p = node.op, node.params
        src = self.source(node)
        cname = _cname(node.name, taken)
        if op in ("conv2d", "dense", "affine"):
            self._check_synaptic(node, src)
            return Buffer(
                node, cname, self.sat_min, self.sat_max, False, ctype="int32_t"
            )
        if op == "add":
            shapes = {
                tuple(self.source(node, i).node.shape)
                for i in range(len(node.inputs))
            }
            if len(shapes) != 1 or tuple(node.shape) not in shapes:
                raise unsupported(node, f"inputs of shapes {sorted(shapes)}")
            return Buffer(
                node, cname, self.sat_min, self.sat_max, False, ctype="int32_t"
            )
        if op in ("neuron", "integrator"):
            if tuple(src.node.shape) != tuple(node.shape):
                raise unsupported(node, "input and output shapes differ")
            if model_features(node):
                return self._plan_model(node, cname, taken)
            if np.ndim(p.get("decay_q", -1)) != 0:
                raise unsupported(
                    node,
                    "a decay per channel or per neuron (the C "
                    "runtime's leaky integrator has one per layer)",
                )
            decay_q = int(p.get("decay_q", -1))
            if not 0 <= decay_q <= 1 << fixed_point.DECAY_BITS:
                raise unsupported(node, f"decay_q={decay_q} outside Q15")
            if op == "neuron":
                if p.get("reset") not in ("hard", "soft", "none"):
                    raise unsupported(node, f"reset {p.get('reset')!r}")
                threshold = int(p["threshold_q"])
                if not -_INT32_MAX <= threshold <= _INT32_MAX:
                    raise unsupported(node, "threshold beyond int32")
            self.states.append((node, cname))
            self.state_fields.append(
                StateField(
                    node,
                    cname,
                    self.state_ctype,
                    np.prod(node.shape),
                    f"{node.name}:state",
                )
            )
            if op == "integrator":
                return Buffer(
                    node,
                    cname,
                    self.sat_min,
                    self.sat_max,
                    False,
                    ctype="int32_t",
                )
            return Buffer(node, cname, 0, 1, True)
        if op in ("avg_pool", "max_pool"):
            if len(src.node.shape) != 3 or len(node.shape) != 3:
                raise unsupported(node, "pooling needs (H, W, C) inputs")
            pads(node, src.node.shape, p["pool_size"])
            if op == "avg_pool":
                count = int(np.prod(p["pool_size"]))
                lo, hi = min(src.lo * count, 0), max(src.hi * count, 0)
                if max(-lo, hi) > _INT32_MAX:
                    raise unsupported(node, "window sums beyond int32")
                return Buffer(node, cname, lo, hi, src.spiking)
            return Buffer(node, cname, src.lo, src.hi, src.spiking)
        if op == "flatten":  # NHWC is C order: an alias, no copy
            return Buffer(
                node,
                src.cname,
                src.lo,
                src.hi,
                src.spiking,
                expr=src.expr,
                ctype=src.ctype,
            )
        raise unsupported(node, "unknown op")  # pragma: no cover

    def state_layout(self):
        """`(fields, bytes)`: the state struct's fields in declaration
        order (the wide ones first, so that C inserts no padding between
        them) and its `sizeof` (rounded up to its widest member)."""
        fields = sorted(self.state_fields, key=lambda f: -_bytes(f.ctype))
        if not fields:
            return [], 4  # int32_t unused
        total = sum(f.nbytes for f in fields)
        align = _bytes(fields[0].ctype)
        return fields, -(-total // align) * align

    def _plan_model(self, node, cname, taken):
        """A neuron with features of `edge.neuron_models`: its checks, its
        state fields and, with recurrent synapses, its accumulators."""
        p = node.params
        self._check_model(node)
        self.states.append((node, cname))
        size, st = int(np.prod(node.shape)), self.state_ctype
        fields = [StateField(node, cname, st, size, f"{node.name}:state")]
        for key, label in (
            ("current_decay_q", "current"),
            ("adaptation_step_q", "adaptation"),
        ):
            if key in p:
                field = _cname(f"{cname}_{label}", taken)
                fields.append(
                    StateField(node, field, st, size, f"{node.name}:{label}")
                )
        self.state_fields += fields
        if "recurrent_kernel_q" not in p:
            return Buffer(node, cname, 0, 1, True)
        # The spikes are a state (the next step's recurrent input): the
        # node writes them there, and its readers read them there.
        spikes = StateField(
            node,
            _cname(f"{cname}_spikes", taken),
            "uint8_t",
            size,
            f"{node.name}:spikes",
        )
        self.state_fields.append(spikes)
        bound = 127 * size
        self.recurrent[node.name] = Buffer(
            node,
            _cname(f"{cname}_recurrent", taken),
            -bound,
            bound,
            False,
            ctype="int32_t",
        )
        return Buffer(node, cname, 0, 1, True, expr=f"state->{spikes.cname}")

    def _check_model(self, node):
        p = node.params
        if p.get("reset") not in ("hard", "soft", "none"):
            raise unsupported(node, f"reset {p.get('reset')!r}")
        q15 = 1 << fixed_point.DECAY_BITS
        channels = int(node.shape[-1])
        for key, lo, hi in (
            ("decay_q", 0, q15),
            ("threshold_q", -_INT32_MAX, _INT32_MAX),
            ("current_decay_q", 0, q15),
        ):
            if key not in p:
                continue
            if param_layout(node, key) is None:
                raise unsupported(
                    node,
                    f"{key} of shape {np.shape(p[key])}: one per layer, "
                    f"per channel {(channels,)} or per neuron "
                    f"{tuple(node.shape)}",
                )
            values = np.asarray(p[key], np.int64)
            if values.min() < lo or values.max() > hi:
                raise unsupported(node, f"{key} outside [{lo}, {hi}]")
        if "adaptation_step_q" in p:
            rho, step = p["adaptation_decay_q"], p["adaptation_step_q"]
            if np.ndim(rho) or np.ndim(step):
                raise unsupported(node, "an adaptation per channel or neuron")
            if not 0 <= int(rho) <= q15 or not 0 <= int(step) <= _INT32_MAX:
                raise unsupported(
                    node, f"adaptation decay {rho} or step {step} out of range"
                )
            # theta = threshold + a, with a in the state's range, in int32.
            threshold = np.asarray(p["threshold_q"], np.int64)
            if (
                threshold.max() + self.sat_max > _INT32_MAX
                or threshold.min() + self.sat_min < fixed_point.INT32_MIN
            ):
                raise unsupported(node, "an adaptive threshold beyond int32")
        if "recurrent_kernel_q" in p:
            self._check_recurrent(node)

    def _check_recurrent(self, node):
        p = node.params
        units = int(node.shape[-1])
        if len(node.shape) != 1:
            raise unsupported(
                node,
                f"recurrent synapses on a node of shape {tuple(node.shape)}"
                " (dense layers only)",
            )
        kernel = np.asarray(p["recurrent_kernel_q"], np.int64)
        if kernel.shape != (units, units):
            raise unsupported(node, f"recurrent kernel {kernel.shape}")
        if kernel.min(initial=0) < -128 or kernel.max(initial=0) > 127:
            raise unsupported(node, "recurrent weights outside int8")
        multiplier = np.asarray(p["recurrent_multiplier"], np.int64)
        shift = np.asarray(p["recurrent_shift"], np.int64)
        if multiplier.shape != (units,) or shift.shape != (units,):
            raise unsupported(node, "recurrent requantization shapes")
        if multiplier.min() < 0 or multiplier.max() > _INT32_MAX:
            raise unsupported(node, "recurrent multipliers outside [0, 2^31)")
        if shift.min() < 1 or shift.max() > 62:
            raise unsupported(node, "recurrent shifts outside [1, 62]")

    def _check_synaptic(self, node, src):
        p = node.params
        for key in ("kernel_q", "multiplier", "shift", "bias_q"):
            if key not in p:
                raise unsupported(node, f"not quantized (no {key!r})")
        kernel = np.asarray(p["kernel_q"], np.int64)
        channels = int(node.shape[-1])
        if kernel.min(initial=0) < -128 or kernel.max(initial=0) > 127:
            raise unsupported(node, "weights outside int8")
        shift = np.asarray(p["shift"], np.int64)
        multiplier = np.asarray(p["multiplier"], np.int64)
        bias = np.asarray(p["bias_q"], np.int64)
        for key, values in (("multiplier", multiplier), ("shift", shift)):
            if values.shape != (channels,):
                raise unsupported(node, f"{key} of shape {values.shape}")
        if bias.shape != (channels,):
            raise unsupported(node, f"bias_q of shape {bias.shape}")
        if shift.min() < 1 or shift.max() > 62:
            raise unsupported(node, "requantization shifts outside [1, 62]")
        if multiplier.min() < 0 or multiplier.max() > _INT32_MAX:
            raise unsupported(node, "multipliers outside [0, 2^31)")
        if np.abs(bias).max() > _INT32_MAX:
            raise unsupported(node, "biases beyond int32")
        in_shape = tuple(src.node.shape)
        if node.op == "conv2d":
            if len(in_shape) != 3 or kernel.ndim != 4:
                raise unsupported(node, "conv2d needs (H, W, C) inputs")
            if kernel.shape[2:] != (in_shape[2], channels):
                raise unsupported(node, f"kernel shape {kernel.shape}")
            pads(node, in_shape, kernel.shape[:2])
            fan_in = np.abs(kernel).reshape(-1, channels).sum(axis=0)
        elif node.op == "dense":
            if len(in_shape) != 1 or kernel.shape != (in_shape[0], channels):
                raise unsupported(
                    node, f"kernel {kernel.shape} for input {in_shape}"
                )
            fan_in = np.abs(kernel).sum(axis=0)
        else:
            if kernel.shape != (channels,) or in_shape != tuple(node.shape):
                raise unsupported(node, f"kernel shape {kernel.shape}")
            fan_in = np.abs(kernel)
        # |acc| <= sum |W| max|x| must hold in int32 (the reference uses
        # int64; the product acc * m then always fits in int64).
        x_max = max(abs(src.lo), abs(src.hi))
        bound = int(fan_in.max(initial=0)) * x_max
        self.fast_requant[node.name] = fast_requant_exact(
            [int(f) * x_max for f in fan_in], multiplier, shift, bias
        )
        if bound > _INT32_MAX:
            raise unsupported(
                node,
                f"its accumulator can reach {bound}, beyond int32 (inputs in "
                f"[{src.lo}, {src.hi}]); split the layer",
            )
