"""Cortex-M4 cost of the C runtime on the quickstart network (QEMU counts).

Trains the quickstart's digits network (`examples/quickstart_digits.py`,
same seed and data split), quantizes it as `edge.export` does (500
calibration images, 16-bit states), and measures what the `c-cortex-m4`
row of the export reports: executed instructions per inference on the
first `--samples` test images, synaptic operations, their ratio, flash
and RAM. `--profile` adds the instructions per C function (from the same
QEMU trace, by program counter). The trained model is cached in
`--cache` (a `.keras` file) so that a rerun after changing the generator
or the quantizer skips training; it is quantized anew on every run.

Run:

    python benchmarks/c_cortex_m4.py --epochs 30 --profile
"""

import argparse
import bisect
import collections
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "examples"), os.path.join(HERE, "..")]


def quantized_quickstart(epochs, seed, timesteps, cache):
    """`(qgraph, x_test)` of the trained quickstart network, quantized now.

    The trained model (not its quantization, which changes with `edge`) is
    cached as `cache` (a `.keras` file) with its data beside it.
    """
    import keras_snn  # noqa: F401  (TensorFlow defaults first)

    # isort: split
    import quickstart_digits as qs

    from edge import fuse
    from edge import ir
    from edge import quantize
    from keras_snn import saving

    data_path = cache + ".npz"
    if os.path.exists(cache) and os.path.exists(data_path):
        model = saving.load_model(cache)
        with np.load(data_path) as data:
            x_train, x_test = data["x_train"], data["x_test"]
    else:
        model, (x_train, x_test, _, _) = qs.train(epochs, timesteps, seed)
        model.save(cache)
        np.savez(data_path, x_train=x_train, x_test=x_test)
    graph = ir.extract(model)
    qgraph = quantize.quantize(fuse.fuse(graph), x_train[:500], 16)
    return qgraph, x_test


def profile(elf, directory):
    """Instructions per function of one QEMU run of `elf` (a Counter)."""
    from edge.targets.c import toolchain

    symbols = subprocess.run(
        ["arm-none-eabi-nm", "-n", "-S", elf],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    starts, names = [], []
    for line in symbols:
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            starts.append(int(parts[0], 16) & ~1)
            names.append(parts[3])
    log = os.path.join(directory, "profile.log")
    subprocess.run(
        toolchain._qemu_command(
            elf, ("-singlestep", "-d", "exec,nochain", "-D", log)
        ),
        capture_output=True,
        check=True,
        timeout=600,
    )
    counts = collections.Counter()
    with open(log, "rb") as f:
        for line in f:
            if not line.startswith(b"Trace "):
                continue
            # "Trace 0: 0x... [00000000/000004c0/...] " : the pc is field 2
            pc = int(line.split(b"[")[1].split(b"/")[1], 16)
            i = bisect.bisect_right(starts, pc) - 1
            counts[names[i] if i >= 0 else "?"] += 1
    os.remove(log)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--cache", default=None, help="trained model (.keras)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--no-inline",
        action="store_true",
        help="profile with -fno-inline (one row per node function)",
    )
    args = parser.parse_args(argv)

    cache = args.cache or os.path.join(
        tempfile.gettempdir(),
        f"ksnn_quickstart_e{args.epochs}_s{args.seed}_t{args.timesteps}.keras",
    )
    qgraph, x_test = quantized_quickstart(
        args.epochs, args.seed, args.timesteps, cache
    )

    from edge.targets import c as c_target
    from edge.targets.c import toolchain
    from edge.targets.c.measure import synaptic_operations
    from edge.targets.c.target import _state_bytes
    from edge.targets.c.target import count_instructions

    x = x_test[: args.samples]
    with tempfile.TemporaryDirectory(prefix="ksnn-bench-") as directory:
        files = c_target.generate(qgraph)
        size = toolchain.model_size_cortex_m4(files, directory)
        instructions = count_instructions(qgraph, x, directory)
        synops = synaptic_operations(qgraph, x)
        print(
            f"quickstart (epochs={args.epochs}, seed={args.seed}, T="
            f"{args.timesteps}), {len(x)} test images:"
        )
        print(f"  instructions/inference {instructions}")
        print(
            f"  synaptic ops/inference {synops['total']:.0f} "
            f"(accumulates {synops['accumulates']:.0f}, "
            f"MACs {synops['macs']:.0f})"
        )
        print(f"  instructions/synop     {instructions / synops['total']:.3f}")
        print(f"  flash_bytes            {size['flash']}")
        print(f"  ram_bytes              {size['ram'] + _state_bytes(files)}")
        if args.profile:
            files = files | c_target.generate_harness(
                qgraph, x, runs=len(x), quiet=True
            )
            if args.no_inline:
                toolchain.ARM_CFLAGS += ("-fno-inline",)
            elf = toolchain.build_cortex_m4(files, directory, "prof.elf")
            counts = profile(elf, directory)
            print("  per inference, by function:")
            for name, count in counts.most_common(25):
                print(f"    {count / len(x):>10.0f}  {name}")


if __name__ == "__main__":
    main()
