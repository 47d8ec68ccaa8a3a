#!/usr/bin/env bash
# Installs the programs that run keras-snn's exported artefacts, for the
# tests: the C toolchains and QEMU (install_arm.sh), then the consumers'
# virtual environments with `keras-snn consumers install` (the code a user
# runs, edge/consumers_cli.py): Lava on a Python 3.10 in .venv-lava and
# nir/Norse/snnTorch on a CPU torch in .venv-nir, at the repository root,
# where the targets find them in a source checkout (edge/consumers.py).
# Each step is idempotent: a complete environment is left as it is.
#
#   .ci/install_consumers.sh   # PYTHON310=/path/to/python3.10 for Lava,
#                              # PYTHON=/path/to/python3 for the rest
#
# It runs before the package is installed, so it calls the command as
# `python -m edge.consumers_cli` from the checkout. torch==2.13.0 comes from
# the CPU wheel that this project's machines keep on disk (pip finds it); a
# torch from PyPI would pull several GB of CUDA libraries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bash "$here/install_arm.sh"

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
PYTHONPATH="$root" "$PYTHON" -m edge.consumers_cli install \
    --targets loihi,nir --dir "$root/.venv-{name}"
