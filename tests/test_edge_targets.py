"""edge.targets: the target protocol, its entry point registry, no cycles."""

import ast
import importlib.metadata
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from edge_models import dense_model
from edge_models import images

import edge
from edge import exporter
from edge import report
from edge import targets
from edge.errors import ConsumerError
from edge.errors import ExportError

EDGE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "edge")
BUILT_IN = ("tflite", "tflite-int16x8", "onnx", "c", "loihi", "nir")
# The packages of the built-in targets: edge.targets.tflite registers both
# "tflite" and "tflite-int16x8".
TARGET_PACKAGES = [
    f"edge.targets.{name}" for name in ("tflite", "onnx", "c", "loihi", "nir")
]

FAKE_MODULE = textwrap.dedent(
    '''
    """A third-party target: the integer reference's output as a file."""

    import numpy as np

    from edge.targets import Requirement
    from edge.targets import Target


    def export_fake(context):
        data = np.asarray(context.int_out, np.float32).tobytes()
        context.files["fake/out.bin"] = data
        context.log("  fake: wrote the integer reference")
        return [
            context.row(
                "fake",
                "NumPy",
                context.int_out,
                expected=context.int_out,
                path="fake/out.bin",
                ops=["copy"],
            )
        ]


    TARGET = Target(
        "fake",
        export_fake,
        requirements=(Requirement.module("numpy", "pip install numpy"),),
        integer=True,  # it deploys the integer reference
    )
    MISSING = Target(
        "needy",
        export_fake,
        requirements=(
            Requirement.module("no_such_module_xyz", "pip install xyz"),
        ),
    )
    WRONG_NAME = Target("other", export_fake)
    '''
)


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch):
    """The real entry points plus those of a third-party package written
    to `tmp_path`."""
    (tmp_path / "fake_edge_target.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    group = targets.ENTRY_POINT_GROUP
    real = list(importlib.metadata.entry_points(group=group))

    def make(**extra):
        entries = real + [
            importlib.metadata.EntryPoint(
                name, f"fake_edge_target:{value}", targets.ENTRY_POINT_GROUP
            )
            for name, value in extra.items()
        ]
        monkeypatch.setattr(targets, "_entry_points", lambda: entries)

    return make


def test_the_built_in_targets_are_registered_in_order():
    assert targets.names() == BUILT_IN
    for name in BUILT_IN:
        target = targets.get(name)
        assert target.name == name
        assert target.missing() == []  # every consumer is installed here
    assert all(r.install for r in targets.get("tflite").requirements)


def test_a_third_party_target_exports_through_the_entry_points(
    fake_entry_points, tmp_path
):
    fake_entry_points(fake="TARGET")
    assert targets.names() == (*BUILT_IN, "fake")
    model = dense_model(timesteps=2)
    x = images(24, seed=3)
    lines = []
    result = edge.export(
        model,
        tmp_path / "out",
        targets="fake",
        calibration_data=x[:16],
        eval_data=(x[16:], np.zeros(8, int)),
        min_agreement=0.0,  # an untrained network: the gate is not tested
        max_accuracy_drop=1.0,
        progress=lines.append,
    )
    row = result.row("fake")
    assert row.consumer == "NumPy" and row.ops == ["copy"]
    assert row.max_abs_diff == 0.0 and row.checks["within_1e-5"] == 1.0
    assert row.agreement == result.row("reference-int").agreement
    written = (tmp_path / "out" / "fake" / "out.bin").read_bytes()
    assert row.size_bytes == len(written) == 8 * 10 * 4
    assert "  fake: wrote the integer reference" in lines
    assert set(result.seconds) == {"prepare", "fake"}


def test_a_missing_requirement_names_what_to_install(fake_entry_points):
    fake_entry_points(needy="MISSING")
    target = targets.get("needy")
    assert target.missing() == ["no_such_module_xyz (pip install xyz)"]
    with pytest.raises(ConsumerError, match=r"'needy' .*\(pip install xyz\)"):
        exporter.load_targets("needy")


def test_bad_entry_points_are_refused_naming_them(fake_entry_points):
    fake_entry_points(wrong="WRONG_NAME", broken="NO_SUCH_NAME")
    with pytest.raises(ExportError, match="names the target 'other'"):
        targets.get("wrong")
    with pytest.raises(ExportError, match="'broken' .* could not be loaded"):
        targets.get("broken")
    with pytest.raises(ExportError, match="No export target 'nope'"):
        targets.get("nope")
    with pytest.raises(ExportError, match=r"unknown: 'nope'"):
        exporter.check_targets("tflite,nope")


def test_no_registered_target_says_to_install_the_package(monkeypatch):
    monkeypatch.setattr(targets, "_entry_points", lambda: [])
    with pytest.raises(ExportError, match=r"'edge.targets' is empty.*pip"):
        exporter.check_targets("tflite")


def test_a_target_returns_its_files_and_leaves_the_context_alone():
    def export_two(context):
        context.files["a.bin"] = b"a"
        return [report.ArtefactReport("two", "none", path="a.bin")]

    class Context:
        files = {"kept": b"k"}

    context = Context()
    files, rows = targets.Target("two", export_two).export(context)
    assert files == {"a.bin": b"a"} and rows[0].target == "two"
    assert context.files == {"kept": b"k"}


def test_the_cli_lists_the_registered_targets(fake_entry_points, capsys):
    from keras_snn import cli

    fake_entry_points(fake="TARGET")
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    listed = ", ".join((*BUILT_IN, "fake"))
    assert f"of {listed} (default: all)" in help_text


def test_make_row_is_the_one_way_to_measure_a_row():
    keras_out = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1], [0.0, 3.0]])
    output = keras_out + np.array([0.0, 0.0, 0.0, 1e-3])[:, None]
    output[2] = [0.0, 1.0]  # another class
    row = report.make_row(
        "t", "c", output, keras_out, [1, 0, 0, 0], expected=keras_out
    )
    assert row.agreement == 0.75 and row.accuracy == 0.5
    assert row.max_abs_diff == pytest.approx(0.9)
    assert "within_1e-5" not in row.checks and row.samples is None
    row = report.make_row(
        "t",
        "c",
        output[:2],
        keras_out[:2],
        expected=keras_out[:2],
        close=True,
        samples=2,
    )
    assert row.checks == {"within_1e-5": 1.0} and row.samples == 2
    assert row.accuracy is None and row.max_abs_diff == 0.0


def _imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return tree, names


def test_the_exporter_imports_and_names_no_target():
    tree, names = _imports(os.path.join(EDGE, "exporter.py"))
    target_modules = {
        "edge.tflite",
        "edge.onnx_export",
        "edge.loihi",
        "edge.nir_export",
        "edge.targets.c",
        *TARGET_PACKAGES,
    }
    assert not names & target_modules
    sub = [n.split(".")[2] for n in names if n.startswith("edge.targets.")]
    assert sub == ["ExportContext"]  # the protocol's context, no target
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]
    named = [s for s in strings if any(t in s.split(":")[0] for t in BUILT_IN)]
    assert not [s for s in named if s.strip() in BUILT_IN or "edge." in s]


def test_report_and_protocol_import_no_exporter_and_no_target():
    for module in ("report.py", "gate.py", "output.py"):
        _, names = _imports(os.path.join(EDGE, module))
        assert "edge.exporter" not in names, module
    _, names = _imports(os.path.join(EDGE, "targets", "__init__.py"))
    assert not any(n.startswith("edge.targets.") for n in names)
    assert "edge.exporter" not in names


@pytest.mark.parametrize("module", TARGET_PACKAGES)
def test_each_target_imports_first_in_a_fresh_process(module):
    # A hidden cycle (a target importing the exporter, which imports the
    # target) fails when the target is the first module imported.
    code = (
        f"import {module} as m, sys\n"
        "from edge import targets\n"
        f"t = targets.get({module.rsplit('.', 1)[1]!r})\n"
        "assert callable(t.function)\n"
        "assert 'edge.exporter' not in sys.modules, 'imports the exporter'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_listing_targets_imports_no_target_and_no_tensorflow():
    code = (
        "import sys\n"
        "from edge import targets\n"
        "import edge.cli\n"
        "assert targets.names()[:3] == ('tflite', 'tflite-int16x8', 'onnx')\n"
        "bad = [m for m in sys.modules if m.startswith('edge.targets.')\n"
        "       or m == 'tensorflow' or m == 'edge.exporter']\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_report_table_columns_stay_aligned_for_long_consumer_names():
    from edge.report import ArtefactReport
    from edge.report import ExportReport

    rows = [
        ArtefactReport("keras", "Keras", accuracy=0.5),
        ArtefactReport(
            "reference-int", "edge.integer (int8 w, int16 v)", accuracy=0.5
        ),
        ArtefactReport("onnx", "onnxruntime", size_bytes=123, accuracy=0.5),
    ]
    report = ExportReport(
        model="m", out_dir="out", rows=rows, fusion_error=0.0,
        samples=2, timesteps=1,
    )
    lines = report.table().splitlines()[1:]
    header, body = lines[0], lines[2:]
    end = header.index("accuracy") + len("accuracy")
    for line in body:
        assert line[end - 6 : end] == "0.5000", line
