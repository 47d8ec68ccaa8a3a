"""Package boundaries: keras_snn never imports edge; optional deps lazily."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OPTIONAL = {
    "sklearn",
    "matplotlib",
    "torch",
    "lava",
    "nir",
    "onnx",
    "onnxruntime",
    "tf2onnx",
    "ai_edge_litert",
    "tflite_micro",
    "h5py",
    "psutil",
    "tensorflow_datasets",
    "snntorch",
    "norse",
    "spikingjelly",
    "jinja2",
}


def module_level_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split(".")[0]


def all_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split(".")[0]


SOURCES = sorted((ROOT / "keras_snn").rglob("*.py")) + sorted(
    (ROOT / "edge").rglob("*.py")
)


@pytest.mark.parametrize(
    "path", SOURCES, ids=lambda p: str(p.relative_to(ROOT))
)
def test_optional_dependencies_are_not_imported_at_module_level(path):
    assert not set(module_level_imports(path)) & OPTIONAL


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "keras_snn").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_keras_snn_never_imports_edge(path):
    assert "edge" not in set(all_imports(path))


# Issue #14: no module of keras_snn or edge longer than about 700 lines.
MAX_MODULE_LINES = 750

# Modules over the limit that are being split right now, each by its path.
# Empty this list as their splits land (a listed module that is back under
# the limit fails `test_long_module_exceptions_are_still_needed`).
LONG_MODULE_EXCEPTIONS = set()


def line_count(path):
    return len(path.read_text().splitlines())


def test_no_module_is_longer_than_the_limit():
    long = {
        path.relative_to(ROOT).as_posix(): line_count(path)
        for path in SOURCES
        if line_count(path) > MAX_MODULE_LINES
    }
    new = {
        path: n
        for path, n in long.items()
        if path not in LONG_MODULE_EXCEPTIONS
    }
    assert not new, (
        f"modules over {MAX_MODULE_LINES} lines (split them by job): {new}"
    )


def test_long_module_exceptions_are_still_needed():
    short = [
        path
        for path in sorted(LONG_MODULE_EXCEPTIONS)
        if (ROOT / path).is_file()
        and line_count(ROOT / path) <= MAX_MODULE_LINES
    ]
    assert not short, (
        f"{short} are no longer than {MAX_MODULE_LINES} lines: remove them "
        "from LONG_MODULE_EXCEPTIONS"
    )
