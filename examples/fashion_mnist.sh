#!/usr/bin/env bash
# Fashion-MNIST recipe: a convolutional SNN, T = 4, trained on 2 CPU cores.
# Needs the data: Debian's dataset-fashion-mnist package (installed below if
# apt is available), tensorflow-datasets with network access, or the four
# official IDX files in a folder given by KERAS_SNN_DATA_DIR.
# Usage: bash examples/fashion_mnist.sh [OUT_DIR] [EPOCHS]
set -euo pipefail
out=${1:-runs/fashion_mnist}
epochs=${2:-8}
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${KERAS_SNN_DATA_DIR:-}" ] \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
fi
keras-snn train --dataset fashion_mnist \
    --model "32C3-AP2-64C3-AP2-256FC-Decoding" --norm bn \
    --timesteps 4 --epochs "$epochs" --batch-size 128 --learning-rate 2e-3 \
    --dropout 0.5 --augment flip --verbose 2 --out "$out"
keras-snn evaluate "$out/model.keras" --dataset fashion_mnist --timesteps 1 2 4 8
