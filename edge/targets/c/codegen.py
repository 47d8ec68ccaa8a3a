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

from edge.targets.c import toolchain
from edge.targets.c.nodes import NodeWriter
from edge.targets.c.nodes import array
from edge.targets.c.nodes import banner
from edge.targets.c.plan import Plan

__all__ = ["OUTPUT_C", "array", "generate"]

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
SUPPORT_FILES = ("startup_cm4.c", "cm4.ld")

OUTPUT_C = (
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
        lines = banner(plan, "C API") + [
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
        lines = banner(plan, "Step function") + [
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
                f'#include "{name}.h"',
                "",
                *OUTPUT_C,
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
        qemu = " ".join([toolchain.QEMU, *toolchain.QEMU_ARGS])
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
                f"CFLAGS ?= {' '.join(toolchain.HOST_CFLAGS[:-1])}",
                f"ARM_CC = {toolchain.ARM_CC}",
                f"ARM_CFLAGS = {' '.join(toolchain.ARM_CFLAGS)}",
                f"ARM_LDFLAGS = {' '.join(toolchain.ARM_LDFLAGS)}",
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
    plan = Plan(qgraph, name)
    files = _Writer(plan).build()
    for support in SUPPORT_FILES:
        with open(os.path.join(TEMPLATE_DIR, support), encoding="utf-8") as f:
            files[support] = f.read()
    return files
