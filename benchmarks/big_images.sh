#!/usr/bin/env bash
# Peak memory and time of instance prediction on big compressed TIFF mosaics of DSB2018 crops:
# the in-memory path (TIFF output) vs the blockwise zarr path, and 1 vs 2 local dask workers.
#   bash benchmarks/big_images.sh SIZE [SIZE...]      e.g. 4096 12288 16384
# Model: an untrained depth-2 width-4 padded U-Net, instance mode (distance targets), as in the
# issue's measurement (few objects: the network dominates), or MODEL=path (e.g. the bundled
# model: real nuclei everywhere). WORKERS=1 adds 1- and 2-worker LocalCluster runs; SKIP_MEMORY=1
# skips the in-memory path. Peak RSS from /usr/bin/time -v. Appends to benchmarks/results/big_images.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results; W=${BIG_DIR:-/tmp/napari_unet_big}; mkdir -p $W
NU=.venv/bin/napari-unet
[[ -f $W/tiny.safetensors ]] || $NU init --arch unet --mode instance --depth 2 --base-width 4 --out $W/tiny.safetensors
MODEL=${MODEL:-$W/tiny.safetensors}
source benchmarks/peak_rss.sh
measure() {  # name size cmd...
    local name=$1 size=$2; shift 2
    rm -rf $W/out_tif $W/out.zarr
    peak_rss $W "$@"
    .venv/bin/python -c "
import json
print(json.dumps({'path': '$name', 'model': '$(basename $MODEL)', 'size': $size, 'megapixels': round($size**2/1e6,1), 'peak_rss_mb': $RSS_MB,
                  'seconds': $WALL_S, 's_per_mpix': round($WALL_S/($size**2/1e6),3), 'machine': '$(nproc) cores'}))" | tee -a $R/big_images.jsonl
}
for SIZE in "$@"; do
    IMG=$W/mosaic_$SIZE.tif
    [[ -f $IMG ]] || .venv/bin/python benchmarks/make_mosaic.py bench_data/dsb_train/images $SIZE $IMG
    common=($MODEL $IMG --device cpu --quiet)
    [[ ${SKIP_MEMORY:-} ]] || measure in-memory $SIZE $NU predict "${common[@]}" --out $W/out_tif
    measure zarr $SIZE $NU predict "${common[@]}" --out $W/out.zarr
    [[ ${WORKERS:-} ]] && measure zarr-2-workers $SIZE $NU predict "${common[@]}" --out $W/out.zarr --workers 2
    [[ ${WORKERS:-} ]] && measure zarr-1-worker $SIZE $NU predict "${common[@]}" --out $W/out.zarr --workers 1
done
