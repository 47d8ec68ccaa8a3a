"""The lava-dl NetX HDF5 file of a `LoihiGraph`."""

import os
import tempfile

import numpy as np

from edge.targets.loihi.quantization import NETX_FILE
from edge.targets.loihi.ranges import check_ranges
from keras_snn import fileio

__all__ = [
    "netx_bytes",
    "write_netx",
]


# -- the NetX file ---------------------------------------------------------
def _ascii(text):
    return np.array([text.encode("ascii")], dtype="S10")


def _chw(shape):
    return [shape[2], shape[0], shape[1]] if len(shape) == 3 else list(shape)


def _netx_input_shape(lgraph):
    first = lgraph.layers[0]
    if first.flatten:
        return [int(np.prod(first.input_shape))]
    return [int(d) for d in _chw(first.input_shape)]


def _netx_weight(layer):
    """The weight in NetX's layout: conv OIHW, dense `(out, in)` with the
    inputs in CHW flatten order."""
    w = np.asarray(layer.weight)
    if layer.kind == "conv":
        return w.transpose(3, 2, 0, 1)
    if layer.flatten and len(layer.input_shape) == 3:
        h, wd, c = layer.input_shape
        w = (
            w.reshape(h, wd, c, -1)
            .transpose(2, 0, 1, 3)
            .reshape(h * wd * c, -1)
        )
    return w.T


def _write(file, lgraph):
    file.attrs["producer"] = "keras_snn edge.loihi"
    file.attrs["model"] = lgraph.graph.name
    file.attrs["host_encoder"] = lgraph.encoder[-1].name
    file.attrs["reset_offset"] = 1
    group = file.create_group("layer")
    entry = group.create_group("0")
    entry["type"] = _ascii("input")
    entry["shape"] = np.array(_netx_input_shape(lgraph), np.int64)
    index = 1
    for number, layer in enumerate(lgraph.layers):
        if layer.flatten and number > 0 and len(layer.input_shape) == 3:
            entry = group.create_group(str(index))
            entry["type"] = _ascii("flatten")
            entry["shape"] = np.array(
                [int(np.prod(layer.input_shape)), 1, 1], np.int64
            )
            index += 1
        entry = group.create_group(str(index))
        index += 1
        weight = _netx_weight(layer).astype(np.float32)
        entry["weight"] = weight
        entry["bias"] = np.asarray(layer.bias, np.float32)
        if layer.kind == "conv":
            entry["type"] = _ascii("conv")
            entry["shape"] = np.array(_chw(layer.shape), np.int64)
            entry["inChannels"] = weight.shape[1]
            entry["outChannels"] = weight.shape[0]
            entry["kernelSize"] = np.array(weight.shape[2:], np.int64)
            entry["stride"] = np.array(layer.strides, np.int64)
            entry["padding"] = np.array(layer.padding, np.int64)
            entry["dilation"] = np.array([1, 1], np.int64)
            entry["groups"] = np.int64(1)
        else:
            recurrent = layer.weight_rec is not None
            entry["type"] = _ascii("dense_rec" if recurrent else "dense")
            if recurrent:  # NetX's (out, in), as the feed-forward weight
                entry["weight_rec"] = np.asarray(layer.weight_rec, np.float32).T
            entry["shape"] = np.array(layer.shape, np.int64)
            entry["inFeatures"] = weight.shape[1]
            entry["outFeatures"] = weight.shape[0]
        neuron = entry.create_group("neuron")
        neuron["type"] = _ascii("CUBA")
        neuron["iDecay"] = np.int64(layer.i_decay)
        neuron["vDecay"] = np.int64(layer.v_decay)
        neuron["vThMant"] = np.int64(layer.threshold)
        neuron["refDelay"] = np.int64(1)
        neuron["gradedSpike"] = np.bool_(False)


def write_netx(lgraph, path):
    """Writes the NetX HDF5 file (to a temporary name, then renamed).

    Layer `0` is `input` (no neuron: the spikes enter the first layer), then
    one `conv`, `dense` or `dense_rec` (with `weight_rec`: recurrent
    synapses) group per chip layer with a `CUBA` neuron group (`iDecay`,
    `vDecay`, `vThMant`, `refDelay`, `gradedSpike`), and a `flatten` group
    before a dense layer that follows a conv.

    Args:
        lgraph: a `LoihiGraph`.
        path: the file to write.

    Raises:
        ExportError: a parameter out of NetX's or Loihi's range
            (`check_ranges`), before anything is written.
    """
    check_ranges(lgraph)
    import h5py

    with fileio.atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as file:
            _write(file, lgraph)


def netx_bytes(lgraph):
    """The NetX file's bytes (written in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="keras-snn-loihi-") as folder:
        path = os.path.join(folder, NETX_FILE)
        write_netx(lgraph, path)
        with open(path, "rb") as file:
            return file.read()
