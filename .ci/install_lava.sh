#!/usr/bin/env bash
# Creates .venv-lava: a Python 3.10 virtual environment with Intel's Lava
# (lava-nc 0.10.0) and the NetX loader of lava-dl 0.6.0, in which
# tests/test_edge_loihi.py and `edge.export(..., targets="loihi")` run the
# exported NetX HDF5 file bit-accurately (Loihi2SimCfg, fixed_pt) on the CPU.
#
# lava-nc 0.10.0 and lava-dl 0.6.0 need Python >=3.10,<3.11 and numpy<2.
# lava-dl is installed without its dependencies (torch, torchvision, opencv):
# the NetX HDF5 loader does not use them, and edge/targets/loihi/_lava_worker.py stands in
# for the torch-based modules that lava.lib.dl.netx imports.
#
# Idempotent: does nothing when the environment already imports lava and
# netx. Usage: .ci/install_lava.sh   (PYTHON310=/path/to/python3.10 to choose)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-lava
LAVA_NC=lava-nc==0.10.0
LAVA_DL=lava-dl==0.6.0

check() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
assert m.version("lava-nc") == "0.10.0"
assert m.version("lava-dl") == "0.6.0"
import h5py, numpy, lava.magma.core.run_configs  # noqa
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "install_lava: $VENV is ready"
    exit 0
fi

find_python310() {
    if [ -n "${PYTHON310:-}" ]; then
        echo "$PYTHON310"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local prefix
        for version in 3.10.13 3.10; do
            prefix=$(pyenv prefix "$version" 2>/dev/null || true)
            if [ -n "$prefix" ] && [ -x "$prefix/bin/python" ]; then
                echo "$prefix/bin/python"
                return
            fi
        done
        for prefix in "$(pyenv root 2>/dev/null)"/versions/3.10.*; do
            if [ -x "$prefix/bin/python" ]; then
                echo "$prefix/bin/python"
                return
            fi
        done
    fi
    local candidate
    for candidate in python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' \
                >/dev/null 2>&1; then
            command -v "$candidate"
            return
        fi
    done
    echo "install_lava: no Python 3.10 found (pyenv install 3.10.13, or" \
        "set PYTHON310)" >&2
    return 1
}

PY310=$(find_python310)
echo "install_lava: using $("$PY310" --version) at $PY310"
rm -rf "$VENV"
"$PY310" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$LAVA_NC" 'h5py>=3.7,<4' 'numpy<2'
"$VENV/bin/python" -m pip install -q --no-deps "$LAVA_DL"
if ! check; then
    echo "install_lava: $VENV does not import lava/netx after installing" >&2
    exit 1
fi
echo "install_lava: $VENV is ready"
