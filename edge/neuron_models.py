"""The neuron models of a step graph, and what each target can express.

A `"neuron"` node of `edge.ir` always has `threshold`, `decay` and `reset`
(the LIF/IF neuron, Wu et al. 2019, Eq. 5-6). Other keras_snn neuron
models add parameters, each one a *feature* that a target either
implements or refuses:

- `"current"`: `current_decay` (`a`), a `CubaLIF`:
  `i[t] = a i[t-1] + I[t]`;
- `"adaptation"`: `adaptation` (`beta`) and `adaptation_decay` (`rho`),
  an `ALIF`;
- `"recurrent"`: `recurrent_kernel` `(units, units)`, `recurrent=True`;
- `"channel"`: `threshold`, `decay` or `current_decay` as arrays
  (`trainable_*="channel"` or `"neuron"`).

A per-channel parameter has shape `(channels,)`, a per-neuron one the
node's shape; a per-layer one is a Python float. `model` names the Keras
class (`"LIF"`, `"IF"`, `"CubaLIF"`, `"ALIF"`) for the messages.

Every target calls `require(graph, target, supported)` before it converts
anything: a neuron node with a feature the target lacks is refused with an
`UnsupportedLayerError` that names the layer, the target and the reason.
"""

import keras
import numpy as np

from edge.errors import UnsupportedLayerError
from keras_snn import graph_step

__all__ = [
    "FEATURES",
    "features",
    "neuron_params",
    "require",
    "state_keys",
    "step",
]

FEATURES = {
    "current": "the synaptic current state of the current-based neuron "
    "(CubaLIF)",
    "adaptation": "the adaptive threshold's state (ALIF)",
    "recurrent": "the recurrent synapses (recurrent=True)",
    "channel": "a threshold or decay per channel or per neuron "
    "(trainable_*='channel' or 'neuron')",
}


def _value(value):
    """A parameter as a Python float (one per layer) or a float64 array."""
    array = np.array(keras.ops.convert_to_numpy(value), np.float64)
    return float(array) if array.ndim == 0 else array


def neuron_params(layer):
    """The params of the `"neuron"` node of a keras_snn neuron layer.

    Args:
        layer: a built `keras_snn.layers.LIF` (or a subclass).

    Returns:
        A dict: `model`, `threshold`, `decay`, `reset`, and `current_decay`,
        `adaptation`, `adaptation_decay`, `recurrent_kernel` for the models
        that have them.
    """
    from keras_snn import layers as snn

    cell = layer.cell
    values = cell.parameters("float64")
    params = {
        "model": type(layer).__name__,
        "threshold": _value(values[0]),
        "decay": _value(values[1]),
        "reset": cell.reset,
    }
    if isinstance(layer, snn.CubaLIF):
        params["current_decay"] = _value(values[2])
    elif isinstance(layer, snn.ALIF):
        params["adaptation"] = float(values[2])
        params["adaptation_decay"] = float(values[3])
    if getattr(cell, "recurrent", False):
        params["recurrent_kernel"] = np.array(
            keras.ops.convert_to_numpy(cell.recurrent_kernel), np.float64
        )
    return params


def features(node):
    """The features (keys of `FEATURES`) a neuron node uses, sorted."""
    p = node.params
    found = set()
    if "current_decay" in p:
        found.add("current")
    if "adaptation" in p:
        found.add("adaptation")
    if "recurrent_kernel" in p:
        found.add("recurrent")
    if any(
        np.ndim(p[name]) > 0
        for name in ("threshold", "decay", "current_decay")
        if name in p
    ):
        found.add("channel")
    return sorted(found)


# The state each feature carries from step to step (a key of `step`'s).
CARRIED = (("current", "current"), ("adaptation", "adaptation"))
CARRIED += (("recurrent", "spikes"),)


def state_keys(node):
    """The keys of `step`'s state that a stateful node carries from step
    to step, in order: `"v"` (the membrane), then `"current"` (CubaLIF),
    `"adaptation"` (ALIF) and `"spikes"` (recurrent synapses)."""
    if node.op != "neuron":
        return ["v"]
    used = features(node)
    return ["v", *(key for feature, key in CARRIED if feature in used)]


def require(graph, target, supported=()):
    """Refuses the neuron features that `target` does not implement.

    Args:
        graph: an `edge.ir.Graph`.
        target: the target's name, for the message (e.g. `"loihi"`).
        supported: the features of `FEATURES` the target implements.

    Raises:
        UnsupportedLayerError: the first neuron node using a feature
            outside `supported`; the message names its layer, the target,
            the feature and what the target accepts.
    """
    for node in graph.nodes:
        if node.op != "neuron":
            continue
        missing = [f for f in features(node) if f not in supported]
        if not missing:
            continue
        kind = node.params.get("model", "LIF")
        accepted = ", ".join(FEATURES[f] for f in supported) or "none"
        raise UnsupportedLayerError(
            f"Layer '{node.layer}' ({kind}) cannot be exported to the "
            f"{target!r} target: it does not implement "
            f"{' and '.join(FEATURES[f] for f in missing)}. Neuron features "
            f"it accepts beyond LIF/IF: {accepted}. Export this model to "
            "a target that implements them (the table of neuron models "
            "in docs/deployment/index.md), or train a LIF/IF model for "
            "this one."
        )


# One step of a neuron node, for the float and the integer references (and
# the float step models): its one definition lives in keras_snn, which
# quantization-aware training runs too.
step = graph_step.neuron_step
