"""Timing and reporting shared by benchmarks/peers.py and the peer scripts.

Imports no framework, so the keras-snn side and the PyTorch peers (which
run in their own virtual environment) use the same code to time a step and
to turn the times into the result line that `peers.py` collects.
"""

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

RESULT_PREFIX = "PEER_RESULT "
# Arithmetic of a peer's forward pass (`measure_torch`).
PRECISIONS = ("float32", "bfloat16")
# The workloads: the input of one sample, (channels, height, width).
WORKLOADS = {"conv-small": (1, 28, 28), "resnet19": (3, 32, 32)}
# ResNet-19 of Zheng et al. 2021 (Table 4), as keras_snn.models builds it:
# conv1 3x3 with 128 channels - tdBN - LIF, then stages of basic blocks
# (channels, blocks, stride of the first block), 2x2 average pooling, a
# 256-neuron spiking FC layer and the 10-class decoding layer.
RESNET19 = {
    "conv1": 128,
    "stages": ((128, 3, 1), (256, 3, 2), (512, 2, 2)),
    "fc": 256,
    "classes": 10,
}
SHORTCUT_ALPHA = 2**-0.5  # tdBN's alpha before each block's addition


def timed(fn, warmup, repeats):
    """Calls `fn` `warmup` times, then times `repeats` calls.

    Returns:
        `(wall_seconds, cpu_seconds, last_value)`: lists of per-call times
        and the value of the last call (`fn` must return only after the
        step has finished, e.g. by returning a NumPy value).
    """
    value = None
    for _ in range(warmup):
        value = fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu, value


def peak_rss_mb():
    """The process's peak resident memory so far, in MB (`ru_maxrss`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summary(
    library,
    version,
    threads,
    batch,
    infer_batch,
    train,
    infer,
    loss,
    train_peak_mb=None,
):
    """The result of one library at one T: throughputs and peak memory.

    Throughput is the batch over the median step time (wall clock), and
    also from CPU time, `batch / (median CPU seconds per step / threads)`:
    what the step would reach with its threads fully busy, which varies less
    on a loaded machine.

    Args:
        library, version: names for the table.
        threads: the number of compute threads used.
        batch, infer_batch: training and inference batch sizes.
        train, infer: `(wall_seconds, cpu_seconds)` lists from `timed`.
        loss: the last training loss (a sanity check).
        train_peak_mb: `peak_rss_mb()` after the training steps, before
            inference (`train_peak_rss_mb`; the peak after both is
            `peak_rss_mb`).
    """
    (train_times, train_cpu), (infer_times, infer_cpu) = train, infer
    median = statistics.median
    return {
        "library": library,
        "version": version,
        "threads": threads,
        "train_samples_per_s": batch / median(train_times),
        "infer_samples_per_s": infer_batch / median(infer_times),
        "train_cpu_samples_per_s": batch * threads / median(train_cpu),
        "infer_cpu_samples_per_s": infer_batch * threads / median(infer_cpu),
        "train_step_s": train_times,
        "infer_step_s": infer_times,
        "peak_rss_mb": peak_rss_mb(),
        "train_peak_rss_mb": train_peak_mb,
        "loss": float(loss),
    }


def measure_steps(
    library, version, threads, batch, infer_batch, steps, warmup, repeats
):
    """Times a peer's training and inference steps; returns `summary`.

    Args:
        library, version, threads, batch, infer_batch: as in `summary`.
        steps: `(train_mode, train_step, eval_mode, infer_step)`: functions
            of no argument; the modes switch the network (e.g. `net.train`)
            before the steps are timed; the train step returns the loss.
        warmup, repeats: as in `timed`.
    """
    train_mode, train_step, eval_mode, infer_step = steps
    train_mode()
    train_times, train_cpu, loss = timed(train_step, warmup, repeats)
    train_peak = peak_rss_mb()
    eval_mode()
    infer_times, infer_cpu, _ = timed(infer_step, warmup, repeats)
    return summary(
        library,
        version,
        threads,
        batch,
        infer_batch,
        (train_times, train_cpu),
        (infer_times, infer_cpu),
        loss,
        train_peak,
    )


def measure_torch(
    library,
    version,
    build,
    forward,
    sizes,
    seed,
    after=None,
    workload=None,
    precision="float32",
):
    """Times a PyTorch peer's network on random images.

    Args:
        library, version: as in `summary` (the torch version is appended).
        build: function of no argument that returns the network (called
            after `torch.manual_seed(seed)`).
        forward: `forward(net, x)`, the logits of a batch `(B, C, H, W)`.
        sizes: `(batch, infer_batch, warmup, repeats)`.
        seed: seeds the weights and the data.
        after: called after each step (e.g. to reset the neurons' state).
        workload: a key of `WORKLOADS` (the input shape). Defaults to
            `"conv-small"`.
        precision: `"float32"`, or `"bfloat16"`: the forward pass runs
            under `torch.autocast("cpu", dtype=torch.bfloat16)` (PyTorch's
            mixed precision: weights and optimizer stay float32), and its
            logits go to the loss as float32; the library is reported as
            `library + "-bf16"`.

    Returns:
        `measure_steps`'s summary (cross-entropy, Adam(lr=1e-3)) and
        `parameters`, the number of trainable parameters.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}"
        )
    batch, infer_batch, warmup, repeats = sizes
    shape = WORKLOADS[workload or "conv-small"]
    torch.manual_seed(seed)
    net = build()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *shape, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    x_infer = torch.rand(infer_batch, *shape, generator=generator)
    if precision == "bfloat16":
        library += "-bf16"
        float_forward = forward

        def forward(net, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return float_forward(net, x).float()

    def train_step():
        optimizer.zero_grad()
        loss = loss_fn(forward(net, x), y)
        loss.backward()
        optimizer.step()
        if after is not None:
            after(net)
        return loss.item()

    def infer_step():
        with torch.no_grad():
            out = forward(net, x_infer).sum().item()
        if after is not None:
            after(net)
        return out

    result = measure_steps(
        library,
        f"{version}, torch {torch.__version__}",
        torch.get_num_threads(),
        batch,
        infer_batch,
        (net.train, train_step, net.eval, infer_step),
        warmup,
        repeats,
    )
    result["precision"] = precision
    result["parameters"] = sum(
        p.numel() for p in net.parameters() if p.requires_grad
    )
    return result


def set_torch_threads(threads):
    """The peers' thread settings: `threads` intra-op, one inter-op."""
    import torch  # only the peer scripts call this, in their own venv

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def current_rss_mb():
    """The process's resident memory now, in MB (Linux `/proc`)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peer_main(measure, description, set_threads, workloads=("conv-small",)):
    """Command line of a peer script: parse, set threads, measure, print.

    Args:
        measure: `measure(workload, timesteps, batch, infer_batch, warmup,
            repeats, seed, precision)` returning a `summary` dict
            (`precision` as in `measure_torch`).
        description: the script's one-line description.
        set_threads: function of the thread count (e.g. for torch).
        workloads: the keys of `WORKLOADS` the script builds.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", choices=workloads, default=workloads[0])
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    args = parser.parse_args()
    set_threads(args.threads)
    # The framework is imported: what the process holds before any model.
    import_rss_mb = current_rss_mb()
    result = measure(
        args.workload,
        args.timesteps,
        args.batch,
        args.infer_batch,
        args.warmup,
        args.repeats,
        args.seed,
        args.precision,
    )
    result["import_rss_mb"] = import_rss_mb
    print_result(result)


def git_commit():
    """The commit of this checkout (with `+dirty` if it has changes), or
    `None` outside git."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", os.path.dirname(os.path.abspath(__file__)), *a],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def integer_at_least(minimum):
    """An argparse `type`: an integer >= `minimum`, or an error that names
    the text received and what is accepted."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected an integer >= {minimum}"
            )
        return value

    return parse


def print_result(result):
    """A measuring child's answer: one `RESULT_PREFIX` line of JSON."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def read_result(stdout):
    """The dict of the `RESULT_PREFIX` line in a child's `stdout`, or
    None."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def child_env(threads=2):
    """The environment of a measuring child process: `threads` intra-op
    threads in every library, TensorFlow quiet, this repository first on
    the path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.update(
        TF_NUM_INTRAOP_THREADS=str(threads),
        TF_NUM_INTEROP_THREADS="1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_BACKEND="tensorflow",
    )
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, env.get("PYTHONPATH")) if p
    )
    return env


def run_child(script, spec, options=()):
    """Runs `python script --child spec *options` in its own process
    (`child_env`) and returns the dict of its `RESULT_PREFIX` line.

    Raises:
        RuntimeError: the child printed no result; the message names
            `spec`, the exit status and the end of the child's stderr.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, os.path.abspath(script), "--child", spec]
    proc = subprocess.run(
        [*command, *options],
        env=child_env(),
        capture_output=True,
        text=True,
        cwd=root,
    )
    result = read_result(proc.stdout)
    if result is not None:
        return result
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-20:]
    raise RuntimeError(
        f"the measurement {spec} failed (exit {proc.returncode}):\n"
        + "\n".join(tail)
    )


def add_output_arguments(parser):
    """`--json`, `--page` and `--render`, as `publish` and `read_record`
    use them."""
    parser.add_argument("--json", help="write the record to this file")
    parser.add_argument(
        "--page", help="write the Markdown page (what is printed) here"
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: print (and --page) the page of a record "
        "that --json wrote",
    )


def utc_minute():
    """Now, as the records write it: `YYYY-MM-DD HH:MM UTC`."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


class Sitting:
    """When and how a benchmark ran: opened before it measures,
    `header()` after, for the first fields of its record."""

    def __init__(self, script, argv):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.relpath(os.path.abspath(script), root)
        self.command = shlex.join(["python", path, *argv])
        self.started = utc_minute()
        self.commit = git_commit()  # what runs, not what the tree is after
        self._start = time.perf_counter()

    def elapsed(self):
        """Seconds since the sitting opened."""
        return time.perf_counter() - self._start

    def header(self, tensorflow=None):
        """The command that reproduces the record, its start (UTC) and
        wall seconds, the commit, the machine; with `tensorflow` (its
        version) a `versions` line."""
        header = {
            "command": self.command,
            "started": self.started,
            "wall_s": self.elapsed(),
            "commit": self.commit,
            "machine": platform.processor() or platform.machine(),
            "nproc": os.cpu_count(),
        }
        if tensorflow:
            header["versions"] = (
                f"tensorflow {tensorflow}, Python {platform.python_version()}"
            )
        return header


def read_record(parser, path, flag="--render"):
    """The record a run wrote with `--json`, for `--render` (or another
    `flag`); a file that cannot be read is `parser`'s error (exit status
    2)."""
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        parser.error(f"{flag} {path}: cannot read it ({error})")


def publish(report, record, args):
    """Prints `report`; writes `record` to `args.json` (unless it was read
    with `args.render`) and `report` to `args.page`, each atomically.

    Imports keras_snn (its `fileio`): call it after any measuring child
    processes ran, in the benchmark's own process.
    """
    from keras_snn import fileio

    print(report)
    if args.json and not args.render:
        fileio.write_text(args.json, json.dumps(record, indent=1) + "\n")
    if args.page:
        fileio.write_text(args.page, report)
