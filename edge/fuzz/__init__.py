"""Random small keras_snn networks, checked in every consumer of the exporter.

`draw_spec` draws the description of a small network (dense or
convolutional on static inputs, dense on sequences, strides and paddings,
LIF or IF neurons, hard or soft reset, thresholds and decays, batch norm
or tdBN, average or max pooling, residual blocks, every readout head, `T`
from 1 to 8); `build` turns it into a Keras model whose weights are
scaled until every spiking layer fires; `check_network` exports it to
every target and runs each artefact in its consumer with a driver loop
of its own, comparing with the reference that defines it:

| target           | consumer                  | expected                    |
|------------------|---------------------------|-----------------------------|
| `tflite-float32` | LiteRT                    | `model.predict`             |
| `tflite-int16x8` | LiteRT (both kernel sets) | `edge.integer`, bit for bit |
| `tflm`           | TFLite-Micro              | `edge.integer`, bit for bit |
| `onnx`           | onnxruntime               | `model.predict`             |
| `c-host`         | gcc                       | `edge.integer`, bit for bit |
| `c-sanitize`     | gcc, ASan and UBSan       | `edge.integer`, bit for bit |
| `nir`            | Norse                     | the Keras model's spikes    |
| `loihi`          | Lava (NetX)               | `edge.targets.loihi` ref.   |

The same drawing serves the property tests (through a Hypothesis
`draw`, see `tests/test_edge_property.py`) and the long run, one command:

    python -m edge.fuzz --networks 300 --seed 0

which prints, per target, how many networks were exported, refused
(`UnsupportedLayerError`, or a `CalibrationError`), exact, mismatched
and crashed, and the specification of every failing network.
"""

from edge.fuzz.checks import CONSUMER_TARGETS
from edge.fuzz.checks import Outcome
from edge.fuzz.checks import available_targets
from edge.fuzz.checks import check_network
from edge.fuzz.networks import HEADS
from edge.fuzz.networks import OUTLIERS
from edge.fuzz.networks import HypothesisChooser
from edge.fuzz.networks import RandomChooser
from edge.fuzz.networks import build
from edge.fuzz.networks import draw_spec
from edge.fuzz.networks import firing_rates
from edge.fuzz.networks import inputs_for
from edge.fuzz.run import main
from edge.fuzz.run import summary_table

__all__ = [
    "CONSUMER_TARGETS",
    "HEADS",
    "OUTLIERS",
    "HypothesisChooser",
    "Outcome",
    "RandomChooser",
    "available_targets",
    "build",
    "check_network",
    "draw_spec",
    "firing_rates",
    "inputs_for",
    "main",
    "summary_table",
]
