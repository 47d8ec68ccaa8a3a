"""Static data sets: IDX parsing, local lookup, fast offline failure, tf.data.

Everything runs offline on small files written into `tmp_path`; the
tensorflow-datasets branch is tested through its small replaceable helpers.
"""

import gzip
import io
import os
import pickle
import socket
import struct
import tarfile
import time

import numpy as np
import pytest

from keras_snn import datasets
from keras_snn.datasets import sources
from keras_snn.datasets import tfds_fallback

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)


def idx_bytes(array, code=0x08):
    header = bytes([0, 0, code, array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=False, code=0x08):
    data = idx_bytes(array, code)
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def fake_mnist(folder, n_train=12, n_test=5, gz=True, seed=0):
    """Writes the four IDX files of a tiny MNIST-like set; returns arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(folder / (name + (".gz" if gz else "")), array, gz=gz)
    return arrays


def fake_cifar(folder, per_batch=2, n_test=3, seed=0, archive=False):
    """Writes a tiny CIFAR-10 python-version set; returns NHWC arrays."""
    rng = np.random.default_rng(seed)
    n_train = 5 * per_batch
    x_train = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    y_train = np.arange(n_train) % 10
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_test = np.arange(n_test) % 10

    def batch(x, y):
        flat = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
        return pickle.dumps({b"data": flat, b"labels": y.tolist()})

    members = {
        f"data_batch_{i + 1}": batch(
            x_train[i * per_batch : (i + 1) * per_batch],
            y_train[i * per_batch : (i + 1) * per_batch],
        )
        for i in range(5)
    }
    members["test_batch"] = batch(x_test, y_test)
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(data)
                tar.addfile(info, fileobj=io.BytesIO(data))
    else:
        batches = folder / "cifar-10-batches-py"
        batches.mkdir()
        for name, data in members.items():
            (batches / name).write_bytes(data)
    return x_train, y_train, x_test, y_test


def offline(monkeypatch, installed=True):
    """tfds installed (or not), nothing prepared, the probe fails."""
    monkeypatch.setattr(tfds_fallback, "_tfds_installed", lambda: installed)
    monkeypatch.setattr(tfds_fallback, "_tfds_prepared", lambda name: False)
    monkeypatch.setattr(tfds_fallback, "_network_available", lambda: False)

    def no_tfds(name, download):
        raise AssertionError("tfds must not be called offline")

    monkeypatch.setattr(tfds_fallback, "_tfds_load", no_tfds)


# --------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_images_and_labels(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 255], np.uint8)
    out_images = datasets.read_idx(write_idx(tmp_path / "im", images, gz))
    out_labels = datasets.read_idx(write_idx(tmp_path / "lb", labels, gz))
    assert out_images.dtype == np.uint8 and out_labels.dtype == np.uint8
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_array_equal(out_labels, labels)
    out_images[0, 0, 0] = 1  # a writable copy


@pytest.mark.parametrize(
    "dtype,code", [("i1", 0x09), ("i2", 0x0B), ("i4", 0x0C), ("f4", 0x0D)]
)
def test_read_idx_big_endian_types(tmp_path, dtype, code):
    array = np.array([[-3, 2], [1, 100]], dtype)
    out = datasets.read_idx(write_idx(tmp_path / "x", array, code=code))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    "data,pattern",
    [
        (b"\x00\x01\x08\x01" + b"\x00" * 8, "bad magic number 0x00010801"),
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "unknown type code 0x07"),
        (b"\x00\x00", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),
        (idx_bytes(np.zeros((4, 2, 2), np.uint8))[:-3], "size mismatch"),
        (idx_bytes(np.zeros(4, np.uint8)) + b"\x00", "too long"),
        (gzip.compress(idx_bytes(np.zeros(99, np.uint8)))[:-9], "gzip"),
    ],
)
def test_read_idx_corrupt_files(tmp_path, data, pattern):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=pattern) as err:
        datasets.read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "data,pattern",
    [
        (b"", r"it is empty \(0 bytes\)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "it looks like a PNG image"),
        (gzip.compress(b"hello\n", mtime=0), "it looks like a text file"),
        # 2**31 ** 3 elements overflow int64 to 0, which matched the 0 data
        # bytes of this header, and NumPy then failed to reshape.
        (
            b"\x00\x00\x08\x03" + struct.pack(">3I", 2**31, 2**31, 2**31),
            "truncated: size mismatch",
        ),
    ],
)
def test_read_idx_says_what_it_found(tmp_path, data, pattern):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(
        ValueError, match=rf"train-images-idx3-ubyte.*{pattern}"
    ):
        datasets.read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------
# Local lookup


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_data_dir(tmp_path, gz):
    x_tr, y_tr, x_te, y_te = fake_mnist(tmp_path, gz=gz)
    (a, b), (c, d) = datasets.load_arrays("fashion_mnist", data_dir=tmp_path)
    assert a.shape == (12, 28, 28, 1) and c.shape == (5, 28, 28, 1)
    assert a.dtype == np.float32 and b.dtype == np.int32
    np.testing.assert_array_equal(a[..., 0], x_tr / np.float32(255))
    np.testing.assert_array_equal(b, y_tr)
    np.testing.assert_array_equal(c[..., 0] * 255, x_te)
    np.testing.assert_array_equal(d, y_te)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_environment_variable_and_subfolder(tmp_path, monkeypatch):
    x_tr, _, _, _ = fake_mnist(tmp_path / "fashion-mnist", seed=1)
    fake_mnist(tmp_path / "mnist", seed=2)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    (a, _), _ = datasets.load_arrays("fashion_mnist")
    np.testing.assert_array_equal(a[..., 0] * 255, x_tr)
    (m, _), _ = datasets.load_arrays("mnist")
    assert not np.array_equal(m, a)


def test_data_dir_wins_over_environment(tmp_path, monkeypatch):
    x_tr, _, _, _ = fake_mnist(tmp_path / "arg", seed=3)
    fake_mnist(tmp_path / "env", seed=4)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "env"))
    (a, _), _ = datasets.load_arrays("mnist", data_dir=tmp_path / "arg")
    np.testing.assert_array_equal(a[..., 0] * 255, x_tr)


def test_debian_folder_is_searched(tmp_path, monkeypatch):
    x_tr, _, _, _ = fake_mnist(tmp_path / "debian", seed=5)
    monkeypatch.setattr(
        sources,
        "_DEBIAN_DIRS",
        {"fashion_mnist": ((str(tmp_path / "debian"), "dataset-x"),)},
    )
    (a, _), _ = datasets.load_arrays("fashion_mnist", data_dir=tmp_path / "e")
    np.testing.assert_array_equal(a[..., 0] * 255, x_tr)


@pytest.mark.parametrize("installed", [True, False])
def test_no_data_and_no_network_fails_at_once(tmp_path, monkeypatch, installed):
    offline(monkeypatch, installed)
    start = time.perf_counter()
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        datasets.load_arrays("mnist", data_dir=tmp_path)
    assert time.perf_counter() - start < 1.0
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    assert str(tmp_path) in message
    assert "train-images-idx3-ubyte" in message
    assert datasets.DATA_DIR_ENV in message and "data_dir" in message
    assert "pip install tensorflow-datasets" in message
    if installed:
        assert "did not answer" in message
    else:
        assert "not installed" in message


def test_fashion_mnist_message_names_the_debian_package(tmp_path, monkeypatch):
    offline(monkeypatch)
    monkeypatch.setattr(
        sources,
        "_DEBIAN_DIRS",
        {
            "fashion_mnist": (
                (str(tmp_path / "absent"), "dataset-fashion-mnist"),
            )
        },
    )
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        datasets.load_arrays("fashion_mnist", data_dir=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert str(tmp_path / "absent") in str(err.value)


def test_incomplete_folder_is_reported(tmp_path, monkeypatch):
    offline(monkeypatch)
    fake_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(datasets.DatasetNotFoundError, match="missing t10k-lab"):
        datasets.load_arrays("mnist", data_dir=tmp_path)


def test_inconsistent_files_raise(tmp_path):
    fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="4 labels"):
        datasets.load_arrays("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(5, 10, np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        datasets.load_arrays("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 8, 8), "u1"))
    with pytest.raises(ValueError, match=r"\(8, 8, 1\)"):
        datasets.load_arrays("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("n_train,n_test", [(0, 5), (12, 0)])
def test_idx_set_with_no_images_is_refused(tmp_path, n_train, n_test):
    fake_mnist(tmp_path, n_train=n_train, n_test=n_test, gz=False)
    stem = "train" if n_train == 0 else "t10k"
    with pytest.raises(ValueError, match=rf"{stem}-images-idx3-ubyte holds 0"):
        datasets.load_arrays("mnist", data_dir=tmp_path)
    with pytest.raises(ValueError, match=rf"{stem}-images-idx3-ubyte holds 0"):
        datasets.load("mnist", data_dir=tmp_path, normalize=True)


def test_labels_must_be_integers(tmp_path):
    fake_mnist(tmp_path, gz=False)
    labels = np.array([1.5, 2, 3, 4, 5], np.float32)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, code=0x0D)
    with pytest.raises(ValueError, match="test labels .*dtype float32"):
        datasets.load_arrays("mnist", data_dir=tmp_path)


def test_empty_split_from_tfds_is_refused(tmp_path, monkeypatch):
    fake_tfds(monkeypatch, prepared=True, network=False)
    empty = (np.zeros((0, 28, 28, 1), np.uint8), np.zeros(0, np.int64))
    monkeypatch.setattr(
        tfds_fallback, "_tfds_load", lambda name, download: (empty, empty)
    )
    with pytest.raises(
        ValueError, match="training split of 'mnist' .*tensorflow-datasets"
    ):
        datasets.load_arrays("mnist", data_dir=tmp_path)


def test_validation_split_of_a_single_image(tmp_path):
    fake_mnist(tmp_path, n_train=1, gz=False)
    with pytest.raises(ValueError, match="1 image.*validation_split=0.5"):
        datasets.load(
            "mnist", "validation", data_dir=tmp_path, validation_split=0.5
        )


def test_corrupt_file_in_data_dir(tmp_path):
    fake_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        datasets.load_arrays("fashion_mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------
# tensorflow-datasets branch, without tensorflow-datasets


def fake_tfds(monkeypatch, prepared, network):
    calls = []
    x = np.zeros((3, 28, 28, 1), np.uint8)
    y = np.array([1, 2, 3], np.int64)

    def load(name, download):
        calls.append((name, download))
        return (x, y), (x[:2], y[:2])

    def probe():
        calls.append("probe")
        return network

    monkeypatch.setattr(tfds_fallback, "_tfds_installed", lambda: True)
    monkeypatch.setattr(tfds_fallback, "_tfds_prepared", lambda name: prepared)
    monkeypatch.setattr(tfds_fallback, "_network_available", probe)
    monkeypatch.setattr(tfds_fallback, "_tfds_load", load)
    return calls


def test_tfds_prepared_copy_needs_no_network(tmp_path, monkeypatch):
    calls = fake_tfds(monkeypatch, prepared=True, network=False)
    (a, b), (c, _) = datasets.load_arrays("mnist", data_dir=tmp_path)
    assert calls == [("mnist", False)]
    assert a.shape == (3, 28, 28, 1) and c.shape == (2, 28, 28, 1)
    assert b.dtype == np.int32


def test_tfds_downloads_only_after_the_probe(tmp_path, monkeypatch):
    calls = fake_tfds(monkeypatch, prepared=False, network=True)
    (a, _), _ = datasets.load_arrays("mnist", data_dir=tmp_path)
    assert calls == ["probe", ("mnist", True)]
    assert a.shape == (3, 28, 28, 1)


def test_local_files_come_before_tfds(tmp_path, monkeypatch):
    calls = fake_tfds(monkeypatch, prepared=True, network=True)
    fake_mnist(tmp_path)
    datasets.load_arrays("mnist", data_dir=tmp_path)
    assert calls == []


def test_tfds_prepared_looks_in_tfds_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert not tfds_fallback._tfds_prepared("mnist")
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    (tmp_path / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    assert tfds_fallback._tfds_prepared("mnist")


def test_network_probe_on_loopback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert tfds_fallback._network_available(
            server.getsockname(), timeout=2.0
        )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = unused.getsockname()
    start = time.perf_counter()
    assert not tfds_fallback._network_available(address, timeout=0.5)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------
# digits, CIFAR-10, info


def test_digits_matches_the_quickstart_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    (x_train, y_train), (x_test, y_test) = datasets.load_arrays("digits")
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    expected = train_test_split(
        x, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    for got, want in zip(
        (x_train, x_test, y_train, y_test), expected, strict=True
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_python_batches(tmp_path, archive):
    x_tr, y_tr, x_te, y_te = fake_cifar(tmp_path, archive=archive)
    (a, b), (c, d) = datasets.load_arrays("cifar10", data_dir=tmp_path)
    assert a.shape == (10, 32, 32, 3) and c.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(a * 255, x_tr)
    np.testing.assert_array_equal(b, y_tr)
    np.testing.assert_array_equal(c * 255, x_te)
    np.testing.assert_array_equal(d, y_te)


def test_cifar10_corrupt_batch(tmp_path):
    fake_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"junk")
    with pytest.raises(ValueError, match="data_batch_3"):
        datasets.load_arrays("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("scale,dtype", [(1 / 255, "float32"), (4, "int64")])
def test_cifar10_pixels_must_be_bytes(tmp_path, scale, dtype):
    # Floats in [0, 1], or integers above 255, were cast to uint8 silently.
    fake_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    batch[b"data"] = (batch[b"data"].astype(dtype) * scale).astype(dtype)
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=f"test_batch.*0..255.*{dtype}"):
        datasets.load_arrays("cifar10", data_dir=tmp_path)


def test_info():
    assert datasets.info("cifar10").input_shape == (32, 32, 3)
    assert datasets.info("fashion_mnist").input_shape == (28, 28, 1)
    assert datasets.info("digits").train_size == 1437
    for name, meta in datasets.DATASETS.items():
        assert meta.name == name and meta.num_classes == 10
        assert len(meta.class_names) == meta.num_classes


@pytest.mark.parametrize(
    "call",
    [
        lambda: datasets.info("imagenet"),
        lambda: datasets.load_arrays("imagenet"),
        lambda: datasets.load("imagenet"),
    ],
)
def test_unknown_name(call):
    with pytest.raises(ValueError, match="'cifar10'.*name='imagenet'"):
        call()


# --------------------------------------------------------------------------
# load(): the tf.data pipeline


def batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_load_batches(tmp_path):
    x_tr, y_tr, _, _ = fake_mnist(tmp_path)
    ds = datasets.load("mnist", "train", batch_size=5, data_dir=tmp_path)
    assert ds.cardinality().numpy() == 3
    got = batches(ds)
    assert [len(y) for _, y in got] == [5, 5, 2]
    x, y = got[0]
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32
    assert y.dtype == np.int32
    assert sorted(np.concatenate([y for _, y in got])) == sorted(y_tr)
    dropped = datasets.load(
        "mnist", batch_size=5, data_dir=tmp_path, drop_remainder=True
    )
    assert [len(y) for _, y in batches(dropped)] == [5, 5]


def test_test_split_is_in_order_and_in_unit_range(tmp_path):
    _, _, x_te, y_te = fake_mnist(tmp_path)
    got = batches(datasets.load("mnist", "test", 4, data_dir=tmp_path))
    x = np.concatenate([x for x, _ in got])
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), y_te)
    np.testing.assert_allclose(x[..., 0] * 255, x_te, atol=1e-4)


def test_shuffle_is_seeded_and_changes_every_epoch(tmp_path):
    fake_mnist(tmp_path, n_train=40)

    def order(dataset):
        return np.concatenate([x[:, 0, 0, 0] for x, _ in batches(dataset)])

    def make(seed):
        return datasets.load(
            "mnist", batch_size=8, data_dir=tmp_path, seed=seed
        )

    first = make(7)
    epoch1, epoch2 = order(first), order(first)
    np.testing.assert_array_equal(epoch1, order(make(7)))
    assert not np.array_equal(epoch1, epoch2)
    assert not np.array_equal(epoch1, order(make(8)))
    np.testing.assert_array_equal(np.sort(epoch1), np.sort(epoch2))


def test_validation_split(tmp_path):
    fake_mnist(tmp_path, n_train=20)
    kwargs = dict(batch_size=64, data_dir=tmp_path, validation_split=0.25)
    (x_train, _), _ = datasets.load_arrays("mnist", data_dir=tmp_path)
    train = batches(datasets.load("mnist", "train", shuffle=False, **kwargs))
    val = batches(datasets.load("mnist", "validation", **kwargs))
    assert len(train[0][1]) == 15 and len(val[0][1]) == 5
    together = np.concatenate([train[0][0], val[0][0]])
    key = together.reshape(20, -1).sum(axis=1)
    np.testing.assert_allclose(
        np.sort(key), np.sort(x_train.reshape(20, -1).sum(axis=1)), rtol=1e-5
    )


def test_cifar_augmentation_crops_and_flips(tmp_path):
    x_tr, y_tr, _, _ = fake_cifar(tmp_path)
    ds = datasets.load(
        "cifar10",
        batch_size=10,
        shuffle=False,
        normalize=False,
        seed=1,
        data_dir=tmp_path,
    )
    padded = np.pad(x_tr / np.float32(255), ((0, 0), (4, 4), (4, 4), (0, 0)))
    seen = set()
    for _ in range(4):
        ((x, y),) = batches(ds)
        assert x.shape == (10, 32, 32, 3) and x.dtype == np.float32
        for image, label in zip(x, y, strict=True):
            source = padded[list(y_tr).index(label)]
            match = [
                (dy, dx, flip)
                for dy in range(9)
                for dx in range(9)
                for flip in (False, True)
                if np.allclose(
                    image,
                    source[dy : dy + 32, dx : dx + 32][:, ::-1]
                    if flip
                    else source[dy : dy + 32, dx : dx + 32],
                )
            ]
            assert match, "not a crop of the padded image"
            seen.update(match)
    assert {flip for _, _, flip in seen} == {False, True}
    assert any((dy, dx) != (4, 4) for dy, dx, _ in seen)


def test_cifar_defaults_normalise_and_augment_train_only(tmp_path):
    fake_cifar(tmp_path, per_batch=40)
    (x_train, _), (x_test, _) = datasets.load_arrays(
        "cifar10", data_dir=tmp_path
    )
    mean = x_train.mean(axis=(0, 1, 2))
    std = x_train.std(axis=(0, 1, 2))
    plain = datasets.load(
        "cifar10", batch_size=200, augment=False, data_dir=tmp_path
    )
    ((x, _),) = batches(plain)
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    test = batches(datasets.load("cifar10", "test", 8, data_dir=tmp_path))
    np.testing.assert_allclose(
        test[0][0], (x_test - mean) / std, rtol=1e-4, atol=1e-4
    )
    augmented = datasets.load("cifar10", batch_size=200, data_dir=tmp_path)
    ((x_aug, _),) = batches(augmented)
    assert x_aug.shape == x.shape
    assert not np.allclose(np.sort(x_aug, axis=None), np.sort(x, axis=None))


def test_mnist_is_not_standardised_by_default(tmp_path):
    fake_mnist(tmp_path)
    ((x, _),) = batches(
        datasets.load("mnist", batch_size=64, data_dir=tmp_path)
    )
    assert x.min() >= 0.0 and x.max() <= 1.0
    ((z, _),) = batches(
        datasets.load("mnist", batch_size=64, data_dir=tmp_path, normalize=True)
    )
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-4


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(split="valid"), "split='valid'"),
        (dict(split="validation"), "validation_split=None"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(batch_size=2.0), "batch_size=2.0"),
        (dict(seed=-1), "seed=-1"),
        (dict(validation_split=1.0), "validation_split=1.0"),
        (dict(augment=True), "augment=True"),
        (dict(shuffle="yes"), "shuffle='yes'"),
    ],
)
def test_load_invalid_arguments(tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        datasets.load("mnist", data_dir=tmp_path, **kwargs)
