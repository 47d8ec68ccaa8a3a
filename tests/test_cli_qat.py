"""`keras-snn qat`: fine-tunes a float model against the deployed integers.

The float model is a 32-neuron dense network trained for one epoch on the
embedded digits data at T = 2; the command runs once (as the console
script does, in a subprocess) and its QAT model is checked and exported.
"""

import re

import keras
import pytest
from test_cli import run_cli

import edge
from edge import qat
from keras_snn import cli
from keras_snn import datasets
from keras_snn import fileio
from keras_snn import models
from keras_snn import runs
from keras_snn.quantization import IntegerGraph

ROW = re.compile(r"^  (\S.*?)\s+(\d\.\d{4})$", re.MULTILINE)


@pytest.fixture(scope="module")
def digits():
    return datasets.load_arrays("digits")


def _trained(digits, spec, name, epochs, seed, folder):
    """A `spec` network trained on digits at T = 2, saved in `folder`."""
    (x, y), _ = digits
    keras.utils.set_random_seed(seed)
    model = models.from_spec(
        spec, input_shape=x.shape[1:], num_classes=10, timesteps=2, name=name
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    path = folder / "model.keras"
    fileio.save_model(model, path)
    return model, path


@pytest.fixture(scope="module")
def float_model(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("float")
    return _trained(digits, "32FC-Decoding", "tiny", 1, 0, folder)


@pytest.fixture(scope="module")
def qat_run(float_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "qat.keras"
    result = run_cli(
        "qat",
        str(float_model[1]),
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--learning-rate",
        "1e-3",
        "--out",
        str(out),
        "--verbose",
        "0",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, dict(
        (name, float(value)) for name, value in ROW.findall(result.stdout)
    )


def test_prints_the_three_accuracies_and_the_fine_tuned_one(
    qat_run, float_model, digits
):
    _, accuracies = qat_run
    assert list(accuracies) == [
        "float",
        "post-training integer",
        "qat before fine-tuning",
        "qat after 1 epoch",
    ]
    _, (x_test, y_test) = digits
    expected = runs.test_accuracy(float_model[0], x_test, y_test)
    assert accuracies["float"] == pytest.approx(expected, abs=1e-4)
    # The QAT model starts from the post-training integers.
    assert (
        accuracies["post-training integer"]
        == accuracies["qat before fine-tuning"]
    )
    assert accuracies["qat after 1 epoch"] > 0.2  # above chance (0.1)


def test_the_saved_qat_model_loads_and_exports_as_is(qat_run, digits, tmp_path):
    out, accuracies = qat_run
    assert sorted(p.name for p in out.parent.iterdir()) == ["qat.keras"]
    loaded = keras.models.load_model(out)
    assert isinstance(qat.find_integer_graph(loaded), IntegerGraph)
    (x_train, _), (x_test, y_test) = digits
    report = edge.export(
        out,
        tmp_path / "export",
        targets=["tflite-int16x8"],
        calibration_data=x_train[:100],
        eval_data=(x_test, y_test),
        verbose=0,
    )
    keras_row = report.row("keras")
    assert keras_row.accuracy == pytest.approx(
        accuracies["qat after 1 epoch"], abs=1e-4
    )
    assert report.row("reference-int").agreement == 1.0
    assert report.row("tflite-int16x8").checks["tflm_equals_integer_reference"]


def _args(model, out):
    return ["qat", str(model), "--dataset", "digits", "--out", str(out)]


def _plain_keras_model(path):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    fileio.save_model(keras.Model(inputs, outputs), path)
    return path


def _refuse_loading(*args, **kwargs):
    raise AssertionError("the data set was loaded before the error")


@pytest.mark.parametrize(
    "case,pattern",
    [
        ("missing", r"The model file '.*missing\.keras' does not exist"),
        ("plain", r"plain\.keras'.*is not a keras_snn model"),
        ("qat", r"is already a QAT model; give the trained float model"),
        ("folder", r"`--out` '.*' is a folder; give a file name"),
        ("exists", r"`--out` '.*' exists; pass --overwrite to replace it"),
        ("below_file", r"Cannot write '.*': '.*notes' is a file"),
        ("loihi", r"cannot be exported to Loihi: it needs at least two"),
        ("mnist", r"`--dataset` 'mnist' has images of shape \(28, 28, 1\)"),
        ("npy", r"`--eval` is required when `--dataset` is a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    case, pattern, float_model, qat_run, tmp_path, capsys, monkeypatch
):
    model, out = float_model[1], tmp_path / "new" / "qat.keras"
    argv = _args(model, out)
    if case == "missing":
        argv[1] = str(tmp_path / "missing.keras")
    elif case == "plain":
        argv[1] = str(_plain_keras_model(tmp_path / "plain.keras"))
    elif case == "qat":
        argv[1] = str(qat_run[0])
    elif case == "folder":
        out.mkdir(parents=True)
    elif case == "exists":
        out.parent.mkdir()
        out.write_text("keep")
    elif case == "below_file":
        (tmp_path / "notes").write_text("x")
        argv[-1] = str(tmp_path / "notes" / "qat.keras")
    elif case == "loihi":
        argv += ["--profile", "loihi"]
    elif case == "mnist":
        argv[3] = "mnist"
    elif case == "npy":
        argv[3] = str(tmp_path / "x.npy")
    monkeypatch.setattr(datasets, "load_arrays", _refuse_loading)
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-snn qat: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    if case == "exists":
        assert out.read_text() == "keep"
    elif case != "folder":
        assert not out.parent.exists()  # no folder made either


@pytest.mark.parametrize(
    "option,value,accepted",
    [
        ("--epochs", "0", "an integer >= 1"),
        ("--state-bits", "40", r"an integer in \[8, 32\]"),
        ("--learning-rate", "nan", "a finite number > 0"),
        ("--profile", "int4", r"invalid choice: 'int4'"),
    ],
)
def test_bad_options_are_refused_by_the_parser(
    option, value, accepted, tmp_path, capsys
):
    out = tmp_path / "qat.keras"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*_args(tmp_path / "m.keras", out), option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(f"argument {option}: .*{accepted}", error), error
    assert value in error
    assert not out.exists()


def test_console_script_shows_no_traceback(tmp_path):
    result = run_cli(
        *_args(tmp_path / "missing.keras", tmp_path / "q.keras"), timeout=300
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-snn qat: error: The model file"), last
    assert not (tmp_path / "q.keras").exists()


def test_loihi_profile_fine_tunes_against_the_loihi_reference(digits, tmp_path):
    """`--profile loihi`: the post-training figure is the Loihi reference of
    the float model, and the saved model deploys spike-exact in Lava."""
    (x, _), (x_test, y_test) = digits
    model, path = _trained(
        digits, "32FC-16FC-Decoding", "tiny2", 2, 1, tmp_path
    )
    out = tmp_path / "qat_loihi.keras"
    argv = [*_args(path, out), "--profile", "loihi", "--epochs", "1"]
    assert cli.main([*argv, "--learning-rate", "1e-3", "--verbose", "0"]) == 0
    loaded = keras.models.load_model(out)
    assert qat.find_loihi_graph(loaded) is not None
    from edge.targets import loihi

    lgraph = loihi.quantize_loihi(edge.fuse.fuse(edge.ir.extract(model)))
    expected = loihi.run_loihi(lgraph, x_test)[0].argmax(-1)
    before = qat.quantize_model(model, profile="loihi")
    got = before.predict(x_test, verbose=0).argmax(-1)
    assert (got == expected).all()  # QAT starts from the Loihi reference
    report = edge.export(
        out,
        tmp_path / "export",
        targets=["loihi"],
        calibration_data=x[:64],
        eval_data=(x_test, y_test),
        verbose=0,
    )
    row = report.row("loihi-netx")
    assert row.checks["spike_exact"] and row.agreement == 1.0
    assert row.accuracy > 0.5
