"""The `"c"` target of `edge.export`: a portable C99 runtime.

See `edge.targets.c.codegen` for the generated API and its arithmetic.
"""

from edge.targets.c.codegen import SUPPORTED_OPS
from edge.targets.c.codegen import build_cortex_m4
from edge.targets.c.codegen import build_host
from edge.targets.c.codegen import count_instructions
from edge.targets.c.codegen import export_target
from edge.targets.c.codegen import generate
from edge.targets.c.codegen import generate_harness
from edge.targets.c.codegen import model_size_cortex_m4
from edge.targets.c.codegen import read_outputs
from edge.targets.c.codegen import run_c
from edge.targets.c.codegen import run_host
from edge.targets.c.codegen import run_qemu
from edge.targets.c.codegen import size_cortex_m4

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
