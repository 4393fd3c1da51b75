#!/usr/bin/env bash
# Round 10 A/B: the default augmentation against the default plus blur and gamma, two seeds,
# 20 minutes each, two runs side by side, each on one core with one torch thread.
#   bash benchmarks/split_other_nuclei.sh && bash benchmarks/ab_blur_gamma.sh [MINUTES]
# Decision rule (fixed before any score was seen): blur+gamma becomes the default if, averaged
# over the two seeds, AP@0.5 on other_decide rises by >= 0.03 and the tuned validation AP@0.5
# (training log) falls by no more than 0.01. DSB test and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
AUG="--blur 1.0 --gamma 0.5"
pair() {  # seed
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r10_base_s$1 "$M" --seed "$1" > /dev/null &
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r10_blurgamma_s$1 "$M" --seed "$1" $AUG > /dev/null &
    wait
}
pair 0
pair 1
for run in r10_base_s0 r10_blurgamma_s0 r10_base_s1 r10_blurgamma_s1; do
    OMP_NUM_THREADS=2 bash benchmarks/eval_sets.sh benchmarks/results/$run.safetensors \
        benchmarks/results/${run}_eval.jsonl other_decide other_report
done
