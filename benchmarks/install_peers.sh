#!/usr/bin/env bash
# Creates .venv-peers: the PyTorch peers that benchmarks/peers.py runs
# beside keras-snn (snnTorch, SpikingJelly and Norse on a CPU torch). Kept
# apart from .venv because torch and TensorFlow do not belong in one
# environment.
# Idempotent: a complete venv is left as it is.
#
#   benchmarks/install_peers.sh           # $PYTHON, else python3.11/python3
#   PEERS_VENV=/path benchmarks/install_peers.sh
#
# torch==2.13.0 is taken from the CPU wheel that this project's machines
# keep on disk; a torch from PyPI would pull several GB of CUDA libraries.
#
# spikingjelly 2.0.0 declares torchvision, torchaudio, tensorboard,
# SciencePlots and others as hard dependencies; its neuron, layer and
# surrogate modules need only torch, numpy and loguru. It is installed with
# --no-deps so that none of those pulls a second (CUDA) torch. So is norse
# 1.1.0, which declares torchvision and an unpinned torch; norse.torch
# imports nir and nirtorch (the versions edge's NIR consumer pins).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PEERS_VENV:-.venv-peers}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
PACKAGES=(torch==2.13.0 snntorch==1.0.0 nir==1.0.8 nirtorch==2.6 numpy psutil
    "loguru>=0.7,<1")
NODEPS=(spikingjelly==2.0.0 norse==1.1.0)

check() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
want = {
    "torch": "2.13.0",
    "snntorch": "1.0.0",
    "spikingjelly": "2.0.0",
    "norse": "1.1.0",
}
for name, version in want.items():
    assert m.version(name).split("+")[0] == version, name
import torch
assert not torch.cuda.is_available() or torch.version.cuda is None
import snntorch  # noqa: F401
import norse.torch  # noqa: F401
from spikingjelly.activation_based import functional, layer, neuron  # noqa
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "$VENV is complete (torch, snntorch, spikingjelly, norse)"
    exit 0
fi

echo "creating $VENV with $($PYTHON --version) at $PYTHON"
if ! $PYTHON -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq "${PACKAGES[@]}"
"$VENV/bin/python" -m pip install -qq --no-deps "${NODEPS[@]}"
if ! check; then
    echo "error: $VENV is incomplete after installing" >&2
    exit 1
fi
if "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "error: $VENV pulled CUDA packages; use a CPU torch wheel" >&2
    exit 1
fi
echo "$VENV ready"
