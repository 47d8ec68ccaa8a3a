"""Loihi: a lava-dl NetX HDF5 file, its fixed-point reference and a Lava run.

`export_target(context)` is the `"loihi"` target of `edge.export`:
quantize the fused step graph to Loihi's fixed point (`quantize_loihi`),
write the NetX file (`write_netx`), run it in Lava's bit-accurate CPU models
(`run_lava`: `lava.lib.dl.netx.hdf5.Network` with
`Loihi2SimCfg(select_tag="fixed_pt")`, in the Python 3.10 environment
`keras-snn consumers install --targets loihi`) and require its output spikes to
equal the Loihi reference (`run_loihi_reference`) spike for spike.

Partition of the model (one decision, documented here once):

- **Host encoder**: the input, the first synaptic layer and the first
  spiking layer run on the host in float64 (`edge.reference.apply_float`),
  exactly as the float reference does. A keras_snn model's first layer
  takes analog input (`DirectEncoding` repeats the image `T` times); NetX
  input ports carry binary spikes, so the first spiking layer is the
  encoder and **its spikes are the NetX input**. This is what a Loihi
  deployment does with analog data (the host or an embedded CPU encodes),
  and it keeps the chip's input binary and the check exact.
- **Chip**: every later layer up to the last spiking layer: `conv`/`dense`
  CUBA layers, one neuron group each.
- **Host readout**: what follows the last spiking layer (`Decoding`,
  `Voting`, `MembraneReadout`, mean rate + `Dense`) runs on the host in
  float64 from the chip's output spikes. Its result is a deterministic
  function of those spikes, so spike-for-spike equality of the chip output
  proves the whole output.

Mapping (fused float graph -> file units; see Lava's `PyLifModelBitAcc`,
`lava/proc/lif/models.py`, and lava-dl's `netx/hdf5.py`, `netx/utils.py`):

- One integer scale `S` per layer: `w = 2 round(S W / 2)` (even integers in
  [-254, 254]: an 8-bit mantissa times 2, the form slayer writes and that
  NetX's `optimize_weight_bits` and Lava's `clip_weights` /
  `truncate_weights` leave unchanged, checked by `netx_weights_exact`),
  `bias = round(S b)` (13-bit signed mantissa, `bias_exp = 6`), and the
  threshold `n = S theta` an integer: `S = n / theta` with
  `n = floor(theta * min(254 / max|W|, 4095 / max|b|, 131071 / theta))`.
- Current: `iDecay = round((1 - a) 4096)` for a `CubaLIF`'s current decay
  `a` (`keras_snn.fixed_point.quantize_decay`), so Loihi's `u` is its
  synaptic current `i`; `iDecay = 4096` (`a = 0`: LIF, IF) makes `u` the
  instantaneous input. Voltage: `vDecay = round((1 - k) 4096)` for the
  decay `k` (Lava decays both by `trunc(x (4096 - d) / 4096)`, toward
  zero, where keras_snn multiplies by `k` and `a`). Loihi adds the bias
  to `v`, unfiltered, where a `CubaLIF` adds it to `i`: a `CubaLIF` with
  `a > 0` and a bias (a folded batch norm's shift too) is refused.
- Recurrent dense layers (`recurrent=True`) are NetX `dense_rec` layers:
  `weight_rec` on the same scale (NetX picks one exponent for both), a
  recurrent `Dense` of one step of delay, `o[t-1] @ W_rec` as keras_snn.
- A per-channel threshold (`trainable_threshold="channel"`) scales each
  output channel on its own, `S_c = n / theta_c`, with one `vThMant = n`;
  per-channel or per-neuron decays are refused (one `vDecay`, `iDecay`
  per NetX layer). `ALIF` is refused (no adaptive threshold in NetX).
- Threshold: keras_snn fires at `u >= theta`, Loihi at `v > vThMant << 6`.
  With `vDecay = 0` and `iDecay = 4096` (IF neurons) the potential is
  always a multiple of 64 (weights and biases are integers), so `u >= n`
  equals `v > (n - 1) << 6` and `vThMant = n - 1` is exact. A leaky
  neuron's potential (or a decaying current) carries Loihi's 6 fractional
  bits; `vThMant = n` then fires at `v > n << 6`,
  differing from `u >= n` only at the single value `v == n << 6`.
- Hard reset to 0 only (Loihi's reset); soft reset, `reset="none"`, residual
  `add` and per-channel `affine` (an unfoldable batch norm) are refused.
- Flatten: NetX feeds a dense layer after a conv in CHW order; the dense
  rows are permuted from Keras' HWC order. Conv kernels are written OIHW
  (cross-correlation, not flipped: NetX flips and Lava flips back).
- Average pooling of spikes is linear: it is folded into the next synaptic
  layer (a conv with a `k`-times larger kernel and stride, or a dense layer
  with repeated rows), exact for the spike counts feeding it. Max pooling
  of spikes is an OR: a conv layer of its own (ones on the channel
  diagonal, stride = pool stride) with an IF neuron of threshold 1 spike
  (`vThMant = 0`), exact. NetX cannot load `pool`/`average` layers.
- Conv padding must be symmetric (NetX has one padding per axis);
  TensorFlow's `"same"` with an odd total padding is refused.

Timing: each chip layer adds one step of delay (a Lava `Dense`/`Conv`
sends at step `t` what it accumulated at `t - 1`), so the `T` output steps
of a sample appear `depth = len(layers)` steps late. Samples are separated
by Lava's reset (`Network(reset_interval=R, reset_offset=1)`, `LIFReset`):
layer `j` (0-based) zeroes `u` and `v` at the step its first input of a
sample arrives (0-based step `t` with `t % R == j + 1`). A sample occupies
`R` input steps (`R` = the power of two >= `T`, what Loihi hardware needs),
its spikes in the first `T`; its output is read in the window
`[depth, depth + T)` after its start, which then equals the undelayed
integer network's output exactly. `run_loihi_reference` reproduces the
whole stream, delays and resets included.

Example:

>>> from edge.targets import loihi
>>> lgraph = loihi.quantize_loihi(edge.fuse.fuse(edge.ir.extract(m)))
>>> loihi.write_netx(lgraph, "model.net")
>>> out, spikes = loihi.run_loihi(lgraph, x_test)

Reference:
    Davies et al. 2018, "Loihi: A Neuromorphic Manycore Processor with
    On-Chip Learning", IEEE Micro 38(1). lava-nc 0.10.0
    (`lava/proc/lif/models.py`, `lava/proc/dense/models.py`,
    `lava/proc/conv/models.py`, `lava/utils/weightutils.py`) and lava-dl
    0.6.0 (`lava/lib/dl/netx/hdf5.py`, `netx/utils.py`).
"""

from edge.targets import Requirement
from edge.targets import Target
from edge.targets.loihi.lava_runner import lava_python
from edge.targets.loihi.lava_runner import make_stream
from edge.targets.loihi.lava_runner import run_lava
from edge.targets.loihi.netx_writer import netx_bytes
from edge.targets.loihi.netx_writer import write_netx
from edge.targets.loihi.quantization import LAVA_SAMPLES
from edge.targets.loihi.quantization import NETX_FILE
from edge.targets.loihi.quantization import LoihiGraph
from edge.targets.loihi.quantization import LoihiLayer
from edge.targets.loihi.quantization import quantize_loihi
from edge.targets.loihi.ranges import check_ranges
from edge.targets.loihi.ranges import netx_weights_exact
from edge.targets.loihi.reference import LoihiDecay
from edge.targets.loihi.reference import decode
from edge.targets.loihi.reference import encode
from edge.targets.loihi.reference import loihi_neuron_step
from edge.targets.loihi.reference import recurrent_input
from edge.targets.loihi.reference import run_loihi
from edge.targets.loihi.reference import run_loihi_reference
from edge.targets.loihi.target import export_target

__all__ = [
    "LAVA_SAMPLES",
    "LoihiDecay",
    "LoihiGraph",
    "LoihiLayer",
    "NETX_FILE",
    "TARGET",
    "check_ranges",
    "decode",
    "encode",
    "export_target",
    "lava_python",
    "loihi_neuron_step",
    "make_stream",
    "netx_bytes",
    "netx_weights_exact",
    "quantize_loihi",
    "recurrent_input",
    "run_lava",
    "run_loihi",
    "run_loihi_reference",
    "write_netx",
]


def _lava_available():
    return lava_python() is not None


TARGET = Target(
    "loihi",
    export_target,
    requirements=(
        Requirement.module("h5py", "pip install h5py"),
        Requirement(
            "the Lava environment (keras-snn consumers status)",
            _lava_available,
            "keras-snn consumers install --targets loihi",
        ),
    ),
    description="model_loihi.net (Lava fixed_pt)",
)
