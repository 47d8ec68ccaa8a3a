"""keras_snn.training under tf.distribute: two logical CPU devices with
MirroredStrategy and two worker processes on 127.0.0.1 with
MultiWorkerMirroredStrategy train the weights of one device on the same
global batch; a killed worker resumes from the backup."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
TIMEOUT = 300


def local_cluster(count):
    from keras_snn import training

    return training.local_cluster(count)


def start_workers(out, count, *extra):
    configs = local_cluster(count)
    processes = []
    for index in range(count):
        env = dict(os.environ, TF_CONFIG=configs[index])
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    WORKER,
                    str(out),
                    "--strategy",
                    "multiworker",
                    *extra,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return processes


def finish(processes, timeout=TIMEOUT):
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        outputs.append(output)
        assert process.returncode == 0, output[-3000:]
    return outputs


def run_single(out, *extra):
    result = subprocess.run(
        [sys.executable, WORKER, str(out), *extra],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def load(path):
    with np.load(path) as data:
        history = json.loads(str(data["history"]))
        weights = [data[f"w{i}"] for i in range(len(data.files) - 1)]
    return weights, history


def assert_weights_close(a, b, atol):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_allclose(u, v, rtol=0, atol=atol, err_msg=f"w{i}")


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    # One device, global batch 16.
    out = tmp_path_factory.mktemp("one")
    run_single(out, "--strategy", "one", "--batch", "16")
    return load(out / "weights-0.npz")


def test_mirrored_on_two_cpu_devices_equals_one_device(tmp_path, single_device):
    # Two replicas of 8: the global batch of 16. XLA was asked for and is
    # turned off with one warning (logical CPU devices).
    result = run_single(
        tmp_path,
        "--strategy",
        "mirrored",
        "--cpus",
        "2",
        "--batch",
        "8",
        "--jit",
    )
    assert "XLA is off" in result.stderr
    weights, history = load(tmp_path / "weights-0.npz")
    assert_weights_close(weights, single_device[0], atol=1e-5)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            history[name], single_device[1][name], atol=1e-5, err_msg=name
        )


def test_two_workers_equal_one_device(tmp_path, single_device):
    finish(start_workers(tmp_path, 2, "--batch", "8"))
    first, history = load(tmp_path / "weights-0.npz")
    second, _ = load(tmp_path / "weights-1.npz")
    assert_weights_close(first, second, atol=0)
    assert_weights_close(first, single_device[0], atol=1e-5)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            history[name], single_device[1][name], atol=1e-5, err_msg=name
        )


def test_synchronized_keras_bn_in_time_folded_across_workers(tmp_path):
    # Keras BatchNormalization(synchronized=True) inside TimeFolded: the
    # two workers' statistics are those of the global batch.
    run_single(
        tmp_path / "one", "--strategy", "one", "--batch", "16", "--norm", "bn"
    )
    finish(start_workers(tmp_path / "two", 2, "--batch", "8", "--norm", "bn"))
    one, _ = load(tmp_path / "one" / "weights-0.npz")
    two, _ = load(tmp_path / "two" / "weights-0.npz")
    assert_weights_close(two, one, atol=1e-5)


def test_unsynchronized_tdbn_differs_from_the_global_batch(
    tmp_path, single_device
):
    # The check above can fail: per-worker statistics (of 8 examples, not
    # 16) give other weights.
    finish(start_workers(tmp_path, 2, "--batch", "8", "--unsynchronized"))
    weights, _ = load(tmp_path / "weights-0.npz")
    worst = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(weights, single_device[0], strict=True)
    )
    assert worst > 1e-3


def read_progress(path):
    try:
        with open(path) as file:
            epoch, step = file.read().split()
        return int(epoch), int(step)
    except (OSError, ValueError):
        return None


def test_worker_killed_mid_epoch_resumes_with_the_same_weights(
    tmp_path, single_device
):
    # Steps slowed down so that the test can kill worker 1 in the middle of
    # epoch 1 (after 2 of its 4 steps); worker 0 then stops (its collective
    # fails, or it is killed as a cluster manager would). Both restart and
    # resume from the backup of epoch 0's end.
    processes = start_workers(
        tmp_path, 2, "--batch", "8", "--step-delay", "0.5"
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            progress = read_progress(tmp_path / "progress-1")
            if progress is not None and progress >= (1, 1):
                break
            assert processes[1].poll() is None, processes[1].communicate()
            assert time.monotonic() < deadline, "worker 1 never reached epoch 1"
            time.sleep(0.05)
        os.kill(processes[1].pid, signal.SIGKILL)
        processes[1].wait(timeout=60)
        try:
            processes[0].wait(timeout=90)
        except subprocess.TimeoutExpired:
            processes[0].kill()
            processes[0].wait(timeout=60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert not (tmp_path / "weights-0.npz").exists()
    with open(tmp_path / "backup" / "training_metadata.json") as file:
        assert json.load(file)["epoch"] == 1  # epoch 0 finished, 1 did not

    finish(start_workers(tmp_path, 2, "--batch", "8"))
    first, history = load(tmp_path / "weights-0.npz")
    second, _ = load(tmp_path / "weights-1.npz")
    assert_weights_close(first, second, atol=0)
    assert_weights_close(first, single_device[0], atol=1e-5)
    # The resumed run trained epochs 1 and 2 only.
    assert len(history["loss"]) == 2


def test_cli_and_library_name_the_same_strategies():
    from keras_snn import cli
    from keras_snn import training

    assert cli.STRATEGIES == training.STRATEGIES


def test_cli_dry_run_prints_replicas_and_writes_nothing(tmp_path):
    from test_cli import run_cli

    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--strategy",
        "one",
        "--dry-run",
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for line in (
        "strategy: one device",
        "replicas: 1",
        "batch: 16 per replica, 16 global",
        "XLA: on",
    ):
        assert line in result.stdout, result.stdout
    assert not out.exists()


def test_cli_multiworker_without_tf_config_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "_keras_snn_cli",
            "train",
            "--out",
            str(tmp_path / "run"),
            "--strategy",
            "multiworker",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert result.returncode == 2
    assert "TF_CONFIG is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_multiworker_reaches_the_accuracy_of_one_process(tmp_path):
    # Two workers of 32 train on the global batch of one process of 64.
    common = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "16C3-AP2-32FC-Decoding",
        "--timesteps",
        "2",
        "--epochs",
        "8",
        "--learning-rate",
        "3e-3",
        "--verbose",
        "0",
    ]
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "_keras_snn_cli",
            *common,
            "--strategy",
            "one",
            "--batch-size",
            "64",
            "--out",
            str(tmp_path / "one"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    configs = local_cluster(2)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "_keras_snn_cli",
                *common,
                "--strategy",
                "multiworker",
                "--batch-size",
                "32",
                "--out",
                str(tmp_path / "two"),
            ],
            env=dict(os.environ, TF_CONFIG=configs[index]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    outputs = finish(workers)
    assert "worker 1: test accuracy" in outputs[1]
    # The chief alone wrote the run: one row per epoch in its history.
    with open(tmp_path / "two" / "history.csv") as file:
        assert len(file.read().strip().splitlines()) == 1 + 8
    with open(tmp_path / "one" / "metrics.json") as file:
        single = json.load(file)["test_accuracy"]
    with open(tmp_path / "two" / "metrics.json") as file:
        multi = json.load(file)["test_accuracy"]
    assert single > 0.9
    assert abs(multi - single) <= 0.01, (single, multi)


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "TF_CONFIG is not set"),
        ("{not json", "TF_CONFIG is not a cluster description"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "'task'"),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, '
            '"task": {"type": "worker", "index": 3}}',
            "task index 3 is not a position in the 1 'worker' addresses",
        ),
    ],
)
def test_bad_tf_config_is_refused_before_tensorflow_sees_it(
    monkeypatch, value, message
):
    from keras_snn import training

    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match=re.escape(message)):
        training.get_strategy("multiworker")


def test_bad_strategy_arguments():
    from keras_snn import training

    with pytest.raises(ValueError, match="must be one of"):
        training.get_strategy("ddp")
    with pytest.raises(ValueError, match="mirrored strategy only"):
        training.get_strategy("one", devices=["/cpu:0"])
    configs = [json.loads(c) for c in training.local_cluster(2)]
    assert [c["task"]["index"] for c in configs] == [0, 1]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 2
    assert all(a.startswith("127.0.0.1:") for a in addresses)
