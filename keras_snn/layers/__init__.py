"""Keras layers for spiking neural networks."""

from keras_snn.layers.encoding import BernoulliEncoding
from keras_snn.layers.encoding import DeltaEncoding
from keras_snn.layers.encoding import DirectEncoding
from keras_snn.layers.encoding import LatencyEncoding
from keras_snn.layers.encoding import PoissonEncoding
from keras_snn.layers.neuron_models import ALIF
from keras_snn.layers.neuron_models import ALIFCell
from keras_snn.layers.neuron_models import CubaLIF
from keras_snn.layers.neuron_models import CubaLIFCell
from keras_snn.layers.neurons import IF
from keras_snn.layers.neurons import LIF
from keras_snn.layers.neurons import IFCell
from keras_snn.layers.neurons import LIFCell
from keras_snn.layers.normalization import NeuNorm
from keras_snn.layers.normalization import TDBatchNormalization
from keras_snn.layers.readout import Decoding
from keras_snn.layers.readout import MembraneReadout
from keras_snn.layers.readout import Voting
from keras_snn.layers.recompute import Recompute
from keras_snn.layers.wrappers import TimeFolded

__all__ = [
    "ALIF",
    "ALIFCell",
    "BernoulliEncoding",
    "CubaLIF",
    "CubaLIFCell",
    "Decoding",
    "DeltaEncoding",
    "DirectEncoding",
    "IF",
    "IFCell",
    "LIF",
    "LIFCell",
    "LatencyEncoding",
    "MembraneReadout",
    "NeuNorm",
    "PoissonEncoding",
    "Recompute",
    "TDBatchNormalization",
    "TimeFolded",
    "Voting",
]
