"""benchmarks/distributed_throughput.py: a smoke run with tiny sizes and
its command-line errors."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "distributed_throughput.py"


def run(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_one_device_and_mirrored_rows(tmp_path):
    out = tmp_path / "results.json"
    result = run(
        "--steps",
        "2",
        "--warmup",
        "1",
        "--batch",
        "4",
        "--configs",
        "one",
        "mirrored",
        "--json",
        str(out),
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    rows = {}
    for line in result.stdout.splitlines():
        match = re.match(
            r"\| (\S+) \(.*?\) \| (\d+) \| (\d+) \| (?:yes|no) \| "
            r"([0-9.]+) \| ([0-9.]+) \|",
            line,
        )
        if match:
            name, replicas, batch, speed, ratio = match.groups()
            rows[name] = (int(replicas), int(batch), float(speed), float(ratio))
    assert set(rows) == {"one", "mirrored"}, result.stdout
    assert rows["one"][:2] == (1, 4)
    assert rows["mirrored"][:2] == (2, 8)
    assert rows["one"][3] == 1.0
    assert all(row[2] > 0 and row[3] > 0 for row in rows.values())
    assert f"os.cpu_count()={os.cpu_count()}" in result.stdout
    assert "tensorflow" in result.stdout and "keras_snn" in result.stdout

    saved = json.loads(out.read_text())
    mirrored = saved["results"]["mirrored"]
    assert mirrored["replicas"] == 2 and len(mirrored["devices"]) == 2
    assert len(mirrored["step_s"]) == 2
    assert mirrored["examples_per_s"] > 0


@pytest.mark.parametrize(
    "args, named",
    [
        (["--configs", "two"], "--configs"),
        (["--batch", "0"], "--batch"),
        (["--steps", "x"], "--steps"),
        (["--warmup", "-1"], "--warmup"),
        (["--bogus"], "--bogus"),
    ],
)
def test_a_bad_option_exits_2_naming_it(args, named):
    result = run(*args, timeout=30)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
