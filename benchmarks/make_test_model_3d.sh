#!/usr/bin/env bash
# The small 3D nuclei model of the tests (tests/data/nuclei3d_tiny.safetensors): a padded 3D
# U-Net, depth 2, width 8, trained 4 minutes on the CPU on the BBBC050 8-cell embryo (the
# training volume of benchmarks/split_data.py); the tests use it on a crop of the 16-cell
# embryo, which it never saw.
#   bash benchmarks/make_test_model_3d.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_DATA:-bench_data}
OUT=${1:-tests/data/nuclei3d_tiny.safetensors}
.venv/bin/napari-unet train --images $B/vol_bbbc050_train/images --labels $B/vol_bbbc050_train/labels \
    --out "$OUT" --mode instance --dims 3 --axes ZYX --depth 2 --base-width 8 --patch 48 --patch-z 16 \
    --batch 2 --tile 32 --time-limit 4 --device cpu --seed 0 --quiet
