"""The `"c"` target of `edge.export`: a portable C99 runtime.

Modules, by job:

- `plan`: validates a `QuantizedGraph` and assigns buffers and C types.
- `nodes`, `codegen`: the per-node C functions and the generated files
  (`generate`); `files/` holds the fixed C support code.
- `neurons`: the C of the neuron models of `edge.neuron_models` (CubaLIF,
  ALIF, recurrent synapses, per-channel parameters).
- `harness`: a test program with embedded inputs (`generate_harness`) and
  the parsers of its printout (`read_outputs`, `read_states`).
- `toolchain`: gcc, arm-none-eabi-gcc and QEMU (build, run, size, trace).
- `measure`: synaptic operations per inference (`synaptic_operations`)
  and the model's memory (`memory_bytes`).
- `target`: `export_target` (the `"c"` target), `run_c`,
  `output_scores`, `count_instructions`.
"""

from edge.targets import Requirement
from edge.targets import Target
from edge.targets.c.codegen import generate
from edge.targets.c.harness import generate_harness
from edge.targets.c.harness import read_outputs
from edge.targets.c.harness import read_states
from edge.targets.c.measure import memory_bytes
from edge.targets.c.measure import synaptic_operations
from edge.targets.c.plan import SUPPORTED_OPS
from edge.targets.c.target import count_instructions
from edge.targets.c.target import export_target
from edge.targets.c.target import output_scores
from edge.targets.c.target import run_c
from edge.targets.c.toolchain import build_cortex_m4
from edge.targets.c.toolchain import build_host
from edge.targets.c.toolchain import model_size_cortex_m4
from edge.targets.c.toolchain import run_host
from edge.targets.c.toolchain import run_qemu
from edge.targets.c.toolchain import size_cortex_m4

__all__ = [
    "SUPPORTED_OPS",
    "TARGET",
    "build_cortex_m4",
    "build_host",
    "count_instructions",
    "export_target",
    "generate",
    "generate_harness",
    "memory_bytes",
    "model_size_cortex_m4",
    "output_scores",
    "read_outputs",
    "read_states",
    "run_c",
    "run_host",
    "run_qemu",
    "size_cortex_m4",
    "synaptic_operations",
]

TARGET = Target(
    "c",
    export_target,
    requirements=(
        Requirement.program("gcc", "apt install gcc libc6-dev"),
        Requirement.program("make", "apt install make"),
        Requirement.program(
            "arm-none-eabi-gcc",
            "apt install gcc-arm-none-eabi libnewlib-arm-none-eabi",
        ),
        Requirement.program(
            "arm-none-eabi-size", "apt install binutils-arm-none-eabi"
        ),
        Requirement.program("qemu-system-arm", "apt install qemu-system-arm"),
    ),
    description="c/: the C99 runtime (gcc on the host, QEMU Cortex-M4)",
    integer=True,
)
