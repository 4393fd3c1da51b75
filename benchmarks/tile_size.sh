#!/usr/bin/env bash
# Time and peak memory of prediction against the tile size (the largest tile core).
#   [BATCH=N] bash benchmarks/tile_size.sh LABEL TILE [TILE...]
# Predicts the DSB2018 test split (88 images, 256x256 to 1040x1388) and a 2048x2048 mosaic of
# DSB crops with MODEL (default: the bundled nuclei model), --device cpu, into TIFFs; peak RSS
# from /usr/bin/time -v. BATCH: tiles per forward pass (default: the command's). LABEL names
# the code under test in the output (run the code of another commit with
# PYTHONPATH=/path/to/its/src). Appends to benchmarks/results/tile_size.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results; W=${TILE_DIR:-/tmp/napari_unet_tiles}; mkdir -p $W
MODEL=${MODEL:-src/napari_unet/sample_data/nuclei_model.safetensors}
LABEL=$1; shift
source benchmarks/peak_rss.sh
MOSAIC=$W/mosaic_2048.tif
[[ -f $MOSAIC ]] || .venv/bin/python benchmarks/make_mosaic.py bench_data/dsb_train/images 2048 $MOSAIC
for T in "$@"; do
    for input in bench_data/dsb_test/images $MOSAIC; do
        rm -rf $W/out
        peak_rss $W .venv/bin/napari-unet predict $MODEL $input --out $W/out --tile $T ${BATCH:+--batch $BATCH} --device cpu --quiet
        .venv/bin/python -c "
import json
print(json.dumps({'code': '$LABEL', 'model': '$(basename $MODEL)', 'input': '$(basename $input)', 'tile': $T, 'batch': '${BATCH:-default}',
                  'seconds': $WALL_S, 'peak_rss_mb': $RSS_MB, 'threads': '$(nproc) cores'}))" | tee -a $R/tile_size.jsonl
    done
done
