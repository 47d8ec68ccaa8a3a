#!/usr/bin/env bash
# Creates .venv-nir: the virtual environment of the NIR consumers (nir,
# Norse, snnTorch on a CPU torch) that tests/test_edge_nir.py and the
# `nir` export target drive through a subprocess (edge/targets/nir/_nir_worker.py).
# Kept apart from .venv because torch and TensorFlow do not belong in one
# environment. Idempotent: a complete venv is left as it is.
#
#   .ci/install_nir.sh            # uses $PYTHON, else python3.11, else python3
#   NIR_VENV=/path .ci/install_nir.sh
#
# torch==2.13.0 is taken from the CPU wheel that this project's machines
# keep on disk (pip finds it); a torch from PyPI would pull several GB of
# CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${NIR_VENV:-.venv-nir}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
PACKAGES=(torch==2.13.0 nir==1.0.8 nirtorch==2.6 snntorch==1.0.0 numpy)
NORSE=norse==1.1.0

check() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
want = {"torch": "2.13.0", "nir": "1.0.8", "nirtorch": "2.6",
        "snntorch": "1.0.0", "norse": "1.1.0"}
for name, version in want.items():
    assert m.version(name).split("+")[0] == version, name
import nir, norse.torch, snntorch.import_nir  # noqa: F401
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "$VENV is complete (torch, nir, nirtorch, snntorch, norse)"
    exit 0
fi

echo "creating $VENV with $($PYTHON --version) at $PYTHON"
if ! $PYTHON -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq "${PACKAGES[@]}"
# norse 1.1.0 declares torchvision and an unpinned torch: --no-deps keeps
# the CPU torch above.
"$VENV/bin/python" -m pip install -qq --no-deps "$NORSE"
if ! check; then
    echo "error: $VENV is incomplete after installing" >&2
    exit 1
fi
echo "$VENV ready"
