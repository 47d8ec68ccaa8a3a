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
