"""Toolchains of the C runtime: gcc, arm-none-eabi-gcc and QEMU.

`build_host` (gcc, optionally with `-fsanitize=address,undefined`),
`build_cortex_m4` (`arm-none-eabi-gcc`, freestanding, for QEMU's
`mps2-an386` board), `run_host`, `run_qemu`, `size_cortex_m4` and the
QEMU instruction trace behind `count_instructions`. The tools come from
`.ci/install_arm.sh`.
"""

import os
import shutil

from edge.errors import ConsumerError
from edge.errors import ExportError
from edge.errors import run_consumer

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


def _sources(files, name):
    """The model, the runtime support and the program's main, to compile."""
    support = [f for f in ("ksnn_runtime.c", "ksnn_io.c") if f in files]
    return [f"{name}.c", *support, _main_source(files, name)]


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
        *_sources(files, name),
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
        *_sources(files, name),
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


def count_trace(elf, directory, timeout):
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


def model_size_cortex_m4(files, directory):
    """Flash/RAM of the model alone: `<name>.c` and `ksnn_runtime.c`
    compiled for Cortex-M4 (the sum of the two objects; no stack, no
    caller-owned state or scratch)."""
    name = _model_name(files)
    _write(files, directory)
    total = {"flash": 0, "ram": 0}
    for source in (f"{name}.c", "ksnn_runtime.c"):
        if source not in files:
            continue
        obj = source[: -len(".c")] + "_cm4.o"
        _run(
            [_tool(ARM_CC), *ARM_CFLAGS, "-c", "-o", obj, source],
            directory,
            120,
            "The Cortex-M4 C build",
        )
        size = size_cortex_m4(os.path.join(directory, obj))
        total = {key: total[key] + size[key] for key in total}
    return total
