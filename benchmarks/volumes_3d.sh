#!/usr/bin/env bash
# 3D network vs 2D per plane (+ linking through z) on real nuclei volumes, same CPU budget.
#   bash benchmarks/volumes_3d.sh SET MINUTES      (SET: gonuclear or bbbc050; needs split_data.py)
# Trains on vol_SET_train (one volume; validation is a block of it), scores vol_SET_test.
# Writes benchmarks/results/vol_SET_{3d,2d}_{train.log,eval.jsonl}.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=$1; MINUTES=$2
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
NU=.venv/bin/napari-unet
train() {  # name, flags
    local name=$1; shift
    { echo "command: napari-unet train --images $B/vol_${SET}_train/images --labels $B/vol_${SET}_train/labels --mode instance --device cpu --time-limit $MINUTES --axes ZYX $*"
      bash benchmarks/machine.sh; } > $R/${name}_train.log
    local t0=$(date +%s)
    $NU train --images $B/vol_${SET}_train/images --labels $B/vol_${SET}_train/labels --out $R/$name.safetensors \
        --mode instance --device cpu --time-limit "$MINUTES" --axes ZYX --quiet "$@" 2>> $R/${name}_train.log
    echo "wall seconds: $(( $(date +%s) - t0 ))" >> $R/${name}_train.log
}
train vol_${SET}_3d --dims 3 --patch 64 --patch-z 16 --batch 2 --z-pooling 3 --val-fraction 0.25
train vol_${SET}_2d --val-fraction 0.25
: > $R/vol_${SET}_eval.jsonl
bash benchmarks/eval_sets.sh $R/vol_${SET}_3d.safetensors $R/vol_${SET}_eval.jsonl vol_${SET}_test
bash benchmarks/eval_sets.sh $R/vol_${SET}_2d.safetensors $R/vol_${SET}_eval.jsonl vol_${SET}_test vol_${SET}_test:--link-z,0.25
