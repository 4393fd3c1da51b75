#!/usr/bin/env bash
# The held-out sets of the A/B rounds for one 20-minute run, on one core and one torch thread:
# its seed's validation images (dsb_val_SEED), other_decide, other_report and the bright DSB
# test images, appended to benchmarks/results/NAME_eval.jsonl.
#   bash benchmarks/ab_eval.sh NAME SEED CORE
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; SEED=$2; CORE=$3
R=benchmarks/results
OMP_NUM_THREADS=1 taskset -c "$CORE" bash benchmarks/eval_sets.sh $R/$NAME.safetensors $R/${NAME}_eval.jsonl \
    dsb_val_s$SEED other_decide other_report dsb_test_bright > /dev/null
