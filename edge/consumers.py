"""Where the consumers' Python environments are, for every target.

Some targets run their artefacts in a program that cannot share this
Python environment: Lava (the `loihi` target) needs Python 3.10 and
NumPy < 2, and Norse and snnTorch (the `nir` target) need torch, which does
not belong beside TensorFlow. Each such consumer has a virtual environment
of its own, and a target runs a worker script with its interpreter.

`python(name)` finds that interpreter, in this order:

1. the environment variable of the consumer (`KERAS_SNN_LAVA_PYTHON`,
   `KERAS_SNN_NIR_PYTHON`), naming the interpreter;
2. the per-user consumers folder: `$KERAS_SNN_CONSUMERS_DIR/<name>`, else
   `$XDG_CACHE_HOME/keras-snn/consumers/<name>`, else
   `~/.cache/keras-snn/consumers/<name>` (where
   `keras-snn consumers install` puts them by default);
3. in a source checkout, `.venv-<name>` at the repository root.

A missing consumer gives a message naming the command that installs it
(`keras-snn consumers install --targets nir`). This module imports
neither TensorFlow nor NumPy, so `keras-snn consumers` stays fast.

Example:

```python
from edge import consumers

consumers.find("nir")  # a `Found`, or None
consumers.python("nir")  # the interpreter, or raises ConsumerError
```
"""

import dataclasses
import os

from edge.errors import ConsumerError

__all__ = [
    "CONSUMERS",
    "CONSUMERS_DIR_ENV",
    "Consumer",
    "Found",
    "consumers_dir",
    "environment_dir",
    "find",
    "get",
    "install_command",
    "missing_message",
    "python",
]

CONSUMERS_DIR_ENV = "KERAS_SNN_CONSUMERS_DIR"
# Where an environment variable, the user folder or a checkout was used.
FROM_ENV = "environment variable"
FROM_USER = "user folder"
FROM_CHECKOUT = "source checkout"


@dataclasses.dataclass(frozen=True)
class Consumer:
    """A consumer's environment: what it holds and how it is made.

    Attributes:
        name: the consumer's name, also its folder's (`"lava"`).
        target: the export target that runs it (`"loihi"`).
        env: the environment variable that names its interpreter.
        description: what runs in it, for messages.
        python: the `major.minor` Python it needs, or `None` for any.
        packages: pinned requirements, installed with their dependencies.
        no_deps: pinned requirements installed without their dependencies
            (they declare more than the consumer uses).
        versions: distribution name -> version that `status` checks.
        imports: the modules a complete environment imports.
    """

    name: str
    target: str
    env: str
    description: str
    python: object
    packages: tuple
    no_deps: tuple
    versions: dict
    imports: tuple


# lava-nc 0.10.0 and lava-dl 0.6.0 need Python >=3.10,<3.11 and numpy<2.
# lava-dl goes in without its dependencies (torch, torchvision, opencv):
# the NetX HDF5 loader does not use them, and
# edge/targets/loihi/_lava_worker.py stands in for the torch-based modules
# that lava.lib.dl.netx imports.
# norse 1.1.0 declares torchvision and an unpinned torch: without its
# dependencies it keeps the CPU torch of the first list.
CONSUMERS = {
    "lava": Consumer(
        name="lava",
        target="loihi",
        env="KERAS_SNN_LAVA_PYTHON",
        description="Lava fixed_pt simulator (lava-nc, lava-dl NetX)",
        python="3.10",
        packages=("lava-nc==0.10.0", "h5py>=3.7,<4", "numpy<2"),
        no_deps=("lava-dl==0.6.0",),
        versions={"lava-nc": "0.10.0", "lava-dl": "0.6.0"},
        imports=("h5py", "numpy", "lava.magma.core.run_configs"),
    ),
    "nir": Consumer(
        name="nir",
        target="nir",
        env="KERAS_SNN_NIR_PYTHON",
        description="Norse and snnTorch (nir, nirtorch, CPU torch)",
        python=None,
        packages=(
            "torch==2.13.0",
            "nir==1.0.8",
            "nirtorch==2.6",
            "snntorch==1.0.0",
            "numpy",
        ),
        no_deps=("norse==1.1.0",),
        versions={
            "torch": "2.13.0",
            "nir": "1.0.8",
            "nirtorch": "2.6",
            "snntorch": "1.0.0",
            "norse": "1.1.0",
        },
        imports=("nir", "norse.torch", "snntorch.import_nir"),
    ),
}
# Target name -> consumer name (`--targets loihi` installs `lava`).
_BY_TARGET = {consumer.target: name for name, consumer in CONSUMERS.items()}


@dataclasses.dataclass(frozen=True)
class Found:
    """A consumer's interpreter and where it was found.

    Attributes:
        python: the interpreter's path.
        source: `"environment variable"`, `"user folder"` or
            `"source checkout"`.
    """

    python: str
    source: str


def get(name):
    """The `Consumer` of a consumer or target name (`"lava"`, `"loihi"`).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    key = _BY_TARGET.get(name, name)
    if key not in CONSUMERS:
        known = sorted(set(CONSUMERS) | set(_BY_TARGET))
        raise ValueError(
            f"Unknown consumer or target: {name!r}; expected one of "
            f"{', '.join(known)}."
        )
    return CONSUMERS[key]


def install_command(name):
    """The command that installs the consumer of `name`."""
    return f"keras-snn consumers install --targets {get(name).target}"


def consumers_dir():
    """The per-user consumers folder (it may not exist).

    `$KERAS_SNN_CONSUMERS_DIR`, else `$XDG_CACHE_HOME/keras-snn/consumers`,
    else `~/.cache/keras-snn/consumers`.
    """
    folder = os.environ.get(CONSUMERS_DIR_ENV)
    if folder:
        return os.path.abspath(os.path.expanduser(folder))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(os.path.abspath(cache), "keras-snn", "consumers")


def environment_dir(name, folder=None):
    """The folder of the environment of `name` inside `folder`.

    Args:
        name: a consumer or target name.
        folder: the consumers folder (default: `consumers_dir()`). A folder
            containing `{name}` is a pattern for the environment itself:
            `".venv-{name}"` gives `.venv-lava` and `.venv-nir`.
    """
    name = get(name).name
    folder = consumers_dir() if folder is None else os.fspath(folder)
    if "{name}" in folder:
        return os.path.abspath(folder.replace("{name}", name))
    return os.path.join(os.path.abspath(folder), name)


def interpreter(environment):
    """The Python interpreter of a virtual environment folder."""
    if os.name == "nt":
        return os.path.join(environment, "Scripts", "python.exe")
    return os.path.join(environment, "bin", "python")


def _checkout_root():
    """The source checkout `edge` was loaded from, or `None` (installed)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "setup.cfg")):
        return root
    return None


def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def candidates(name):
    """The places searched for the interpreter of `name`, in order.

    Returns:
        A list of `(source, path)`; the first whose path is an executable
        file is used, except that a set environment variable is used
        alone (a wrong path there is not passed over).
    """
    consumer = get(name)
    value = os.environ.get(consumer.env)
    if value:
        return [(FROM_ENV, os.path.abspath(os.path.expanduser(value)))]
    places = [(FROM_USER, interpreter(environment_dir(consumer.name)))]
    root = _checkout_root()
    if root is not None:
        checkout = os.path.join(root, f".venv-{consumer.name}")
        places.append((FROM_CHECKOUT, interpreter(checkout)))
    return places


def find(name):
    """The `Found` interpreter of the consumer of `name`, or `None`."""
    for source, path in candidates(name):
        if _executable(path):
            return Found(path, source)
    return None


def missing_message(name):
    """Why the consumer of `name` was not found, and how to install it."""
    consumer = get(name)
    value = os.environ.get(consumer.env)
    if value:
        where = (
            f"${consumer.env} names {value}, which is not an executable file"
        )
    else:
        searched = ", ".join(path for _, path in candidates(name))
        where = f"searched ${consumer.env} and {searched}"
    return (
        f"The {consumer.description} environment of the "
        f"{consumer.target!r} target is not installed ({where}). Install "
        f"it with: {install_command(name)}"
    )


def python(name):
    """The interpreter of the consumer of `name`.

    Raises:
        ConsumerError: it is not installed (the message names the
            command that installs it).
    """
    found = find(name)
    if found is None:
        raise ConsumerError(missing_message(name))
    return found.python
