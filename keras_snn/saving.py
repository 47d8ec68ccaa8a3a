"""Loading saved models, with an error that says what is wrong with the file.

`load_model` is `keras.saving.load_model` for the `.keras` archives that
`model.save` and `keras-snn train` write, with the file checked first:
Keras 3 reports a missing, empty, truncated or not-zip file alike as
"File not found", lets a corrupt archive through as `zipfile.BadZipFile`,
and reports a class it cannot find in a message of thousands of characters.
Here each case raises one `ValueError` (`FileNotFoundError` for a missing
file) that names the path, what the file is, and what is accepted.

Why `import keras_snn` is needed before `keras.saving.load_model`: a
`.keras` archive records each keras_snn layer by its registered name
(`"registered_name": "keras_snn>LIF"`) and its module
(`"module": "keras_snn.layers.neurons"`). Keras 3 looks a registered name
up in the registry that `keras.saving.register_keras_serializable` fills
when the class is defined, so only at import; it imports a recorded
module itself only for the packages `keras`, `keras_hub`, `keras_cv` and
`keras_nlp` (`_retrieve_class_or_fn` in
`keras/src/saving/serialization_lib.py`), and it has no plugin or
entry-point hook. So a plain `keras.saving.load_model` on a keras_snn
model fails unless keras_snn was imported first; this module's
`load_model`, the CLI and the exporter import it, and say so when a
model names objects that are not registered.
"""

import errno
import json
import os
import zipfile
import zlib

import keras

from keras_snn import __version__
from keras_snn import formats

__all__ = [
    "PACKAGE",
    "check_archive",
    "load_model",
    "register",
    "unregistered_objects",
]

PACKAGE = "keras_snn"

_ACCEPTED = (
    "keras_snn.saving.load_model reads the .keras archives written by "
    "model.save('....keras') and keras-snn train"
)
_H5_SUFFIXES = (".h5", ".hdf5")


def register(obj):
    """Registers a class or function of keras_snn for Keras serialization.

    The one registration decorator of the package (the role of keras-hub's
    `keras_hub_export`): it files `obj` in Keras' registry under
    `"keras_snn>ClassName"`, the package name being fixed here once, so
    that `keras.saving.load_model` finds every keras_snn object of a
    `.keras` archive, with no `custom_objects`, once `keras_snn` is
    imported.

    Args:
        obj: a class with `get_config`, or a function.

    Returns:
        `obj`, registered.

    Example:

    ```python
    @keras_snn.saving.register
    class MyLayer(keras.layers.Layer):
        ...
    ```
    """
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)


def _not_keras(path, what, hint=""):
    return ValueError(
        f"Cannot load the model {path!r}: {what}. {hint}{_ACCEPTED}."
    )


def check_archive(path):
    """Checks that `path` is a readable, intact `.keras` model archive.

    Args:
        path: str or path-like.

    Returns:
        The model's configuration (the archive's `config.json`, a dict),
        or `None` for a legacy Keras HDF5 file named `.h5` / `.hdf5`,
        which Keras reads itself.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is a folder (a SavedModel, an unzipped
            archive, ...), an empty, truncated or corrupt archive, or a
            file of another format; the message names the path and what
            it is.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            errno.ENOENT, f"The model file {path!r} does not exist."
        )
    if os.path.isdir(path):
        raise _folder_error(path)
    size = os.path.getsize(path)
    if size == 0:
        raise _not_keras(
            path,
            "the file is empty (0 bytes), e.g. a save that was interrupted",
        )
    description, _ = formats.describe_file(path)
    if description == "an HDF5 file (.h5)":
        return _check_hdf5(path)
    if description == "a truncated or corrupt zip archive":
        raise _not_keras(
            path,
            f"it is a truncated or corrupt .keras (zip) archive of {size} "
            "bytes: its zip directory cannot be read",
            "Save the model again. ",
        )
    if description != "a Keras .keras model archive":
        if description is None:
            what = "it is not a .keras (zip) archive"
        elif description.endswith("zip archive"):
            what = f"it is {description} without config.json and "
            what += "metadata.json, not a .keras model"
        else:
            what = f"it is not a .keras archive: it looks like {description}"
        raise _not_keras(path, what)
    if not path.endswith(".keras"):
        raise _not_keras(
            path,
            "it is a .keras archive, but Keras loads one only under a name "
            "ending in .keras",
            "Rename it. ",
        )
    return _read_config(path, size)


def _check_hdf5(path):
    """Lets a legacy Keras HDF5 model through; refuses other HDF5 files."""
    import h5py  # a dependency of Keras; only needed here

    try:
        with h5py.File(path, "r") as file:
            has_model = "model_config" in file.attrs
    except OSError as error:
        raise _not_keras(
            path, f"it is a corrupt or truncated HDF5 file ({error})"
        ) from error
    if not has_model:
        raise _not_keras(
            path,
            "it is an HDF5 file without a model configuration, such as "
            "the weights written by model.save_weights",
            "Load weights into a built model with model.load_weights. ",
        )
    if not path.lower().endswith(_H5_SUFFIXES):
        raise _not_keras(
            path,
            "it is a legacy Keras HDF5 model, which Keras loads only under "
            "a name ending in .h5",
            "Rename it. ",
        )
    return None


def _folder_error(path):
    names = set(os.listdir(path))
    if "saved_model.pb" in names or "saved_model.pbtxt" in names:
        return _not_keras(
            path,
            "it is a TensorFlow SavedModel folder, which Keras 3 does not "
            "load as a model",
            "keras.layers.TFSMLayer(path) runs one for inference only. ",
        )
    if "config.json" in names:
        return _not_keras(
            path,
            "it is a folder holding config.json (an unzipped .keras "
            "archive?), not a .keras file",
            "Zip its content into one file to load it. ",
        )
    return _not_keras(path, "it is a folder, not a .keras file")


def _read_config(path, size):
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise _not_keras(
                    path,
                    f"the archive is corrupt: its member {bad!r} fails its "
                    "CRC check (the file changed after it was written)",
                    "Save the model again. ",
                )
            text = archive.read("config.json")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise _not_keras(
            path,
            f"the .keras archive ({size} bytes) is corrupt: {error}",
            "Save the model again. ",
        ) from error
    try:
        config = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _not_keras(
            path, f"its config.json is not valid JSON ({error})"
        ) from error
    if not isinstance(config, dict) or "class_name" not in config:
        raise _not_keras(
            path, "its config.json does not describe a Keras object"
        )
    return config


def unregistered_objects(config, custom_objects=None):
    """Registered names in a model config that Keras cannot resolve now.

    A custom class is saved with `"registered_name": "package>Name"`;
    Keras finds it only if the module that defines it has been imported
    (or it is in `custom_objects`).

    Args:
        config: a model configuration, e.g. from `check_archive`.
        custom_objects: optional dict, as for `load_model`.

    Returns:
        The sorted list of the names that are not registered.
    """
    found = set()

    def walk(node):
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and ">" in name:
                found.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return sorted(
        name
        for name in found
        if keras.saving.get_registered_object(
            name, custom_objects=custom_objects
        )
        is None
    )


def _unregistered_error(path, names):
    ours = [name for name in names if name.startswith("keras_snn>")]
    others = [name for name in names if name not in ours]
    parts = []
    if ours:
        parts.append(
            f"it uses {', '.join(ours)}, which keras_snn {__version__} does "
            "not define (saved by another version of keras_snn?)"
        )
    if others:
        packages = sorted({name.split(">", 1)[0] for name in others})
        parts.append(
            f"it uses {', '.join(others)}, which are not registered: import "
            f"the module(s) of package {', '.join(packages)} that define "
            "them (with @keras.saving.register_keras_serializable) before "
            "loading, or pass them in `custom_objects`"
        )
    return ValueError(f"Cannot load the model {path!r}: {'; '.join(parts)}.")


def load_model(path, compile=False, custom_objects=None, safe_mode=True):
    """Loads a `.keras` model, with clear errors for a bad file.

    Importing keras_snn (which this does) registers its layers, so a
    model of keras_snn layers loads; see the module docstring for why
    plain `keras.saving.load_model` needs that import.

    Args:
        path: str or path-like, a `.keras` archive (or a legacy Keras
            `.h5` model).
        compile: whether to restore the training configuration (loss,
            optimizer, metrics). Defaults to `False`: for inference,
            evaluation and export.
        custom_objects: optional dict of extra classes and functions.
        safe_mode: as in `keras.saving.load_model` (refuses lambda
            layers' bytecode). Defaults to `True`.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is a folder, an empty, truncated or corrupt
            archive, another format (what it looks like is named), names
            classes that are not registered, or Keras cannot rebuild the
            model from it; the message names the path.

    Example:

    ```python
    model = keras_snn.saving.load_model("runs/digits/model.keras")
    ```
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "Argument `path` must be a str or path-like naming a .keras "
            f"file. Received: path={path!r}"
        )
    path = os.fspath(path)
    config = check_archive(path)
    if config is not None:
        names = unregistered_objects(config, custom_objects)
        if names:
            raise _unregistered_error(path, names)
    try:
        return keras.saving.load_model(
            path,
            compile=compile,
            custom_objects=custom_objects,
            safe_mode=safe_mode,
        )
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise _not_keras(
            path, f"the archive is corrupt: {error}", "Save the model again. "
        ) from error
    except (TypeError, ValueError, KeyError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error) else ""
        if len(first) > 300:
            first = first[:300] + "..."
        raise ValueError(
            f"Cannot load the model {path!r}: Keras could not rebuild it "
            f"from the file ({type(error).__name__}: {first})"
            f"{_version_note(path)}."
        ) from error


def _version_note(path):
    """' (saved with Keras 3.x, this is 3.y)' when the versions differ."""
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("metadata.json"))["keras_version"]
    except Exception:  # a legacy .h5 file, or no readable metadata
        return ""
    if saved == keras.__version__:
        return ""
    return (
        f"; it was saved with Keras {saved}, this is Keras {keras.__version__}"
    )
