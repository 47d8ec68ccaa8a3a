"""What NetX and Loihi hold: the range checks of a `LoihiGraph`.

See `edge.targets.loihi` for the conventions.
"""

import math

import numpy as np

from edge.errors import ExportError
from edge.targets.loihi.quantization import BIAS_MAX
from edge.targets.loihi.quantization import BIAS_MIN
from edge.targets.loihi.quantization import DECAY_UNITY
from edge.targets.loihi.quantization import V_DECAY_MAX
from edge.targets.loihi.quantization import VTH_MAX
from edge.targets.loihi.quantization import WEIGHT_MAX
from edge.targets.loihi.quantization import WEIGHT_MIN

__all__ = [
    "check_ranges",
    "netx_weights_exact",
]


# -- range checks ----------------------------------------------------------
def netx_weights_exact(weight, recurrent=None):
    """Whether NetX and Lava's `Dense` keep the integer weights exactly.

    NetX (`optimize_weight_bits`) scales the file weights by `2^shift` into
    an 8-bit mantissa and sets `weight_exp = -shift`; Lava's bit-accurate
    `Dense` clips (`clip_weights`) and drops low bits (`truncate_weights`),
    accumulates and shifts back. This re-derives that chain and returns
    `True` when the accumulated sum equals `sum(w * s)` for every input.

    Args:
        weight: integer array of file weights.
        recurrent: `None`, or the recurrent weights of a `dense_rec` layer:
            NetX optimizes `[weight, recurrent]` together, and Lava runs
            each part in a `Dense` of its own (its own sign mode).

    Returns:
        bool.

    Reference:
        lava-dl 0.6.0 `lava/lib/dl/netx/utils.py`, `netx/hdf5.py`
        (`create_dense`, `rec=True`); lava-nc 0.10.0
        `lava/utils/weightutils.py`, `lava/proc/dense/models.py`.
    """
    parts = [np.asarray(weight, np.int64)]
    if recurrent is not None:
        parts.append(np.asarray(recurrent, np.int64))
    w = np.concatenate([part.ravel() for part in parts])
    if w.size == 0 or not np.any(w):
        return False
    high, low = int(w.max()), int(w.min())
    if low < WEIGHT_MIN or high > (255 if low >= 0 else WEIGHT_MAX):
        return False
    # NetX's sign mode, headroom and exponent.
    if high < 0:
        signed, room = 0, -256 / low
    elif low >= 0:
        signed, room = 0, 255 / high
    else:
        signed = 1
        room = min(127 / high if high > 0 else math.inf, -128 / low)
    shift = math.floor(math.log2(room)) + signed
    zeros = 0  # trailing zero bits shared by all weights (at most 8)
    while zeros < 8 and not np.any(w % (1 << (zeros + 1))):
        zeros += 1
    bits = 8 - shift - (zeros - signed)
    if shift < 0:
        return False
    return all(_dense_keeps(part << shift, bits) for part in parts)


def _dense_keeps(scaled, bits):
    """Lava's `Dense`: its own sign mode of the scaled weights, 8-bit clip,
    then the low `8 - bits (+1 if mixed)` bits dropped; unchanged?"""
    if scaled.size == 0:
        return True
    inhibitory = int(scaled.min()) < 0 and int(scaled.max()) <= 0
    mixed = int(scaled.min()) < 0 < int(scaled.max())
    dropped = 8 - bits + int(mixed)
    if dropped < 0:
        return False
    kept = -scaled if inhibitory else scaled
    kept = np.clip(kept, -(1 << 8) if mixed else 0, (1 << 8) - 1)
    kept = (kept >> dropped) << dropped
    kept = -kept if inhibitory else kept
    return bool(np.array_equal(kept, scaled))


def check_ranges(lgraph):
    """Checks every integer parameter against what NetX and Loihi hold.

    Args:
        lgraph: a `LoihiGraph`.

    Raises:
        ExportError: a weight outside [-256, 254] or not kept exactly by
            NetX's 8-bit weight format, a bias outside 13 bits, a threshold
            outside [0, 131071], a decay outside 12 bits, or padding that
            is not symmetric; the message names the layer.
    """

    def fail(layer, what):
        raise ExportError(
            f"Loihi layer '{layer.name}' cannot be written: {what}"
        )

    for layer in lgraph.layers:
        w = np.asarray(layer.weight)
        rec = layer.weight_rec
        if rec is not None:
            rec = np.asarray(rec)
            if layer.kind != "dense" or rec.shape != (w.shape[-1],) * 2:
                fail(layer, f"recurrent weights of shape {rec.shape}")
            w = np.concatenate([w.ravel(), rec.ravel()])
        if not np.issubdtype(w.dtype, np.integer):
            fail(layer, "weights must be integers")
        if w.min() < WEIGHT_MIN or w.max() > WEIGHT_MAX:
            fail(
                layer,
                f"weights out of range: [{w.min()}, {w.max()}] is not "
                f"within [{WEIGHT_MIN}, {WEIGHT_MAX}]",
            )
        if not netx_weights_exact(layer.weight, rec):
            fail(
                layer,
                "weights that NetX's 8-bit mantissa and exponent do not "
                "hold exactly (use even weights in [-256, 254])",
            )
        b = np.asarray(layer.bias)
        if b.min() < BIAS_MIN or b.max() > BIAS_MAX:
            fail(
                layer,
                f"bias out of range [{BIAS_MIN}, {BIAS_MAX}] (13 bits): "
                f"[{b.min()}, {b.max()}]",
            )
        if not 0 <= layer.threshold <= VTH_MAX:
            fail(layer, f"vThMant={layer.threshold} not in [0, {VTH_MAX}]")
        if not 0 <= layer.v_decay <= V_DECAY_MAX:
            fail(layer, f"vDecay={layer.v_decay} not in [0, {V_DECAY_MAX}]")
        if not 1 <= layer.i_decay <= DECAY_UNITY:
            fail(layer, f"iDecay={layer.i_decay} not in [1, {DECAY_UNITY}]")
        if layer.kind not in ("conv", "dense"):
            fail(layer, f"unknown kind {layer.kind!r}")
        if min(layer.padding) < 0:
            fail(layer, f"negative padding {layer.padding}")
