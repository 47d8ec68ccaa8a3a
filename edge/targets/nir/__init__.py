"""NIR export (`--targets nir`): a `nir` graph checked in Norse and snnTorch.

`to_nir(graph)` turns a fused `edge.ir.Graph` into a `nir.NIRGraph` (NIR
1.0, the Neuromorphic Intermediate Representation), `write(nir_graph,
path)` writes it atomically and reads it back, `run(path, x, consumer)`
executes the file in Norse or snnTorch in their own virtual environment
(made by `keras-snn consumers install --targets nir`) through the worker script
`edge/_nir_worker.py`, and `export_target(context)` is the `nir` target of
`edge.export`.

Conventions (those under which Norse 1.1, snnTorch 1.0 and a NumPy
discrete-time reference agree spike for spike):

- Layout: NIR tensors are channels-first without a batch axis: inputs and
  feature maps `(C, H, W)`, convolution kernels `(C_out, C_in, kh, kw)`,
  `Affine` weights `(out, in)`. `Flatten(start_dim=0)` flattens a whole
  `(C, H, W)` map in C-H-W order, so the rows of a dense layer after a
  Keras `Flatten` (H-W-C order) are permuted.
- Time: NIR stores no time step. The file assumes forward Euler with
  `dt = NIR_DT = 1e-4` (what snnTorch hard-codes; pass `dt=1e-4` to
  `norse.torch.from_nir`). Our LIF `u = k v + I` (decay `k`) becomes
  `LIF(tau=dt/(1-k), r=1, v_leak=0, v_threshold=theta (1-k), v_reset=0)`:
  Euler gives `v' = k v + (1-k) I`, the potential scaled by `1-k`, so the
  scaled threshold fires at the same steps. Our IF (`k = 1`) becomes
  `IF(r=1, v_threshold=theta, v_reset=0)`. Parameters are broadcast to the
  layer's shape. The readout (Decoding, Voting, a Dense after the time
  mean) is an `Affine` whose per-step output the caller combines as
  `graph.aggregate` says (the mean over time).
- CubaLIF (`i = a i + I`, `u = k v + i`) becomes `CubaLIF(tau_syn =
  dt/(1-a), w_in = 1/(1-a), tau_mem = dt/(1-k), r = 1/(1-k), v_leak = 0,
  v_threshold = theta, v_reset = 0)`: Norse's import (an `LIBoxCell`
  synapse, then an `LIFBoxCell` fed with the new current) and snnTorch's
  (`snn.Synaptic(alpha=a, beta=k)`, `reset_delay=False`) step it exactly
  as keras_snn does, the current not reset by a spike. `k = 1` or `a = 1`
  (an infinite time constant) is refused.
- Per-channel or per-neuron thresholds and decays (`trainable_*=
  "channel"`, `"neuron"`) fill NIR's per-neuron parameter arrays (channels
  first); Norse reads them, snnTorch (one `v_threshold` per layer) is not
  run on such graphs.
- A recurrent layer (`recurrent=True`: `I[t] + o[t-1] @ W_rec`) is an
  `Affine` (`W_rec^T`, zero bias) from the neuron node back to itself.
  Norse runs the cycle with one step of delay, as keras_snn; snnTorch
  1.0's importer fails on it (under nirtorch 2.6), so such graphs are
  checked in Norse only.
- Average pooling: Norse imports `SumPool2d` but not `AvgPool2d`, so a
  `k x k` average pool is written as `SumPool2d` and its `1/k^2` is folded
  into the next convolution or dense layer (or into the next neuron's
  threshold).
- Threshold: keras_snn fires at `u >= theta`, NIR (and Norse, snnTorch) at
  `v > theta`. The two differ only when the potential equals the
  threshold exactly, a set of measure zero for real-valued weights and
  inputs; the consumers also compute in float32 where the reference uses
  float64, so a potential within rounding of the threshold may fire in one
  and not the other. `export_target` therefore checks that every
  disagreement starts at such a near-tie (see `compare_spikes`).

Refused before anything is written, with an `UnsupportedLayerError` that
names the layer: subtractive ("soft") reset and `reset="none"` (NIR only
resets to `v_reset`), max pooling (no NIR primitive), residual additions,
batch norms that could not be folded (an affine on spikes: Norse and
snnTorch import no `Scale`), the membrane-potential readout (a leaky
integrator: neither importer reads `LI`), "same" padding that TensorFlow
makes asymmetric (PyTorch pads both sides alike), padded average pooling,
ALIF (no adaptive-threshold primitive in NIR 1.0), a CubaLIF without a
leak (`decay=1` or `current_decay=1`).

Reference: Pedersen et al. 2024, "Neuromorphic intermediate
representation: a unified instruction set for interoperable brain-inspired
computing", Nature Communications 15, 8122.
"""

from edge.errors import ConsumerError
from edge.targets import Requirement
from edge.targets import Target
from edge.targets.nir.compare import compare_spikes
from edge.targets.nir.convert import CONSUMERS
from edge.targets.nir.convert import NIR_DT
from edge.targets.nir.convert import NIR_SAMPLES
from edge.targets.nir.convert import NIRConversion
from edge.targets.nir.convert import convert
from edge.targets.nir.convert import cuba_parameters
from edge.targets.nir.convert import lif_parameters
from edge.targets.nir.convert import to_nir
from edge.targets.nir.nirfile import read_back
from edge.targets.nir.nirfile import write
from edge.targets.nir.run import nir_python
from edge.targets.nir.run import run
from edge.targets.nir.run import run_conversion
from edge.targets.nir.target import export_target

__all__ = [
    "CONSUMERS",
    "NIRConversion",
    "NIR_DT",
    "NIR_SAMPLES",
    "TARGET",
    "compare_spikes",
    "convert",
    "cuba_parameters",
    "export_target",
    "lif_parameters",
    "nir_python",
    "read_back",
    "run",
    "run_conversion",
    "to_nir",
    "write",
]


def _consumers_available():
    try:
        nir_python()
    except ConsumerError:
        return False
    return True


TARGET = Target(
    "nir",
    export_target,
    requirements=(
        Requirement.module("nir", "pip install nir"),
        Requirement(
            "the NIR consumers' environment (keras-snn consumers status)",
            _consumers_available,
            "keras-snn consumers install --targets nir",
        ),
    ),
    description="model.nir (Norse, snnTorch)",
)
