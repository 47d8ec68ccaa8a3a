#!/usr/bin/env bash
# Installs the programs that run keras-snn's exported artefacts, for the
# tests: the C toolchains and QEMU (install_arm.sh), Lava in a Python 3.10
# venv .venv-lava (install_lava.sh), and nir/Norse/snnTorch on a CPU torch
# in .venv-nir (install_nir.sh). Each script is idempotent.
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install_arm.sh"
bash "$here/install_lava.sh"
bash "$here/install_nir.sh"
