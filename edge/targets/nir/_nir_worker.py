"""Runs a NIR file in Norse or snnTorch; the subprocess of `edge.targets.nir`.

This script runs in the NIR virtual environment (`.venv-nir`, made by
`keras-snn consumers install --targets nir`: torch, nir, nirtorch, snntorch,
norse), never in the environment of keras_snn: it imports neither TensorFlow
nor `edge`, and `edge` does not import it. It is started as a script:

    .venv-nir/bin/python edge/targets/nir/_nir_worker.py request.json

`request.json` holds `model` (the `.nir` file), `consumer` (`"norse"` or
`"snntorch"`), `inputs` (an `.npz` with `x` of shape `(N, T, *input)` in
NIR's channels-first layout), `outputs` (the `.npz` to write), `record`
(the NIR names of the neuron nodes whose spikes to return), `dt` (Norse's
integration step) and `batched` (`false` runs one sample at a time without
a batch axis, as NIR's `Flatten(start_dim=0)` needs: both importers map it
to `torch.nn.Flatten(0, -1)`, which would also flatten a batch axis).

The outputs `.npz` holds `output` `(N, T, *output)`, `spikes/<name>`
`(N, T, *shape)` for every recorded node, `potentials/<name>` (the
potential after reset, in the consumer's own scale: Norse's `v` is
`(1 - k)` times keras_snn's for a LIF) where the module exposes it, and
`versions` (a JSON string).
The importers print warnings to stdout; results go only to the `.npz`.
"""

import json
import sys


def _versions():
    import importlib.metadata as metadata

    names = ("torch", "nir", "nirtorch", "norse", "snntorch", "numpy")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _load(consumer, path, dt):
    import nir

    graph = nir.read(path)
    if consumer == "norse":
        import norse.torch

        return norse.torch.from_nir(graph, dt=dt), True
    if consumer == "snntorch":
        from snntorch import import_nir

        return import_nir.import_from_nir(graph), False
    raise ValueError(f"unknown consumer {consumer!r}")


def _find_modules(net, names):
    """The submodules of the imported network named after NIR nodes.

    The shallowest module of a name wins: an imported node may have
    children of its own whose names are those of other nodes (Norse's
    CubaLIF has `synapse` and `lif`).
    """
    wanted = {name.replace(".", "_"): name for name in names}
    found = {}
    modules = sorted(net.named_modules(), key=lambda m: m[0].count("."))
    for module_name, module in modules:
        last = module_name.split(".")[-1]
        key = last[len("nir_node_") :] if last.startswith("nir_node_") else last
        if key in wanted and wanted[key] not in found:
            found[wanted[key]] = module
    missing = sorted(set(names) - set(found))
    if missing:
        raise RuntimeError(
            f"the imported network has no module for the NIR nodes {missing}; "
            f"it has {[n for n, _ in net.named_modules()]}"
        )
    return found


def _reset_snntorch(net):
    for module in net.modules():
        if hasattr(module, "reset_hidden") and hasattr(module, "mem"):
            module.reset_hidden()


def _run(net, stateful, consumer, x, modules, batched):
    """Runs `x` `(N, T, ...)`; returns outputs and recorded spikes."""
    import numpy as np
    import torch

    captured = {}

    def hook_for(name):
        def hook(module, inputs, output):
            value = output[0] if isinstance(output, tuple) else output
            captured[name] = value.detach().cpu().numpy().copy()
            # The potential after reset: Norse returns it in the state,
            # snnTorch keeps it in the module (`mem`).
            state = output[1] if isinstance(output, tuple) else None
            potential = getattr(state, "v", getattr(module, "mem", None))
            if potential is not None:
                captured[f"potentials/{name}"] = (
                    potential.detach().cpu().numpy().copy()
                )

        return hook

    handles = [
        module.register_forward_hook(hook_for(name))
        for name, module in modules.items()
    ]
    groups = [x] if batched else [x[i : i + 1] for i in range(len(x))]
    keys = [f"spikes/{name}" for name in modules]
    keys += [f"potentials/{name}" for name in modules]
    outputs, recorded = [], {key: [] for key in keys}
    try:
        with torch.no_grad():
            for group in groups:
                if consumer == "snntorch":
                    _reset_snntorch(net)
                state = None
                steps_out, steps = [], {key: [] for key in keys}
                for t in range(group.shape[1]):
                    xt = torch.from_numpy(np.ascontiguousarray(group[:, t]))
                    if not batched:
                        xt = xt[0]
                    captured.clear()
                    if stateful:
                        out, state = net(xt, state)
                    else:
                        out = net(xt)
                        if isinstance(out, tuple):
                            out = out[0]
                    out = out.detach().cpu().numpy()
                    steps_out.append(out if batched else out[None])
                    for name in modules:
                        captured[f"spikes/{name}"] = captured.pop(name)
                    for key in keys:
                        value = captured.get(key)
                        if value is not None:
                            steps[key].append(value if batched else value[None])
                outputs.append(np.stack(steps_out, 1))
                for key in keys:
                    if len(steps[key]) == group.shape[1]:
                        recorded[key].append(np.stack(steps[key], 1))
    finally:
        for handle in handles:
            handle.remove()
    result = {"output": np.concatenate(outputs)}
    for key in keys:
        if len(recorded[key]) == len(groups):
            result[key] = np.concatenate(recorded[key])
    return result


def main(argv):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    with open(argv[1]) as file:
        request = json.load(file)
    consumer = request["consumer"]
    net, stateful = _load(consumer, request["model"], request["dt"])
    net.eval()
    modules = _find_modules(net, request["record"])
    x = np.load(request["inputs"])["x"].astype(np.float32)
    result = _run(net, stateful, consumer, x, modules, request["batched"])
    result["versions"] = np.array(json.dumps(_versions()))
    np.savez(request["outputs"], **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
