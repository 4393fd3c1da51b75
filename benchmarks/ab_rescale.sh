#!/usr/bin/env bash
# Round 12 A/B: training at the images' own scale (the default) against training with every
# image resized so that its nuclei are 24 px across (--rescale-objects 24, as Cellpose trains
# at one diameter; prediction then estimates each image's object size, --object-size auto).
# Two seeds, 20 minutes each, two runs side by side, each on one core with one torch thread.
#   bash benchmarks/split_other_nuclei.sh && bash benchmarks/ab_rescale.sh [MINUTES]
# Decision rule (fixed before any score was seen): --rescale-objects 24 becomes the default for
# 2D instance training if, averaged over the two seeds, AP@0.5 on the validation images at
# their own size (dsb_val: the images each run held out, the same for both arms of a seed;
# each model predicts with its own defaults) rises by >= 0.01 and AP@0.5 on other_decide falls
# by no more than 0.01. (The tuned validation AP in the training log is not comparable: the
# rescaled arm validates at the learned size.) DSB test and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
pair() {  # seed
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r12_base_s$1 "$M" --seed "$1" > /dev/null &
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r12_rescale24_s$1 "$M" --seed "$1" --rescale-objects 24 > /dev/null &
    wait
}
score() {  # seed
    .venv/bin/python benchmarks/val_folder.py $B/dsb_val_s$1 $B/dsb_train $R/r12_base_s$1.safetensors $R/r12_rescale24_s$1.safetensors
    OMP_NUM_THREADS=1 taskset -c 0 bash benchmarks/eval_sets.sh $R/r12_base_s$1.safetensors \
        $R/r12_base_s$1_eval.jsonl dsb_val_s$1 other_decide other_report > /dev/null &
    OMP_NUM_THREADS=1 taskset -c 1 bash benchmarks/eval_sets.sh $R/r12_rescale24_s$1.safetensors \
        $R/r12_rescale24_s$1_eval.jsonl dsb_val_s$1 other_decide other_report > /dev/null &
    wait
}
pair 0
pair 1
score 0
score 1
