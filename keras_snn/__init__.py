"""keras-snn: spiking neural networks for Keras 3 (TensorFlow backend).

Importing keras_snn before TensorFlow sets two environment defaults, each
only if the user has not set it:

- `KERAS_BACKEND=tensorflow`: the layers use `tf.custom_gradient`.
- `TF_ENABLE_ONEDNN_OPTS=1`: TensorFlow's oneDNN CPU kernels, which it
  leaves off on some CPUs (AMD, no AVX-512) and which made spiking networks
  train 1.3-1.7x faster there. Set `TF_ENABLE_ONEDNN_OPTS=0` to opt out.
"""

import os
import sys

__version__ = "0.1.0"

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_snn requires the TensorFlow backend of Keras 3. Set "
        "KERAS_BACKEND=tensorflow before importing keras. Received: "
        f"backend={keras.backend.backend()!r}"
    )

from keras_snn import analysis  # noqa: E402
from keras_snn import asf  # noqa: E402
from keras_snn import callbacks  # noqa: E402
from keras_snn import constraints  # noqa: E402
from keras_snn import conversion  # noqa: E402
from keras_snn import datasets  # noqa: E402
from keras_snn import functional  # noqa: E402
from keras_snn import layers  # noqa: E402
from keras_snn import losses  # noqa: E402
from keras_snn import models  # noqa: E402
from keras_snn import saving  # noqa: E402
from keras_snn import stdp  # noqa: E402
from keras_snn import surrogates  # noqa: E402
from keras_snn import tuning  # noqa: E402

__all__ = [
    "analysis",
    "asf",
    "callbacks",
    "constraints",
    "conversion",
    "datasets",
    "functional",
    "layers",
    "losses",
    "models",
    "saving",
    "stdp",
    "surrogates",
    "tuning",
]
