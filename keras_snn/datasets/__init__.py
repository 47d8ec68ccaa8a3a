"""Data sets for spiking networks, loaded without surprises offline.

`static`: image data sets (digits, MNIST, Fashion-MNIST, CIFAR-10) as NumPy
arrays (`load_arrays`) or `tf.data` pipelines (`load`), built from
`catalog` (names, shapes, `info`), `sources` (the folders searched),
`idx` (MNIST's IDX files, `read_idx`), `cifar` (CIFAR-10's python
batches), `tfds_fallback` (tensorflow-datasets, never waiting on an absent
network) and `image_pipeline` (normalisation, augmentation, batching).

Event streams of neuromorphic sensors: `events` (the event array,
`make_events`), one module per file format with its reader and writer
(`nmnist`: N-MNIST / N-Caltech101; `aedat2`: AEDAT 2.0, CIFAR10-DVS;
`aedat31`: AEDAT 3.1, DVS128 Gesture), `frames` (`events_to_frames`) and
`event_pipeline` (the `event_dataset` tf.data pipeline).

`saccade`: static images to N-MNIST-like event streams (`image_to_events`,
`convert_images`).
"""

from keras_snn.datasets.aedat2 import read_aedat2
from keras_snn.datasets.aedat2 import write_aedat2
from keras_snn.datasets.aedat31 import read_aedat31
from keras_snn.datasets.aedat31 import write_aedat31
from keras_snn.datasets.catalog import DATA_DIR_ENV
from keras_snn.datasets.catalog import DATASETS
from keras_snn.datasets.catalog import DatasetInfo
from keras_snn.datasets.catalog import DatasetNotFoundError
from keras_snn.datasets.catalog import info
from keras_snn.datasets.event_pipeline import event_dataset
from keras_snn.datasets.events import EVENT_DTYPE
from keras_snn.datasets.events import make_events
from keras_snn.datasets.frames import events_to_frames
from keras_snn.datasets.idx import read_idx
from keras_snn.datasets.nmnist import read_nmnist
from keras_snn.datasets.nmnist import write_nmnist
from keras_snn.datasets.saccade import convert_images
from keras_snn.datasets.saccade import image_to_events
from keras_snn.datasets.saccade import read_converted
from keras_snn.datasets.saccade import saccade_sensor_size
from keras_snn.datasets.saccade import saccade_vertices
from keras_snn.datasets.static import load
from keras_snn.datasets.static import load_arrays

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetInfo",
    "DatasetNotFoundError",
    "info",
    "load",
    "load_arrays",
    "read_idx",
    "EVENT_DTYPE",
    "convert_images",
    "event_dataset",
    "events_to_frames",
    "image_to_events",
    "make_events",
    "read_aedat2",
    "read_aedat31",
    "read_converted",
    "read_nmnist",
    "saccade_sensor_size",
    "saccade_vertices",
    "write_aedat2",
    "write_aedat31",
    "write_nmnist",
]
