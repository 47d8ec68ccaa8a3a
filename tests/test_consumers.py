"""Tests of edge.consumers (where a consumer's Python is) and of
`keras-snn consumers status|install` (edge.consumers_cli).

The interpreters here are fake: shell scripts that print a fixed text.
Nothing is installed and nothing is downloaded.
"""

import json
import os
import stat
import subprocess
import sys

import pytest

from edge import consumers
from edge import consumers_cli
from edge.errors import ConsumerError

NIR_VERSIONS = dict(consumers.CONSUMERS["nir"].versions)


def _fake_python(path, output):
    """An executable at `path` that prints `output` whatever it is given."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        file.write(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A user folder and a checkout in `tmp_path`, no variable set."""
    for consumer in consumers.CONSUMERS.values():
        monkeypatch.delenv(consumer.env, raising=False)
    user = tmp_path / "user"
    checkout = tmp_path / "checkout"
    monkeypatch.setenv(consumers.CONSUMERS_DIR_ENV, str(user))
    monkeypatch.setattr(consumers, "_checkout_root", lambda: str(checkout))
    return user, checkout


def _venv_python(folder):
    return os.path.join(folder, "bin", "python")


# -- the locator -----------------------------------------------------------
def test_variable_beats_user_folder_beats_checkout(
    places, tmp_path, monkeypatch
):
    user, checkout = places
    in_checkout = _fake_python(_venv_python(checkout / ".venv-nir"), "{}")
    in_user = _fake_python(_venv_python(user / "nir"), "{}")
    named = _fake_python(str(tmp_path / "named" / "python"), "{}")
    monkeypatch.setenv("KERAS_SNN_NIR_PYTHON", named)

    assert consumers.find("nir") == consumers.Found(named, consumers.FROM_ENV)
    monkeypatch.delenv("KERAS_SNN_NIR_PYTHON")
    assert consumers.find("nir") == consumers.Found(
        in_user, consumers.FROM_USER
    )
    os.remove(in_user)
    assert consumers.find("nir") == consumers.Found(
        in_checkout, consumers.FROM_CHECKOUT
    )
    assert consumers.python("nir") == in_checkout
    # A target name finds its consumer: loihi -> lava.
    _fake_python(_venv_python(checkout / ".venv-lava"), "{}")
    assert consumers.find("loihi").source == consumers.FROM_CHECKOUT


def test_missing_consumer_names_the_install_command(places):
    assert consumers.find("nir") is None
    with pytest.raises(ConsumerError) as error:
        consumers.python("nir")
    message = str(error.value)
    assert "keras-snn consumers install --targets nir" in message
    assert "KERAS_SNN_NIR_PYTHON" in message
    assert consumers.install_command("lava") == (
        "keras-snn consumers install --targets loihi"
    )


def test_a_wrong_variable_is_not_passed_over(places, monkeypatch):
    user, _ = places
    _fake_python(_venv_python(user / "nir"), "{}")
    monkeypatch.setenv("KERAS_SNN_NIR_PYTHON", "/no/such/python")
    assert consumers.find("nir") is None
    message = consumers.missing_message("nir")
    assert "$KERAS_SNN_NIR_PYTHON names /no/such/python" in message
    assert "keras-snn consumers install --targets nir" in message


def test_not_executable_is_not_found(places):
    user, _ = places
    path = _venv_python(user / "nir")
    os.makedirs(os.path.dirname(path))
    open(path, "w").close()
    assert consumers.find("nir") is None


def test_user_folder_default(monkeypatch, tmp_path):
    monkeypatch.delenv(consumers.CONSUMERS_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / "keras-snn" / "consumers"
    assert consumers.consumers_dir() == str(expected)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "keras-snn" / "consumers"
    assert consumers.consumers_dir() == str(expected)
    assert consumers.environment_dir("loihi") == str(expected / "lava")
    pattern = str(tmp_path / ".venv-{name}")
    assert consumers.environment_dir("nir", pattern) == str(
        tmp_path / ".venv-nir"
    )


def test_unknown_consumer():
    with pytest.raises(ValueError, match="Unknown consumer or target: 'c'"):
        consumers.get("c")


def test_targets_use_the_locator(places, tmp_path, monkeypatch):
    from edge.targets import loihi
    from edge.targets import nir

    assert loihi.lava_python() is None
    with pytest.raises(ConsumerError, match="--targets nir"):
        nir.nir_python()
    lava = _fake_python(str(tmp_path / "lava" / "python"), "{}")
    monkeypatch.setenv("KERAS_SNN_LAVA_PYTHON", lava)
    assert loihi.lava_python() == lava
    user, _ = places
    python = _fake_python(_venv_python(user / "nir"), "{}")
    assert nir.nir_python() == python


# -- keras-snn consumers status ------------------------------------------------
def test_status_table(places, capsys):
    user, _ = places
    _fake_python(_venv_python(user / "nir"), json.dumps(NIR_VERSIONS))
    assert consumers_cli.main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "consumer",
        "target",
        "state",
        "where",
        "details",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"lava", "nir"}
    assert rows["lava"].split()[1:3] == ["loihi", "missing"]
    assert (
        "install: keras-snn consumers install --targets loihi" in rows["lava"]
    )
    assert rows["nir"].split()[1:3] == ["nir", "ok"]
    assert "user folder" in rows["nir"]
    assert "norse 1.1.0" in rows["nir"] and "torch 2.13.0" in rows["nir"]


def test_status_other_versions_and_broken(places, tmp_path, monkeypatch):
    user, _ = places
    older = dict(NIR_VERSIONS, norse="1.0.0")
    _fake_python(_venv_python(user / "nir"), json.dumps(older))
    broken = _fake_python(str(tmp_path / "broken" / "python"), "not json")
    monkeypatch.setenv("KERAS_SNN_LAVA_PYTHON", broken)
    rows = {row["consumer"]: row for row in consumers_cli.status_rows()}
    assert rows["nir"]["state"] == "other versions"
    assert rows["nir"]["versions"]["norse"] == "1.0.0"
    assert rows["lava"]["state"] == "broken"
    assert rows["lava"]["where"] == consumers.FROM_ENV
    assert "--force" in consumers_cli.status()


def test_status_imports_no_tensorflow(places):
    code = (
        "import sys\n"
        "from edge import consumers_cli\n"
        "consumers_cli.main(['status'])\n"
        "assert 'tensorflow' not in sys.modules\n"
        "assert 'numpy' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:5] == [
        "consumer",
        "target",
        "state",
        "where",
        "details",
    ]


def test_registered_as_a_keras_snn_command():
    from importlib.metadata import entry_points

    names = {
        entry.name: entry.value
        for entry in entry_points(group="keras_snn.commands")
    }
    assert names.get("consumers") == "edge.consumers_cli:register"


# -- keras-snn consumers install: argument errors ---------------------------
@pytest.mark.parametrize(
    "targets, message",
    [
        ("c", "Unknown consumer or target: 'c'"),
        (",", "must name at least one target"),
    ],
)
def test_install_bad_targets(targets, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        consumers_cli.main(["install", "--targets", targets])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_install_python310_must_be_a_310(places, tmp_path, capsys):
    old = _fake_python(str(tmp_path / "py39" / "python"), "3.9")
    arguments = ["install", "--targets", "loihi", "--python310"]
    assert consumers_cli.main([*arguments, old]) == 2
    error = capsys.readouterr().err
    assert "--python310" in error and "must be a Python 3.10" in error
    assert "Received: 3.9" in error
    missing = str(tmp_path / "nothing")
    assert consumers_cli.main([*arguments, missing]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert not (places[0] / "lava").exists()


def test_install_without_python310(places, tmp_path, monkeypatch, capsys):
    if sys.version_info[:2] == (3, 10):
        pytest.skip("this Python is a 3.10, which the Lava install uses")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(consumers_cli.PYTHON310_ENV, raising=False)
    assert consumers_cli.main(["install", "--targets", "loihi"]) == 2
    error = capsys.readouterr().err
    assert "needs a Python 3.10 and none was found" in error
    assert "--python310 PATH" in error
    old = _fake_python(str(tmp_path / "py39" / "python"), "3.9")
    monkeypatch.setenv(consumers_cli.PYTHON310_ENV, old)
    assert consumers_cli.main(["install", "--targets", "loihi"]) == 2
    assert "$PYTHON310" in capsys.readouterr().err


def test_install_refuses_a_folder_that_is_not_an_environment(
    places, tmp_path, capsys
):
    folder = tmp_path / "mine"
    (folder / "nir").mkdir(parents=True)
    (folder / "nir" / "notes.txt").write_text("keep me")
    arguments = ["install", "--targets", "nir", "--dir", str(folder)]
    assert consumers_cli.main(arguments) == 2
    assert "is not a virtual environment" in capsys.readouterr().err
    assert (folder / "nir" / "notes.txt").read_text() == "keep me"


def test_install_leaves_a_complete_environment(places, tmp_path, capsys):
    folder = tmp_path / "envs"
    python = _fake_python(
        _venv_python(folder / ".venv-nir"), json.dumps(NIR_VERSIONS)
    )
    pattern = str(folder / ".venv-{name}")
    made = consumers_cli.install(["nir"], folder=pattern)
    assert made == {"nir": python}
    assert "is ready" in capsys.readouterr().out
