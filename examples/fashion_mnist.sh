#!/usr/bin/env bash
# Fashion-MNIST recipe: a convolutional SNN, T = 2, trained on 2 CPU cores
# (issue #19: >= 94% within 60 minutes). 64 and 128 channels, BN on the
# input currents, LIF neurons with a decay learned per channel (PLIF, Fang
# et al. 2021), dropout before the decoding head, random flips and shifts,
# Adam with a cosine schedule. Each epoch's time and test accuracy go to
# OUT_DIR/history.csv; benchmarks/fashion_recipe.py reports the seeds.
# Needs the data: Debian's dataset-fashion-mnist package (installed below if
# apt is available), tensorflow-datasets with network access, or the four
# official IDX files in a folder given by KERAS_SNN_DATA_DIR.
# Usage: bash examples/fashion_mnist.sh [OUT_DIR] [EPOCHS] [SEED]
set -euo pipefail
out=${1:-runs/fashion_mnist/seed0}
epochs=${2:-20}
seed=${3:-0}
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${KERAS_SNN_DATA_DIR:-}" ] \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
fi
keras-snn train --dataset fashion_mnist \
    --model "64C3-AP2-128C3-AP2-256FC-Decoding" --norm bn \
    --timesteps 2 --epochs "$epochs" --batch-size 128 --learning-rate 2e-3 \
    --dropout 0.3 --augment flip+shift --trainable-decay channel \
    --seed "$seed" --verbose 2 --out "$out"
keras-snn evaluate "$out/model.keras" --dataset fashion_mnist --timesteps 1 2 4
