#!/usr/bin/env bash
# One training run on the DSB2018 training split, then its scores on the test split and on its
# own validation ("dev") images; for comparing settings (accuracy_cpu.sh adds the other sets).
#   bash benchmarks/train_eval.sh NAME MINUTES [extra train flags...]
# Writes benchmarks/results/NAME_train.log and NAME_eval.jsonl (model: NAME.safetensors, not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; MINUTES=$2; shift 2
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
START=$(date +%s)
{ echo "command: napari-unet train --images $B/dsb_train/images --labels $B/dsb_train/labels --out $R/$NAME.safetensors --mode instance --device cpu --time-limit $MINUTES $*"
  bash benchmarks/machine.sh; } > $R/${NAME}_train.log
.venv/bin/napari-unet train --images $B/dsb_train/images --labels $B/dsb_train/labels --out $R/$NAME.safetensors \
    --mode instance --device cpu --time-limit "$MINUTES" --quiet "$@" 2>> $R/${NAME}_train.log
echo "wall seconds for train (preparation, training, tuning): $(( $(date +%s) - START ))" >> $R/${NAME}_train.log
t0=$(date +%s)
.venv/bin/napari-unet evaluate $R/$NAME.safetensors --images $B/dsb_test/images --labels $B/dsb_test/labels \
    --device cpu --tile 512 --quiet 2>/dev/null | .venv/bin/python -c "
import json, sys
d = json.load(sys.stdin)
keys = ['ap@0.5', 'ap@0.6', 'ap@0.7', 'ap@0.8', 'ap@0.9', 'precision@0.5', 'recall@0.5', 'f1@0.5']
print(json.dumps({'set': 'dsb_test', 'seconds': $(date +%s) - $t0, 'images': d['images'], **{k: None if d[k] is None else round(d[k], 4) for k in keys}}))
" > $R/${NAME}_eval.jsonl
.venv/bin/python benchmarks/dev_score.py $R/$NAME.safetensors $B/dsb_train/images $B/dsb_train/labels >> $R/${NAME}_eval.jsonl
cat $R/${NAME}_eval.jsonl
