"""Runs a NetX HDF5 network in Lava (CPU, bit-accurate `fixed_pt` models).

This script is executed by `edge.targets.loihi.run_lava` with the Python
3.10 interpreter of the Lava environment (made by `keras-snn consumers
install --targets loihi`), in a process group of its own, never imported by
the package: it needs lava-nc and lava-dl, which need Python 3.10 and NumPy
< 2, and it must not import TensorFlow.

Usage: `python _lava_worker.py REQUEST.npz RESULT.npz`. The request holds
`net` (path of the NetX file), `data` (the input spikes, shape
`(*net.inp.shape, steps)`, Lava's `(x, y, c)` order), `steps`,
`reset_interval` (0 for none) and `reset_offset`; the result holds
`spikes` (`(*net.out.shape, steps)`) and the lava versions used.

`lava.lib.dl.netx` imports lava-dl's torch-based modules (slayer, the
sequential torch API) although its HDF5 loader does not use them for CUBA
dense and conv layers; `_stand_in_for_torch_modules` registers empty
modules in their place, so torch need not be installed. Each stand-in's
`__file__` is the path of the module it replaces: Lava's compiler calls
`inspect.getfile` on the modules of a process's package and imports every
file in their folders while it looks for process models, so a `__file__`
elsewhere (say, this folder) would make it execute unrelated files.
"""

import sys
import types


def _stand_in_for_torch_modules():
    import importlib.util
    import os

    spec = importlib.util.find_spec("lava.lib.dl")
    root = list(spec.submodule_search_locations)[0]

    def module(name, package=False, **attributes):
        stand_in = types.ModuleType(name)
        parts = name.split(".")[3:]
        path = os.path.join(root, *parts)
        stand_in.__file__ = (
            os.path.join(path, "__init__.py") if package else path + ".py"
        )
        if package:
            stand_in.__path__ = []
        for key, value in attributes.items():
            setattr(stand_in, key, value)
        sys.modules[name] = stand_in
        return stand_in

    def rf_neuron_params(*args, **kwargs):
        raise NotImplementedError(
            "RF neurons need lava-dl's torch modules (not installed)"
        )

    rf = module("lava.lib.dl.slayer.neuron.rf", neuron_params=rf_neuron_params)
    neuron = module("lava.lib.dl.slayer.neuron", package=True, rf=rf)
    module("lava.lib.dl.slayer", package=True, neuron=neuron)
    module("lava.lib.dl.netx.sequential_modules")


def run(request):
    """Loads the NetX file, runs it and returns the output spikes."""
    import importlib.metadata
    import warnings

    import numpy as np

    # The compiler warns for every module of netx's folder it cannot import
    # while it looks for process models (the torch-based ones): harmless.
    warnings.filterwarnings("ignore", message="Cannot import module")
    _stand_in_for_torch_modules()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io import sink
    from lava.proc.io import source

    steps = int(request["steps"])
    reset_interval = int(request["reset_interval"]) or None
    net = netx.hdf5.Network(
        net_config=str(request["net"]),
        reset_interval=reset_interval,
        reset_offset=int(request["reset_offset"]),
    )
    data = np.asarray(request["data"])
    if tuple(data.shape[:-1]) != tuple(net.inp.shape):
        raise ValueError(
            f"input spikes of shape {data.shape[:-1]} do not match the "
            f"network's input {net.inp.shape}"
        )
    src = source.RingBuffer(data=data)
    dst = sink.RingBuffer(shape=net.out.shape, buffer=steps)
    src.s_out.connect(net.inp)
    net.out.connect(dst.a_in)
    try:
        net.run(
            condition=RunSteps(num_steps=steps),
            run_cfg=Loihi2SimCfg(select_tag="fixed_pt"),
        )
        spikes = np.asarray(dst.data.get())
    finally:
        net.stop()
    return {
        "spikes": spikes.astype(np.int8),
        "layers": np.array([type(b).__name__ for b in net.layers]),
        "lava_nc": importlib.metadata.version("lava-nc"),
        "lava_dl": importlib.metadata.version("lava-dl"),
    }


def main(argv):
    import numpy as np

    if len(argv) != 3:
        print(f"usage: {argv[0]} REQUEST.npz RESULT.npz", file=sys.stderr)
        return 2
    with np.load(argv[1], allow_pickle=False) as loaded:
        request = {key: loaded[key] for key in loaded.files}
    result = run(request)
    np.savez(argv[2], **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
