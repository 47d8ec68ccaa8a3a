"""`keras-snn consumers`: install and report the consumers' environments.

```
keras-snn consumers status
keras-snn consumers install --targets nir
keras-snn consumers install --targets loihi --python310 /usr/bin/python3.10
```

`install` creates, for each target named, a virtual environment with the
pinned packages of its consumer (`edge.consumers.CONSUMERS`): Lava for
`loihi` (on a Python 3.10: `--python310`, else `$PYTHON310`, else this
Python if it is a 3.10, else `pyenv prefix 3.10.13`, else `python3.10` on
the `PATH`), Norse and snnTorch for `nir` (on `--python`, default this
Python). The environments go to the per-user consumers folder, or to
`--dir` (`--dir D` gives `D/lava`; a `--dir` with `{name}` in it is the
environment's own path: `--dir .venv-{name}` gives `.venv-lava`). An
environment that is already complete is left as it is (`--force` makes it
again). `status` prints a table of the consumers: where each was found,
the versions of its packages, or the command that installs it.

The subcommand is registered with the `keras-snn` console script through
the entry point group `keras_snn.commands`; it imports neither TensorFlow
nor NumPy. Without the console script (before the package is installed,
as in `.ci/install_consumers.sh`): `python -m edge.consumers_cli install`.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

from edge import consumers
from edge.errors import ConsumerError

__all__ = [
    "find_python310",
    "install",
    "main",
    "register",
    "status",
    "status_rows",
]

PYTHON310_ENV = "PYTHON310"
PYENV_VERSIONS = ("3.10.13", "3.10")
_QUERY_TIMEOUT = 60  # seconds for an interpreter to print its versions

# Run by a consumer's interpreter: prints {distribution: version or None}.
_VERSIONS = """
import importlib.metadata as m, json, sys
found = {}
for name in json.loads(sys.argv[1]):
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


# -- the command line ------------------------------------------------------
def _targets(text):
    """argparse type of `--targets`: a comma-separated list of names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"must name at least one target. Received: {text!r}"
        )
    try:
        return [consumers.get(name).name for name in names]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    targets = ",".join(c.target for c in consumers.CONSUMERS.values())
    install_parser = actions.add_parser(
        "install",
        help="create the consumers' virtual environments",
        description=(
            "Create a virtual environment with the pinned packages of each "
            "target's consumer; a complete one is left as it is."
        ),
    )
    install_parser.add_argument(
        "--targets",
        type=_targets,
        default=list(consumers.CONSUMERS),
        help=f"comma-separated, of {targets} (default: all)",
    )
    install_parser.add_argument(
        "--dir",
        default=None,
        help="folder of the environments (default: "
        f"${consumers.CONSUMERS_DIR_ENV}, else ~/.cache/keras-snn/"
        "consumers); with {name} in it, each environment's own path",
    )
    install_parser.add_argument(
        "--python310",
        default=None,
        metavar="PATH",
        help=f"the Python 3.10 of the Lava environment (default: "
        f"${PYTHON310_ENV}, then pyenv, then python3.10)",
    )
    install_parser.add_argument(
        "--python",
        default=None,
        metavar="PATH",
        help="the Python of the other environments (default: this one)",
    )
    install_parser.add_argument(
        "--force",
        action="store_true",
        help="make the environments again even when they are complete",
    )
    install_parser.set_defaults(handler=install_command)
    status_parser = actions.add_parser(
        "status",
        help="where each consumer is, its versions, or how to install it",
    )
    status_parser.set_defaults(handler=status_command)


def register(commands):
    """Adds the `consumers` subcommand to `keras-snn`'s subparsers."""
    parser = commands.add_parser(
        "consumers",
        help="install and list the environments that run exported files "
        "(Lava, Norse, snnTorch)",
        description=(
            "The loihi and nir targets run their files in Lava, Norse and "
            "snnTorch, each in a virtual environment of its own. 'install' "
            "creates them, 'status' says where they are."
        ),
    )
    _add_arguments(parser)


def install_command(args):
    install(
        args.targets,
        folder=args.dir,
        python310=args.python310,
        python=args.python,
        force=args.force,
    )


def status_command(args):
    print(status())


def main(argv=None):
    """`python -m edge.consumers_cli`: the same as `keras-snn consumers`.

    Returns the exit status: 0, or 2 after a one-line error.
    """
    parser = argparse.ArgumentParser(
        prog="keras-snn consumers",
        description="Install and list the consumers' environments.",
    )
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, OSError) as error:
        print(f"keras-snn consumers: error: {error}", file=sys.stderr)
        return 2
    return 0


# -- status ----------------------------------------------------------------
def _versions(python, consumer):
    """`{distribution: version or None}` in `python`, or `None` if it
    does not run."""
    try:
        done = subprocess.run(
            [python, "-c", _VERSIONS, json.dumps(list(consumer.versions))],
            capture_output=True,
            text=True,
            timeout=_QUERY_TIMEOUT,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    if done.returncode != 0 or not isinstance(found, dict):
        return None
    return found


def _state(consumer, versions):
    """`"ok"`, `"incomplete"`, `"other versions"` or `"broken"`."""
    if versions is None:
        return "broken"
    if any(versions.get(name) is None for name in consumer.versions):
        return "incomplete"
    for name, version in consumer.versions.items():
        if versions[name].split("+")[0] != version:
            return "other versions"
    return "ok"


def status_rows():
    """One dict per consumer: `consumer`, `target`, `state` (`"ok"`,
    `"missing"`, `"incomplete"`, `"other versions"`, `"broken"`), `where`,
    `python`, `versions` and `install` (the command that installs it)."""
    rows = []
    for consumer in consumers.CONSUMERS.values():
        found = consumers.find(consumer.name)
        row = {
            "consumer": consumer.name,
            "target": consumer.target,
            "state": "missing",
            "where": None,
            "python": None,
            "versions": {},
            "install": consumers.install_command(consumer.name),
        }
        if found is not None:
            versions = _versions(found.python, consumer)
            row.update(
                state=_state(consumer, versions),
                where=found.source,
                python=found.python,
                versions=versions or {},
            )
        rows.append(row)
    return rows


def status():
    """The table printed by `keras-snn consumers status`."""
    header = ("consumer", "target", "state", "where", "details")
    lines = []
    for row in status_rows():
        if row["state"] == "missing":
            details = f"install: {row['install']}"
        else:
            versions = ", ".join(
                f"{name} {version or '-'}"
                for name, version in sorted(row["versions"].items())
            )
            details = f"{row['python']}  {versions}".rstrip()
            if row["state"] != "ok":
                details += f"  (repair: {row['install']} --force)"
        lines.append(
            (
                row["consumer"],
                row["target"],
                row["state"],
                row["where"] or "-",
                details,
            )
        )
    table = [header, *lines]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    return "\n".join(
        "  ".join(
            [*(line[i].ljust(widths[i]) for i in range(4)), line[4]]
        ).rstrip()
        for line in table
    )


# -- install ---------------------------------------------------------------
def _python_version(python):
    """`"major.minor"` of an interpreter, or `None` if it does not run."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=_QUERY_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = done.stdout.strip()
    return text if done.returncode == 0 and text else None


def _checked(python, wanted, origin):
    """`python` if it is a Python `wanted`; raises `ValueError` if not."""
    path = shutil.which(python) or python
    if not os.path.isfile(path):
        raise ValueError(f"{origin} {python!r} is not a file.")
    version = _python_version(path)
    if wanted is not None and version != wanted:
        raise ValueError(
            f"{origin} {python!r} must be a Python {wanted}. Received: "
            f"{'a program that does not run' if version is None else version}"
        )
    if version is None:
        raise ValueError(f"{origin} {python!r} does not run.")
    return path


def find_python310(option=None):
    """A Python 3.10 for the Lava environment.

    In order: `option` (`--python310`), `$PYTHON310`, this Python if it is
    a 3.10, `pyenv prefix 3.10.13` (then any pyenv 3.10), `python3.10` on
    the `PATH`.

    Raises:
        ValueError: `option` or `$PYTHON310` is not a Python 3.10, or none
            was found.
    """
    if option:
        return _checked(option, "3.10", "Argument --python310")
    if os.environ.get(PYTHON310_ENV):
        return _checked(os.environ[PYTHON310_ENV], "3.10", f"${PYTHON310_ENV}")
    if sys.version_info[:2] == (3, 10):
        return sys.executable
    found = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        for version in PYENV_VERSIONS:
            done = subprocess.run(
                [pyenv, "prefix", version], capture_output=True, text=True
            )
            if done.returncode == 0 and done.stdout.strip():
                found.append(done.stdout.strip().splitlines()[0])
        root = subprocess.run(
            [pyenv, "root"], capture_output=True, text=True
        ).stdout.strip()
        if root:
            found += sorted(glob.glob(os.path.join(root, "versions", "3.10*")))
        found = [consumers.interpreter(prefix) for prefix in found]
    found += [p for p in [shutil.which("python3.10")] if p]
    for python in found:
        if os.path.isfile(python) and _python_version(python) == "3.10":
            return python
    raise ValueError(
        "The Lava environment needs a Python 3.10 and none was found: pass "
        f"--python310 PATH, set ${PYTHON310_ENV}, or install one (pyenv "
        "install 3.10.13)."
    )


def _complete(python, consumer):
    """True when `python` has the pinned versions and imports the modules."""
    if not os.path.isfile(python):
        return False
    if _state(consumer, _versions(python, consumer)) != "ok":
        return False
    statement = "import " + ", ".join(consumer.imports)
    try:
        done = subprocess.run(
            [python, "-c", statement],
            capture_output=True,
            timeout=10 * _QUERY_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _pip(python, arguments, consumer):
    done = subprocess.run([python, "-m", "pip", "install", "-q", *arguments])
    if done.returncode != 0:
        raise ConsumerError(
            f"pip failed (exit status {done.returncode}) installing "
            f"{' '.join(arguments)} for the {consumer.name} environment; "
            "its messages are above."
        )


def _make(consumer, environment, base, say):
    """Creates the environment of `consumer` at `environment` from `base`."""
    if os.path.exists(environment):
        if os.path.isfile(os.path.join(environment, "pyvenv.cfg")):
            shutil.rmtree(environment)
        elif os.listdir(environment):
            raise ValueError(
                f"{environment} exists and is not a virtual environment; "
                "choose another --dir or remove it."
            )
    say(
        f"{consumer.name}: creating {environment} with Python "
        f"{_python_version(base)} at {base}"
    )
    os.makedirs(os.path.dirname(environment), exist_ok=True)
    done = subprocess.run([base, "-m", "venv", environment])
    if done.returncode != 0:
        raise ConsumerError(
            f"{base} -m venv {environment} failed (exit status "
            f"{done.returncode}); on Debian, apt-get install python3-venv."
        )
    python = consumers.interpreter(environment)
    _pip(python, ["--upgrade", "pip"], consumer)
    _pip(python, list(consumer.packages), consumer)
    if consumer.no_deps:
        _pip(python, ["--no-deps", *consumer.no_deps], consumer)
    if not _complete(python, consumer):
        raise ConsumerError(
            f"{environment} does not import {', '.join(consumer.imports)} "
            "with the pinned versions after installing."
        )


def install(
    names, folder=None, python310=None, python=None, force=False, say=print
):
    """Creates the environments of the consumers of `names`.

    Args:
        names: consumer or target names (`["loihi", "nir"]`).
        folder: the consumers folder, or a path with `{name}` (see
            `edge.consumers.environment_dir`). Defaults to the per-user
            folder.
        python310: the Python 3.10 of the Lava environment (see
            `find_python310`).
        python: the Python of the other environments (default: this one).
        force: make complete environments again.
        say: prints a line of progress.

    Returns:
        A dict consumer name -> the environment's interpreter.

    Raises:
        ValueError: a bad name, Python or folder (before anything is
            installed).
        ConsumerError: creating an environment or installing failed.
    """
    chosen = dict.fromkeys(consumers.get(name).name for name in names)
    plan = []
    for consumer in map(consumers.get, chosen):  # in order, once each
        environment = consumers.environment_dir(consumer.name, folder)
        target = consumers.interpreter(environment)
        if not force and _complete(target, consumer):
            say(f"{consumer.name}: {environment} is ready")
            plan.append((consumer, environment, None))
            continue
        if consumer.python == "3.10":
            base = find_python310(python310)
        elif python:
            base = _checked(python, consumer.python, "Argument --python")
        else:
            base = sys.executable
        plan.append((consumer, environment, base))
    made = {}
    for consumer, environment, base in plan:
        if base is not None:
            _make(consumer, environment, base, say)
            say(f"{consumer.name}: {environment} is ready")
        made[consumer.name] = consumers.interpreter(environment)
    return made


if __name__ == "__main__":
    sys.exit(main())
