"""keras-snn: spiking neural networks for Keras 3 (TensorFlow backend).

Importing keras_snn before TensorFlow sets two environment defaults, each
only if the user has not set it:

- `KERAS_BACKEND=tensorflow`: the layers use `tf.custom_gradient`.
- `TF_ENABLE_ONEDNN_OPTS=1`: TensorFlow's oneDNN CPU kernels, which it
  leaves off on some CPUs (AMD, no AVX-512) and which made spiking networks
  train 1.3-1.7x faster there. Set `TF_ENABLE_ONEDNN_OPTS=0` to opt out.

It then imports Keras and every submodule, which registers every layer for
`keras.models.load_model` (`import_all`). The `keras-snn` console script
defers that until its arguments are parsed (`_keras_snn_cli`).
"""

import os
import sys

__version__ = "0.1.0"

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

_SUBMODULES = (
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
    "quantization",
    "regularizers",
    "saving",
    "stdp",
    "surrogates",
    "training",
    "tuning",
)


def import_all():
    """Imports Keras and every submodule (which registers every layer).

    `import keras_snn` does this itself, except under the `keras-snn`
    console script (`_keras_snn_cli`), which calls it after parsing its
    arguments. Calling it again does nothing.

    Raises:
        ImportError: Keras runs on another backend than TensorFlow.
    """
    import importlib

    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "keras_snn requires the TensorFlow backend of Keras 3. Set "
            "KERAS_BACKEND=tensorflow before importing keras. Received: "
            f"backend={keras.backend.backend()!r}"
        )
    for name in _SUBMODULES:
        importlib.import_module(f"keras_snn.{name}")


def __getattr__(name):
    # Only reached under the console script before `import_all()`:
    # `keras_snn.layers` and the like import on first use.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"keras_snn.{name}")
    raise AttributeError(f"module 'keras_snn' has no attribute {name!r}")


_launcher = sys.modules.get("_keras_snn_cli")
if not getattr(_launcher, "DEFER_PACKAGE_IMPORTS", False):
    import_all()

__all__ = ["import_all", *_SUBMODULES]
