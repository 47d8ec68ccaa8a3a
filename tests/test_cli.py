"""The keras-snn command line, end to end on the embedded digits data."""

import json
import os
import subprocess
import sys

import pytest

from keras_snn import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "_keras_snn_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_cli(
        "train",
        "--dataset",
        "digits",
        "--model",
        "16C3-AP2-32C3-AP2-64FC-Decoding",
        "--timesteps",
        "4",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--trainable-decay",
        "channel",
        "--trainable-threshold",
        "layer",
        "--out",
        str(out),
        "--verbose",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_train_writes_model_history_and_plots(trained_run):
    out, result = trained_run
    assert "test accuracy" in result.stdout
    for name in ("model.keras", "checkpoint.keras", "history.csv"):
        assert (out / name).stat().st_size > 0
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 3 and len(history["val_accuracy"]) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    assert set(metrics["firing_rates"]) and all(
        0.0 <= r <= 1.0 for r in metrics["firing_rates"].values()
    )
    for name in ("curves.png", "firing_rates.png", "raster.png"):
        data = (out / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    # EpochSeconds: each epoch's wall time, for accuracy against time.
    assert len(history["epoch_seconds"]) == 3
    assert all(s > 0 for s in history["epoch_seconds"])


@pytest.mark.slow
def test_trainable_decay_and_threshold_options(trained_run):
    import keras
    import numpy as np

    from keras_snn import layers

    out, _ = trained_run
    model = keras.models.load_model(out / "model.keras")
    neurons = [x for x in model.layers if isinstance(x, layers.LIF)]
    assert neurons
    for layer in neurons:
        weights = {w.path.rsplit("/", 1)[-1]: w for w in layer.weights}
        channels = layer.input.shape[-1]
        assert tuple(weights["decay"].shape) == (channels,)
        assert tuple(weights["threshold"].shape) == ()
        decay = np.asarray(weights["decay"])
        # Trained: the per-channel decays left their common start 0.5.
        assert np.ptp(decay) > 0 and np.all((decay >= 0) & (decay <= 1))


@pytest.mark.slow
def test_evaluate_accuracy_versus_timesteps(trained_run, tmp_path):
    out, _ = trained_run
    result = run_cli(
        "evaluate",
        str(out / "model.keras"),
        "--dataset",
        "digits",
        "--timesteps",
        "1",
        "4",
        "--json",
        str(tmp_path / "acc.json"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracies = json.loads((tmp_path / "acc.json").read_text())
    assert set(accuracies) == {"1", "4"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert accuracies["4"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert "   1  " in result.stdout and "   4  " in result.stdout


def test_help_everywhere():
    for args in (["--help"], ["train", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        assert exit_info.value.code == 0


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    code = cli.main(
        ["train", "--model", "32X3-Decoding", "--out", str(tmp_path / "r")]
    )
    assert code == 2
    assert "Unknown token 1 ('32X3')" in capsys.readouterr().err
    code = cli.main(["train", "--dataset", "imagenet", "--out", str(tmp_path)])
    assert code == 2
    assert "imagenet" in capsys.readouterr().err
    code = cli.main(
        ["train", "--neuron", "if", "--trainable-decay", "channel"]
        + ["--out", str(tmp_path / "r")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--trainable-decay channel" in err and "--neuron if" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        cli.main(["train", "--trainable-threshold", "pixel", "--out", "r"])
    assert "'pixel'" in capsys.readouterr().err
    code = cli.main(["evaluate", os.fspath(tmp_path / "missing.keras")])
    assert code == 2
    assert "missing.keras" in capsys.readouterr().err
