"""The static image data sets: names, shapes, classes, split sizes.

`DATASETS` maps each name that `keras_snn.datasets.load` and `load_arrays`
accept to its `DatasetInfo`; `info(name)` returns it or raises naming the
known ones.
"""

import dataclasses

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetInfo",
    "DatasetNotFoundError",
    "SPLITS",
    "info",
]

DATA_DIR_ENV = "KERAS_SNN_DATA_DIR"

SPLITS = ("train", "test", "validation")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set.

    Attributes:
        name: the name `load` and `load_arrays` accept.
        input_shape: shape of one image, `(height, width, channels)`.
        num_classes: number of classes; labels are `0 .. num_classes - 1`.
        train_size: number of images in the official training split.
        test_size: number of images in the official test split.
        class_names: one name per label.
        augment: whether `load` augments the training split by default.
        normalize: whether `load` standardises per channel by default.
    """

    name: str
    input_shape: tuple
    num_classes: int
    train_size: int
    test_size: int
    class_names: tuple
    augment: bool = False
    normalize: bool = False


_DIGIT_NAMES = tuple(str(i) for i in range(10))

DATASETS = {
    "digits": DatasetInfo("digits", (8, 8, 1), 10, 1437, 360, _DIGIT_NAMES),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, 60000, 10000, _DIGIT_NAMES),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        (28, 28, 1),
        10,
        60000,
        10000,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (32, 32, 3),
        10,
        50000,
        10000,
        (
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        augment=True,
        normalize=True,
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """No local copy of a data set was found and none could be downloaded.

    The message lists the folders searched and the ways to get the data.
    """


def info(name):
    """Returns the `DatasetInfo` of a data set.

    Args:
        name: str. One of `"digits"`, `"mnist"`, `"fashion_mnist"`,
            `"cifar10"`.

    Returns:
        A `DatasetInfo` with the input shape, the number of classes, the
        split sizes, the class names and the defaults of `load`.

    Raises:
        ValueError: if `name` is not a known data set.

    Example:

    ```python
    meta = keras_snn.datasets.info("cifar10")
    meta.input_shape, meta.num_classes  # ((32, 32, 3), 10)
    ```
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"Argument `name` must be one of {sorted(DATASETS)}. Received: "
            f"name={name!r}"
        )
    return DATASETS[name]
