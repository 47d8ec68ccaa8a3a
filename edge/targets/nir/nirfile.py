"""Writing a NIR file and reading it back (`write`, `read_back`)."""

import dataclasses

import numpy as np

from edge.errors import ExportError
from keras_snn import fileio

__all__ = [
    "read_back",
    "write",
]


def _same(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    try:
        a, b = np.asarray(a), np.asarray(b)
    except Exception:  # noqa: BLE001
        return a == b
    return a.shape == b.shape and bool(np.all(a == b))


def read_back(path, nir_graph):
    """Reads `path` with `nir.read` and checks it equals `nir_graph`.

    Args:
        path: a file written by `nir.write`.
        nir_graph: the `nir.NIRGraph` that was written.

    Returns:
        The graph read back.

    Raises:
        ExportError: the node names, node types, parameters or edges read
            back differ from `nir_graph`.
    """
    import nir

    read = nir.read(path)
    problems = []
    if set(read.nodes) != set(nir_graph.nodes):
        problems.append(
            f"nodes {sorted(read.nodes)} != {sorted(nir_graph.nodes)}"
        )
    for name, node in nir_graph.nodes.items():
        other = read.nodes.get(name)
        if other is None:
            continue
        if type(other) is not type(node):
            problems.append(
                f"{name}: {type(other).__name__} != {type(node).__name__}"
            )
            continue
        for field in dataclasses.fields(node):
            a, b = getattr(node, field.name), getattr(other, field.name)
            if field.name == "metadata":
                continue
            if not _same(a, b):
                problems.append(f"{name}.{field.name} differs")
    if {tuple(e) for e in read.edges} != {tuple(e) for e in nir_graph.edges}:
        problems.append("edges differ")
    if problems:
        raise ExportError(
            f"The NIR file {path} does not read back as written: "
            + "; ".join(problems)
        )
    return read


def write(nir_graph, path):
    """Writes `nir_graph` with `nir.write` atomically and reads it back.

    The file is written to a temporary name in the target folder, read back
    with `nir.read` and compared (`read_back`), then renamed to `path`; on
    failure nothing is left behind.

    Args:
        nir_graph: a `nir.NIRGraph` (`to_nir`).
        path: the `.nir` file to write.

    Returns:
        `path`.

    Raises:
        ExportError: the file does not read back as written.
    """
    import nir

    with fileio.atomic_path(path) as temporary:
        nir.write(temporary, nir_graph)
        read_back(temporary, nir_graph)
    return path
