"""Bit-exact NumPy emulator of full-integer (int8) TFLite models.

`TFLiteIntegerReference` reads a `.tflite` flatbuffer and runs its operators
with the integer arithmetic of the TFLite-Micro (TFLM) reference kernels, so
that an exported int8 model can be checked bit for bit without a device and
without trusting any one runtime. It is the "TFLM emulator" of `edge`'s
reports, distinct from the integer reference `edge.integer` (the arithmetic
of the C runtime and Loihi).

Arithmetic reproduced (TFLM `tensorflow/lite/kernels/internal` and
`tensorflow/lite/micro/kernels`, read at commit `90b983c2`), with the
fixed-point functions of `keras_snn.fixed_point`:

- `QuantizeMultiplier` (`quantization_util.cc`): a real multiplier becomes a
  Q31 significand and a power-of-two exponent, rounded with `std::round`.
- `MultiplyByQuantizedMultiplier` (`common.cc`, default double-rounding
  build): `SaturatingRoundingDoublingHighMul` then `RoundingDivideByPOT`,
  both from gemmlowp's `fixedpoint.h`.
- ADD/SUB: both inputs shifted left by 20 bits, scaled by
  `s_i / (2 max(s_1, s_2))`, summed, scaled by
  `2 max(s_1, s_2) / (2^20 s_out)` (`add_common.cc`, `sub_common.cc`; SUB
  computes those ratios in float32, ADD in double). Each ratio must be in
  (0, 1), or the model is refused at load, as TFLM aborts on it.
- int8 comparisons: both inputs shifted left by 8 bits and scaled by their
  own scale (`comparisons.cc`); an input scale outside (0, 1) is refused at
  load, as TFLM aborts on it.
- CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with int32 accumulators and
  per-channel multipliers (`reference/integer_ops/*.h`); AVERAGE_POOL_2D
  dividing with ties away from zero; MEAN folding `1/count` into the
  multiplier (`reference/reduce.h`).

Supported operators (int8 unless noted; float32 variants run in plain NumPy
float32 and are close to, not guaranteed bit-equal with, TFLite): ADD, SUB,
MUL (int8, float32, int32; NumPy broadcasting), AVERAGE_POOL_2D, MAX_POOL_2D,
CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MEAN, CONCATENATION, PAD, PADV2,
RESHAPE, SQUEEZE, EXPAND_DIMS, RELU, RELU6, GREATER, GREATER_EQUAL, LESS,
LESS_EQUAL, EQUAL, NOT_EQUAL (int8 rescaled; float32, int32, bool plain),
SELECT, SELECT_V2, QUANTIZE (float32 -> int8, int8 -> int8), DEQUANTIZE,
CAST. Anything else raises `NotImplementedError` when the model is loaded.

Measured agreement (TF 2.21 converter, ai-edge-litert 2.3.0, tflite-micro
0.dev20261023182759; the models of `tests/test_tflite_reference.py`, 200
random input sets each, about 10^6 output values):

- `target="tflm"` (default) equals TFLM (`tflite_micro.runtime`) bit for bit
  on every operator above.
- `target="litert"` equals LiteRT's reference kernels
  (`OpResolverType.BUILTIN_REF`) bit for bit. It differs from `"tflm"` in
  two places only. FULLY_CONNECTED: LiteRT's reference kernel rescales with
  a single rounding, TFLM with the double rounding, so 0.1-0.2 % of int8 FC
  outputs differ by 1 (8 of 5,000 per-channel, 5 of 5,000 per-tensor; 4 of
  56,400 outputs of the spiking step model). A 1x1 Conv2D in place of a
  Dense layer becomes CONV_2D, which is identical in both. Standalone
  RELU6 whose output scale differs from its input's: TFLM clamps without
  rescaling, LiteRT rescales.
- `OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES` (optimized kernels) is
  not exact: +-1 on 0.07-0.12 % of CONV_2D outputs (some configurations)
  and 0.06-0.21 % of FULLY_CONNECTED outputs; ADD, SUB, MUL, RELU, pooling,
  MEAN, comparisons and SELECT_V2 were exact.
- The default resolver (XNNPACK delegate) is not exact: +-1 on 0.07-0.15 %
  of CONV_2D and DEPTHWISE_CONV_2D outputs, 0.1-0.14 % of MUL outputs, 8 %
  of MEAN outputs; its FULLY_CONNECTED equals `target="litert"`; ADD, SUB,
  pooling and comparisons were exact. In the spiking step model a 1-LSB
  difference at the threshold flips a spike: 235 of 56,400 outputs
  differed, by up to 95.

Example:

```python
ref = TFLiteIntegerReference("step_int8.tflite")
detail = ref.input_details[0]
x_q = quantize(x, detail["scale"], detail["zero_point"])
outputs = ref.run([x_q, *states_q])
```
"""

import functools
import os

import numpy as np

from keras_snn.fixed_point import multiply_by_quantized_multiplier
from keras_snn.fixed_point import quantize_multiplier
from keras_snn.fixed_point import round_half_away
from keras_snn.fixed_point import wrap_int32

_TARGETS = ("tflm", "litert")

# TfLitePadding and TfLiteFusedActivation as stored in the flatbuffer.
_PADDING_SAME = 0
_PADDING_VALID = 1
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


# ---------------------------------------------------------------------------
# Fixed-point primitives: `keras_snn.fixed_point` (`quantize_multiplier`,
# `multiply_by_quantized_multiplier`, `round_half_away`, `wrap_int32`).
# ---------------------------------------------------------------------------


def _float_quantize(x, scale, zero_point, dtype):
    """Reproduces `reference_ops::AffineQuantize` (reference/quantize.h).

    `x / scale` in float32, `std::round` (ties away from zero), plus the zero
    point, clamped to the range of `dtype`.
    """
    info = np.iinfo(dtype)
    x = np.asarray(x, np.float32)
    scaled = round_half_away(x / np.float32(scale), None)
    # Clip before the integer cast: a C cast of an out-of-range float is
    # undefined; this keeps NaN-free inputs well defined.
    scaled = np.clip(scaled, -(2.0**31), 2.0**31 - 256)
    q = scaled.astype(np.int64) + int(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def quantize(x, scale, zero_point, dtype=np.int8):
    """Quantizes float values exactly as TFLite's QUANTIZE operator does.

    Computes `clamp(round(x / scale) + zero_point)`, where the division is
    done in float32 and `round` rounds ties **away from zero** (C's `round`,
    used by `reference_ops::AffineQuantize`), not to even as `np.round`
    does. Use it to feed float data to a model whose input tensor is int8.

    Args:
        x: array-like of floats.
        scale: float, the tensor's scale (`input_details[i]["scale"]`).
        zero_point: int, the tensor's zero point.
        dtype: NumPy integer type of the result. Defaults to `np.int8`.

    Returns:
        NumPy array of `dtype`, same shape as `x`.

    Example:

    >>> quantize([0.5, 1.5, -0.5], scale=1.0, zero_point=0)
    array([ 1,  2, -1], dtype=int8)
    """
    return _float_quantize(x, scale, zero_point, np.dtype(dtype))


def dequantize(q, scale, zero_point):
    """Dequantizes integers exactly as TFLite's DEQUANTIZE operator does.

    Computes `float32(scale * (q - zero_point))` with `scale` widened to
    double, as `reference_ops::Dequantize` (reference/dequantize.h).

    Args:
        q: array-like of integers.
        scale: float, the tensor's scale.
        zero_point: int, the tensor's zero point.

    Returns:
        float32 NumPy array, same shape as `q`.

    Example:

    >>> dequantize([0, 2], scale=0.5, zero_point=-2)
    array([1., 2.], dtype=float32)
    """
    q = np.asarray(q, np.int64)
    scale = float(np.float32(scale))
    return (scale * (q - int(zero_point)).astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------------------
# Model representation.
# ---------------------------------------------------------------------------


class _Tensor:
    """One tensor of the subgraph, with its quantization and constant data."""

    def __init__(
        self, index, name, shape, dtype, scale, zero_point, qdim, data
    ):
        self.index = index
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.scale = scale  # float32 array, empty when not quantized
        self.zero_point = zero_point  # int64 array
        self.quantized_dimension = qdim
        self.data = data  # NumPy array for constants, else None

    @property
    def s(self):
        """The per-tensor scale as a float32 scalar (0 when unquantized)."""
        return np.float32(self.scale[0]) if self.scale.size else np.float32(0)

    @property
    def zp(self):
        """The per-tensor zero point as a Python int (0 when unquantized)."""
        return int(self.zero_point[0]) if self.zero_point.size else 0


class _Op:
    """One operator: name, input/output tensors (None for -1), options."""

    def __init__(self, name, inputs, outputs, options, target):
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.options = options
        self.target = target

    def option(self, name, default=None):
        return getattr(self.options, name, default)


def _numpy_dtypes():
    from tensorflow.lite.python import schema_py_generated as schema

    by_name = {
        "FLOAT32": np.float32,
        "FLOAT16": np.float16,
        "FLOAT64": np.float64,
        "INT32": np.int32,
        "UINT8": np.uint8,
        "INT64": np.int64,
        "BOOL": np.bool_,
        "INT16": np.int16,
        "INT8": np.int8,
        "UINT32": np.uint32,
        "UINT16": np.uint16,
    }
    return {
        getattr(schema.TensorType, name): np.dtype(dt)
        for name, dt in by_name.items()
        if hasattr(schema.TensorType, name)
    }


def _operator_names():
    from tensorflow.lite.python import schema_py_generated as schema

    return {
        value: key
        for key, value in vars(schema.BuiltinOperator).items()
        if not key.startswith("_") and isinstance(value, int)
    }


# ---------------------------------------------------------------------------
# Kernels. Each `_prepare_*` mirrors a TFLM Prepare: it checks types and
# precomputes multipliers, then returns the Eval as a closure taking the input
# arrays (None for an absent optional input) and returning the output arrays.
# ---------------------------------------------------------------------------

_PREPARERS = {}


def _kernel(*names):
    def register(fn):
        for name in names:
            _PREPARERS[name] = fn
        return fn

    return register


def _unsupported(op, what):
    return NotImplementedError(
        f"Operator {op.name} is supported by TFLiteIntegerReference only "
        f"for int8 (and float32) tensors. Received: {what}"
    )


def _is_int8(tensor):
    return tensor.dtype == np.int8


def _activation_range_quantized(op, output):
    """Reproduces `CalculateActivationRangeQuantized` (kernel_util.cc)."""
    code = op.option("fusedActivationFunction", 0)
    info = np.iinfo(output.dtype)
    lo, hi = int(info.min), int(info.max)

    def q(value):
        scaled = round_half_away(np.float32(value) / output.s, None)
        return output.zp + int(scaled)

    if code == 0:
        return lo, hi
    if code == 1:
        return max(lo, q(0.0)), hi
    if code == 3:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if code == 2:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise NotImplementedError(
        f"Fused activation {code} of operator {op.name} is not supported; "
        f"supported: {sorted(_ACTIVATIONS.values())}."
    )


def _activation_range_float(op):
    code = op.option("fusedActivationFunction", 0)
    ranges = {
        0: (-np.inf, np.inf),
        1: (0.0, np.inf),
        2: (-1.0, 1.0),
        3: (0.0, 6.0),
    }
    if code not in ranges:
        raise NotImplementedError(
            f"Fused activation {code} of operator {op.name} is not "
            f"supported; supported: {sorted(_ACTIVATIONS.values())}."
        )
    lo, hi = ranges[code]
    return np.float32(lo), np.float32(hi)


def _finish(values, output, clamp=None):
    """Clamps (if asked), casts and reshapes to the output tensor."""
    if clamp is not None:
        values = np.clip(values, clamp[0], clamp[1])
    values = np.asarray(values).astype(output.dtype)
    return np.broadcast_to(values, output.shape).copy()


@_kernel("ADD", "SUB")
def _prepare_add_sub(op):
    """ADD / SUB: TFLM add_common.cc + sub_common.cc, integer_ops/add.h."""
    in1, in2 = op.inputs[:2]
    out = op.outputs[0]
    is_sub = op.name == "SUB"
    if out.dtype == np.float32:
        clamp = _activation_range_float(op)

        def eval_float(a, b):
            return [_finish(a - b if is_sub else a + b, out, clamp)]

        return eval_float
    if out.dtype in (np.int32, np.int64) and not out.scale.size:

        def eval_int(a, b):
            a, b = a.astype(np.int64), b.astype(np.int64)
            return [_finish(a - b if is_sub else a + b, out)]

        return eval_int
    if not (_is_int8(in1) and _is_int8(in2) and _is_int8(out)):
        raise _unsupported(
            op, f"dtypes {in1.dtype}, {in2.dtype} -> {out.dtype}"
        )
    left_shift = 20
    s1, s2, so = in1.s, in2.s, out.s
    if is_sub:
        # sub_common.cc does this part in float32.
        twice_max = np.float32(2) * max(s1, s2)
        real1 = float(np.float32(s1 / twice_max))
        real2 = float(np.float32(s2 / twice_max))
        real_out = float(
            np.float32(twice_max / (np.float32(1 << left_shift) * so))
        )
    else:
        twice_max = 2.0 * float(max(s1, s2))
        real1 = float(s1) / twice_max
        real2 = float(s2) / twice_max
        real_out = twice_max / ((1 << left_shift) * float(so))
    m1, sh1 = _multiplier_below_one(op, real1, "input 1 multiplier")
    m2, sh2 = _multiplier_below_one(op, real2, "input 2 multiplier")
    mo, sho = _multiplier_below_one(
        op,
        real_out,
        f"output multiplier (2 max(input scales) / (2**20 output scale), "
        f"output {out.name!r})",
    )
    lo, hi = _activation_range_quantized(op, out)
    zp1, zp2, zpo = in1.zp, in2.zp, out.zp

    def eval_int8(a, b):
        x1 = (a.astype(np.int64) - zp1) << left_shift
        x2 = (b.astype(np.int64) - zp2) << left_shift
        x1 = multiply_by_quantized_multiplier(x1, m1, sh1)
        x2 = multiply_by_quantized_multiplier(x2, m2, sh2)
        raw = wrap_int32(x1 - x2 if is_sub else x1 + x2)
        raw = multiply_by_quantized_multiplier(raw, mo, sho) + zpo
        return [_finish(raw, out, (lo, hi))]

    return eval_int8


@_kernel("MUL")
def _prepare_mul(op):
    """MUL: TFLM mul_common.cc, reference/integer_ops/mul.h."""
    in1, in2 = op.inputs[:2]
    out = op.outputs[0]
    if out.dtype == np.float32:
        clamp = _activation_range_float(op)
        return lambda a, b: [_finish(a * b, out, clamp)]
    if out.dtype in (np.int32, np.int64) and not out.scale.size:
        return lambda a, b: [
            _finish(wrap_int32(a.astype(np.int64) * b.astype(np.int64)), out)
        ]
    if not (_is_int8(in1) and _is_int8(in2) and _is_int8(out)):
        raise _unsupported(
            op, f"dtypes {in1.dtype}, {in2.dtype} -> {out.dtype}"
        )
    real = float(in1.s) * float(in2.s) / float(out.s)
    mult, shift = quantize_multiplier(real)
    lo, hi = _activation_range_quantized(op, out)
    zp1, zp2, zpo = in1.zp, in2.zp, out.zp

    def eval_int8(a, b):
        prod = (a.astype(np.int64) - zp1) * (b.astype(np.int64) - zp2)
        raw = multiply_by_quantized_multiplier(prod, mult, shift) + zpo
        return [_finish(raw, out, (lo, hi))]

    return eval_int8


_COMPARE = {
    "GREATER": np.greater,
    "GREATER_EQUAL": np.greater_equal,
    "LESS": np.less,
    "LESS_EQUAL": np.less_equal,
    "EQUAL": np.equal,
    "NOT_EQUAL": np.not_equal,
}


def _multiplier_below_one(op, real, what):
    """`QuantizeMultiplierSmallerThanOneExp` (quantization_util.cc), with
    its checks: TFLM's and LiteRT's kernels call it in Prepare, and its
    `TFLITE_CHECK_LT(real, 1.)` / `TFLITE_CHECK_GT(real, 0.)` abort the
    program (SIGABRT, no message) outside `(0, 1)`.

    Raises:
        ValueError: `real` is not in `(0, 1)`; the message names the
            operator and `what` the multiplier is.
    """
    if not 0.0 < real < 1.0:
        raise ValueError(
            f"Operator {op.name} cannot be prepared: its {what} is "
            f"{real:.6g}, and TFLite accepts only 0 < value < 1 there "
            "(QuantizeMultiplierSmallerThanOneExp; TFLite-Micro aborts)."
        )
    return quantize_multiplier(real)


def _comparison_multiplier(op, tensor):
    """The Q31 multiplier and shift of a comparison input's scale.

    TFLM's `ComparisonsPrepare` quantizes each input scale with
    `QuantizeMultiplierSmallerThanOneExp`, which aborts for a scale
    outside `(0, 1)`. LiteRT's kernel takes a scale above 1 through
    `QuantizeMultiplierGreaterThanOne` and then
    `MultiplyByQuantizedMultiplierSmallerThanOneExp` with a positive shift,
    which it cannot do (`RoundingDivideByPOT` by a negative exponent):
    measured with ai-edge-litert 2.3.0, `GREATER_EQUAL(a, 1.0)` with `a` at
    scale 3.13 is false for all 256 int8 values of `a`. Neither has a
    defined result, so the emulator refuses such a scale for both targets.

    Raises:
        ValueError: the scale is not in `(0, 1)`.
    """
    return _multiplier_below_one(
        op, float(tensor.s), f"int8 input {tensor.name!r} scale"
    )


@_kernel(*_COMPARE)
def _prepare_comparison(op):
    """Comparisons: TFLM comparisons.cc, reference/comparisons.h.

    int8 inputs go through `ComparisonWithScaling` (left shift 8, each input
    scaled by its own scale); float32/int32/bool inputs compare directly.
    Input scales outside `(0, 1)` are refused at load (see
    `_comparison_multiplier`).
    """
    in1, in2 = op.inputs[:2]
    out = op.outputs[0]
    compare = _COMPARE[op.name]
    if not _is_int8(in1):
        if in1.dtype not in (np.float32, np.int32, np.int64, np.bool_):
            raise _unsupported(op, f"input dtype {in1.dtype}")
        return lambda a, b: [_finish(compare(a, b), out)]
    if not _is_int8(in2):
        raise _unsupported(op, f"dtypes {in1.dtype}, {in2.dtype}")
    left_shift = 8
    m1, sh1 = _comparison_multiplier(op, in1)
    m2, sh2 = _comparison_multiplier(op, in2)
    zp1, zp2 = in1.zp, in2.zp

    def eval_int8(a, b):
        x1 = (a.astype(np.int64) - zp1) << left_shift
        x2 = (b.astype(np.int64) - zp2) << left_shift
        x1 = multiply_by_quantized_multiplier(x1, m1, sh1)
        x2 = multiply_by_quantized_multiplier(x2, m2, sh2)
        return [_finish(compare(x1, x2), out)]

    return eval_int8


def _rescaling_relu(op, upper):
    """Requantizes input to output, then clamps to `[q(0), q(upper)]`."""
    inp, out = op.inputs[0], op.outputs[0]
    # The scale ratio is taken in float32, then widened.
    mult, shift = quantize_multiplier(float(np.float32(inp.s / out.s)))
    lo, hi = max(-128, out.zp), 127
    if upper is not None:
        upper_q = round_half_away(np.float32(upper) / out.s, None)
        hi = min(hi, out.zp + int(upper_q))
    zpi, zpo = inp.zp, out.zp

    def eval_relu(x):
        raw = multiply_by_quantized_multiplier(
            x.astype(np.int64) - zpi, mult, shift
        )
        return [_finish(raw + zpo, out, (lo, hi))]

    return eval_relu


@_kernel("RELU")
def _prepare_relu(op):
    """RELU: TFLM activations_common.cc `ReluQuantized` (a requantization)."""
    inp, out = op.inputs[0], op.outputs[0]
    if inp.dtype == np.float32:
        return lambda x: [_finish(np.maximum(x, np.float32(0)), out)]
    if not (_is_int8(inp) and _is_int8(out)):
        raise _unsupported(op, f"dtypes {inp.dtype} -> {out.dtype}")
    return _rescaling_relu(op, None)


@_kernel("RELU6")
def _prepare_relu6(op):
    """RELU6: TFLM activations_common.cc `Relu6Quantized`.

    TFLM's int8 kernel clamps the raw input to `[q(0), q(6)]` in the *input*
    quantization and never rescales, even when the converter gave the output
    another scale. LiteRT (`target="litert"`) rescales to the output first,
    as RELU does.
    """
    inp, out = op.inputs[0], op.outputs[0]
    if inp.dtype == np.float32:
        return lambda x: [_finish(np.clip(x, 0, 6).astype(np.float32), out)]
    if not (_is_int8(inp) and _is_int8(out)):
        raise _unsupported(op, f"dtypes {inp.dtype} -> {out.dtype}")
    if op.target == "litert":
        return _rescaling_relu(op, 6.0)
    six = int(round_half_away(np.float32(6.0) / inp.s, None)) + inp.zp
    six = min(max(six, -128), 127)
    zero = inp.zp
    return lambda x: [_finish(np.clip(x, zero, six), out)]


@_kernel("SELECT", "SELECT_V2")
def _prepare_select(op):
    """SELECT(_V2): TFLM select.cc; copies raw values, no rescaling."""
    out = op.outputs[0]
    if op.inputs[0].dtype != np.bool_:
        raise _unsupported(op, f"condition dtype {op.inputs[0].dtype}")
    return lambda c, x, y: [_finish(np.where(c, x, y), out)]


@_kernel("QUANTIZE")
def _prepare_quantize(op):
    """QUANTIZE: TFLM quantize_common.cc (AffineQuantize or Requantize)."""
    inp, out = op.inputs[0], op.outputs[0]
    if out.scale.size != 1:
        raise _unsupported(op, "per-channel output quantization")
    if inp.dtype == np.float32 and out.dtype in (np.int8, np.int16):
        return lambda x: [_float_quantize(x, out.s, out.zp, out.dtype)]
    integer = (np.int8, np.int16, np.int32, np.uint8)
    if inp.dtype in integer and out.dtype in integer:
        mult, shift = quantize_multiplier(float(inp.s) / float(out.s))
        info = np.iinfo(out.dtype)
        zpi, zpo = inp.zp, out.zp

        def eval_requantize(x):
            raw = multiply_by_quantized_multiplier(
                x.astype(np.int64) - zpi, mult, shift
            )
            return [_finish(raw + zpo, out, (info.min, info.max))]

        return eval_requantize
    raise _unsupported(op, f"dtypes {inp.dtype} -> {out.dtype}")


@_kernel("DEQUANTIZE")
def _prepare_dequantize(op):
    """DEQUANTIZE: TFLM dequantize_common.cc, reference/dequantize.h."""
    inp, out = op.inputs[0], op.outputs[0]
    if inp.dtype == np.float16:
        return lambda x: [_finish(x.astype(np.float32), out)]
    if inp.dtype not in (np.int8, np.int16, np.uint8) or inp.scale.size != 1:
        raise _unsupported(
            op, f"input dtype {inp.dtype} with {inp.scale.size} scales"
        )
    return lambda x: [_finish(dequantize(x, inp.s, inp.zp), out)]


@_kernel("CAST")
def _prepare_cast(op):
    """CAST: TFLM cast.cc, a C `static_cast` (floats truncate to integers)."""
    out = op.outputs[0]

    def eval_cast(x):
        if x.dtype.kind == "f" and out.dtype.kind in "iu":
            x = np.trunc(x)
        return [_finish(x, out)]

    return eval_cast


@_kernel("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _prepare_reshape(op):
    """RESHAPE / SQUEEZE / EXPAND_DIMS: a copy into the output's shape."""
    out = op.outputs[0]
    return lambda x, *shape_args: [x.reshape(out.shape).astype(out.dtype)]


@_kernel("CONCATENATION")
def _prepare_concatenation(op):
    """CONCATENATION: TFLM concatenation.cc (int8 needs equal quantization)."""
    out = op.outputs[0]
    axis = op.option("axis", 0)
    if op.option("fusedActivationFunction", 0) != 0:
        raise _unsupported(op, "a fused activation")
    if _is_int8(out):
        for tensor in op.inputs:
            if tensor.s != out.s or tensor.zp != out.zp:
                raise _unsupported(
                    op, "int8 inputs quantized differently from the output"
                )
    return lambda *xs: [_finish(np.concatenate(xs, axis=axis), out)]


@_kernel("PAD", "PADV2")
def _prepare_pad(op):
    """PAD / PADV2: TFLM pad.cc; int8 PAD fills with the output zero point."""
    inp, out = op.inputs[0], op.outputs[0]

    def eval_pad(x, paddings, constant=None):
        if constant is not None:
            fill = constant.reshape(()).item()
        elif _is_int8(out) or inp.scale.size:
            fill = out.zp
        else:
            fill = 0
        widths = [tuple(int(v) for v in row) for row in paddings]
        return [_finish(np.pad(x, widths, constant_values=fill), out)]

    return eval_pad


def _padding(op, in_size, filter_size, stride, dilation, out_size):
    """Leading padding, as `ComputePaddingWithOffset` (kernels/padding.h)."""
    if op.option("padding", _PADDING_SAME) == _PADDING_VALID:
        return 0
    effective = (filter_size - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(total, 0) // 2


def _windows(x, fill, pads, kernel, strides, dilations, out_hw):
    """Yields `(ky, kx, patch)` for each filter tap of an NHWC input.

    `patch[n, oy, ox, c] = x[n, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw, c]`,
    with `fill` outside the image.
    """
    (ph, pw), (kh, kw), (sh, sw), (dh, dw), (oh, ow) = (
        pads,
        kernel,
        strides,
        dilations,
        out_hw,
    )
    h, w = x.shape[1:3]
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    bottom = max(0, need_h - h - ph)
    right = max(0, need_w - w - pw)
    padded = np.pad(
        x,
        ((0, 0), (ph, bottom), (pw, right), (0, 0)),
        constant_values=fill,
    )
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            patch = padded[
                :,
                y0 : y0 + (oh - 1) * sh + 1 : sh,
                x0 : x0 + (ow - 1) * sw + 1 : sw,
                :,
            ]
            yield ky, kx, patch


def _conv_multipliers(op, inp, weights, out, num_channels):
    """Per-channel multipliers: `PopulateConvolutionQuantizationParams`."""
    scales = weights.scale
    if scales.size not in (1, num_channels):
        raise _unsupported(op, f"{scales.size} weight scales")
    scales = np.broadcast_to(scales, (num_channels,))
    pairs = [
        quantize_multiplier(float(inp.s) * float(s) / float(out.s))
        for s in scales
    ]
    mult = np.array([p[0] for p in pairs], np.int64)
    shift = np.array([p[1] for p in pairs], np.int64)
    return mult, shift


def _requantize_accumulator(
    acc,
    bias,
    mult,
    shift,
    out,
    clamp,
    rescale=multiply_by_quantized_multiplier,
):
    acc = wrap_int32(acc)
    if bias is not None:
        acc = wrap_int32(acc + bias.astype(np.int64))
    raw = rescale(acc, mult, shift) + out.zp
    return _finish(raw, out, clamp)


def _conv_geometry(op, inp, out, kh, kw):
    """Padding, kernel, strides and dilations of a conv op, for `_windows`."""
    sh, sw = op.option("strideH", 1), op.option("strideW", 1)
    dh, dw = op.option("dilationHFactor", 1), op.option("dilationWFactor", 1)
    oh, ow = out.shape[1:3]
    pads = (
        _padding(op, inp.shape[1], kh, sh, dh, oh),
        _padding(op, inp.shape[2], kw, sw, dw, ow),
    )
    return dict(
        pads=pads, kernel=(kh, kw), strides=(sh, sw), dilations=(dh, dw)
    )


def _conv_evaluator(accumulate, inp, out, clamp, requant):
    """The evaluation function of a (depthwise) convolution: float32 sums,
    or int8 with the input zero point removed and the per-channel
    requantization (`requant = (multipliers, shifts)`)."""

    def evaluate(x, w, b=None):
        if requant is None:
            acc = accumulate(x.astype(np.float32), w, np.float32)
            if b is not None:
                acc = acc + b.astype(np.float32)
            return [_finish(acc, out, clamp)]
        acc = accumulate(x.astype(np.int64) - inp.zp, w, np.int64)
        return [_requantize_accumulator(acc, b, *requant, out, clamp)]

    return evaluate


def _check_conv_types(op, inp, weights, bias, out):
    if inp.dtype == np.float32 and weights.dtype == np.float32:
        return False
    if not (_is_int8(inp) and _is_int8(weights) and _is_int8(out)):
        raise _unsupported(
            op, f"input {inp.dtype}, weights {weights.dtype}, out {out.dtype}"
        )
    if bias is not None and bias.dtype != np.int32:
        raise _unsupported(op, f"bias dtype {bias.dtype}")
    return True


@_kernel("CONV_2D")
def _prepare_conv_2d(op):
    """CONV_2D: TFLM conv_common.cc, reference/integer_ops/conv.h.

    Per-channel (or per-tensor) int8 weights, optional int32 bias, grouped
    convolution, SAME/VALID padding, strides, dilation, fused activation.
    """
    inp, weights = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    quantized = _check_conv_types(op, inp, weights, bias, out)
    cout, kh, kw, cin_group = weights.shape
    groups = inp.shape[3] // cin_group
    per_group = cout // groups
    oh, ow = out.shape[1:3]
    geometry = _conv_geometry(op, inp, out, kh, kw)
    if quantized:
        mult, shift = _conv_multipliers(op, inp, weights, out, cout)
        clamp = _activation_range_quantized(op, out)
    else:
        clamp = _activation_range_float(op)

    def accumulate(x, w, acc_dtype):
        acc = np.zeros(out.shape[:3] + (cout,), acc_dtype)
        w = w.astype(acc_dtype)
        for ky, kx, patch in _windows(x, 0, out_hw=(oh, ow), **geometry):
            for g in range(groups):
                chans = slice(g * cin_group, (g + 1) * cin_group)
                outs = slice(g * per_group, (g + 1) * per_group)
                acc[..., outs] += np.einsum(
                    "nhwc,oc->nhwo", patch[..., chans], w[outs, ky, kx, :]
                )
        return acc

    requant = (mult, shift) if quantized else None
    return _conv_evaluator(accumulate, inp, out, clamp, requant)


@_kernel("DEPTHWISE_CONV_2D")
def _prepare_depthwise_conv_2d(op):
    """DEPTHWISE_CONV_2D: TFLM depthwise_conv_common.cc,
    reference/integer_ops/depthwise_conv.h (output channel
    `c * depth_multiplier + m` reads input channel `c`)."""
    inp, weights = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    quantized = _check_conv_types(op, inp, weights, bias, out)
    _, kh, kw, cout = weights.shape
    multiplier = cout // inp.shape[3]
    oh, ow = out.shape[1:3]
    geometry = _conv_geometry(op, inp, out, kh, kw)
    if quantized:
        # Per-channel along dimension 3 (quantized_dimension of the filter).
        mult, shift = _conv_multipliers(op, inp, weights, out, cout)
        clamp = _activation_range_quantized(op, out)
    else:
        clamp = _activation_range_float(op)

    def accumulate(x, w, acc_dtype):
        x = np.repeat(x, multiplier, axis=3)
        acc = np.zeros(out.shape[:3] + (cout,), acc_dtype)
        w = w.astype(acc_dtype)
        for ky, kx, patch in _windows(x, 0, out_hw=(oh, ow), **geometry):
            acc += patch * w[0, ky, kx, :]
        return acc

    requant = (mult, shift) if quantized else None
    return _conv_evaluator(accumulate, inp, out, clamp, requant)


@_kernel("FULLY_CONNECTED")
def _prepare_fully_connected(op):
    """FULLY_CONNECTED: TFLM fully_connected_common.cc,
    reference/integer_ops/fully_connected.h.

    Per-channel weights use `input_scale * weight_scale / output_scale` in
    double; per-tensor weights use the float32 product
    `input_scale * weight_scale` (`GetQuantizedConvolutionMultipler`) and
    honour a weight zero point. Bias is optional; `keep_num_dims` only
    changes the output tensor's shape. With `target="litert"` the
    accumulator is rescaled with a single rounding, as LiteRT's reference
    kernel does.
    """
    inp, weights = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    if op.option("weightsFormat", 0) != 0:
        raise _unsupported(op, "shuffled weights")
    quantized = _check_conv_types(op, inp, weights, bias, out)
    units, depth = weights.shape
    rescale = multiply_by_quantized_multiplier
    if op.target == "litert":
        rescale = functools.partial(
            multiply_by_quantized_multiplier, single=True
        )
    if quantized:
        if weights.scale.size > 1:
            mult, shift = _conv_multipliers(op, inp, weights, out, units)
            w_offset = 0
        else:
            product = float(np.float32(inp.s * weights.s))
            mult, shift = quantize_multiplier(product / float(out.s))
            w_offset = -weights.zp
        clamp = _activation_range_quantized(op, out)
    else:
        clamp = _activation_range_float(op)

    def eval_fc(x, w, b=None):
        if not quantized:
            acc = x.reshape(-1, depth).astype(np.float32) @ w.T
            if b is not None:
                acc = acc + b.astype(np.float32)
            return [_finish(acc.reshape(out.shape), out, clamp)]
        xs = x.reshape(-1, depth).astype(np.int64) - inp.zp
        acc = xs @ (w.astype(np.int64) + w_offset).T
        acc = acc.reshape(out.shape[:-1] + (units,))
        return [
            _requantize_accumulator(acc, b, mult, shift, out, clamp, rescale)
        ]

    return eval_fc


def _pool_geometry(op):
    inp, out = op.inputs[0], op.outputs[0]
    kh, kw = op.option("filterHeight", 1), op.option("filterWidth", 1)
    sh, sw = op.option("strideH", 1), op.option("strideW", 1)
    oh, ow = out.shape[1:3]
    pads = (
        _padding(op, inp.shape[1], kh, sh, 1, oh),
        _padding(op, inp.shape[2], kw, sw, 1, ow),
    )
    return dict(
        pads=pads,
        kernel=(kh, kw),
        strides=(sh, sw),
        dilations=(1, 1),
        out_hw=(oh, ow),
    )


def _check_pool_types(op):
    inp, out = op.inputs[0], op.outputs[0]
    if inp.dtype == np.float32:
        return False
    if not (_is_int8(inp) and _is_int8(out)):
        raise _unsupported(op, f"dtypes {inp.dtype} -> {out.dtype}")
    return True


@_kernel("AVERAGE_POOL_2D")
def _prepare_average_pool_2d(op):
    """AVERAGE_POOL_2D: TFLM pooling_common.cc, integer_ops/pooling.h.

    Only taps inside the image count; the int8 mean rounds half away from
    zero: `(sum +- count / 2) / count` with C truncating division.
    """
    out = op.outputs[0]
    quantized = _check_pool_types(op)
    geometry = _pool_geometry(op)
    if quantized:
        clamp = _activation_range_quantized(op, out)
    else:
        clamp = _activation_range_float(op)

    def eval_avg(x):
        dtype = np.int64 if quantized else np.float32
        inside = np.ones(x.shape[:3] + (1,), dtype)
        total = 0
        count = 0
        for (_, _, patch), (_, _, mask) in zip(
            _windows(x.astype(dtype), 0, **geometry),
            _windows(inside, 0, **geometry),
            strict=True,
        ):
            total = total + patch
            count = count + mask
        if not quantized:
            return [_finish(total / count, out, clamp)]
        half = count // 2
        mean = np.where(
            total > 0,
            (total + half) // count,
            -((half - total) // count),
        )
        return [_finish(mean, out, clamp)]

    return eval_avg


@_kernel("MAX_POOL_2D")
def _prepare_max_pool_2d(op):
    """MAX_POOL_2D: TFLM pooling_common.cc, integer_ops/pooling.h."""
    out = op.outputs[0]
    quantized = _check_pool_types(op)
    geometry = _pool_geometry(op)
    if quantized:
        clamp = _activation_range_quantized(op, out)
        fill = np.iinfo(np.int8).min
    else:
        clamp = _activation_range_float(op)
        fill = -np.inf

    def eval_max(x):
        best = None
        for _, _, patch in _windows(x, fill, **geometry):
            best = patch if best is None else np.maximum(best, patch)
        return [_finish(best, out, clamp)]

    return eval_max


@_kernel("MEAN")
def _prepare_mean(op):
    """MEAN: TFLM reduce_common.cc, `QuantizedMeanOrSum` (reference/reduce.h).

    The int8 sum over the axes is rescaled by `input_scale / output_scale`
    with the `1 / count` folded into the multiplier.
    """
    inp, axis_tensor = op.inputs[:2]
    out = op.outputs[0]
    if inp.dtype == np.float32:
        quantized = False
    elif _is_int8(inp) and _is_int8(out):
        quantized = True
        base_mult, base_shift = quantize_multiplier(
            float(inp.s) / float(out.s)
        )
    else:
        raise _unsupported(op, f"dtypes {inp.dtype} -> {out.dtype}")

    def eval_mean(x, axes):
        axes = tuple(sorted({int(a) % x.ndim for a in np.ravel(axes)}))
        if not quantized:
            return [_finish(np.mean(x, axis=axes, dtype=np.float32), out)]
        count = int(np.prod([x.shape[a] for a in axes]))
        total = wrap_int32(np.sum(x.astype(np.int64), axis=axes))
        shift = min(count.bit_length() - 1, 32, 31 + base_shift)
        mult = ((base_mult << shift) // count) & 0xFFFFFFFF
        mult = mult - (1 << 32) if mult >= 1 << 31 else mult
        shifted = wrap_int32(total - inp.zp * count)
        raw = multiply_by_quantized_multiplier(
            shifted, mult, base_shift - shift
        )
        return [_finish(raw + out.zp, out, (-128, 127))]

    return eval_mean


# ---------------------------------------------------------------------------
# Public class.
# ---------------------------------------------------------------------------


class TFLiteIntegerReference:
    """Runs a full-integer `.tflite` model with TFLite's integer arithmetic.

    The model's first subgraph is parsed with TensorFlow's flatbuffer schema
    and every operator is checked and prepared (multipliers, padding) when
    the object is built; `run` then executes the operators in order with
    NumPy integer code that reproduces the TFLite-Micro reference kernels
    (or LiteRT's reference kernels) bit for bit. The module docstring lists
    the operators and the agreement measured with each runtime.

    Args:
        model: bytes of a `.tflite` flatbuffer, or a path to one.
        target: str, whose integer kernels to reproduce: `"tflm"` for
            TFLite-Micro's reference kernels, `"litert"` for LiteRT's
            reference kernels (`OpResolverType.BUILTIN_REF`); they differ
            only in FULLY_CONNECTED rounding and RELU6 rescaling. Defaults
            to `"tflm"`.

    Attributes:
        input_details: list of dicts, one per subgraph input in the order of
            LiteRT's `get_input_details()`: `name` (tensor name), `index`
            (tensor index), `signature_name` (the input's key in the
            model's signature, or None), `shape` (tuple), `dtype` (NumPy
            dtype), `scale` (float, 0.0 if unquantized) and `zero_point`
            (int).
        output_details: the same for the subgraph outputs. Their order may
            differ from the Keras model's; `signature_name` (`"output_0"`,
            ...) follows the Keras order.
        ops: list of operator names in execution order.
        target: the `target` argument.

    Raises:
        NotImplementedError: the model uses an operator, or an operator
            variant (dtype, activation), that the emulator does not support.
        ValueError: unknown `target`.
        TypeError: `model` is neither bytes nor a path.

    Example:

    ```python
    ref = TFLiteIntegerReference(tflite_bytes)
    inputs = [np.zeros(d["shape"], d["dtype"]) for d in ref.input_details]
    outputs = ref.run(inputs)
    ```
    """

    def __init__(self, model, target="tflm"):
        if target not in _TARGETS:
            raise ValueError(
                f"Argument `target` must be one of {_TARGETS}. "
                f"Received: target={target!r}"
            )
        self.target = target
        if isinstance(model, (str, os.PathLike)):
            with open(model, "rb") as f:
                model = f.read()
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise TypeError(
                "Argument `model` must be the bytes of a .tflite file or a "
                f"path to one. Received: model={type(model).__name__}"
            )
        buf = bytes(model)
        from tensorflow.lite.python import schema_py_generated as schema

        parsed = schema.ModelT.InitFromPackedBuf(buf, 0)
        if not parsed.subgraphs:
            raise ValueError("The model has no subgraph.")
        graph = parsed.subgraphs[0]
        dtypes = _numpy_dtypes()
        op_names = _operator_names()

        self._tensors = []
        for i, t in enumerate(graph.tensors):
            if t.type not in dtypes:
                raise NotImplementedError(
                    f"Tensor {t.name!r} has TFLite type {t.type}, which "
                    "TFLiteIntegerReference does not support."
                )
            dtype = dtypes[t.type]
            shape = tuple(
                int(d) for d in (t.shape if t.shape is not None else [])
            )
            q = t.quantization
            scale = np.zeros(0, np.float32)
            zero_point = np.zeros(0, np.int64)
            qdim = 0
            if q is not None and q.scale is not None and len(q.scale):
                scale = np.asarray(q.scale, np.float32)
                zero_point = np.asarray(
                    q.zeroPoint if q.zeroPoint is not None else [0],
                    np.int64,
                )
                qdim = int(q.quantizedDimension)
            data = _constant_data(parsed.buffers[t.buffer], buf, dtype, shape)
            name = t.name.decode() if isinstance(t.name, bytes) else t.name
            self._tensors.append(
                _Tensor(i, name, shape, dtype, scale, zero_point, qdim, data)
            )

        self._ops = []
        self._evals = []
        for op in graph.operators or []:
            code = parsed.operatorCodes[op.opcodeIndex]
            builtin = max(
                int(code.builtinCode), int(code.deprecatedBuiltinCode)
            )
            name = op_names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM" and code.customCode:
                name = f"CUSTOM({code.customCode.decode()})"
            if name not in _PREPARERS:
                raise NotImplementedError(
                    f"Operator {name} is not supported by "
                    "TFLiteIntegerReference. Supported operators: "
                    f"{', '.join(sorted(_PREPARERS))}."
                )
            node = _Op(
                name,
                [self._tensors[i] if i >= 0 else None for i in op.inputs],
                [self._tensors[i] for i in op.outputs],
                op.builtinOptions,
                target,
            )
            self._ops.append((node, list(op.inputs), list(op.outputs)))
            self._evals.append(_PREPARERS[name](node))
        self.ops = [node.name for node, _, _ in self._ops]

        sig_inputs, sig_outputs = {}, {}
        for sig in parsed.signatureDefs or []:
            if sig.subgraphIndex != 0:
                continue
            for entries, names in (
                (sig.inputs, sig_inputs),
                (sig.outputs, sig_outputs),
            ):
                for entry in entries or []:
                    key = entry.name
                    key = key.decode() if isinstance(key, bytes) else key
                    names[int(entry.tensorIndex)] = key
            break
        self._input_indices = [int(i) for i in graph.inputs]
        self._output_indices = [int(i) for i in graph.outputs]
        self.input_details = [
            self._details(i, sig_inputs) for i in self._input_indices
        ]
        self.output_details = [
            self._details(i, sig_outputs) for i in self._output_indices
        ]

    def _details(self, index, signature):
        t = self._tensors[index]
        return {
            "name": t.name,
            "index": index,
            "signature_name": signature.get(index),
            "shape": t.shape,
            "dtype": t.dtype,
            "scale": float(t.s),
            "zero_point": t.zp,
        }

    def _ordered_inputs(self, inputs):
        details = self.input_details
        if isinstance(inputs, dict):
            lookup = {}
            for pos, d in enumerate(details):
                lookup[d["name"]] = pos
                if d["signature_name"] is not None:
                    lookup.setdefault(d["signature_name"], pos)
            unknown = [k for k in inputs if k not in lookup]
            if unknown:
                raise ValueError(
                    f"Unknown input names {unknown}. Expected names: "
                    f"{sorted(lookup)}"
                )
            ordered = [None] * len(details)
            for key, value in inputs.items():
                ordered[lookup[key]] = value
            missing = [
                d["name"]
                for d, v in zip(details, ordered, strict=True)
                if v is None
            ]
            if missing:
                raise ValueError(f"Missing values for inputs {missing}.")
            return ordered
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != len(details):
            raise ValueError(
                f"The model has {len(details)} inputs "
                f"({[d['name'] for d in details]}). Received: "
                f"{len(inputs)} arrays"
            )
        return inputs

    def run(self, inputs):
        """Runs the model once on integer (or whatever dtype) inputs.

        Args:
            inputs: list of NumPy arrays in `input_details` order, or a dict
                mapping input names (tensor names or signature names) to
                arrays. Each array must have exactly the input tensor's
                shape and dtype (int8 for a full-integer model; see
                `quantize`).

        Returns:
            List of NumPy arrays in `output_details` order, with the output
            tensors' dtypes and shapes.

        Raises:
            ValueError: wrong number, names, shapes or dtypes of inputs.

        Example:

        ```python
        outputs = ref.run({"x": x_q, "v1": v1_q, "v2": v2_q})
        ```
        """
        arrays = self._ordered_inputs(inputs)
        values = {}
        for detail, array in zip(self.input_details, arrays, strict=True):
            array = np.asarray(array)
            if array.dtype != detail["dtype"]:
                raise ValueError(
                    f"Input {detail['name']!r} must have dtype "
                    f"{detail['dtype']}. Received: dtype={array.dtype}"
                )
            if tuple(array.shape) != detail["shape"]:
                raise ValueError(
                    f"Input {detail['name']!r} must have shape "
                    f"{detail['shape']}. Received: shape={array.shape}"
                )
            values[detail["index"]] = array
        for (node, in_idx, out_idx), evaluate in zip(
            self._ops, self._evals, strict=True
        ):
            args = []
            for i in in_idx:
                if i < 0:
                    args.append(None)
                elif i in values:
                    args.append(values[i])
                elif self._tensors[i].data is not None:
                    args.append(self._tensors[i].data)
                else:
                    raise ValueError(
                        f"Operator {node.name} reads tensor "
                        f"{self._tensors[i].name!r}, which no earlier "
                        "operator wrote."
                    )
            for i, result in zip(out_idx, evaluate(*args), strict=True):
                values[i] = result
        outputs = []
        for i in self._output_indices:
            t = self._tensors[i]
            result = values[i] if i in values else t.data
            outputs.append(np.array(result, dtype=t.dtype, copy=True))
        return outputs


def _constant_data(buffer, raw, dtype, shape):
    """The constant contents of a tensor, or None for an activation."""
    data = None
    offset = int(getattr(buffer, "offset", 0) or 0)
    if buffer.data is not None and len(buffer.data):
        data = np.asarray(buffer.data, np.uint8).tobytes()
    elif offset > 1:
        data = raw[offset : offset + int(buffer.size)]
    if data is None:
        return None
    return np.frombuffer(data, dtype).reshape(shape).copy()
