"""edge: deployment of trained keras_snn models.

Fusion of batch normalization, integer quantization with a reference
simulator, and exporters (TFLite, C for microcontrollers, Loihi NetX, ONNX,
NIR) are built here. `edge` may import `keras_snn`; `keras_snn` never
imports `edge`.
"""

__version__ = "0.1.0"
