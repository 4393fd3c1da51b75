#!/usr/bin/env bash
# `napari-unet tune` per lab, as a biologist would use it: for each of the two other labs' nuclei
# sets (BBBC050 mouse embryo, GoNuclear Arabidopsis ovule), choose a model's settings on the
# slices of one labelled volume, then score the model and its tuned copy on the slices of the
# lab's other volume (never tuned on). Every 2nd slice (denser than other_nuclei_2d's 5th/10th,
# for enough objects; slices of one volume are correlated, the two volumes are not).
#   bash benchmarks/tune_by_lab.sh NAME MODEL
# Makes bench_data/lab_{bbbc050,gonuclear}_{decide,report} once. Writes
# benchmarks/results/NAME_lab_tune.jsonl (one line per lab: what tune printed) and
# NAME_lab_eval.jsonl; the tuned copies (not committed) beside them. One core:
# OMP_NUM_THREADS=1 taskset -c N bash benchmarks/tune_by_lab.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; MODEL=$2
R=benchmarks/results
B=${BENCH_DATA:-bench_data}
if [[ ! -d $B/lab_gonuclear_report ]]; then
    .venv/bin/python benchmarks/make_other_nuclei_2d.py ../shared/data $B/other_dense 2
    for lab in bbbc050 gonuclear; do
        for half in decide report; do rm -rf $B/lab_${lab}_$half; mkdir -p $B/lab_${lab}_$half/{images,labels}; done
    done
    for d in images labels; do
        cp $B/other_dense/$d/bbbc050_embryo_8cell_* $B/lab_bbbc050_decide/$d/
        cp $B/other_dense/$d/bbbc050_embryo_16cell_* $B/lab_bbbc050_report/$d/
        cp $B/other_dense/$d/gonuclear_1135_* $B/lab_gonuclear_decide/$d/
        cp $B/other_dense/$d/gonuclear_1136_* $B/lab_gonuclear_report/$d/
    done
fi
: > $R/${NAME}_lab_tune.jsonl
: > $R/${NAME}_lab_eval.jsonl
for lab in bbbc050 gonuclear; do
    tuned=$R/${NAME}_${lab}_tuned.safetensors
    .venv/bin/napari-unet tune "$MODEL" --images $B/lab_${lab}_decide/images --labels $B/lab_${lab}_decide/labels \
        --device cpu --tile 512 --quiet --out $tuned | sed "s/^{/{\"lab\": \"$lab\", /" >> $R/${NAME}_lab_tune.jsonl
    for m in "$MODEL" $tuned; do
        bash benchmarks/eval_sets.sh "$m" $R/${NAME}_lab_eval.jsonl lab_${lab}_report > /dev/null
    done
done
cat $R/${NAME}_lab_tune.jsonl $R/${NAME}_lab_eval.jsonl
