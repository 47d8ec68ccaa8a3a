"""Issue 13, layers: bad arguments and inputs fail loudly, naming the layer."""

import math

import pytest

from keras_snn import layers
from keras_snn import surrogates

# --------------------------------------------------------------------------
# Numeric constructor arguments: finite, in range, representable in dtype


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (
            lambda: layers.LIF(threshold=math.inf, name="lif_in"),
            r"Argument `threshold` of LIF 'lif_in' must be a finite number "
            r"> 0\. Received: threshold=inf",
        ),
        (
            lambda: layers.LIF(threshold=1e300),
            r"`threshold` of LIF must be .*float32.*becomes inf.*"
            r"threshold=1e\+300",
        ),
        (
            lambda: layers.LIF(threshold=1e-60),
            r"`threshold` of LIF .*float32 it becomes 0\.0",
        ),
        (
            lambda: layers.LIF(threshold=1e5, dtype="mixed_float16"),
            r"`threshold` of LIF .*float16.*threshold=100000\.0",
        ),
        (lambda: layers.LIF(threshold=math.nan), "threshold=nan"),
        (lambda: layers.LIF(decay=math.nan), "`decay` of LIF.*decay=nan"),
        (lambda: layers.IF(threshold=-math.inf), "`threshold` of IF"),
        (lambda: layers.LIFCell(threshold=math.inf), "`threshold` of LIFCell"),
        (lambda: layers.IFCell(threshold=1e39), "`threshold` of IFCell"),
        (
            lambda: layers.TDBatchNormalization(alpha=math.inf),
            "`alpha` of TDBatchNormalization",
        ),
        (
            lambda: layers.TDBatchNormalization(threshold=1e40),
            "`threshold` of TDBatchNormalization.*float32",
        ),
        (
            lambda: layers.TDBatchNormalization(epsilon=math.nan),
            "`epsilon` of TDBatchNormalization.*epsilon=nan",
        ),
        (
            lambda: layers.TDBatchNormalization(momentum=math.nan),
            "`momentum` of TDBatchNormalization",
        ),
        (lambda: layers.NeuNorm(scale=math.inf), "`scale` of NeuNorm"),
        (
            lambda: layers.PoissonEncoding(4, max_rate=math.inf, name="enc"),
            "`max_rate` of PoissonEncoding 'enc'.*max_rate=inf",
        ),
        (
            lambda: layers.MembraneReadout(3, decay=math.nan),
            "`decay` of MembraneReadout.*decay=nan",
        ),
        (lambda: surrogates.FastSigmoid(gamma=math.inf), "gamma=inf"),
        (lambda: surrogates.Rectangular(width=math.nan), "width=nan"),
    ],
)
def test_non_finite_or_unrepresentable_arguments_are_refused(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


def test_representable_arguments_are_kept():
    lif = layers.LIF(threshold=3e38, decay=0.0)
    assert lif.threshold == 3e38 and lif.decay == 0.0
    half = layers.LIF(threshold=6e4, dtype="mixed_float16")
    assert half.threshold == 6e4
    assert layers.TDBatchNormalization(momentum=0.0).momentum == 0.0
