#!/usr/bin/env bash
# One seed of an A/B round: two 20-minute default trainings side by side (arm A on core 0,
# arm B on core 1, one torch thread each, so that both share the machine's speed of the moment),
# then the seed's validation images (made once, checked to be the same for both arms) and the
# A/B sets of benchmarks/ab_eval.sh for each.
#   bash benchmarks/ab_pair.sh MINUTES SEED NAME_A "FLAGS_A" NAME_B "FLAGS_B"
set -euo pipefail
cd "$(dirname "$0")/.."
M=$1; S=$2; A=$3; FA=$4; BN=$5; FB=$6
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
# shellcheck disable=SC2086  # the flags are words
OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh "$A" "$M" --seed "$S" $FA > /dev/null &
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh "$BN" "$M" --seed "$S" $FB > /dev/null &
wait
.venv/bin/python benchmarks/val_folder.py "$B/dsb_val_s$S" "$B/dsb_train" "$R/$A.safetensors" "$R/$BN.safetensors"
bash benchmarks/ab_eval.sh "$A" "$S" 0 &
bash benchmarks/ab_eval.sh "$BN" "$S" 1 &
wait
