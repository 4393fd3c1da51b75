#!/usr/bin/env bash
# Tune (seconds, the network unchanged) or fine-tune (minutes)? Per lab, on the same labelled
# slices of one volume (bench_data/lab_LAB_decide, made by tune_by_lab.sh): fine-tune MODEL for
# MINUTES of CPU (napari-unet train --init), then also tune the fine-tuned model on them; score
# both on the lab's other volume (lab_LAB_report). Compare with tune_by_lab.sh's tune-only rows.
#   bash benchmarks/finetune_vs_tune.sh NAME MODEL MINUTES
# Writes benchmarks/results/NAME_eval.jsonl, NAME_tune.jsonl and NAME_LAB_train.log. One core:
# OMP_NUM_THREADS=1 taskset -c N bash benchmarks/finetune_vs_tune.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; MODEL=$2; MINUTES=$3
R=benchmarks/results
B=${BENCH_DATA:-bench_data}
: > $R/${NAME}_eval.jsonl
: > $R/${NAME}_tune.jsonl
for lab in bbbc050 gonuclear; do
    fine=$R/${NAME}_${lab}.safetensors
    { echo "command: napari-unet train --images $B/lab_${lab}_decide/images --labels $B/lab_${lab}_decide/labels --init $MODEL --out $fine --mode instance --device cpu --time-limit $MINUTES"
      bash benchmarks/machine.sh; } > $R/${NAME}_${lab}_train.log
    .venv/bin/napari-unet train --images $B/lab_${lab}_decide/images --labels $B/lab_${lab}_decide/labels \
        --init "$MODEL" --out $fine --mode instance --device cpu --time-limit "$MINUTES" --quiet 2>> $R/${NAME}_${lab}_train.log
    .venv/bin/napari-unet tune $fine --images $B/lab_${lab}_decide/images --labels $B/lab_${lab}_decide/labels \
        --device cpu --tile 512 --quiet --out $R/${NAME}_${lab}_tuned.safetensors | sed "s/^{/{\"lab\": \"$lab\", /" >> $R/${NAME}_tune.jsonl
    for m in $fine $R/${NAME}_${lab}_tuned.safetensors; do
        bash benchmarks/eval_sets.sh "$m" $R/${NAME}_eval.jsonl lab_${lab}_report > /dev/null
    done
done
cat $R/${NAME}_tune.jsonl $R/${NAME}_eval.jsonl
