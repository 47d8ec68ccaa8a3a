"""Where a static data set's files are looked for, and the refusal if not.

In this order: the folder given as `data_dir`, else the folder in the
environment variable `KERAS_SNN_DATA_DIR` (first a subfolder named after
the data set, then the folder itself), then the folders of Debian
packages. `not_found_message` says where it looked and how to get the
data.
"""

import os

from keras_snn.datasets.catalog import DATA_DIR_ENV
from keras_snn.datasets.cifar import CIFAR_ARCHIVE
from keras_snn.datasets.cifar import CIFAR_FOLDER
from keras_snn.datasets.cifar import find_cifar
from keras_snn.datasets.idx import IDX_STEMS
from keras_snn.datasets.idx import find_idx_set

# Subfolders of `data_dir` / $KERAS_SNN_DATA_DIR looked at before the folder
# itself, so that one folder can hold several data sets.
_SUBDIRS = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar10", "cifar-10"),
}

# Folders installed by Debian packages (checked with `dpkg -L`).
_DEBIAN_DIRS = {
    "fashion_mnist": (
        ("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
    ),
}


def search_dirs(name, data_dir):
    """Folders to look in, in order, each with where it came from."""
    roots = []
    if data_dir is not None:
        roots.append((os.fspath(data_dir), "data_dir"))
    elif os.environ.get(DATA_DIR_ENV):
        roots.append((os.environ[DATA_DIR_ENV], DATA_DIR_ENV))
    dirs = []
    for root, origin in roots:
        root = os.path.expanduser(root)
        for sub in _SUBDIRS[name]:
            dirs.append((os.path.join(root, sub), origin))
        dirs.append((root, origin))
    for folder, package in _DEBIAN_DIRS.get(name, ()):
        dirs.append((folder, f"Debian package {package}"))
    return dirs


def find_local(name, data_dir, searched):
    """Returns the first usable local source, or None; fills `searched`."""
    finder = find_cifar if name == "cifar10" else find_idx_set
    for folder, origin in search_dirs(name, data_dir):
        found, note = finder(folder)
        if found is not None:
            return found
        searched.append(f"{folder} ({origin}){note}")
    return None


def not_found_message(name, searched, note):
    if name == "cifar10":
        files = (
            f"the folder {CIFAR_FOLDER} (data_batch_1..5, test_batch) or "
            f"the archive {CIFAR_ARCHIVE}"
        )
        get = (
            f"download {CIFAR_ARCHIVE} (the CIFAR-10 'python version') "
            "into a folder, extracted or not,"
        )
    else:
        files = "the IDX files " + ", ".join(
            f"{stem}[.gz]" for stem in IDX_STEMS
        )
        get = "download the four IDX files (gzipped or not) into a folder"
    lines = [
        f"Could not find the {name!r} data set. Looked for {files} in:",
        *(f"  - {entry}" for entry in searched),
    ]
    if not searched:
        lines.append(f"  (no folder: pass `data_dir` or set {DATA_DIR_ENV})")
    lines += [f"No download: {note}", "To get the data, either:"]
    if name in _DEBIAN_DIRS:
        for folder, package in _DEBIAN_DIRS[name]:
            lines.append(
                f"  - on Debian/Ubuntu: apt-get install {package} "
                f"(installs {folder});"
            )
    lines += [
        f"  - {get} and pass it as `data_dir`, or set {DATA_DIR_ENV} to it "
        f"(a subfolder named {_SUBDIRS[name][0]!r} inside it works too);",
        "  - pip install tensorflow-datasets and run once with network "
        "access, which downloads and prepares it.",
    ]
    return "\n".join(lines)
