"""C of the neuron models beyond LIF/IF (`edge.neuron_models`).

A neuron node with features (a CubaLIF's synaptic current, an ALIF's
adaptive threshold, recurrent synapses, a threshold or decay per channel or
per neuron) becomes one node function that loops over its neurons and
calls `ksnn_neuron_model_step` (`files/ksnn_runtime.h`), the one C
definition of that arithmetic, with the node's constants in a `static
const ksnn_neuron_model_params_t`. Its states live in the instance's state
struct (`Plan.state_fields`): the membrane `v`, and as the model needs the
current `<v>_current`, the adaptation `<v>_adaptation` and the previous
step's spikes `<v>_spikes`, which are also the node's output buffer.
Recurrent synapses accumulate the rows of the units that spiked
(`ksnn_recurrent_accumulate`, event driven) into a scratch buffer that
lives within the node.
"""

import numpy as np

from edge.targets.c.nodes import array
from edge.targets.c.nodes import row_stride
from edge.targets.c.plan import model_features
from edge.targets.c.plan import param_layout

__all__ = ["emit", "describe"]

_MODELS = {  # features -> what the comments call the node
    "current": "current-based",
    "adaptation": "adaptive-threshold",
    "recurrent": "recurrent",
    "channel": "per-channel",
}


def describe(node):
    """`"CubaLIF neuron (current-based, per-channel)"` for the comments."""
    kinds = ", ".join(_MODELS[f] for f in model_features(node))
    return f"{node.params.get('model', 'LIF')} neuron ({kinds})"


def _param(writer, node, cname, key, what):
    """The `ksnn_param_t` initializer of a parameter, and its array."""
    p = node.params
    layout = param_layout(node, key)
    if layout == "layer":
        return f"{{NULL, {int(p[key])}, 0}}"
    name = writer.const(cname, key.removesuffix("_q"))
    writer.constants += array(
        "int32_t", name, p[key], f"{node.name}: {what} per {layout}"
    )
    return f"{{{name}, 0, {int(layout == 'neuron')}}}"


def _recurrent(writer, node, cname):
    """The constants of recurrent synapses; the name of their struct."""
    p = node.params
    kernel = np.asarray(p["recurrent_kernel_q"], np.int64)
    units = kernel.shape[-1]
    row = row_stride(units)
    padded = np.pad(kernel, [(0, 0), (0, row - units)])
    names = {
        kind: writer.const(cname, f"recurrent_{kind}")
        for kind in ("weights", "multiplier", "shift", "synapses")
    }
    writer.constants += array(
        "int8_t",
        names["weights"],
        padded,
        f"{node.name}: recurrent weights (from, to) rows padded to {row}",
        True,
    )
    writer.constants += array(
        "int32_t",
        names["multiplier"],
        p["recurrent_multiplier"],
        f"{node.name}: recurrent requantization multipliers",
    )
    writer.constants += array(
        "int8_t",
        names["shift"],
        p["recurrent_shift"],
        f"{node.name}: recurrent requantization shifts",
    )
    writer.constants += [
        f"/* {node.name}: recurrent synapses */",
        f"static const ksnn_recurrent_params_t {names['synapses']} = {{",
        f"    {names['weights']},",
        f"    {names['multiplier']},",
        f"    {names['shift']},",
        f"    {units},",
        f"    {row},",
        "};",
    ]
    return names["synapses"]


def emit(writer, node, buf, state):
    """Writes the constants and the node function of a neuron model.

    Args:
        writer: the `NodeWriter` of the plan.
        node: a neuron node with features (`plan.model_features`).
        buf: its output `Buffer` (the spikes).
        state: the cname of its membrane field.
    """
    plan, p = writer.plan, node.params
    src = plan.source(node)
    cname = buf.cname
    fields = {
        f.key.rpartition(":")[2]: f for f in plan.state_fields if f.node is node
    }
    recurrent = "recurrent_kernel_q" in p
    synapses = _recurrent(writer, node, cname) if recurrent else None
    params = writer.const(cname, "model")
    has_current = "current_decay_q" in p
    has_adaptation = "adaptation_step_q" in p
    current_decay = (
        _param(writer, node, cname, "current_decay_q", "current decays")
        if has_current
        else "{NULL, 0, 0}"
    )
    values = [
        (_param(writer, node, cname, "decay_q", "membrane decays"), "decay"),
        (_param(writer, node, cname, "threshold_q", "thresholds"), "theta"),
        (current_decay, "current decay (CubaLIF)"),
        (int(p.get("adaptation_decay_q", 0)), "adaptation decay (ALIF)"),
        (int(p.get("adaptation_step_q", 0)), "rise per spike (ALIF)"),
        (int(has_current), "synaptic current"),
        (int(has_adaptation), "adaptive threshold"),
        ("&" + synapses if recurrent else "NULL", "recurrent synapses"),
        (f"KSNN_RESET_{p['reset'].upper()}", "reset"),
        ("KSNN_STATE_MIN", "state range"),
        ("KSNN_STATE_MAX", "state range"),
    ]
    writer.constants += [
        f"/* {node.name}: {describe(node)} parameters */",
        f"static const ksnn_neuron_model_params_t {params} = {{",
        *(f"    {value}, /* {what} */" for value, what in values),
        "};",
    ]
    st = plan.state_ctype
    channels = int(node.shape[-1])
    # The states this model keeps, besides the spikes: (key, C member).
    kept = [("state", "v")]
    kept += [("current", "current")] if has_current else []
    kept += [("adaptation", "adaptation")] if has_adaptation else []
    arrays = {"state": "v", "current": "i", "adaptation": "a"}
    initial = ", ".join(
        f"{arrays[key]}[j]" if key in fields else "0"
        for key in ("state", "current", "adaptation")
    )
    body = []
    if recurrent:
        body += [
            "    /* The previous step's spikes (y) through the recurrent",
            "       synapses. */",
            "    const ksnn_status_t status = "
            "ksnn_recurrent_accumulate(acc, y, p->recurrent);",
            "    if (status != KSNN_OK) {",
            "        return status;",
            "    }",
        ]
    body += [
        f"    for (int32_t k = 0; k < {buf.size // channels}; ++k) {{",
        f"        for (int32_t c = 0; c < {channels}; ++c) {{",
        f"            const int32_t j = k * {channels} + c;",
        f"            ksnn_neuron_state_t n = {{{initial}}};",
        "            y[j] = (uint8_t)ksnn_neuron_model_step(&n, x[j], "
        f"{'acc[j]' if recurrent else '0'}, c, j, p);",
        *(
            f"            {arrays[key]}[j] = ({st})n.{member};"
            for key, member in kept
        ),
        "        }",
        "    }",
        "    return KSNN_OK;",
    ]
    signature = [f"const {src.ctype} *x", f"{st} *v"]
    args = [src.expr, f"state->{state}"]
    for key in ("current", "adaptation"):
        if key in fields:
            signature.append(f"{st} *{arrays[key]}")
            args.append(f"state->{fields[key].cname}")
    signature.append(f"{buf.ctype} *y")
    args.append(buf.expr)
    if recurrent:
        signature.append("int32_t *acc")
        args.append(plan.recurrent[node.name].expr)
    signature.append("const ksnn_neuron_model_params_t *p")
    args.append(f"&{params}")
    what = f"{describe(node)}, {p['reset']} reset"
    if recurrent:
        what += "; its spikes (y) are its recurrent state"
    writer.function(node, what, signature, body, args, returns=True)
