"""C runtime generator (`--targets c`): portable C99 for microcontrollers.

`generate(qgraph)` turns a `QuantizedGraph` into C sources that compute,
bit for bit, what the integer reference `edge.integer` defines:

- `<name>.h`: the API and the sizes. `<name>_init()`, `<name>_reset()`
  (zero every membrane potential: call it before each new sample) and
  `<name>_step(const int8_t *input, int32_t *output)` (one time step: the
  int8 input of the step in, NHWC order, the graph's integer per-step
  output out; the caller combines the steps as `<NAME>_AGGREGATE` says);
  `<NAME>_INPUT_SCALE`/`<NAME>_OUTPUT_SCALE` (de)quantize.
- `<name>.c`: the weights, multipliers, shifts and biases as `static const`
  arrays (they stay in flash), a static state struct (the membrane
  potentials, `int16_t` for `state_bits <= 16`), static activation
  buffers sized at generation time, and one function per graph node. No
  dynamic allocation, no library calls, no floating point.
- `<name>_main_example.c`, `Makefile` (host build and an `arm-none-eabi`
  Cortex-M4 build run under `qemu-system-arm -M mps2-an386`),
  `startup_cm4.c` (vector table, semihosting `SYS_WRITE0` output and
  `SYS_EXIT_EXTENDED` exit) and `cm4.ld` (linker script).

The arithmetic is `edge.integer`'s: int8 weights and inputs, int32
accumulators, requantization `(acc * m + (1 << (n - 1))) >> n` with a
64-bit product, saturation to `state_bits`, the Q15 decay through the same
rounding shift, `u >= threshold` fires, hard/soft/no reset. The generated
code refuses to compile where `>>` of a negative signed value is not an
arithmetic shift (C99 leaves it implementation-defined; GCC, Clang, IAR and
Arm Compiler shift arithmetically).

Synaptic layers whose input is spikes (0/1) or spike counts (pooled
spikes) are event driven: they loop over the inputs, skip the zeros, and
add the weight row of each input that fired to the accumulators of the
outputs it reaches (scatter), so silent inputs cost no work, as on
neuromorphic hardware. The int8 input layer is an ordinary
multiply-accumulate (gather).

Build and run helpers prove the code on real toolchains: `build_host`
(gcc, optionally with `-fsanitize=address,undefined`), `build_cortex_m4`
(`arm-none-eabi-gcc`), `run_host`, `run_qemu`, `size_cortex_m4` and
`count_instructions`; `generate_harness` writes a test program that embeds
quantized inputs and prints every per-step output. `export_target` is the
`"c"` target of `edge.export`. The tools come from `.ci/install_arm.sh`.
"""

import os
import re
import shutil
import tempfile

import numpy as np

from edge import integer
from edge import reference
from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import UnsupportedLayerError
from edge.errors import run_consumer

__all__ = [
    "SUPPORTED_OPS",
    "build_cortex_m4",
    "build_host",
    "count_instructions",
    "export_target",
    "generate",
    "generate_harness",
    "model_size_cortex_m4",
    "read_outputs",
    "run_c",
    "run_host",
    "run_qemu",
    "size_cortex_m4",
]

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
TEMPLATE_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "files"
)
SUPPORT_FILES = ("startup_cm4.c", "cm4.ld")
HOST_CC = "gcc"
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror")
SANITIZE_CFLAGS = (
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
)
ARM_CC = "arm-none-eabi-gcc"
ARM_SIZE = "arm-none-eabi-size"
ARM_CFLAGS = (
    "-std=c99",
    "-mcpu=cortex-m4",
    "-mthumb",
    "-O2",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-tree-loop-distribute-patterns",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-DKSNN_SEMIHOSTING",
)
ARM_LDFLAGS = ("-nostdlib", "-T", "cm4.ld", "-Wl,--gc-sections")
QEMU = "qemu-system-arm"
QEMU_ARGS = (
    "-M",
    "mps2-an386",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "none",
    "-chardev",
    "stdio,id=sh0",
    "-semihosting-config",
    "enable=on,target=native,chardev=sh0",
)
INSTALL_HINT = "run .ci/install_arm.sh (apt: gcc-arm-none-eabi, " + (
    "libnewlib-arm-none-eabi, binutils-arm-none-eabi, qemu-system-arm)"
)
HOST_SAMPLES = 512  # evaluation samples export_target runs on the host
QEMU_SAMPLES = 64  # ... and under QEMU (TCG emulation is slower)
COUNT_SAMPLES = 4  # inferences averaged by the instruction count

_INT32_MAX = (1 << 31) - 1
_CTYPES = (  # smallest C type first
    ("uint8_t", 0, 255),
    ("int8_t", -128, 127),
    ("int16_t", -(1 << 15), (1 << 15) - 1),
    ("int32_t", -(1 << 31), _INT32_MAX),
)


# -- planning: validate the graph, choose buffers and types ----------------
class _Buffer:
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
        self.expr = expr or f"s_buffers.{cname}"

    @property
    def binary(self):
        return self.lo == 0 and self.hi == 1


# Text output for the example main and the test harness: `ksnn_write`
# (semihosting on the freestanding Cortex-M4 build, stdout on the host) and
# a signed integer printed without printf.
_OUTPUT_C = (
    "#ifdef KSNN_SEMIHOSTING",
    "void ksnn_write(const char *text); /* startup_cm4.c */",
    "#else",
    "#include <stdio.h>",
    "static void ksnn_write(const char *text)",
    "{",
    "    fputs(text, stdout);",
    "}",
    "#endif",
    "",
    "static inline char *format_int(char *p, int64_t value)",
    "{",
    "    char digits[24];",
    "    int count = 0;",
    "    uint64_t magnitude = value < 0 ? 0u - (uint64_t)value "
    ": (uint64_t)value;",
    "    do {",
    "        digits[count++] = (char)('0' + magnitude % 10u);",
    "        magnitude /= 10u;",
    "    } while (magnitude != 0u);",
    "    if (value < 0) {",
    "        *p++ = '-';",
    "    }",
    "    while (count > 0) {",
    "        *p++ = digits[--count];",
    "    }",
    "    return p;",
    "}",
)


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


def _unsupported(node, reason):
    return UnsupportedLayerError(
        f"Node '{node.name}' (layer '{node.layer}', {node.op}) cannot be "
        f"generated as C: {reason}"
    )


def _pads(node, in_shape, kernel_hw):
    """`(top, left)` padding (TensorFlow's "same" rule, as edge.kernels)."""
    from edge import kernels

    p = node.params
    if p.get("padding") not in ("valid", "same"):
        raise _unsupported(node, f"padding {p.get('padding')!r}")
    if p["padding"] == "valid":
        return 0, 0
    return tuple(
        kernels.same_padding(in_shape[i], kernel_hw[i], p["strides"][i])[0]
        for i in (0, 1)
    )


class _Plan:
    """Checks every node and assigns its buffer, before any C is written."""

    def __init__(self, qgraph, name):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ExportError(
                "Argument `name` must be a C identifier. Received: "
                f"name={name!r}"
            )
        graph = qgraph.graph
        self.qgraph, self.graph, self.name = qgraph, graph, name
        self.bits = int(qgraph.state_bits)
        if not 8 <= self.bits <= 32:
            raise ExportError(
                "The C runtime holds states in at most 32 bits. Received: "
                f"state_bits={self.bits}"
            )
        self.sat_min = -(1 << (self.bits - 1))
        self.sat_max = (1 << (self.bits - 1)) - 1
        self.state_ctype = "int16_t" if self.bits <= 16 else "int32_t"
        taken = {"input", "output"}
        self.buffers = {}
        self.states = []  # (node, cname)
        nodes = graph.nodes
        if not nodes or nodes[0].op != "input":
            raise ExportError("The graph must start with its input node.")
        for node in nodes:
            if node.op not in SUPPORTED_OPS:
                raise _unsupported(
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
                    raise _unsupported(node, "a second input")
                self.buffers[node.name] = _Buffer(
                    node, "input", -127, 127, False, expr="input"
                )
                continue
            arity_ok = (
                len(node.inputs) >= 2
                if node.op == "add"
                else (len(node.inputs) == 1)
            )
            if not arity_ok or any(i not in self.buffers for i in node.inputs):
                raise _unsupported(
                    node, f"unexpected inputs {node.inputs} (or out of order)"
                )
            self.buffers[node.name] = self._plan_node(node, taken)
        if graph.output not in self.buffers:
            raise ExportError(f"Unknown output node {graph.output!r}")
        self.output = self.buffers[graph.output]

    def source(self, node, i=0):
        return self.buffers[node.inputs[i]]

    def _plan_node(self, node, taken):
        op, p = node.op, node.params
        src = self.source(node)
        cname = _cname(node.name, taken)
        if op in ("conv2d", "dense", "affine"):
            self._check_synaptic(node, src)
            return _Buffer(
                node, cname, self.sat_min, self.sat_max, False, ctype="int32_t"
            )
        if op == "add":
            shapes = {
                tuple(self.source(node, i).node.shape)
                for i in range(len(node.inputs))
            }
            if len(shapes) != 1 or tuple(node.shape) not in shapes:
                raise _unsupported(node, f"inputs of shapes {sorted(shapes)}")
            return _Buffer(
                node, cname, self.sat_min, self.sat_max, False, ctype="int32_t"
            )
        if op in ("neuron", "integrator"):
            if tuple(src.node.shape) != tuple(node.shape):
                raise _unsupported(node, "input and output shapes differ")
            decay_q = int(p.get("decay_q", -1))
            if not 0 <= decay_q <= 1 << integer.DECAY_BITS:
                raise _unsupported(node, f"decay_q={decay_q} outside Q15")
            if op == "neuron":
                if p.get("reset") not in ("hard", "soft", "none"):
                    raise _unsupported(node, f"reset {p.get('reset')!r}")
                threshold = int(p["threshold_q"])
                if not -_INT32_MAX <= threshold <= _INT32_MAX:
                    raise _unsupported(node, "threshold beyond int32")
            self.states.append((node, cname))
            if op == "integrator":
                return _Buffer(
                    node,
                    cname,
                    self.sat_min,
                    self.sat_max,
                    False,
                    ctype="int32_t",
                )
            return _Buffer(node, cname, 0, 1, True)
        if op in ("avg_pool", "max_pool"):
            if len(src.node.shape) != 3 or len(node.shape) != 3:
                raise _unsupported(node, "pooling needs (H, W, C) inputs")
            _pads(node, src.node.shape, p["pool_size"])
            if op == "avg_pool":
                count = int(np.prod(p["pool_size"]))
                lo, hi = min(src.lo * count, 0), max(src.hi * count, 0)
                if max(-lo, hi) > _INT32_MAX:
                    raise _unsupported(node, "window sums beyond int32")
                return _Buffer(node, cname, lo, hi, src.spiking)
            return _Buffer(node, cname, src.lo, src.hi, src.spiking)
        if op == "flatten":  # NHWC is C order: an alias, no copy
            return _Buffer(
                node,
                src.cname,
                src.lo,
                src.hi,
                src.spiking,
                expr=src.expr,
                ctype=src.ctype,
            )
        raise _unsupported(node, "unknown op")  # pragma: no cover

    def _check_synaptic(self, node, src):
        p = node.params
        for key in ("kernel_q", "multiplier", "shift", "bias_q"):
            if key not in p:
                raise _unsupported(node, f"not quantized (no {key!r})")
        kernel = np.asarray(p["kernel_q"], np.int64)
        channels = int(node.shape[-1])
        if kernel.min(initial=0) < -128 or kernel.max(initial=0) > 127:
            raise _unsupported(node, "weights outside int8")
        shift = np.asarray(p["shift"], np.int64)
        multiplier = np.asarray(p["multiplier"], np.int64)
        bias = np.asarray(p["bias_q"], np.int64)
        for key, values in (("multiplier", multiplier), ("shift", shift)):
            if values.shape != (channels,):
                raise _unsupported(node, f"{key} of shape {values.shape}")
        if bias.shape != (channels,):
            raise _unsupported(node, f"bias_q of shape {bias.shape}")
        if shift.min() < 1 or shift.max() > 62:
            raise _unsupported(node, "requantization shifts outside [1, 62]")
        if multiplier.min() < 0 or multiplier.max() > _INT32_MAX:
            raise _unsupported(node, "multipliers outside [0, 2^31)")
        if np.abs(bias).max() > _INT32_MAX:
            raise _unsupported(node, "biases beyond int32")
        in_shape = tuple(src.node.shape)
        if node.op == "conv2d":
            if len(in_shape) != 3 or kernel.ndim != 4:
                raise _unsupported(node, "conv2d needs (H, W, C) inputs")
            if kernel.shape[2:] != (in_shape[2], channels):
                raise _unsupported(node, f"kernel shape {kernel.shape}")
            _pads(node, in_shape, kernel.shape[:2])
            fan_in = np.abs(kernel).reshape(-1, channels).sum(axis=0)
        elif node.op == "dense":
            if len(in_shape) != 1 or kernel.shape != (in_shape[0], channels):
                raise _unsupported(
                    node, f"kernel {kernel.shape} for input {in_shape}"
                )
            fan_in = np.abs(kernel).sum(axis=0)
        else:
            if kernel.shape != (channels,) or in_shape != tuple(node.shape):
                raise _unsupported(node, f"kernel shape {kernel.shape}")
            fan_in = np.abs(kernel)
        # |acc| <= sum |W| max|x| must hold in int32 (the reference uses
        # int64; the product acc * m then always fits in int64).
        bound = int(fan_in.max(initial=0)) * max(abs(src.lo), abs(src.hi))
        if bound > _INT32_MAX:
            raise _unsupported(
                node,
                f"its accumulator can reach {bound}, beyond int32 (inputs in "
                f"[{src.lo}, {src.hi}]); split the layer",
            )


# -- C text builders --------------------------------------------------------
def _array(ctype, name, values, comment, align=False, per_line=16):
    values = [int(v) for v in np.asarray(values).ravel()]
    rows = [
        "    " + ", ".join(str(v) for v in values[i : i + per_line]) + ","
        for i in range(0, len(values), per_line)
    ]
    attribute = " KSNN_ALIGN" if align else ""
    return [
        f"/* {comment} */",
        f"static const {ctype} {name}[{len(values)}]{attribute} = {{",
        *rows,
        "};",
    ]


def _banner(plan, what):
    return [
        "/* SPDX-License-Identifier: Apache-2.0 */",
        f"/* {what} of '{plan.graph.name}', generated by edge (keras-snn) "
        "from its quantized step graph; do not edit. */",
    ]


class _Writer:
    """Builds the C sources of a `_Plan`."""

    def __init__(self, plan):
        self.plan = plan
        self.name = plan.name
        self.upper = plan.name.upper()
        self.constants = []
        self.functions = []
        self.calls = []

    def const(self, node_cname, kind):
        return f"g_{self.name}_{node_cname}_{kind}"

    # -- per-op emitters ----------------------------------------------------
    def synaptic(self, node, buf):
        plan, p = self.plan, node.params
        src = plan.source(node)
        kernel = np.asarray(p["kernel_q"], np.int64)
        c = buf.cname
        event = src.spiking
        layout = ""
        if node.op == "dense" and not event:
            kernel, layout = kernel.T, " (out, in)"  # rows for the MAC
        elif node.op == "dense":
            layout = " (in, out)"
        elif node.op == "conv2d":
            layout = " (kh, kw, in, out)"
        what = f"{node.name}: {node.op}{layout}"
        self.constants += _array(
            "int8_t", self.const(c, "weights"), kernel, f"{what} weights", True
        )
        self.constants += _array(
            "int32_t",
            self.const(c, "multiplier"),
            p["multiplier"],
            f"{node.name}: requantization multipliers m (Q31)",
        )
        self.constants += _array(
            "int8_t",
            self.const(c, "shift"),
            p["shift"],
            f"{node.name}: requantization shifts n",
        )
        self.constants += _array(
            "int32_t",
            self.const(c, "bias"),
            p["bias_q"],
            f"{node.name}: biases (in the output scale)",
        )
        body = getattr(self, f"_{node.op}_{'events' if event else 'mac'}")(
            node, src, buf
        )
        channels = int(node.shape[-1])
        kind = (
            "event-driven (spiking input)" if event else "multiply-accumulate"
        )
        self.function(
            node,
            f"{node.op} {tuple(src.node.shape)} -> {tuple(node.shape)}, {kind}",
            [f"const {src.ctype} *x", "int32_t *y"],
            body
            + [
                f"    ksnn_requantize(y, {buf.size // channels}, {channels}, "
                f"{self.const(c, 'multiplier')}, {self.const(c, 'shift')}, "
                f"{self.const(c, 'bias')});",
            ],
            [src.expr, buf.expr],
        )

    def _dense_mac(self, node, src, buf):
        n_in, n_out = src.size, buf.size
        w = self.const(buf.cname, "weights")
        return [
            f"    for (int32_t o = 0; o < {n_out}; ++o) {{",
            f"        const int8_t *w = &{w}[o * {n_in}];",
            "        int32_t acc = 0;",
            f"        for (int32_t i = 0; i < {n_in}; ++i) {{",
            "            acc += w[i] * (int32_t)x[i];",
            "        }",
            "        y[o] = acc;",
            "    }",
        ]

    def _dense_events(self, node, src, buf):
        n_in, n_out = src.size, buf.size
        w = self.const(buf.cname, "weights")
        value = [] if src.binary else ["        const int32_t x_i = x[i];"]
        return [
            f"    for (int32_t o = 0; o < {n_out}; ++o) {{",
            "        y[o] = 0;",
            "    }",
            f"    for (int32_t i = 0; i < {n_in}; ++i) {{",
            "        if (x[i] == 0) {",
            "            continue; /* no spike, no work */",
            "        }",
            *value,
            f"        const int8_t *w = &{w}[i * {n_out}];",
            f"        for (int32_t o = 0; o < {n_out}; ++o) {{",
            f"            y[o] += {'w[o]' if src.binary else 'w[o] * x_i'};",
            "        }",
            "    }",
        ]

    def _conv_geometry(self, node, src):
        p = node.params
        kh, kw, ci, co = np.asarray(p["kernel_q"]).shape
        h, w, _ = src.node.shape
        oh, ow, _ = node.shape
        sh, sw = p["strides"]
        pt, pl = _pads(node, src.node.shape, (kh, kw))
        return kh, kw, ci, co, h, w, oh, ow, sh, sw, pt, pl

    def _conv2d_mac(self, node, src, buf):
        kh, kw, ci, co, h, w, oh, ow, sh, sw, pt, pl = self._conv_geometry(
            node, src
        )
        weights = self.const(buf.cname, "weights")
        return [
            f"    for (int32_t oy = 0; oy < {oh}; ++oy) {{",
            f"        for (int32_t ox = 0; ox < {ow}; ++ox) {{",
            f"            int32_t *acc = &y[(oy * {ow} + ox) * {co}];",
            f"            for (int32_t o = 0; o < {co}; ++o) {{",
            "                acc[o] = 0;",
            "            }",
            f"            for (int32_t ky = 0; ky < {kh}; ++ky) {{",
            f"                const int32_t iy = oy * {sh} - {pt} + ky;",
            f"                if (iy < 0 || iy >= {h}) {{",
            "                    continue;",
            "                }",
            f"                for (int32_t kx = 0; kx < {kw}; ++kx) {{",
            f"                    const int32_t ix = ox * {sw} - {pl} + kx;",
            f"                    if (ix < 0 || ix >= {w}) {{",
            "                        continue;",
            "                    }",
            f"                    const {src.ctype} *xp = "
            f"&x[(iy * {w} + ix) * {ci}];",
            f"                    const int8_t *wp = "
            f"&{weights}[(ky * {kw} + kx) * {ci * co}];",
            f"                    for (int32_t c = 0; c < {ci}; ++c) {{",
            "                        const int32_t x_c = xp[c];",
            f"                        for (int32_t o = 0; o < {co}; ++o) {{",
            f"                            acc[o] += wp[c * {co} + o] * x_c;",
            "                        }",
            "                    }",
            "                }",
            "            }",
            "        }",
            "    }",
        ]

    def _conv2d_events(self, node, src, buf):
        kh, kw, ci, co, h, w, oh, ow, sh, sw, pt, pl = self._conv_geometry(
            node, src
        )
        weights = self.const(buf.cname, "weights")
        term = "wp[o]" if src.binary else "wp[o] * x_c"
        return [
            f"    for (int32_t i = 0; i < {buf.size}; ++i) {{",
            "        y[i] = 0;",
            "    }",
            "    /* Scatter: each input that fired adds its weights to every",
            "       output whose window holds it. */",
            f"    for (int32_t iy = 0; iy < {h}; ++iy) {{",
            f"        for (int32_t ix = 0; ix < {w}; ++ix) {{",
            f"            const {src.ctype} *xp = &x[(iy * {w} + ix) * {ci}];",
            f"            for (int32_t c = 0; c < {ci}; ++c) {{",
            "                if (xp[c] == 0) {",
            "                    continue; /* no spike, no work */",
            "                }",
            *(
                []
                if src.binary
                else ["                const int32_t x_c = xp[c];"]
            ),
            f"                for (int32_t ky = 0; ky < {kh}; ++ky) {{",
            f"                    const int32_t ty = iy + {pt} - ky;"
            f" /* = oy * {sh} */",
            f"                    if (ty < 0 || ty % {sh} != 0 || "
            f"ty / {sh} >= {oh}) {{",
            "                        continue;",
            "                    }",
            f"                    for (int32_t kx = 0; kx < {kw}; ++kx) {{",
            f"                        const int32_t tx = ix + {pl} - kx;",
            f"                        if (tx < 0 || tx % {sw} != 0 || "
            f"tx / {sw} >= {ow}) {{",
            "                            continue;",
            "                        }",
            "                        int32_t *acc = "
            f"&y[((ty / {sh}) * {ow} + tx / {sw}) * {co}];",
            "                        const int8_t *wp = "
            f"&{weights}[((ky * {kw} + kx) * {ci} + c) * {co}];",
            f"                        for (int32_t o = 0; o < {co}; ++o) {{",
            f"                            acc[o] += {term};",
            "                        }",
            "                    }",
            "                }",
            "            }",
            "        }",
            "    }",
        ]

    def _affine_any(self, node, src, buf):
        channels = int(node.shape[-1])
        weights = self.const(buf.cname, "weights")
        return [
            f"    for (int32_t i = 0; i < {buf.size // channels}; ++i) {{",
            f"        for (int32_t c = 0; c < {channels}; ++c) {{",
            f"            const int32_t j = i * {channels} + c;",
            f"            y[j] = {weights}[c] * (int32_t)x[j];",
            "        }",
            "    }",
        ]

    _affine_mac = _affine_events = _affine_any

    def pool(self, node, buf):
        p = node.params
        src = self.plan.source(node)
        h, w, channels = src.node.shape
        oh, ow, _ = node.shape
        kh, kw = p["pool_size"]
        sh, sw = p["strides"]
        pt, pl = _pads(node, src.node.shape, (kh, kw))
        if node.op == "avg_pool":
            start, update = "0", "acc += x[j];"
            what = "average pooling as window sums (the 1/k is in the next "
            what += "layer's multiplier)"
        else:
            start, update = "INT32_MIN", "acc = x[j] > acc ? x[j] : acc;"
            what = "max pooling (padded positions never win)"
        body = [
            f"    for (int32_t oy = 0; oy < {oh}; ++oy) {{",
            f"        for (int32_t ox = 0; ox < {ow}; ++ox) {{",
            f"            for (int32_t c = 0; c < {channels}; ++c) {{",
            f"                int32_t acc = {start};",
            f"                for (int32_t ky = 0; ky < {kh}; ++ky) {{",
            f"                    const int32_t iy = oy * {sh} - {pt} + ky;",
            f"                    if (iy < 0 || iy >= {h}) {{",
            "                        continue;",
            "                    }",
            f"                    for (int32_t kx = 0; kx < {kw}; ++kx) {{",
            f"                        const int32_t ix = "
            f"ox * {sw} - {pl} + kx;",
            f"                        if (ix < 0 || ix >= {w}) {{",
            "                            continue;",
            "                        }",
            "                        const int32_t j = "
            f"(iy * {w} + ix) * {channels} + c;",
            f"                        {update}",
            "                    }",
            "                }",
            f"                y[(oy * {ow} + ox) * {channels} + c] = "
            f"({buf.ctype})acc;",
            "            }",
            "        }",
            "    }",
        ]
        self.function(
            node,
            f"{what}, {kh}x{kw} stride {sh}x{sw} padding {p['padding']}",
            [f"const {src.ctype} *x", f"{buf.ctype} *y"],
            body,
            [src.expr, buf.expr],
        )

    def add(self, node, buf):
        plan = self.plan
        sources = [plan.source(node, i) for i in range(len(node.inputs))]
        params = [f"const {s.ctype} *x{i}" for i, s in enumerate(sources)]
        total = " + ".join(f"(int64_t)x{i}[i]" for i in range(len(sources)))
        self.function(
            node,
            "saturating sum of currents in one scale",
            params + ["int32_t *y"],
            [
                f"    for (int32_t i = 0; i < {buf.size}; ++i) {{",
                f"        y[i] = ksnn_saturate({total});",
                "    }",
            ],
            [s.expr for s in sources] + [buf.expr],
        )

    def stateful(self, node, buf, state):
        plan, p = self.plan, node.params
        src = plan.source(node)
        decay_q = int(p["decay_q"])
        if decay_q == 1 << integer.DECAY_BITS:  # exact: rshift_round(v<<15)
            leak = "(int64_t)v[i]"
        elif decay_q == 0:
            leak = "0"
        else:
            leak = (
                f"ksnn_rshift_round((int64_t)v[i] * {decay_q}, "
                f"{integer.DECAY_BITS})"
            )
        decay = f"decay {decay_q}/2^{integer.DECAY_BITS}"
        st = plan.state_ctype
        lines = [
            f"    for (int32_t i = 0; i < {buf.size}; ++i) {{",
            f"        const int64_t u = {leak} + x[i];",
        ]
        if node.op == "integrator":
            lines += [
                f"        v[i] = ({st})ksnn_saturate(u);",
                "        y[i] = v[i];",
                "    }",
            ]
            what = f"leaky integrator (membrane readout), {decay}"
        else:
            threshold, reset = int(p["threshold_q"]), p["reset"]
            new_v = {
                "hard": "fire ? 0 : u",
                "soft": f"fire ? u - {threshold} : u",
                "none": "u",
            }[reset]
            lines += [
                f"        const int fire = u >= {threshold};",
                "        y[i] = (uint8_t)fire;",
                f"        v[i] = ({st})ksnn_saturate({new_v});",
                "    }",
            ]
            what = f"spiking neuron, {decay}, threshold {threshold}, "
            what += f"{reset} reset"
        self.function(
            node,
            what,
            [f"const {src.ctype} *x", f"{st} *v", f"{buf.ctype} *y"],
            lines,
            [src.expr, f"s_state.{state}", buf.expr],
        )

    def function(self, node, what, params, body, args):
        fn = f"node_{self.plan.buffers[node.name].cname}"
        self.functions += [
            f"/* {node.name} (layer '{node.layer}'): {what}. */",
            f"static void {fn}({', '.join(params)})",
            "{",
            *body,
            "}",
            "",
        ]
        self.calls.append(f"    {fn}({', '.join(args)});")

    # -- files ------------------------------------------------------------
    def build(self):
        plan = self.plan
        for node in plan.graph.nodes[1:]:
            buf = plan.buffers[node.name]
            if node.op in ("conv2d", "dense", "affine"):
                self.synaptic(node, buf)
            elif node.op in ("avg_pool", "max_pool"):
                self.pool(node, buf)
            elif node.op == "add":
                self.add(node, buf)
            elif node.op in ("neuron", "integrator"):
                state = dict((n.name, c) for n, c in plan.states)[node.name]
                self.stateful(node, buf, state)
        return {
            f"{self.name}.h": self.header(),
            f"{self.name}.c": self.source(),
            f"{self.name}_main_example.c": self.example(),
            "Makefile": self.makefile(),
        }

    def sizes(self):
        plan = self.plan
        state = sum(plan.buffers[n.name].size for n, _ in plan.states) * (
            2 if plan.state_ctype == "int16_t" else 4
        )
        scratch = sum(
            b.size * int(re.sub(r"\D", "", b.ctype)) // 8
            for b in self.scratch_buffers()
        )
        return state, scratch

    def scratch_buffers(self):
        return [b for b in self.plan.buffers.values() if b.owned]

    def header(self):
        plan, up, name = self.plan, self.upper, self.name
        graph = plan.graph
        state, scratch = self.sizes()
        timesteps = graph.timesteps or 0
        agg = graph.aggregate
        lines = _banner(plan, "C API") + [
            f"#ifndef {up}_H_",
            f"#define {up}_H_",
            "",
            "#include <stdint.h>",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"/** int8 input values per step, {tuple(graph.input_shape)} "
            "in NHWC order. */",
            f"#define {up}_INPUT_SIZE {plan.buffers[graph.nodes[0].name].size}",
            "/** int32 output values per step, "
            f"{tuple(graph.output_shape)}. */",
            f"#define {up}_OUTPUT_SIZE {plan.output.size}",
            "/** Steps per sample of a direct-encoding model (the same input "
            "at every step); 0: the input is a sequence of any length. */",
            f"#define {up}_TIMESTEPS {timesteps}",
            "/** Input quantization: x_q = clamp(round_half_away(x / "
            "scale), -127, 127). */",
            f"#define {up}_INPUT_SCALE {float(plan.qgraph.input_scale)!r}",
            "/** Output dequantization: y = y_q * scale. */",
            f"#define {up}_OUTPUT_SCALE {float(plan.qgraph.output_scale)!r}",
            "/** How the caller combines the per-step outputs: mean over the "
            'steps, the last step, the element-wise max, or the "sequence". */',
            f'#define {up}_AGGREGATE "{agg}"',
            f"#define {up}_AGGREGATE_{agg.upper()} 1",
            "/** Width of currents and membrane potentials. */",
            f"#define {up}_STATE_BITS {plan.bits}",
            f"/** Bytes of membrane state (static, inside {name}.c). */",
            f"#define {up}_STATE_BYTES {state}",
            f"/** Bytes of activation buffers (static, inside {name}.c). */",
            f"#define {up}_SCRATCH_BYTES {scratch}",
            "",
            "/** Status codes. */",
            "typedef enum {",
            f"    {up}_OK = 0,",
            f"    {up}_ERROR_ARGUMENT = -1",
            f"}} {name}_status;",
            "",
            "/**",
            " * @brief Initializes the model (zeroes every state).",
            " */",
            f"void {name}_init(void);",
            "",
            "/**",
            " * @brief Zeroes every membrane potential: call before each new "
            "sample.",
            " */",
            f"void {name}_reset(void);",
            "",
            "/**",
            " * @brief Runs one time step.",
            f" * @param[in]  input   {up}_INPUT_SIZE int8 values in "
            "[-127, 127], NHWC.",
            f" * @param[out] output  {up}_OUTPUT_SIZE integer outputs of the "
            f"step (scale {up}_OUTPUT_SCALE).",
            f" * @return {up}_OK, or {up}_ERROR_ARGUMENT for a NULL pointer.",
            " */",
            f"{name}_status {name}_step(const int8_t *input, int32_t *output);",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {up}_H_ */",
            "",
        ]
        return "\n".join(lines)

    def source(self):
        plan, name, up = self.plan, self.name, self.upper
        state_fields = [
            f"    {plan.state_ctype} {c}[{plan.buffers[n.name].size}]; "
            f"/* {n.name} {tuple(n.shape)} */"
            for n, c in plan.states
        ]
        scratch_fields = [
            f"    {b.ctype} {b.cname}[{b.size}]; /* {b.node.name} "
            f"{tuple(b.node.shape)} */"
            for b in self.scratch_buffers()
        ]
        out = plan.output
        lines = _banner(plan, "Step function") + [
            f'#include "{name}.h"',
            "",
            "#include <stddef.h>",
            "#include <stdint.h>",
            "",
            "#if defined(__GNUC__)",
            "#define KSNN_ALIGN __attribute__((aligned(16)))",
            "#else",
            "#define KSNN_ALIGN",
            "#endif",
            "",
            "/* The rounding shifts need an arithmetic >> on negative signed "
            "values",
            "   (implementation-defined in C99): refuse to compile "
            "otherwise. */",
            "typedef char ksnn_arithmetic_shift_check"
            "[((-5 >> 1) == -3 && (INT64_C(-5) >> 1) == INT64_C(-3)) "
            "? 1 : -1];",
            "",
            f"#define KSNN_STATE_MIN ({plan.sat_min + 1} - 1)",
            f"#define KSNN_STATE_MAX {plan.sat_max}",
            "",
            "/* (z + 2^(n-1)) >> n: divide by 2^n, halves round up "
            "(1 <= n <= 62). */",
            "static inline int64_t ksnn_rshift_round(int64_t z, int n)",
            "{",
            "    return (z + ((int64_t)1 << (n - 1))) >> n;",
            "}",
            "",
            f"/* Clamp to the signed {plan.bits}-bit range of currents and "
            "states. */",
            "static inline int32_t ksnn_saturate(int64_t z)",
            "{",
            "    return (int32_t)(z < KSNN_STATE_MIN ? KSNN_STATE_MIN",
            "                     : z > KSNN_STATE_MAX ? KSNN_STATE_MAX : z);",
            "}",
            "",
            "/* In place: y = saturate(rshift_round(acc * m[c], n[c]) + b[c]),",
            "   with a 64-bit product (|acc| < 2^31, m < 2^31). */",
            "static inline void ksnn_requantize(int32_t *y, int32_t pixels, "
            "int32_t channels,",
            "                                   const int32_t *m, const int8_t "
            "*n, const int32_t *b)",
            "{",
            "    for (int32_t i = 0; i < pixels; ++i) {",
            "        for (int32_t c = 0; c < channels; ++c, ++y) {",
            "            *y = ksnn_saturate(ksnn_rshift_round((int64_t)*y * "
            "m[c], n[c]) + b[c]);",
            "        }",
            "    }",
            "}",
            "",
            *self.constants,
            "",
            "/* Membrane potentials: the only state kept between steps. */",
            "typedef struct {",
            *(state_fields or ["    int32_t unused;"]),
            f"}} {name}_state_t;",
            f"static {name}_state_t s_state;",
            "",
            "/* Activation buffers of one step (spikes as uint8_t). */",
            "static struct {",
            *(scratch_fields or ["    int32_t unused;"]),
            "} s_buffers;",
            "",
            *self.functions,
            f"void {name}_init(void)",
            "{",
            f"    {name}_reset();",
            "}",
            "",
            f"void {name}_reset(void)",
            "{",
            "    unsigned char *p = (unsigned char *)&s_state;",
            "    for (size_t i = 0; i < sizeof(s_state); ++i) {",
            "        p[i] = 0;",
            "    }",
            "}",
            "",
            f"{name}_status {name}_step(const int8_t *input, int32_t *output)",
            "{",
            "    if (input == NULL || output == NULL) {",
            f"        return {up}_ERROR_ARGUMENT;",
            "    }",
            *self.calls,
            f"    for (int32_t i = 0; i < {up}_OUTPUT_SIZE; ++i) {{",
            f"        output[i] = (int32_t){out.expr}[i];",
            "    }",
            f"    return {up}_OK;",
            "}",
            "",
        ]
        return "\n".join(lines)

    def example(self):
        name, up = self.name, self.upper
        graph = self.plan.graph
        steps = graph.timesteps or 8
        agg = graph.aggregate
        combine = {
            "mean": "score[i] += output[i]; /* mean: sum, same argmax */",
            "sequence": "score[i] += output[i]; /* sequence: see each step */",
            "last": "score[i] = output[i];",
            "max": "score[i] = (t == 0 || output[i] > score[i]) ? output[i] "
            ": score[i];",
        }[agg]
        return "\n".join(
            _banner(self.plan, "Example program")
            + [
                "/* Runs one sample and prints its scores and class. Put "
                "your sensor data",
                f"   in `input` (quantized with {up}_INPUT_SCALE). On "
                "Cortex-M4 under QEMU,",
                "   build with -DKSNN_SEMIHOSTING and startup_cm4.c (see the "
                "Makefile). */",
                "#include <stdint.h>",
                "",
                f'#include "{name}.h"',
                "",
                *_OUTPUT_C,
                "",
                "int main(void)",
                "{",
                f"    static int8_t input[{up}_INPUT_SIZE]; "
                "/* all zero here */",
                f"    static int32_t output[{up}_OUTPUT_SIZE];",
                f"    static int64_t score[{up}_OUTPUT_SIZE];",
                f"    static char line[{up}_OUTPUT_SIZE * 24 + 32];",
                f"    {name}_init();",
                f"    {name}_reset();",
                f"    for (int32_t t = 0; t < {steps}; ++t) {{",
                f"        if ({name}_step(input, output) != {up}_OK) {{",
                "            return 1;",
                "        }",
                f"        for (int32_t i = 0; i < {up}_OUTPUT_SIZE; ++i) {{",
                f"            {combine}",
                "        }",
                "    }",
                "    int32_t best = 0;",
                "    char *p = line;",
                '    for (const char *s = "scores:"; *s; ++s) {',
                "        *p++ = *s;",
                "    }",
                f"    for (int32_t i = 0; i < {up}_OUTPUT_SIZE; ++i) {{",
                "        *p++ = ' ';",
                "        p = format_int(p, score[i]);",
                "        best = score[i] > score[best] ? i : best;",
                "    }",
                '    for (const char *s = "\\nclass: "; *s; ++s) {',
                "        *p++ = *s;",
                "    }",
                "    p = format_int(p, best);",
                "    *p++ = '\\n';",
                "    *p = '\\0';",
                "    ksnn_write(line);",
                "    return 0;",
                "}",
                "",
            ]
        )

    def makefile(self):
        name = self.name
        sources = f"{name}.c {name}_main_example.c"
        qemu = " ".join([QEMU, *QEMU_ARGS])
        return "\n".join(
            [
                f"# Builds the C runtime of '{self.plan.graph.name}' "
                "(generated by edge; do not edit).",
                "#   make host      host executable (gcc or clang)",
                "#   make arm       Cortex-M4 ELF (arm-none-eabi-gcc)",
                "#   make run-arm   run it under QEMU (mps2-an386)",
                "# In your own project, add "
                f"{name}.c to the sources and include {name}.h.",
                f"NAME = {name}",
                "CC ?= cc",
                f"CFLAGS ?= {' '.join(HOST_CFLAGS[:-1])}",
                f"ARM_CC = {ARM_CC}",
                f"ARM_CFLAGS = {' '.join(ARM_CFLAGS)}",
                f"ARM_LDFLAGS = {' '.join(ARM_LDFLAGS)}",
                f"QEMU = {qemu}",
                "",
                ".PHONY: all host arm run-host run-arm size clean",
                "all: host arm",
                "host: $(NAME)_example",
                "arm: $(NAME)_example.elf",
                "",
                f"$(NAME)_example: {sources} $(NAME).h",
                f"\t$(CC) $(CFLAGS) -o $@ {sources}",
                "",
                f"$(NAME)_example.elf: {sources} $(NAME).h startup_cm4.c "
                "cm4.ld",
                "\t$(ARM_CC) $(ARM_CFLAGS) $(ARM_LDFLAGS) -o $@ startup_cm4.c "
                f"{sources} -lgcc",
                "",
                "run-host: host",
                "\t./$(NAME)_example",
                "",
                "run-arm: arm",
                "\ttimeout 10 $(QEMU) -kernel $(NAME)_example.elf",
                "",
                "size: arm",
                "\tarm-none-eabi-size $(NAME)_example.elf",
                "",
                "clean:",
                "\trm -f $(NAME)_example $(NAME)_example.elf",
                "",
            ]
        )


def generate(qgraph, name="model"):
    """Generates the C runtime of a quantized graph.

    Every node is checked before any text is produced, so an unsupported
    construct fails with nothing generated.

    Args:
        qgraph: an `edge.quantize.QuantizedGraph`.
        name: C identifier used for the file names, the API prefix
            (`<name>_step`) and the macros (`<NAME>_INPUT_SIZE`). Defaults
            to `"model"`.

    Returns:
        A dict file name -> C text: `<name>.h`, `<name>.c`,
        `<name>_main_example.c`, `Makefile`, `startup_cm4.c`, `cm4.ld`.

    Raises:
        UnsupportedLayerError: a node the C runtime cannot express (an op
            outside `SUPPORTED_OPS`, an unfused batch norm, an accumulator
            that could overflow int32, ...); the message names the node.
        ExportError: `name` is not a C identifier, or `state_bits` > 32.

    Example:

    >>> files = edge.targets.c.generate(qgraph, name="kws")
    >>> sorted(files)[:2]
    ['Makefile', 'cm4.ld']
    """
    plan = _Plan(qgraph, name)
    files = _Writer(plan).build()
    for support in SUPPORT_FILES:
        with open(os.path.join(TEMPLATE_DIR, support), encoding="utf-8") as f:
            files[support] = f.read()
    return files


# -- test harness -----------------------------------------------------------
def _steps_and_inputs(qgraph, x):
    """`(T, x_q)` with the int8 inputs `x_q` of shape `(N, T or 1, size)`."""
    graph = qgraph.graph
    steps, x_at = reference.input_steps(graph, x)
    size = int(np.prod(graph.input_shape))
    if graph.timesteps is not None:
        frames = [x_at(0)]
    else:
        frames = [x_at(t) for t in range(steps)]
    x_q = np.stack(
        [integer.quantize_input(qgraph, f) for f in frames], axis=1
    ).reshape(len(x), len(frames), size)
    return steps, x_q


def generate_harness(qgraph, x, name="model", runs=None, quiet=False):
    """Generates a test program that runs embedded inputs and prints outputs.

    The program runs every sample (reset, then `T` steps) and prints one
    line per step: `y <sample> <step>: <output values>`, then `done`.

    Args:
        qgraph: the `QuantizedGraph` that `generate` was given.
        x: float inputs as for `edge.integer.run_integer` (a few samples);
            they are quantized with the graph's input scale.
        name: the `name` given to `generate`.
        runs: run only the first `runs` samples (for instruction counts).
        quiet: print nothing but `done`.

    Returns:
        A dict with `<name>_harness.c` and `<name>_test_data.h`.

    Example:

    >>> files = generate(qgraph) | generate_harness(qgraph, x_test[:8])
    """
    steps, x_q = _steps_and_inputs(qgraph, x)
    samples = len(x_q) if runs is None else int(runs)
    up = name.upper()
    data = "\n".join(
        [
            "/* Quantized test inputs, generated by edge; do not edit. */",
            "#include <stdint.h>",
            f"#define KSNN_TEST_SAMPLES {samples}",
            f"#define KSNN_TEST_STEPS {steps}",
            f"#define KSNN_TEST_FRAMES {x_q.shape[1]} /* 1: repeated */",
            *_array(
                "int8_t",
                "g_test_inputs",
                x_q,
                f"{x_q.shape} int8 inputs",
                per_line=32,
            ),
            "",
        ]
    )
    harness = "\n".join(
        [
            "/* Test harness generated by edge; do not edit. */",
            "#include <stdint.h>",
            "",
            f'#include "{name}.h"',
            f'#include "{name}_test_data.h"',
            "",
            *_OUTPUT_C,
            "",
            "int main(void)",
            "{",
            f"    static int32_t output[{up}_OUTPUT_SIZE];",
            f"    static char line[{up}_OUTPUT_SIZE * 12 + 40];",
            f"    {name}_init();",
            "    for (int32_t s = 0; s < KSNN_TEST_SAMPLES; ++s) {",
            f"        {name}_reset();",
            "        for (int32_t t = 0; t < KSNN_TEST_STEPS; ++t) {",
            "            const int32_t frame = s * KSNN_TEST_FRAMES + "
            "(KSNN_TEST_FRAMES == 1 ? 0 : t);",
            f"            if ({name}_step(&g_test_inputs[frame * "
            f"{up}_INPUT_SIZE], output) != {up}_OK) {{",
            "                return 2;",
            "            }",
            *(
                []
                if quiet
                else [
                    "            char *p = line;",
                    "            *p++ = 'y';",
                    "            *p++ = ' ';",
                    "            p = format_int(p, s);",
                    "            *p++ = ' ';",
                    "            p = format_int(p, t);",
                    "            *p++ = ':';",
                    f"            for (int32_t i = 0; i < {up}_OUTPUT_SIZE;"
                    " ++i) {",
                    "                *p++ = ' ';",
                    "                p = format_int(p, output[i]);",
                    "            }",
                    "            *p++ = '\\n';",
                    "            *p = '\\0';",
                    "            ksnn_write(line);",
                ]
            ),
            "        }",
            "    }",
            "    (void)line;",
            '    ksnn_write("done\\n");',
            "    return 0;",
            "}",
            "",
        ]
    )
    return {f"{name}_harness.c": harness, f"{name}_test_data.h": data}


def read_outputs(text, qgraph, samples):
    """Parses a harness's printout into raw outputs `(N, T, *out_shape)`.

    Raises:
        ConsumerError: the printout is incomplete or malformed.
    """
    rows = {}
    for line in text.splitlines():
        if line.startswith("y "):
            head, _, values = line[2:].partition(":")
            s, t = (int(v) for v in head.split())
            rows[s, t] = [int(v) for v in values.split()]
    if "done" not in text.split():
        raise ConsumerError(f"The C program did not finish: {text[-500:]!r}")
    steps = 1 + max((t for _, t in rows), default=-1)
    shape = tuple(qgraph.graph.output_shape)
    try:
        raw = np.array(
            [[rows[s, t] for t in range(steps)] for s in range(samples)],
            np.int64,
        )
        return raw.reshape(samples, steps, *shape)
    except (KeyError, ValueError) as error:
        raise ConsumerError(
            f"The C program printed incomplete outputs ({error})"
        ) from None


# -- toolchains -------------------------------------------------------------
def _tool(program):
    path = shutil.which(program)
    if path is None:
        raise ConsumerError(f"{program} is not installed: {INSTALL_HINT}.")
    return path


def _model_name(files):
    names = [
        f[: -len("_main_example.c")]
        for f in files
        if f.endswith("_main_example.c")
    ]
    if len(names) != 1:
        raise ExportError("`files` must come from edge.targets.c.generate")
    return names[0]


def _write(files, directory):
    os.makedirs(directory, exist_ok=True)
    for file, text in files.items():
        with open(os.path.join(directory, file), "w", encoding="utf-8") as f:
            f.write(text)


def _run(command, cwd, timeout, what):
    text = " ".join(map(str, command))
    result = run_consumer(command, f"{what} ({text})", timeout, cwd=cwd)
    if result.returncode != 0:
        raise ConsumerError(
            f"{what} failed with exit status {result.returncode}: "
            f"{text}\n{result.stdout[-2000:]}"
            f"{result.stderr[-4000:]}"
        )
    return result


def _main_source(files, name):
    harness = f"{name}_harness.c"
    return harness if harness in files else f"{name}_main_example.c"


def build_host(files, directory, sanitize=False, output=None, timeout=120):
    """Compiles the model and its harness (or example) with the host gcc.

    Args:
        files: `generate(...)` (plus `generate_harness(...)`) files.
        directory: folder to write the sources and the executable to.
        sanitize: build with `-fsanitize=address,undefined` (every report
            aborts the program).
        output: executable name. Defaults to `<name>_host` (`_asan`).
        timeout: seconds allowed for the compiler.

    Returns:
        The path of the executable.

    Raises:
        ConsumerError: gcc is missing or the build fails (warnings are
            errors).

    Example:

    >>> exe = build_host(generate(qgraph) | generate_harness(qgraph, x), d)
    """
    name = _model_name(files)
    _write(files, directory)
    output = output or f"{name}_{'asan' if sanitize else 'host'}"
    command = [
        _tool(HOST_CC),
        *HOST_CFLAGS,
        *(SANITIZE_CFLAGS if sanitize else ()),
        "-o",
        output,
        f"{name}.c",
        _main_source(files, name),
    ]
    _run(command, directory, timeout, "The host C build")
    return os.path.join(directory, output)


def build_cortex_m4(files, directory, output=None, defines=(), timeout=120):
    """Compiles the model and its harness (or example) for Cortex-M4.

    Freestanding (`-nostdlib`), with `startup_cm4.c` and `cm4.ld`, for
    QEMU's `mps2-an386` board.

    Args:
        files: `generate(...)` (plus `generate_harness(...)`) files.
        directory: folder to write the sources and the ELF to.
        output: ELF name. Defaults to `<name>_cm4.elf`.
        defines: extra `-D` macro definitions.
        timeout: seconds allowed for the compiler.

    Returns:
        The path of the ELF file.

    Raises:
        ConsumerError: `arm-none-eabi-gcc` is missing (see
            `.ci/install_arm.sh`) or the build fails.

    Example:

    >>> elf = build_cortex_m4(files, "build/c")
    """
    name = _model_name(files)
    _write(files, directory)
    output = output or f"{name}_cm4.elf"
    command = [
        _tool(ARM_CC),
        *ARM_CFLAGS,
        *(f"-D{d}" for d in defines),
        *ARM_LDFLAGS,
        "-o",
        output,
        "startup_cm4.c",
        f"{name}.c",
        _main_source(files, name),
        "-lgcc",
    ]
    _run(command, directory, timeout, "The Cortex-M4 C build")
    return os.path.join(directory, output)


def run_host(executable, timeout=60):
    """Runs a host build; returns its standard output.

    Raises:
        ConsumerError: a non-zero exit (a sanitizer report included), a
            sanitizer report on stderr, or a run past `timeout` seconds.
    """
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    result = run_consumer(
        [os.path.abspath(executable)], executable, timeout, env=env
    )
    if (
        result.returncode != 0
        or "runtime error" in result.stderr
        or ("Sanitizer" in result.stderr)
    ):
        raise ConsumerError(
            f"{executable} failed (exit status {result.returncode}): "
            f"{result.stderr[-4000:]}"
        )
    return result.stdout


def _qemu_command(elf, extra=()):
    return [_tool(QEMU), *QEMU_ARGS, *extra, "-kernel", os.path.abspath(elf)]


def run_qemu(elf, timeout=60):
    """Runs a Cortex-M4 ELF under `qemu-system-arm -M mps2-an386`.

    Returns:
        The program's semihosting output (text).

    Raises:
        ConsumerError: QEMU is missing, the program exits with a non-zero
            status (3: a fault), or it runs past `timeout` seconds (a hang).
    """
    return _run(
        _qemu_command(elf), None, timeout, "The Cortex-M4 program under QEMU"
    ).stdout


def size_cortex_m4(path):
    """Flash and RAM of a Cortex-M4 ELF or object file.

    Args:
        path: an ELF or `.o` file built for Cortex-M4.

    Returns:
        `{"flash": text + data, "ram": data + bss}` in bytes, from
        `arm-none-eabi-size` (the stack is not counted).
    """
    result = _run([_tool(ARM_SIZE), path], None, 60, "arm-none-eabi-size")
    text, data, bss = (
        int(v) for v in result.stdout.splitlines()[1].split()[:3]
    )
    return {"flash": text + data, "ram": data + bss}


def _count(elf, directory, timeout):
    log = os.path.join(directory, os.path.basename(elf) + ".exec.log")
    _run(
        _qemu_command(elf, ("-singlestep", "-d", "exec,nochain", "-D", log)),
        None,
        timeout,
        "The instruction count under QEMU",
    )
    count = 0
    with open(log, "rb") as f:
        for line in f:
            count += line.startswith(b"Trace ")
    os.remove(log)
    return count


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
        elf = build_cortex_m4(files, directory, f"{name}_count{runs}.elf")
        counts.append(_count(elf, directory, timeout))
    return int(round((counts[1] - counts[0]) / len(x)))


def run_c(qgraph, x, directory, platform="host", name="model", timeout=120):
    """Generates, builds and runs the C runtime on `x`; raw per-step outputs.

    Args:
        qgraph: the `QuantizedGraph`.
        x: float inputs as for `edge.integer.run_integer`.
        directory: build folder.
        platform: `"host"`, `"host-sanitize"` or `"cortex-m4"` (QEMU).
        name: C name of the model.
        timeout: seconds allowed for the run.

    Returns:
        `(raw, path)`: the integer outputs `(N, T, *output_shape)`, which
        must equal `edge.integer.run_integer(qgraph, x)[1]`, and the
        executable.

    Example:

    >>> raw, _ = run_c(qgraph, x_test[:16], "build/c", "cortex-m4")
    """
    files = generate(qgraph, name) | generate_harness(qgraph, x, name)
    if platform == "cortex-m4":
        path = build_cortex_m4(files, directory)
        text = run_qemu(path, timeout)
    elif platform in ("host", "host-sanitize"):
        path = build_host(files, directory, platform == "host-sanitize")
        text = run_host(path, timeout)
    else:
        raise ValueError(
            "Argument `platform` must be 'host', 'host-sanitize' or "
            f"'cortex-m4'. Received: platform={platform!r}"
        )
    return read_outputs(text, qgraph, len(x)), path


def model_size_cortex_m4(files, directory):
    """Flash/RAM of the model alone (`<name>.c` compiled for Cortex-M4)."""
    name = _model_name(files)
    _write(files, directory)
    obj = f"{name}_cm4.o"
    _run(
        [_tool(ARM_CC), *ARM_CFLAGS, "-c", "-o", obj, f"{name}.c"],
        directory,
        120,
        "The Cortex-M4 C build",
    )
    return size_cortex_m4(os.path.join(directory, obj))


# -- edge.export target ---------------------------------------------------
def _scores(qgraph, raw):
    values = [raw[:, t] * qgraph.output_scale for t in range(raw.shape[1])]
    return reference.aggregate(values, qgraph.graph.aggregate)


def _fraction_equal(a, b):
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


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
        `ram_bytes` (the model's object: code, weights, state, buffers; no
        stack) and `instructions_per_inference`.

    Raises:
        UnsupportedLayerError: a node the C runtime cannot express.
        ConsumerError: a toolchain is missing, a build or run fails, or an
            output differs from the integer reference.
    """
    qgraph = context.qgraph
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
            expected = integer.run_integer(qgraph, x)[1]
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
            scores = _scores(qgraph, raw)
            checks = {"bit_exact": True, "samples": len(x)}
            if platform == "cortex-m4":
                size = model_size_cortex_m4(files, directory)
                checks["flash_bytes"] = size["flash"]
                checks["ram_bytes"] = size["ram"]
                checks["instructions_per_inference"] = count_instructions(
                    qgraph, x[:COUNT_SAMPLES], directory
                )
            rows.append(
                _row(context, target, consumer, scores, labels, len(x), checks)
            )
    for file, text in files.items():
        context.files[f"c/{file}"] = text.encode()
    return rows


def _row(context, target, consumer, scores, labels, n, checks):
    from edge.exporter import ArtefactReport

    ops = sorted({node.op for node in context.qgraph.graph.nodes[1:]})
    return ArtefactReport(
        target,
        consumer,
        path="c/model.c",
        ops=ops,
        accuracy=None
        if labels is None
        else float(np.mean(np.argmax(scores, -1) == labels[:n])),
        agreement=_fraction_equal(scores, context.keras_out[:n]),
        max_abs_diff=float(np.max(np.abs(scores - context.int_out[:n]))),
        checks=checks,
    )
