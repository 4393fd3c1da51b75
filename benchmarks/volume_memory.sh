#!/usr/bin/env bash
# Peak memory and time of 3D prediction of a big real volume (issue 11: 512x1024x1024 under
# 2 GB of peak RSS on the CPU): a 3D mosaic of BBBC050 nuclei crops, zlib-compressed tiled TIFF.
#   bash benchmarks/volume_memory.sh Z,Y,X [PATHS]      e.g. 512,1024,1024
# PATHS (default "semantic-tiff semantic-zarr instance-zarr"):
#   semantic-tiff: an untrained depth-2 width-4 padded 3D U-Net, semantic, written tile by tile
#                  into a TIFF memory map (the in-memory path);
#   semantic-zarr: the same model, blockwise into a zarr store;
#   instance-zarr: the 3D nuclei model of the tests (tests/data/nuclei3d_tiny.safetensors, real
#                  nuclei everywhere: the watershed has work to do), blockwise into a zarr store.
# Peak RSS from /usr/bin/time -v. Appends to benchmarks/results/volume_memory.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPE=$1; PATHS=${2:-semantic-tiff semantic-zarr instance-zarr}
R=benchmarks/results; W=${BIG_DIR:-/tmp/napari_unet_vol}; mkdir -p $W
NU=.venv/bin/napari-unet
IMG=$W/volume_${SHAPE//,/x}.tif
[[ -f $IMG ]] || .venv/bin/python benchmarks/make_volume.py bench_data/vol_bbbc050_train/images/embryo_8cell.tif $SHAPE $IMG
[[ -f $W/semantic3d.safetensors ]] || $NU init --arch unet3d --mode semantic --classes 2 --depth 2 --base-width 4 \
    --out $W/semantic3d.safetensors > /dev/null
source benchmarks/peak_rss.sh
measure() {  # name model cmd...
    local name=$1 model=$2; shift 2
    rm -rf $W/out_tif $W/out.zarr
    peak_rss $W "$@"
    .venv/bin/python -c "
import json, math
shape=[int(v) for v in '$SHAPE'.split(',')]; n=math.prod(shape)
print(json.dumps({'path': '$name', 'model': '$(basename $model)', 'shape': shape, 'megavoxels': round(n/1e6), 'peak_rss_mb': $RSS_MB,
                  'seconds': $WALL_S, 's_per_mvox': round($WALL_S/(n/1e6),3), 'machine': '$(nproc) cores, $(lscpu | sed -n 's/Model name: *//p')'}))" | tee -a $R/volume_memory.jsonl
}
for P in $PATHS; do
    case $P in
        semantic-tiff) measure $P $W/semantic3d.safetensors $NU predict $W/semantic3d.safetensors $IMG --axes ZYX --device cpu --quiet --out $W/out_tif ;;
        semantic-zarr) measure $P $W/semantic3d.safetensors $NU predict $W/semantic3d.safetensors $IMG --axes ZYX --device cpu --quiet --out $W/out.zarr ;;
        instance-zarr) measure $P tests/data/nuclei3d_tiny.safetensors $NU predict tests/data/nuclei3d_tiny.safetensors $IMG --tile 64,128,128 --axes ZYX --device cpu --quiet --out $W/out.zarr ;;
        *) echo "unknown path $P"; exit 2 ;;
    esac
done
