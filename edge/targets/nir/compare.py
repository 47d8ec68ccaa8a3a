"""Spike-for-spike comparison with the float reference."""

import numpy as np

from edge.errors import ConsumerError
from edge.targets.nir.convert import NEAR_TIE

__all__ = [
    "compare_spikes",
]


def _potentials(graph, trace, name, samples):
    """Potentials before reset `u` `(N, T, ...)` from a float trace.

    `u = k v[t-1] + c[t]`, with `c` the current that reached the membrane
    (`"<name>:current"`: a CubaLIF's filtered current `i`; else the
    input), `k` one decay or one per channel or neuron.
    """
    node = graph.node(name)
    key = f"{name}:current"
    currents = trace[key] if key in trace else trace[node.inputs[0]]
    currents = np.stack(currents, 1)[:samples]
    states = np.stack(trace[f"{name}:state"], 1)[:samples]
    previous = np.concatenate(
        [np.zeros_like(states[:, :1]), states[:, :-1]], axis=1
    )
    return np.asarray(node.params["decay"]) * previous + currents


def compare_spikes(graph, trace, spikes, near_tie=NEAR_TIE):
    """Compares a consumer's spikes with the float reference's, per layer.

    A spike flips between float32 (the consumers) and float64 (the
    reference) only if the potential is within rounding of the threshold;
    one flip then changes what follows in that sample. So every sample
    whose spikes differ is checked at its first difference (earliest step,
    then earliest layer): the reference potential there must be within
    `near_tie * max(1, |theta|)` of the threshold.

    Args:
        graph: the fused step graph.
        trace: `edge.reference.run_float(graph, x, record=True)[1]`.
        spikes: step-graph neuron name -> consumer spikes `(n, T, ...)`,
            Keras layout, for the first `n` samples of the trace.
        near_tie: relative distance to the threshold that counts as a tie.

    Returns:
        Dict: `spike_agreement` (fraction of equal (sample, step, neuron)
        spikes over all layers), `per_layer` (name -> fraction),
        `exact_samples` (fraction of samples with all spikes equal),
        `unexplained` (samples whose first difference is not a near-tie,
        with the layer, step and distance).
    """
    names = list(spikes)
    samples = len(spikes[names[0]]) if names else 0
    equal = total = 0
    per_layer = {}
    differs = np.zeros(samples, bool)
    first = [None] * samples
    for order, name in enumerate(names):
        ref = np.stack(trace[name], 1)[:samples]
        got = np.asarray(spikes[name], np.float64)
        if got.shape != ref.shape:
            raise ConsumerError(
                f"Spikes of '{name}' have shape {got.shape}; expected "
                f"{ref.shape}"
            )
        same = got == ref
        equal += int(same.sum())
        total += same.size
        per_layer[name] = float(same.mean())
        bad = ~same.reshape(samples, ref.shape[1], -1)
        for i in np.flatnonzero(bad.any(axis=(1, 2))):
            differs[i] = True
            step = int(np.flatnonzero(bad[i].any(axis=1))[0])
            key = (step, order)
            if first[i] is None or key < first[i][0]:
                first[i] = (key, name, np.flatnonzero(bad[i, step]))
    unexplained = []
    for i in np.flatnonzero(differs):
        (step, _), name, where = first[i]
        u = _potentials(graph, trace, name, samples)[i, step]
        theta = np.broadcast_to(
            np.asarray(graph.node(name).params["threshold"], np.float64),
            u.shape,
        ).reshape(-1)[where]
        distance = float(np.max(np.abs(u.reshape(-1)[where] - theta)))
        if distance > near_tie * max(1.0, float(np.max(np.abs(theta)))):
            unexplained.append(
                {
                    "sample": int(i),
                    "layer": name,
                    "step": step,
                    "distance": distance,
                }
            )
    return {
        "spike_agreement": equal / max(total, 1),
        "per_layer": per_layer,
        "exact_samples": float(1.0 - differs.mean()) if samples else 1.0,
        "unexplained": unexplained,
    }
