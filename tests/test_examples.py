"""The README's main job: the digits quickstart reaches its accuracy."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_digits_reaches_95_percent(tmp_path):
    model_path = tmp_path / "digits.keras"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "quickstart_digits.py"),
            "--timesteps",
            "4",
            "--out",
            str(model_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"test accuracy (\d\.\d+)", result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) >= 0.95
    assert model_path.stat().st_size > 0
