#!/usr/bin/env bash
# Installs the C runtime's consumers (edge/targets/c/, tests/test_edge_c.py):
# host gcc/make, the arm-none-eabi cross toolchain with newlib, and QEMU's
# system emulator for the Cortex-M4 board mps2-an386. Idempotent: does
# nothing when every tool is already on PATH. Needs root (or sudo) and apt.
set -euo pipefail

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
command -v arm-none-eabi-gcc >/dev/null 2>&1 \
    || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v arm-none-eabi-size >/dev/null 2>&1 || need+=(binutils-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
# The sanitizer build (-fsanitize=address,undefined) needs libasan/libubsan,
# which Debian's gcc package pulls in; check for them through gcc itself.
if command -v gcc >/dev/null 2>&1; then
    probe=$(mktemp -d)
    echo 'int main(void){return 0;}' > "$probe/p.c"
    gcc -fsanitize=address,undefined "$probe/p.c" -o "$probe/p" \
        >/dev/null 2>&1 || need+=(gcc)
    rm -rf "$probe"
fi

if [ ${#need[@]} -eq 0 ]; then
    echo "install_arm.sh: toolchain already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_arm.sh: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
arm-none-eabi-gcc --version | head -n 1
qemu-system-arm --version | head -n 1
