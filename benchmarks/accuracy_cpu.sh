#!/usr/bin/env bash
# Default training for a fixed time on this machine's CPU, then scores on held-out data.
#   bash benchmarks/accuracy_cpu.sh NAME MINUTES [extra train flags...]
# Needs the splits: python benchmarks/split_data.py ../shared/data bench_data
#                   python benchmarks/make_other_nuclei_2d.py ../shared/data bench_data/other_nuclei_2d
#                   python benchmarks/make_rescaled.py bench_data/dsb_test 0.5 bench_data/dsb_test_x0.5
#                   python benchmarks/make_rescaled.py bench_data/dsb_test 2 bench_data/dsb_test_x2
# Writes benchmarks/results/NAME_{train.log,eval.jsonl} and NAME.safetensors (not committed).
# SKIP_TRAIN=1: only the scores after the first one (the model exists, dsb_test is scored).
# QUICK=1: only dsb_test and other_nuclei_2d.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; MINUTES=$2; shift 2
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
NU=.venv/bin/napari-unet
START=$(date +%s)
if [[ -z "${SKIP_TRAIN:-}" ]]; then
{ echo "command: napari-unet train --images $B/dsb_train/images --labels $B/dsb_train/labels --out $R/$NAME.safetensors --mode instance --device cpu --time-limit $MINUTES $*"
  bash benchmarks/machine.sh; } > $R/${NAME}_train.log
$NU train --images $B/dsb_train/images --labels $B/dsb_train/labels --out $R/$NAME.safetensors \
    --mode instance --device cpu --time-limit "$MINUTES" --quiet "$@" 2>> $R/${NAME}_train.log
echo "wall seconds for train (preparation, training, tuning): $(( $(date +%s) - START ))" >> $R/${NAME}_train.log
fi
ev() {  # label, data folder, extra flags
    local label=$1 data=$2; shift 2
    local t0=$(date +%s)
    local json
    json=$($NU evaluate $R/$NAME.safetensors --images $data/images --labels $data/labels --device cpu --tile 512 --quiet "$@" 2>/dev/null)
    python3 - "$label" "$(( $(date +%s) - t0 ))" "$json" >> $R/${NAME}_eval.jsonl <<'PY'
import json, sys
label, seconds, d = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
keys = ["ap@0.5", "ap@0.6", "ap@0.7", "ap@0.8", "ap@0.9", "precision@0.5", "recall@0.5", "f1@0.5"]
print(json.dumps({"set": label, "seconds": seconds, "images": d["images"], **{k: None if d[k] is None else round(d[k], 4) for k in keys}}))
PY
}
[[ -n "${SKIP_TRAIN:-}" ]] || : > $R/${NAME}_eval.jsonl
[[ -n "${SKIP_TRAIN:-}" ]] || ev dsb_test $B/dsb_test
[[ -n "${QUICK:-}" ]] || ev dsb_test_tta $B/dsb_test --tta
ev other_nuclei_2d $B/other_nuclei_2d
if [[ -z "${QUICK:-}" ]]; then
ev other_nuclei_2d_auto_size $B/other_nuclei_2d --object-size auto
ev dsb_test_x0.5 $B/dsb_test_x0.5
ev dsb_test_x0.5_size $B/dsb_test_x0.5 --object-size auto
ev dsb_test_x2 $B/dsb_test_x2
ev dsb_test_x2_size $B/dsb_test_x2 --object-size auto
fi
cat $R/${NAME}_eval.jsonl
