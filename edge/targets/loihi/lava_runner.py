"""Running a NetX file in Lava's fixed_pt simulator (its own Python 3.10)."""

import os
import signal
import subprocess
import tempfile

import numpy as np

from edge import consumers
from edge.errors import ConsumerError
from edge.targets.loihi.quantization import LAVA_TIMEOUT

__all__ = [
    "lava_python",
    "make_stream",
    "run_lava",
]


# -- running the file in Lava ----------------------------------------------
def lava_python():
    """The Python of the Lava environment, or `None` if it is missing.

    Found by `edge.consumers` (`$KERAS_SNN_LAVA_PYTHON`, the per-user
    consumers folder, a source checkout's `.venv-lava`); made by
    `keras-snn consumers install --targets loihi`.
    """
    found = consumers.find("lava")
    return None if found is None else found.python


def make_stream(lgraph, spikes):
    """Concatenates samples for one Lava run.

    Args:
        lgraph: a `LoihiGraph`.
        spikes: `(N, T, *input_shape)` encoder spikes.

    Returns:
        `(stream, R)`: `(N R + depth, *input_shape)` int8 spikes (sample `s`
        in steps `[s R, s R + T)`, zeros elsewhere) and the reset interval.
    """
    spikes = np.asarray(spikes, np.int8)
    count, steps = spikes.shape[:2]
    interval = lgraph.reset_interval(steps)
    stream = np.zeros(
        (count * interval + lgraph.depth, *spikes.shape[2:]), np.int8
    )
    for s in range(count):
        stream[s * interval : s * interval + steps] = spikes[s]
    return stream, interval


def _to_lava(lgraph, stream):
    """`(steps, *input_shape)` -> Lava's `(*net.inp.shape, steps)`."""
    first = lgraph.layers[0]
    if len(stream.shape) == 4:  # (steps, H, W, C)
        if first.flatten:  # CHW flatten order
            flat = stream.transpose(0, 3, 1, 2).reshape(len(stream), -1)
            return flat.T
        return stream.transpose(2, 1, 3, 0)  # (W, H, C, steps)
    return stream.T


def _from_lava(lgraph, data):
    """Lava's `(*net.out.shape, steps)` -> `(steps, *output_shape)`."""
    if len(lgraph.output_shape) == 3:  # (W, H, C, steps)
        return data.transpose(3, 1, 0, 2)
    return data.T


def run_lava(lgraph, path, stream, reset_interval, timeout=LAVA_TIMEOUT):
    """Runs a NetX file in Lava (`fixed_pt`) on a stream of input spikes.

    The file is loaded by `lava.lib.dl.netx.hdf5.Network(net_config=path,
    reset_interval=R, reset_offset=1)`, fed by a `RingBuffer` source and
    read by a `RingBuffer` sink, in `_lava_worker.py` (beside this module)
    under the Lava environment's Python (`lava_python`), in a process group
    of its own that is killed on timeout.

    Args:
        lgraph: the `LoihiGraph` the file was written from (for layouts).
        path: the NetX file.
        stream: `(steps, *lgraph.input_shape)` input spikes (`make_stream`).
        reset_interval: `R` (or `None`).
        timeout: seconds.

    Returns:
        `(steps, *lgraph.output_shape)` int8 output spikes.

    Raises:
        ConsumerError: no Lava environment, Lava failed, or timed out.
    """
    python = lava_python()
    if python is None:
        raise ConsumerError(consumers.missing_message("lava"))
    stream = np.asarray(stream, np.int8)
    here = os.path.dirname(os.path.abspath(__file__))
    worker = os.path.join(here, "_lava_worker.py")
    with tempfile.TemporaryDirectory(prefix="keras-snn-lava-") as folder:
        request = os.path.join(folder, "request.npz")
        result = os.path.join(folder, "result.npz")
        np.savez(
            request,
            net=os.path.abspath(os.fspath(path)),
            data=_to_lava(lgraph, stream),
            steps=len(stream),
            reset_interval=int(reset_interval or 0),
            reset_offset=1,
        )
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        process = subprocess.Popen(
            [python, worker, request, result],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ConsumerError(
                f"Lava did not finish running {path} within {timeout} s."
            ) from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        text = output.decode(errors="replace")[-3000:]
        if process.returncode != 0 or not os.path.exists(result):
            raise ConsumerError(
                f"Lava failed to run {path} (exit status "
                f"{process.returncode}):\n{text}"
            )
        with np.load(result) as loaded:
            data = loaded["spikes"]
    return _from_lava(lgraph, data).astype(np.int8)
