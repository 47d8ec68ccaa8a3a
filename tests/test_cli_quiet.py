"""A quick and quiet `keras-snn`: no TensorFlow before the arguments are
parsed, none of its native log lines at the default verbosity, and
`keras-snn doctor`."""

import subprocess
import sys
import time

import pytest
from test_cli import run_cli

from keras_snn import cli

# Pieces of the lines TensorFlow's native code prints by itself.
NATIVE_LOG_PIECES = (
    "absl::InitializeLog",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "To enable the following instructions",
    "XLA service",
    "StreamExecutor",
    "Compiled cluster using XLA",
    "Reading SavedModel",
    "loader.cc",
    "reader.cc",
    "tf_tfl_flatbuffer_helpers",
)

def native_log_lines(result):
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if cli.NATIVE_LOG_LINE.match(line)
        or any(piece in line for piece in NATIVE_LOG_PIECES)
    ]


def test_parsing_imports_neither_keras_nor_tensorflow():
    # Every command builds the whole parser (all plugins' subcommands).
    script = (
        "import sys\n"
        "import _keras_snn_cli\n"
        "import keras_snn.cli\n"
        "keras_snn.cli._build_parser()\n"
        "heavy = {'tensorflow', 'keras'} & set(sys.modules)\n"
        "assert not heavy, sorted(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "args", [["--help"], ["train", "--help"], ["export", "--help"]]
)
def test_help_is_quick(args):
    # Best of three runs of a fresh interpreter: well under a second when
    # TensorFlow stays out; importing it takes several.
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        result = run_cli(*args, timeout=120)
        seconds.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: keras-snn" in result.stdout
    assert not native_log_lines(result)
    assert min(seconds) < 1.5, seconds


def test_native_log_line_pattern():
    for line in (
        "WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR",
        "I0000 00:00:1796308640.951708    6003 port.cc:153] oneDNN custom "
        "operations are on.",
        "W1203 14:37:09.123456  812 loader.cc:99] Reading SavedModel",
        "To enable the following instructions: AVX2 FMA, in other "
        "operations, rebuild TensorFlow with the appropriate compiler flags.",
    ):
        assert cli.NATIVE_LOG_LINE.match(line), line
    for line in ("Epoch 1/3", "keras-snn export: error: no such file"):
        assert not cli.NATIVE_LOG_LINE.match(line), line


def test_hidden_native_logs_keep_other_stderr_text(capfd):
    import os

    with cli.native_logs_hidden():
        os.write(2, b"I0000 00:00:1.5  12 port.cc:153] oneDNN notice\n")
        os.write(2, b"a Python-level warning\n")
    captured = capfd.readouterr()
    assert "oneDNN" not in captured.err
    assert "a Python-level warning" in captured.err


@pytest.mark.slow
def test_train_export_and_doctor_print_no_tensorflow_log(tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        "digits",
        "--model",
        "8C3-AP2-32FC-Decoding",
        "--timesteps",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        str(run),
        "--verbose",
        "0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not native_log_lines(result), native_log_lines(result)
    assert "test accuracy" in result.stdout

    result = run_cli(
        "export",
        str(run / "model.keras"),
        "--out",
        str(tmp_path / "export"),
        "--targets",
        "tflite",
        "--calibration",
        "digits",
        "--calibration-samples",
        "32",
        "--eval-samples",
        "32",
        "--allow-accuracy-drop",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not native_log_lines(result), native_log_lines(result)
    assert (tmp_path / "export").is_dir()

    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not native_log_lines(result), native_log_lines(result)
    for heading in ("versions:", "tensorflow:", "export targets:"):
        assert heading in result.stdout
    for piece in ("keras_snn", "numpy", "devices", "oneDNN", "XLA", "tflite"):
        assert piece in result.stdout, piece


def test_package_defers_keras_only_under_the_console_script():
    # Under the console script, `import keras_snn` waits; its submodules
    # still import on first use. A plain `import keras_snn` registers every
    # layer at once, so keras.models.load_model needs no custom_objects.
    script = (
        "import sys\n"
        "import _keras_snn_cli\n"
        "import keras_snn\n"
        "assert 'keras' not in sys.modules\n"
        "assert keras_snn.layers.LIF.__name__ == 'LIF'\n"
        "assert 'keras' in sys.modules\n"
        "keras_snn.import_all()\n"
        "import keras\n"
        "assert keras.saving.get_registered_object('keras_snn>LIF')\n"
    )
    plain = (
        "import keras_snn, keras\n"
        "assert keras.saving.get_registered_object('keras_snn>LIF')\n"
        "assert keras.saving.get_registered_object(\n"
        "    'keras_snn>TDBatchNormalization')\n"
    )
    for code in (script, plain):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
