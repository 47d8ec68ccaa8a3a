"""C runtime generator (`--targets c`): portable C99 for microcontrollers.

`generate(qgraph)` turns a `QuantizedGraph` into C sources that compute,
bit for bit, what the integer reference `edge.integer` defines. The API is
reentrant, in the style of CMSIS-NN: the caller owns the state and may
provide the scratch memory, and every function returns a `ksnn_status_t`.

- `<name>.h`: the API and the sizes. `<name>_state_t` (the state of one
  instance, owned by the caller: the membrane potentials, and the
  synaptic currents, adaptations and previous spikes of the neuron models
  that have them), `<name>_init(state)` and `<name>_reset(state)` (zero
  every state: call it before each new sample) and
  `<name>_step(state, ctx, input, output)` (one time step: the int8
  input of the step in, NHWC order, the graph's integer per-step output
  out; the caller combines the steps as
  `<NAME>_AGGREGATE` says). `ctx` is a `ksnn_context_t` holding at least
  `<NAME>_SCRATCH_BYTES` of 4-byte aligned scratch, or NULL for a static
  default buffer inside `<name>.c` (define `<NAME>_NO_DEFAULT_SCRATCH` to
  leave it out). Each instance needs its own state; instances that do not
  step at the same moment may share the scratch. Errors:
  `KSNN_ERROR_ARGUMENT` (a NULL pointer), `KSNN_ERROR_SIZE` (scratch too
  small or misaligned). `<NAME>_INPUT_SCALE`/`<NAME>_OUTPUT_SCALE`
  (de)quantize.
- `<name>.c`: the weights, multipliers, shifts and biases as `static const`
  arrays (they stay in flash), the requantization and neuron parameters as
  `static const` parameter structs (`ksnn_requant_params_t`,
  `ksnn_neuron_params_t`), and one function per graph node. No dynamic
  allocation, no library calls, no floating point.
- Fixed files copied from `files/`: `ksnn_runtime.h`/`ksnn_runtime.c`
  (status codes, parameter structs, rounding shift, saturation,
  requantization), `ksnn_io.h`/`ksnn_io.c` (text output of the example),
  `startup_cm4.c` (vector table, semihosting `SYS_WRITE0` output and
  `SYS_EXIT_EXTENDED` exit) and `cm4.ld` (linker script); the `Makefile`
  is filled from `files/Makefile.in` (`make host` builds with `-Wall
  -Wextra -Wpedantic -Werror`; `make arm` for Cortex-M4 under
  `qemu-system-arm -M mps2-an386`). `<name>_main_example.c` runs a sample.

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
multiply-accumulate (gather; zero inputs skipped). Weight rows are padded
to whole words; on Cortex-M4 the row kernels (`ksnn_accumulate_s8`,
`_spikes`) are Thumb-2 assembly with eight accumulators in registers.

The arithmetic of a step is defined once, in `ksnn_runtime.h`
(`ksnn_requantize_one`, `ksnn_neuron_step`, and `ksnn_neuron_model_step`
for the CubaLIF, ALIF, recurrent and per-channel neurons of
`edge.neuron_models`, see `edge.targets.c.neurons`); node functions only
call it.
Where the planner proves them exact from the layer's accumulator bounds,
32-bit forms replace the 64-bit ones (`ksnn_requant_fast`,
`ksnn_neuron_step16`), and a synaptic layer read only by a 16-bit spiking
neuron is requantized by that neuron in the same pass
(`ksnn_requantize_neuron16`).
"""

import os
import re

from edge.targets.c import neurons
from edge.targets.c import toolchain
from edge.targets.c.nodes import NodeWriter
from edge.targets.c.nodes import array
from edge.targets.c.nodes import banner
from edge.targets.c.plan import Plan
from edge.targets.c.plan import model_features

__all__ = ["array", "generate"]

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
# Fixed files copied as they are; the Makefile is filled from Makefile.in.
SUPPORT_FILES = (
    "ksnn_runtime.h",
    "ksnn_runtime.c",
    "ksnn_io.h",
    "ksnn_io.c",
    "startup_cm4.c",
    "cm4.ld",
)
# Sources compiled with every build of a model, besides <name>.c.
RUNTIME_SOURCES = ("ksnn_runtime.c",)


class _Writer(NodeWriter):
    """Builds the C files of a `Plan`."""

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
                if model_features(node):
                    neurons.emit(self, node, buf, state)
                else:
                    self.stateful(node, buf, state)
        return {
            f"{self.name}.h": self.header(),
            f"{self.name}.c": self.source(),
            f"{self.name}_main_example.c": self.example(),
            "Makefile": self.makefile(),
        }

    def sizes(self):
        """`(state, state, scratch)` bytes: `sizeof(<name>_state_t)` (every
        state field, `Plan.state_layout`) and the scratch arena."""
        _, state = self.plan.state_layout()
        scratch = max(self.plan.scratch_bytes, 4)
        return state, state, scratch

    def scratch_buffers(self):
        """Owned buffers, by offset in the scratch arena."""
        owned = [b for b in self.plan.buffers.values() if b.owned]
        return sorted(owned, key=lambda b: (b.offset, b.cname))

    def header(self):
        plan, up, name = self.plan, self.upper, self.name
        graph = plan.graph
        _, state, scratch = self.sizes()
        timesteps = graph.timesteps or 0
        agg = graph.aggregate
        labels = {
            "state": "membrane potentials",
            "current": "synaptic currents",
            "adaptation": "threshold rises (adaptation)",
            "spikes": "spikes of the previous step",
        }
        state_fields = [
            f"    {f.ctype} {f.cname}[{f.size}]; /* {f.node.name} "
            f"{tuple(f.node.shape)}: {labels[f.key.rpartition(':')[2]]} */"
            for f in plan.state_layout()[0]
        ]
        step_doc = [
            "/**",
            " * @brief Runs one time step of one instance.",
            " * @param[in,out] state   The instance's membrane potentials.",
            " * @param[in]     ctx     Scratch of at least "
            f"{up}_SCRATCH_BYTES bytes,",
            " *                        4-byte aligned; NULL: the static "
            "default.",
            f" * @param[in]     input   {up}_INPUT_SIZE int8 values in "
            "[-127, 127], NHWC.",
            f" * @param[out]    output  {up}_OUTPUT_SIZE integer outputs of "
            f"the step (scale {up}_OUTPUT_SCALE).",
            " * @return KSNN_OK, KSNN_ERROR_ARGUMENT for a NULL pointer, or",
            " *         KSNN_ERROR_SIZE for a scratch too small or misaligned.",
            " */",
        ]
        lines = banner(plan, "C API") + [
            f"#ifndef {up}_H_",
            f"#define {up}_H_",
            "",
            "#include <stdint.h>",
            "",
            '#include "ksnn_runtime.h"',
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
            f"/** Bytes of one instance's state (sizeof({name}_state_t)). */",
            f"#define {up}_STATE_BYTES {state}",
            "/** Bytes of scratch (activation buffers) one step needs. */",
            f"#define {up}_SCRATCH_BYTES {scratch}",
            "",
            "/** The state of one instance, all that is kept between steps: "
            "membrane",
            "    potentials, and the synaptic currents, adaptations and "
            "previous spikes",
            "    of the neuron models that have them. */",
            "typedef struct {",
            *(state_fields or ["    int32_t unused;"]),
            f"}} {name}_state_t;",
            "",
            "/**",
            " * @brief Initializes an instance (zeroes its state).",
            " * @return KSNN_OK, or KSNN_ERROR_ARGUMENT for a NULL state.",
            " */",
            f"ksnn_status_t {name}_init({name}_state_t *state);",
            "",
            "/**",
            " * @brief Zeroes every state (potentials, currents, adaptations, "
            "spikes):",
            " *        call before each new sample.",
            " * @return KSNN_OK, or KSNN_ERROR_ARGUMENT for a NULL state.",
            " */",
            f"ksnn_status_t {name}_reset({name}_state_t *state);",
            "",
            *step_doc,
            f"ksnn_status_t {name}_step({name}_state_t *state, "
            "const ksnn_context_t *ctx,",
            f"{' ' * (len(name) + 20)}const int8_t *input, int32_t *output);",
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
        _, _, scratch = self.sizes()
        layout = [
            f"   {b.offset:>7} {b.ctype} [{b.size}] {b.node.name} "
            f"{tuple(b.node.shape)}"
            for b in self.scratch_buffers()
        ]
        out = plan.output
        lines = banner(plan, "Step function") + [
            f'#include "{name}.h"',
            "",
            "#include <stddef.h>",
            "#include <stdint.h>",
            "",
            '#include "ksnn_runtime.h"',
            "",
            f"#define KSNN_STATE_MIN ({plan.sat_min + 1} - 1)",
            f"#define KSNN_STATE_MAX {plan.sat_max}",
            "",
            "/* Activation buffers of one step in the scratch arena "
            "(spikes as uint8_t);",
            "   buffers whose lifetimes do not overlap share bytes.",
            "    offset type [count] node (shape)",
            *layout,
            "*/",
            "",
            "typedef char ksnn_sizes_check[(sizeof("
            f"{name}_state_t) <= {up}_STATE_BYTES) ? 1 : -1];",
            "",
            f"#ifndef {up}_NO_DEFAULT_SCRATCH",
            "/* Static default scratch, used when ctx is NULL: shared by every "
            "instance,",
            "   so steps that use it must not run at the same moment. */",
            f"static int32_t s_default_scratch[{scratch // 4}];",
            "#endif",
            "",
            *self.constants,
            "",
            *self.functions,
            f"ksnn_status_t {name}_init({name}_state_t *state)",
            "{",
            f"    return {name}_reset(state);",
            "}",
            "",
            f"ksnn_status_t {name}_reset({name}_state_t *state)",
            "{",
            "    if (state == NULL) {",
            "        return KSNN_ERROR_ARGUMENT;",
            "    }",
            "    unsigned char *p = (unsigned char *)state;",
            "    for (size_t i = 0; i < sizeof(*state); ++i) {",
            "        p[i] = 0;",
            "    }",
            "    return KSNN_OK;",
            "}",
            "",
            f"ksnn_status_t {name}_step({name}_state_t *state, "
            "const ksnn_context_t *ctx,",
            f"{' ' * (len(name) + 20)}const int8_t *input, int32_t *output)",
            "{",
            "    if (state == NULL || input == NULL || output == NULL) {",
            "        return KSNN_ERROR_ARGUMENT;",
            "    }",
            "    unsigned char *s;",
            "    if (ctx == NULL) {",
            f"#ifndef {up}_NO_DEFAULT_SCRATCH",
            "        s = (unsigned char *)s_default_scratch;",
            "#else",
            "        return KSNN_ERROR_ARGUMENT;",
            "#endif",
            "    } else if (ctx->buf == NULL) {",
            "        return KSNN_ERROR_ARGUMENT;",
            f"    }} else if (ctx->size < {up}_SCRATCH_BYTES ||",
            "               ((uintptr_t)ctx->buf & 3u) != 0u) {",
            "        return KSNN_ERROR_SIZE;",
            "    } else {",
            "        s = (unsigned char *)ctx->buf;",
            "    }",
            "    ksnn_status_t status;",
            *self.calls,
            f"    for (int32_t i = 0; i < {up}_OUTPUT_SIZE; ++i) {{",
            f"        output[i] = (int32_t){out.expr}[i];",
            "    }",
            "    (void)s;",
            "    return KSNN_OK;",
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
            banner(self.plan, "Example program")
            + [
                "/* Runs one sample and prints its scores and class. Put "
                "your sensor data",
                f"   in `input` (quantized with {up}_INPUT_SCALE). On "
                "Cortex-M4 under QEMU,",
                "   build with -DKSNN_SEMIHOSTING and startup_cm4.c (see the "
                "Makefile). */",
                "#include <stdint.h>",
                "",
                '#include "ksnn_io.h"',
                f'#include "{name}.h"',
                "",
                "int main(void)",
                "{",
                f"    static {name}_state_t state; /* one instance */",
                "    /* Caller-provided scratch (NULL would use the static "
                "default). */",
                f"    static int32_t scratch[({up}_SCRATCH_BYTES + 3) / 4];",
                "    const ksnn_context_t ctx = {scratch, "
                "(int32_t)sizeof(scratch)};",
                f"    static int8_t input[{up}_INPUT_SIZE]; "
                "/* all zero here */",
                f"    static int32_t output[{up}_OUTPUT_SIZE];",
                f"    static int64_t score[{up}_OUTPUT_SIZE];",
                f"    static char line[{up}_OUTPUT_SIZE * 24 + 32];",
                f"    if ({name}_init(&state) != KSNN_OK) {{",
                "        return 1;",
                "    }",
                f"    for (int32_t t = 0; t < {steps}; ++t) {{",
                f"        if ({name}_step(&state, &ctx, input, output) != "
                "KSNN_OK) {",
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
                "        p = ksnn_format_int(p, score[i]);",
                "        best = score[i] > score[best] ? i : best;",
                "    }",
                '    for (const char *s = "\\nclass: "; *s; ++s) {',
                "        *p++ = *s;",
                "    }",
                "    p = ksnn_format_int(p, best);",
                "    *p++ = '\\n';",
                "    *p = '\\0';",
                "    ksnn_write(line);",
                "    return 0;",
                "}",
                "",
            ]
        )

    def makefile(self):
        values = {
            "NAME": self.name,
            "GRAPH": self.plan.graph.name,
            "HOST_CFLAGS": " ".join(toolchain.HOST_CFLAGS),
            "ARM_CC": toolchain.ARM_CC,
            "ARM_SIZE": toolchain.ARM_SIZE,
            "ARM_CFLAGS": " ".join(toolchain.ARM_CFLAGS),
            "ARM_LDFLAGS": " ".join(toolchain.ARM_LDFLAGS),
            "QEMU": " ".join([toolchain.QEMU, *toolchain.QEMU_ARGS]),
        }
        return fill(_read("Makefile.in"), values)


def _read(file):
    with open(os.path.join(TEMPLATE_DIR, file), encoding="utf-8") as f:
        return f.read()


def fill(template, values):
    """Replaces every `@NAME@` of `template` with `values["NAME"]`.

    Raises:
        ValueError: a placeholder without a value.
    """

    def value(match):
        if match.group(1) not in values:
            raise ValueError(f"No value for @{match.group(1)}@")
        return str(values[match.group(1)])

    return re.sub(r"@([A-Z_]+)@", value, template)


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
        `<name>_main_example.c`, `Makefile`, and the fixed files
        `ksnn_runtime.h`, `ksnn_runtime.c`, `ksnn_io.h`, `ksnn_io.c`,
        `startup_cm4.c`, `cm4.ld`.

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
    plan = Plan(qgraph, name)
    files = _Writer(plan).build()
    for support in SUPPORT_FILES:
        files[support] = _read(support)
    return files
