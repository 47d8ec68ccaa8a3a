"""Keras layers for spiking neural networks."""

from keras_snn.layers.encoding import BernoulliEncoding
from keras_snn.layers.encoding import DirectEncoding
from keras_snn.layers.encoding import PoissonEncoding
from keras_snn.layers.neurons import IF
from keras_snn.layers.neurons import LIF
from keras_snn.layers.neurons import IFCell
from keras_snn.layers.neurons import LIFCell
from keras_snn.layers.wrappers import TimeFolded

__all__ = [
    "BernoulliEncoding",
    "DirectEncoding",
    "IF",
    "IFCell",
    "LIF",
    "LIFCell",
    "PoissonEncoding",
    "TimeFolded",
]

# Readout heads (issue 3).
from keras_snn.layers.readout import Decoding  # noqa: E402
from keras_snn.layers.readout import MembraneReadout  # noqa: E402
from keras_snn.layers.readout import Voting  # noqa: E402

__all__ += ["Decoding", "MembraneReadout", "Voting"]

# Normalization (issue 3).
from keras_snn.layers.normalization import NeuNorm  # noqa: E402
from keras_snn.layers.normalization import TDBatchNormalization  # noqa: E402

__all__ += ["NeuNorm", "TDBatchNormalization"]
