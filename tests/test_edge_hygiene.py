"""edge.export's output folder, permissions, progress, accuracy gate and
argument errors (issue #13: export hygiene, accuracy gate, clear errors)."""

import os
import stat
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from edge_models import dense_model
from edge_models import fold
from edge_models import images

import edge
from edge import exporter
from edge import quantize
from keras_snn import cli
from keras_snn import layers

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def _model(seed=5):
    keras.utils.set_random_seed(seed)
    return dense_model(timesteps=2)


def _export(out, model=None, **kwargs):
    kwargs.setdefault("targets", "onnx")
    kwargs.setdefault("calibration_data", images(32, seed=1))
    kwargs.setdefault("verbose", 0)
    return edge.export(model or _model(), out, **kwargs)


def _tree(folder):
    """Relative paths of every file and folder below `folder`."""
    found = []
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            found.append(
                os.path.relpath(os.path.join(parent, name), folder)
            )
    return sorted(found)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.keras"
    _model().save(path)
    data = path.parent / "data.npz"
    np.savez(data, x=images(40, seed=1), y=np.arange(40) % 10)
    return path, data


# -- the output folder is replaced whole ------------------------------------
def test_reexport_leaves_no_stale_file_and_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    _export(out)
    assert _tree(out) == ["model.onnx", "report.json"]
    # What an older export with the C target left.
    (out / "c").mkdir()
    (out / "c" / "model.c").write_text("int stale;\n")
    with pytest.raises(edge.ExportError, match="previous export.*overwrite"):
        _export(out)
    assert (out / "c" / "model.c").exists()  # refused: untouched
    report = _export(out, overwrite=True)
    assert _tree(out) == ["model.onnx", "report.json"]
    assert report.out_dir == str(out)
    assert os.listdir(tmp_path) == ["out"]  # no staging folder left


def test_folder_with_other_files_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(edge.ExportError, match="notes.txt"):
            _export(tmp_path, overwrite=overwrite)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_export_into_an_empty_folder_and_new_parents(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _export(empty)
    assert _tree(empty) == ["model.onnx", "report.json"]
    deep = tmp_path / "a" / "b" / "out"
    _export(deep)
    assert _tree(deep) == ["model.onnx", "report.json"]


def test_refused_export_removes_the_folders_it_made(tmp_path):
    with pytest.raises(edge.CalibrationError):
        _export(tmp_path / "a" / "b", calibration_data=images(8, (4, 4, 1)))
    assert os.listdir(tmp_path) == []


_KILLED = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import keras
from edge_models import dense_model, images
import edge
from keras_snn import fileio

written = []
real = fileio.write_bytes

def write_then_die(path, data):
    real(path, data)
    written.append(path)
    if len(written) == 1:
        os.kill(os.getpid(), signal.SIGKILL)

fileio.write_bytes = write_then_die
keras.utils.set_random_seed(5)
edge.export(dense_model(timesteps=2), sys.argv[1], targets="onnx",
            calibration_data=images(32, seed=1), verbose=0)
"""


def test_killed_export_leftovers_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(_KILLED.format(tests=TESTS))
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr[-2000:]
    leftovers = os.listdir(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.export-")
    assert not out.exists()  # the half-written export was never in place
    _export(out)
    assert os.listdir(tmp_path) == ["out"]
    assert _tree(out) == ["model.onnx", "report.json"]


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_export_set_aside_by_a_kill_is_put_back(tmp_path):
    # A kill between moving the previous export aside and moving the new
    # one in leaves `.out.old-<pid>-<random>.tmp` and no `out`.
    out = tmp_path / "out"
    _export(out)
    aside = tmp_path / f".out.old-{_dead_pid()}-0a1b2c3d.tmp"
    os.rename(out, aside)
    with pytest.raises(edge.ExportError, match="previous export"):
        _export(out)
    assert os.listdir(tmp_path) == ["out"]
    assert _tree(out) == ["model.onnx", "report.json"]


# -- permissions --------------------------------------------------------------
def test_files_get_the_permissions_of_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        _export(tmp_path / "out")
    finally:
        os.umask(previous)
    modes = {
        name: stat.S_IMODE(os.stat(tmp_path / "out" / name).st_mode)
        for name in _tree(tmp_path / "out")
    }
    assert modes == {"model.onnx": 0o640, "report.json": 0o640}
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o750


# -- progress -----------------------------------------------------------------
def test_progress_lines_per_step_target_and_consumer(tmp_path, capsys):
    lines = []
    _export(tmp_path / "a", progress=lines.append)
    assert any("quantizing on 32 calibration samples" in x for x in lines)
    assert any("[1/1] onnx: started" in x for x in lines)
    assert any("onnx: in onnxruntime" in x for x in lines)
    done = [x for x in lines if "[1/1] onnx: done in" in x]
    assert done and "onnx on onnxruntime agreement 1.0000" in done[0]
    assert any(x.startswith("Accuracy gate:") for x in lines)
    assert capsys.readouterr().err == ""  # a progress function: no stderr
    # verbose=1 writes the same lines to stderr, with an estimate from the
    # export it replaces.
    _export(tmp_path / "a", verbose=1, overwrite=True)
    err = capsys.readouterr().err
    assert "[1/1] onnx: started (took" in err and "last time)" in err
    _export(tmp_path / "b", verbose=0)
    assert capsys.readouterr().err == ""


def test_cli_progress_goes_to_stderr_and_quiet_silences_it(
    tmp_path, capsys, saved_model
):
    model_path, data = saved_model
    command = [
        "export",
        str(model_path),
        "--targets",
        "onnx",
        "--calibration",
        str(data),
        "--eval",
        str(data),
    ]
    assert cli.main([*command, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr()
    assert "[1/1] onnx: done in" in printed.err
    assert "[1/1] onnx" not in printed.out and "onnxruntime" in printed.out
    assert "Accuracy gate: lowest agreement" in printed.out
    assert cli.main([*command, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert printed.err == "" and "onnxruntime" in printed.out
    # A previous export is replaced only with --overwrite.
    assert cli.main([*command, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "`--out`" in err and "Pass --overwrite" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code = cli.main([*command, "--out", str(tmp_path / "b"), "--overwrite"])
    assert code == 0


def test_export_through_a_link_replaces_the_folder_it_points_to(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    _export(tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert _tree(target) == ["model.onnx", "report.json"]


# -- accuracy gate ------------------------------------------------------------
@pytest.fixture(scope="module")
def degraded(tmp_path_factory):
    """A model and calibration data with one sample 300 times too bright:
    the int8 input scale then maps every ordinary input to 0 or 1."""
    keras.utils.set_random_seed(3)
    model = dense_model(timesteps=2)
    calibration = images(64, seed=2)
    calibration[0] *= 300.0
    x = images(48, seed=4)
    labels = model.predict(x, verbose=0).argmax(-1)  # Keras is right
    return model, calibration, (x, labels), tmp_path_factory.mktemp("gate")


def test_accuracy_gate_refuses_a_degraded_int8_export(degraded):
    model, calibration, eval_data, folder = degraded
    out = folder / "refused"
    lines = []
    with pytest.raises(edge.AccuracyDropError) as info:
        _export(
            out,
            model,
            targets="c",
            calibration_data=calibration,
            eval_data=eval_data,
            progress=lines.append,
        )
    # Each consumer process of the target shows when it starts and ends.
    for consumer in ("The host C build", "The Cortex-M4 C build"):
        assert any(
            line.startswith(f"    {consumer}: started (time limit")
            for line in lines
        )
        assert any(
            line.startswith(f"    {consumer}: exit status 0 after")
            for line in lines
        )
    message = str(info.value)
    assert "c-host on gcc x86-64: agreement with the Keras model" in message
    assert "< min_agreement 0.9" in message
    assert "below the Keras model's 1.0000" in message
    assert "allow_accuracy_drop" in message
    gate = info.value.report.gate
    assert gate["passed"] is False and gate["lowest_agreement"] < 0.9
    assert not out.exists()
    # Allowed explicitly: written, and the report says the gate failed.
    report = _export(
        folder / "allowed",
        model,
        targets="c",
        calibration_data=calibration,
        eval_data=eval_data,
        allow_accuracy_drop=True,
    )
    assert report.gate["allowed"] is True and report.gate["failures"]
    assert "FAILED, written anyway" in report.table()
    assert (folder / "allowed" / "c" / "model.c").exists()
    # The same artefacts pass with thresholds that accept their numbers.
    report = _export(
        folder / "lenient",
        model,
        targets="c",
        calibration_data=calibration,
        eval_data=eval_data,
        min_agreement=gate["lowest_agreement"],
        max_accuracy_drop=gate["largest_accuracy_drop"],
    )
    assert report.gate["passed"] is True


def test_accuracy_gate_passes_good_calibration(degraded):
    model, calibration, eval_data, folder = degraded
    report = _export(
        folder / "good",
        model,
        targets="c",
        calibration_data=calibration[1:],
        eval_data=eval_data,
    )
    assert report.gate["passed"] is True
    assert report.gate["lowest_agreement"] >= 0.9
    assert "Accuracy gate: lowest agreement" in report.table()


def test_cli_accuracy_gate_prints_the_table_and_fails(
    degraded, tmp_path, capsys
):
    model, calibration, (x, y), _ = degraded
    model_path = tmp_path / "m.keras"
    model.save(model_path)
    data = tmp_path / "cal.npz"
    np.savez(data, x=calibration)
    held_out = tmp_path / "eval.npz"
    np.savez(held_out, x=x, y=y)
    command = [
        "export",
        str(model_path),
        "--targets",
        "c",
        "--calibration",
        str(data),
        "--eval",
        str(held_out),
        "--quiet",
    ]
    assert cli.main([*command, "--out", str(tmp_path / "out")]) == 2
    printed = capsys.readouterr()
    assert "c-host" in printed.out and "FAILED" in printed.out
    assert "failed the accuracy gate" in printed.err
    assert "--allow-accuracy-drop" in printed.err
    assert "Traceback" not in printed.err
    assert not (tmp_path / "out").exists()
    code = cli.main(
        [
            *command,
            "--out",
            str(tmp_path / "out"),
            "--min-agreement",
            "0",
            "--max-accuracy-drop",
            "1",
        ]
    )
    assert code == 0


# -- argument errors ----------------------------------------------------------
def test_calibration_data_of_strings_or_not_finite(tmp_path):
    strings = np.full((4, 8, 8, 1), "a")
    with pytest.raises(edge.CalibrationError, match="calibration_data.*dtype"):
        _export(tmp_path / "a", calibration_data=strings)
    x = images(8)
    x[3, 2, 2, 0] = np.nan
    x[5, 0, 0, 0] = np.inf
    with pytest.raises(
        edge.CalibrationError,
        match=r"calibration_data` must hold finite.*2 of 8 samples.*index 3",
    ):
        _export(tmp_path / "a", calibration_data=x)
    with pytest.raises(edge.CalibrationError, match="eval_data.*finite"):
        _export(tmp_path / "a", eval_data=(x, np.zeros(8, int)))
    with pytest.raises(edge.CalibrationError, match="calibration_data.*fin"):
        quantize.quantize(None, x)  # checked before the graph is used
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "option, fragment",
    [
        ({"timesteps": 0}, "`timesteps` must be an integer >= 1.*timesteps=0"),
        ({"timesteps": -3}, "timesteps=-3"),
        ({"timesteps": 2.5}, "timesteps=2.5"),
        ({"state_bits": 4}, r"`state_bits` must be an integer in \[8, 32\]"),
        ({"state_bits": 64}, "state_bits=64"),
        ({"min_agreement": 1.5}, r"`min_agreement` .* in \[0, 1\]"),
        ({"max_accuracy_drop": float("nan")}, "max_accuracy_drop=nan"),
        ({"targets": "tflite,c64"}, "unknown: 'c64'"),
        ({"progress": "yes"}, "`progress` must be a function"),
    ],
)
def test_options_are_checked_before_any_work(tmp_path, option, fragment):
    with pytest.raises(edge.ExportError, match=fragment):
        _export(tmp_path / "out", "not even a model", **option)
    assert os.listdir(tmp_path) == []


def _silent_model():
    # Never trained, zero biases, a threshold nothing reaches: the LIF
    # never fires, so the readout's output is always 0.
    inputs = keras.Input((8, 8, 1))
    x = layers.DirectEncoding(2)(inputs)
    x = fold(keras.layers.Flatten())(x)
    x = fold(keras.layers.Dense(8))(x)
    x = layers.LIF(threshold=1000.0, name="deaf_lif")(x)
    return keras.Model(inputs, layers.Decoding(3)(x), name="silent")


def test_a_layer_silent_in_calibration_is_named(tmp_path):
    # The integer targets quantize, and the quantizer names the layer.
    keras.utils.set_random_seed(1)
    with pytest.raises(
        edge.CalibrationError, match=r"'deaf_lif'\) never fire.*Train"
    ):
        _export(tmp_path / "out", _silent_model(), targets="tflite-int16x8")
    assert os.listdir(tmp_path) == []
    # A float target alone does not quantize: the model exports.
    _export(tmp_path / "float", _silent_model(), targets="onnx")
    assert _tree(tmp_path / "float") == ["model.onnx", "report.json"]


def test_output_folder_errors_before_any_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(edge.ExportError, match="out_dir.*which is a file"):
        _export(blocker, "not a model")
    with pytest.raises(edge.ExportError, match="out_dir.*below.*file"):
        _export(blocker / "sub" / "out", "not a model")
    folder = tmp_path / "ro"
    folder.mkdir()

    def read_only(path, mode=0o777):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(
        edge.ExportError, match="out_dir.*writable.*permission denied"
    ):
        _export(folder / "out", "not a model")
    monkeypatch.undo()
    assert os.listdir(folder) == []


def test_missing_or_corrupt_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        _export(tmp_path / "out", str(tmp_path / "nope.keras"))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError, match="corrupt.keras.*(corrupt|trunc)"):
        _export(tmp_path / "out", str(corrupt))
    assert sorted(os.listdir(tmp_path)) == ["corrupt.keras"]


def test_cli_calibration_with_nan_names_the_option(
    tmp_path, capsys, saved_model
):
    model_path, _ = saved_model
    x = images(16)
    x[2, 0, 0, 0] = np.nan
    data = tmp_path / "cal.npz"
    np.savez(data, x=x)
    code = cli.main(
        [
            "export",
            str(model_path),
            "--out",
            str(tmp_path / "out"),
            "--calibration",
            str(data),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "`--calibration` must hold finite numbers" in err
    assert "index 2" in err
    assert sorted(os.listdir(tmp_path)) == ["cal.npz"]


def test_cli_corrupt_model_file_is_one_line(tmp_path, capsys, saved_model):
    _, data = saved_model
    corrupt = tmp_path / "m.keras"
    corrupt.write_bytes(b"")
    code = cli.main(
        [
            "export",
            str(corrupt),
            "--out",
            str(tmp_path / "out"),
            "--targets",
            "onnx",
            "--calibration",
            str(data),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "m.keras" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


@pytest.mark.parametrize(
    "extra, frag",
    [
        (["--timesteps", "0"], "`--timesteps` must be an integer >= 1"),
        (["--timesteps", "-2"], "--timesteps=-2"),
        (["--state-bits", "40"], "`--state-bits` must be an integer in"),
        (["--targets", "tflite,c64"], "unknown: 'c64'"),
        (["--min-agreement", "2"], "`--min-agreement`"),
        (["--out-is-a-file"], "`--out` must be a folder"),
        (["--model-missing"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, saved_model, extra, frag):
    model_path, data = saved_model
    out = tmp_path / "out"
    if extra == ["--out-is-a-file"]:
        out.write_text("")
        extra = []
    if extra == ["--model-missing"]:
        model_path = tmp_path / "missing.keras"
        extra = []
    code = cli.main(
        [
            "export",
            str(model_path),
            "--out",
            str(out),
            "--calibration",
            str(data),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert frag in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == (["out"] if out.is_file() else [])


def test_write_files_goes_through_fileio(tmp_path):
    exporter.write_files(tmp_path, {"sub/a.bin": b"1", "b.txt": b"2"})
    assert _tree(tmp_path) == ["b.txt", "sub", "sub/a.bin"]
    with pytest.raises(OSError, match="b.txt.*a file"):
        exporter.write_files(tmp_path / "b.txt", {"x": b""})


def test_netx_and_nir_writers_respect_the_umask(tmp_path):
    from edge import fuse
    from edge import ir
    from edge.targets import loihi
    from edge.targets import nir as nir_export

    keras.utils.set_random_seed(2)
    model = dense_model(3, threshold=0.5, decay=0.75, reset="hard")
    graph = fuse.fuse(ir.extract(model))
    previous = os.umask(0o022)
    try:
        loihi.write_netx(loihi.quantize_loihi(graph), tmp_path / "m.net")
        nir_export.write(
            nir_export.convert(graph).nir_graph, str(tmp_path / "m.nir")
        )
    finally:
        os.umask(previous)
    assert sorted(os.listdir(tmp_path)) == ["m.net", "m.nir"]
    for name in ("m.net", "m.nir"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
