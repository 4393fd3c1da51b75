#!/usr/bin/env bash
# Fine-tuning that pays? Start from a model, fine-tune on 3 slices of one volume of another
# lab's nuclei for MINUTES of CPU, score on the slices of another volume of the same kind.
#   bash benchmarks/finetune_other.sh MODEL NAME MINUTES [extra train flags...]
# Needs bench_data/other_nuclei_2d (benchmarks/make_other_nuclei_2d.py).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; NAME=$2; MINUTES=$3; shift 3
B=${BENCH_DATA:-bench_data}/other_nuclei_2d
R=benchmarks/results
W=$(mktemp -d)
split() {  # kind, train volume, test volume, 3 train slices
    local kind=$1 train=$2 test=$3; shift 3
    mkdir -p $W/$kind/train/images $W/$kind/train/labels $W/$kind/test/images $W/$kind/test/labels
    for z in "$@"; do
        for d in images labels; do ln -s "$(realpath $B/$d/${train}_z$z.tif)" $W/$kind/train/$d/; done
    done
    for f in $B/images/${test}_z*.tif; do
        for d in images labels; do ln -s "$(realpath $B/$d/$(basename $f))" $W/$kind/test/$d/; done
    done
}
split gonuclear gonuclear_1135 gonuclear_1136 025 055 085
split bbbc050 bbbc050_embryo_8cell bbbc050_embryo_16cell 012 022 032
score() { .venv/bin/napari-unet evaluate "$1" --images $2/images --labels $2/labels --device cpu --quiet 2>/dev/null \
          | python3 -c "import json,sys; d=json.load(sys.stdin); print(round(d['ap@0.5'],4), round(d['ap@0.7'],4))"; }
: > $R/${NAME}.txt
for kind in gonuclear bbbc050; do
    zero=$(score $MODEL $W/$kind/test)
    .venv/bin/napari-unet train --images $W/$kind/train/images --labels $W/$kind/train/labels --init $MODEL \
        --out $W/$kind/tuned.safetensors --mode instance --device cpu --time-limit $MINUTES --quiet "$@" 2> $W/$kind/train.log
    if [[ -f $W/$kind/tuned.safetensors ]]; then tuned=$(score $W/$kind/tuned.safetensors $W/$kind/test); else tuned="start model kept"; fi
    echo "$kind: zero-shot AP@0.5 AP@0.7 = $zero; fine-tuned ${MINUTES} min ($*) = $tuned" | tee -a $R/${NAME}.txt
    grep -v Warn $W/$kind/train.log | grep -E "epoch|limit|kept" | tail -3 >> $R/${NAME}.txt
done
