#!/usr/bin/env bash
# Round 11: the bundled nuclei model (width 32) trained on with the round-10 default augmentation
# (blur 1.0, gamma 0.5), 95 minutes on one core, starting from the bundled weights at lr 1e-3.
# The starting model is scored as epoch 0 on the same validation images (same seed, same split)
# and kept unless an epoch beats it.
#   bash benchmarks/split_other_nuclei.sh && bash benchmarks/retrain_bundled.sh [MINUTES]
# Decision rule (fixed before any score was seen): the new weights replace the bundled model if
# AP@0.5 on other_decide rises by >= 0.02 and the tuned validation AP@0.5 (training log; the
# starting model's is its epoch 0) falls by no more than 0.005. DSB test and other_report are
# only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-95}
START=src/napari_unet/sample_data/nuclei_model.safetensors
R=benchmarks/results
OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh bundled_bg_cont95 "$M" \
    --init $START --lr 1e-3 --epochs 100
OMP_NUM_THREADS=1 taskset -c 1 bash benchmarks/eval_sets.sh $START $R/bundled_r8_split_eval.jsonl other_decide other_report
OMP_NUM_THREADS=1 taskset -c 1 bash benchmarks/eval_sets.sh $R/bundled_bg_cont95.safetensors \
    $R/bundled_bg_cont95_split_eval.jsonl other_decide other_report
