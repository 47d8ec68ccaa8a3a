"""Timing and reporting shared by benchmarks/peers.py and the peer scripts.

Imports no framework, so the keras-snn side and the PyTorch peers (which
run in their own virtual environment) use the same code to time a step and
to turn the times into the result line that `peers.py` collects.
"""

import argparse
import json
import os
import resource
import statistics
import time

RESULT_PREFIX = "PEER_RESULT "


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


def summary(library, version, threads, batch, infer_batch, train, infer, loss):
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
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024.0,
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
    )


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


def peer_main(measure, description, set_threads):
    """Command line of a peer script: parse, set threads, measure, print.

    Args:
        measure: `measure(timesteps, batch, infer_batch, warmup, repeats,
            seed)` returning a `summary` dict.
        description: the script's one-line description.
        set_threads: function of the thread count (e.g. for torch).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)
    # The framework is imported: what the process holds before any model.
    import_rss_mb = current_rss_mb()
    result = measure(
        args.timesteps,
        args.batch,
        args.infer_batch,
        args.warmup,
        args.repeats,
        args.seed,
    )
    result["import_rss_mb"] = import_rss_mb
    print(RESULT_PREFIX + json.dumps(result), flush=True)
