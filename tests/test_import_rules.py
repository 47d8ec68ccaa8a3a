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
