#!/usr/bin/env bash
# ISBI 2012 membranes, semantic mode, default settings for MINUTES on this CPU; scored on slices 25-29.
#   bash benchmarks/isbi_cpu.sh NAME MINUTES [extra train flags...]
# SKIP_TRAIN=1: only the scores (benchmarks/results/NAME.safetensors exists).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; MINUTES=$2; shift 2
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
if [[ -z "${SKIP_TRAIN:-}" ]]; then
{ echo "command: napari-unet train --images $B/isbi_train/images --labels $B/isbi_train/labels --mode semantic --device cpu --time-limit $MINUTES $*"
  bash benchmarks/machine.sh; } > $R/${NAME}_train.log
t0=$(date +%s)
.venv/bin/napari-unet train --images $B/isbi_train/images --labels $B/isbi_train/labels --out $R/$NAME.safetensors \
    --mode semantic --device cpu --time-limit "$MINUTES" --quiet "$@" 2>> $R/${NAME}_train.log
echo "wall seconds: $(( $(date +%s) - t0 ))" >> $R/${NAME}_train.log
fi
for flags in "" "--tta"; do
    .venv/bin/napari-unet evaluate $R/$NAME.safetensors --images $B/isbi_test/images --labels $B/isbi_test/labels \
        --device cpu --quiet $flags 2>/dev/null | .venv/bin/python -c "
import json, sys
d = json.load(sys.stdin)
print(json.dumps({'set': 'isbi_test (slices 25-29)', 'flags': '$flags', 'adapted_rand_error': round(d['adapted_rand_error'], 4),
                  'membrane_f1': round(d['per_class']['class 1']['f1'], 4), 'accuracy': round(d['accuracy'], 4)}))"
done > $R/${NAME}_eval.jsonl
cat $R/${NAME}_eval.jsonl
