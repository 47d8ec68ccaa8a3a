"""The integer reference simulator: the deployed fixed-point arithmetic.

This module defines, once, what a quantized keras_snn network computes on an
integer machine; the exporters' integer runtimes must reproduce it bit for
bit. A quantized graph (`edge.quantize.quantize`) holds, per node, integer
parameters; `run_integer(qgraph, x)` runs it with NumPy int64 arrays. The
step of each node is `keras_snn.graph_step.apply_integer`, which
quantization-aware training (`keras_snn.quantization`) runs on tensors:
the arithmetic below has that one implementation.

Arithmetic, per time step (all values integers):

- Input: `x_q = clip(round_half_away(x / s_in), -127, 127)` (int8).
- Synaptic layer (conv2d, dense, affine) with int8 weights `W_q` (one scale
  per output channel `c`), int32 accumulator and int32 bias `b_q` in the
  accumulator's scale: `acc = b_q[c] + W_q * x` (spikes are 0/1, so on
  spiking inputs this is the bias plus the sum of the weights of the
  inputs that fired: event-driven accumulation), then
  `y[c] = rshift_round(acc * m[c], n[c])`, saturated to the `state_bits`
  range (`m[c]`: 15-bit multiplier, `n[c]`: shift;
  `rshift_round(z, n) = (z + 2^(n-1)) >> n` in int64, an arithmetic shift,
  so halves round up).
- Average pooling of spikes: the window **sum** (the `1/k^2` is folded into
  the next layer's multiplier); a window over the border, with `n < k^2`
  positions inside the input, gives `rounded_average(k^2 sum, n)` (TFLite's
  average of spikes worth `k^2`), the same real average in units of
  `1/k^2`; max pooling, flatten: as in float.
- Add: saturating sum of currents that share one scale.
- Neuron (Wu et al. 2019, Eq. 5-6 through `keras_snn.functional.neuron_step`,
  the same function the Keras layers use): with the current `I` (already
  saturated) and the state `v`,
  `u = saturate(decay_multiply(v, d_q) + I)` (`decay_multiply(v, d) =
  rounding_divide_by_pot(v d, 15)`, ties away from zero, with the even
  `d_q = 2 round(decay * 2^14)`, so `decay = 1` is exact),
  `o = [u >= th_q]`, then hard reset `v = u (1-o)` or soft reset
  `v = u - th_q o` (never overflows: `u >= th_q >= 0` where it applies).
  int32 holds every intermediate.
- Other neuron models (`edge.neuron_models.step`, the same functions of
  `keras_snn.functional`), with every product by a decay a
  `decay_multiply` and every sum saturated:
  recurrent synapses add `saturate(requantize(o[t-1] W_rec_q, m, n))`
  (a dense layer on the previous spikes, in the potential's scale) to `I`;
  a CubaLIF filters the current, `i = saturate(decay_multiply(i, a_q) +
  I)`, and the membrane integrates `i` (`a_q = 0`: the LIF neuron); an
  ALIF compares with `th_q + a`, where the adaptation `a` (the threshold's
  rise, in the potential's scale) follows
  `a = decay_multiply(a, rho_q) + step_q o` after the spike, and a soft
  reset subtracts `th_q + a`. A per-channel or per-neuron threshold or
  decay is an array of these integers.
- Leaky integrator (`MembraneReadout`): the neuron with no spike or reset;
  its output is `u`.

Outputs are integers in the output scale `s_out`; `dequantize` gives floats.
The rounding, shift and saturation functions are those of
`keras_snn.fixed_point` (re-exported here), their one definition.
"""

import numpy as np

from edge import kernels
from edge import reference
from keras_snn import graph_step
from keras_snn.fixed_point import DECAY_BITS
from keras_snn.fixed_point import requantize
from keras_snn.fixed_point import round_half_away
from keras_snn.fixed_point import rshift_round
from keras_snn.fixed_point import saturate
from keras_snn.graph_step import FixedPointAdaptation
from keras_snn.graph_step import FixedPointDecay

__all__ = [
    "DECAY_BITS",
    "FixedPointAdaptation",
    "FixedPointDecay",
    "constants",
    "requantize",
    "round_half_away",
    "rshift_round",
    "run_integer",
    "saturate",
]


def _pool_counts(x, pool_size, strides, padding):
    counts = kernels.pool_counts(x.shape[1:], pool_size, strides, padding)
    return counts[None, :, :, None]


# The integer reference's kernels: NumPy, int64.
NUMPY = graph_step.Arithmetic(
    conv2d=lambda x, k, strides, padding: kernels.conv2d(
        x, k, None, strides, padding
    ),
    dense=kernels.dense,
    pool_sums=lambda x, *where: kernels.avg_pool2d(x, *where, divide=False),
    pool_counts=_pool_counts,
    max_pool=lambda x, *where: kernels.max_pool2d(
        np.asarray(x, np.int64), *where
    ),
    flatten=lambda x: x.reshape(len(x), -1),
    integers=lambda x: np.asarray(x, np.int64),
)


def apply_integer(node, inputs, state, bits):
    """One integer step of one node (see the module docstring):
    `keras_snn.graph_step.apply_integer` on NumPy int64 arrays."""
    return graph_step.apply_integer(node, inputs, state, bits, NUMPY)


# The integer constants of a quantized neuron node for the neuron step.
constants = graph_step.constants


def _recurrent(node, bits):
    """The recurrent current function of a quantized neuron node."""
    return graph_step._recurrent(node, bits, NUMPY)


def quantize_input(qgraph, x):
    """The int8 input `clip(round_half_away(x / s_in), -127, 127)`."""
    return np.clip(
        round_half_away(np.asarray(x) / qgraph.input_scale), -127, 127
    )


def run_integer(qgraph, x, timesteps=None, record=False):
    """Runs a quantized graph with the integer arithmetic above.

    Args:
        qgraph: an `edge.quantize.QuantizedGraph`.
        x: float inputs as for `edge.reference.run_float`; they are
            quantized with the graph's input scale.
        timesteps: overrides the graph's `T`.
        record: also return every node's integer values per step.

    Returns:
        `(output, raw)` with `output` the dequantized aggregated output
        (float64) and `raw` the integer per-step outputs `(N, T, ...)`;
        with `record`, `(output, raw, trace)`.

    Example:

    >>> qgraph = edge.quantize.quantize(fused, x_train[:256])
    >>> scores, raw = edge.integer.run_integer(qgraph, x_test)
    """
    graph = qgraph.graph
    steps, x_at = reference.input_steps(graph, x, timesteps)
    bits = qgraph.state_bits

    def at(t):
        return quantize_input(qgraph, x_at(t))

    def apply(node, inputs, state):
        return apply_integer(node, inputs, state, bits)

    outputs, trace = reference.simulate(
        graph.nodes, graph.output, at, steps, apply, record
    )
    raw = np.stack(outputs, axis=1)
    values = [o * qgraph.output_scale for o in outputs]
    output = reference.aggregate(values, graph.aggregate)
    return (output, raw, trace) if record else (output, raw)
