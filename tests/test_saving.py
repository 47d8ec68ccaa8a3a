"""keras_snn.saving.load_model: clear errors for every kind of bad file."""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest

from keras_snn import layers
from keras_snn import saving


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny keras_snn model, saved once; returns (model, path)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            layers.DirectEncoding(2),
            keras.layers.Dense(3),
            layers.LIF(threshold=0.5),
        ]
    )
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return model, path


def _rewrite_config(source, target, edit, member="config.json"):
    """Copies the archive `source` to `target` with `edit(json)` applied to
    its `member`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == member:
                content = json.loads(data)
                edit(content)
                data = json.dumps(content).encode()
            new.writestr(item, data)
    return target


def _layer_configs(config):
    return config["config"]["layers"]


def test_loads_and_predicts_like_the_saved_model(saved):
    model, path = saved
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32") * 3
    loaded = saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model(x))
    assert loaded.compiled is False


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.keras.*does not exist"):
        saving.load_model(tmp_path / "nope.keras")


@pytest.mark.parametrize(
    "files,pattern",
    [
        ((), "is a folder, not a .keras file"),
        (("saved_model.pb",), "TensorFlow SavedModel folder.*TFSMLayer"),
        (("config.json", "model.weights.h5"), "unzipped .keras archive"),
    ],
)
def test_folders(tmp_path, files, pattern):
    folder = tmp_path / "model.keras"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"model\.keras.*{pattern}"):
        saving.load_model(folder)


def test_empty_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"")
    # Keras itself reports "File not found" for this file.
    with pytest.raises(ValueError, match=r"model\.keras.*empty \(0 bytes\)"):
        saving.load_model(path)


def test_truncated_archive(saved, tmp_path):
    data = saved[1].read_bytes()
    path = tmp_path / "model.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ValueError,
        match=rf"model\.keras.*truncated or corrupt .* {len(data) // 2} bytes",
    ):
        saving.load_model(path)


def test_bit_flip_in_the_weights(saved, tmp_path):
    data = bytearray(saved[1].read_bytes())
    with zipfile.ZipFile(saved[1]) as archive:
        info = archive.getinfo("model.weights.h5")
    # Local header: 30 bytes, then the name and the extra field.
    start = info.header_offset + 30 + len(info.filename.encode())
    start += len(info.extra)
    data[start + info.compress_size // 2] ^= 0x10
    path = tmp_path / "model.keras"
    path.write_bytes(bytes(data))
    # Keras itself raises an uncaught zipfile.BadZipFile for this file.
    with pytest.raises(
        ValueError, match=r"model\.keras.*corrupt.*model\.weights\.h5"
    ):
        saving.load_model(path)


def _npz():
    buffer = io.BytesIO()
    np.savez(buffer, kernel=np.zeros(3))
    return buffer.getvalue()


def _zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data,pattern",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(16), "it looks like a PNG image"),
        (b'{"class_name": "Sequential"}\n', "it looks like a text file"),
        (_npz(), r"it looks like a NumPy \.npz archive"),
        (_zip(), r"a zip archive without config\.json"),
        (bytes(range(256)), r"it is not a \.keras \(zip\) archive"),
    ],
    ids=["png", "text", "npz", "zip", "binary"],
)
def test_other_formats_are_named(tmp_path, data, pattern):
    path = tmp_path / "model.keras"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"model\.keras.*{pattern}"):
        saving.load_model(path)


def test_hdf5_files(saved, tmp_path):
    weights = tmp_path / "model.weights.h5"
    saved[0].save_weights(weights)
    with pytest.raises(
        ValueError, match=r"model\.weights\.h5.*model\.save_weights"
    ):
        saving.load_model(weights)
    legacy = tmp_path / "legacy.bin"
    with h5py.File(legacy, "w") as file:
        file.attrs["model_config"] = "{}"
    with pytest.raises(ValueError, match=r"legacy\.bin.*ending in \.h5"):
        saving.load_model(legacy)


def test_archive_with_another_suffix(saved, tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(saved[1].read_bytes())
    with pytest.raises(ValueError, match=r"model\.zip.*Rename it"):
        saving.load_model(path)


def test_unregistered_classes_are_named(saved, tmp_path):
    def rename(config):
        lif = _layer_configs(config)[-1]
        lif["registered_name"] = "keras_snn>LIFv9"
        lif["class_name"] = "LIFv9"
        lif["config"]["surrogate"] = {
            "module": "my_pkg.surrogates",
            "class_name": "Gaussian",
            "config": {"sigma": 0.5},
            "registered_name": "my_pkg>Gaussian",
        }

    path = _rewrite_config(saved[1], tmp_path / "model.keras", rename)
    with pytest.raises(ValueError) as error:
        saving.load_model(path)
    message = str(error.value)
    assert "keras_snn>LIFv9, which keras_snn" in message
    assert "my_pkg>Gaussian" in message and "package my_pkg" in message
    assert len(message) < 600
    # Passing the missing class in `custom_objects` is the way out.
    assert (
        saving.unregistered_objects(
            json.loads(zipfile.ZipFile(path).read("config.json")),
            custom_objects={
                "keras_snn>LIFv9": layers.LIF,
                "my_pkg>Gaussian": object,
            },
        )
        == []
    )


def test_keras_failure_is_one_line_naming_the_file(saved, tmp_path):
    def break_units(config):
        _layer_configs(config)[2]["config"]["units"] = "three"

    path = _rewrite_config(saved[1], tmp_path / "model.keras", break_units)
    with pytest.raises(
        ValueError, match=r"model\.keras.*Keras could not rebuild it"
    ) as error:
        saving.load_model(path)
    assert "\n" not in str(error.value)
    assert "saved with Keras" not in str(error.value)

    def newer(metadata):
        metadata["keras_version"] = "9.0.0"

    later = _rewrite_config(
        path, tmp_path / "later.keras", newer, "metadata.json"
    )
    with pytest.raises(
        ValueError, match=r"saved with Keras 9\.0\.0, this is Keras 3"
    ):
        saving.load_model(later)


def test_path_must_be_a_path():
    with pytest.raises(TypeError, match="`path`.*path=None"):
        saving.load_model(None)


def test_a_fresh_process_needs_only_keras_snn_saving(saved):
    # Keras 3 finds a registered class only once the module that registers
    # it has been imported, and imports recorded modules only of its own
    # packages: plain keras.saving.load_model fails without keras_snn.
    # Importing keras_snn.saving (or keras_snn) is enough.
    script = textwrap.dedent(
        f"""
        import sys
        import keras
        try:
            keras.saving.load_model({os.fspath(saved[1])!r})
        except TypeError as error:
            assert "keras_snn>DirectEncoding" in str(error), error
        else:
            sys.exit("plain Keras loaded a keras_snn model")
        assert "keras_snn" not in sys.modules
        from keras_snn import saving
        model = saving.load_model({os.fspath(saved[1])!r})
        print(type(model.layers[-1]).__module__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "keras_snn.layers.neurons"
