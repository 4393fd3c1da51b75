#!/usr/bin/env bash
# Round 13 A/B: images as they are (the default) against --polarity auto (an image whose median
# lies in the upper half of its percentile range, a bright background, is inverted before the
# network sees it, in training and prediction). 11 of DSB2018's 436 images (6 training, 5 test)
# are grey brightfield-like images with dark nuclei on a bright background; the 20-minute
# default model finds none of the 347 nuclei in the 5 test ones (AP@0.5 0.000; bundled 0.507).
# Two seeds, 20 minutes each, side by side, each on one core with one torch thread.
# The default arm is round 12's (r12_base_s{0,1}: same seeds, machine and side-by-side load;
# nothing in the default training path changed since); only the new arm runs here.
#   python benchmarks/bright_subset.py bench_data/dsb_test && bash benchmarks/ab_polarity.sh [MINUTES]
# Decision rule (fixed before any score was seen): --polarity auto becomes the default if,
# averaged over the two seeds, AP@0.5 on each run's validation images (dsb_val_s{0,1}; the
# same images in both arms; each model with its own tuned settings) rises by >= 0.01 and
# AP@0.5 on other_decide falls by no more than 0.01. DSB test, its bright images and
# other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r13_polarity_s0 "$M" --seed 0 --polarity auto > /dev/null &
OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r13_polarity_s1 "$M" --seed 1 --polarity auto > /dev/null &
wait
for s in 0 1; do  # both arms held out the same images
    .venv/bin/python benchmarks/val_folder.py $B/dsb_val_s$s $B/dsb_train $R/r12_base_s$s.safetensors $R/r13_polarity_s$s.safetensors
done
for s in 0 1; do
    OMP_NUM_THREADS=1 taskset -c $s bash benchmarks/eval_sets.sh $R/r13_polarity_s$s.safetensors \
        $R/r13_polarity_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
done
wait
for s in 0 1; do  # the default arm on the bright test images, for the report
    OMP_NUM_THREADS=1 taskset -c $s bash benchmarks/eval_sets.sh $R/r12_base_s$s.safetensors \
        $R/r12_base_s${s}_eval.jsonl dsb_test_bright > /dev/null &
done
wait
.venv/bin/python benchmarks/ab_table.py r12_base_s0 r13_polarity_s0 r12_base_s1 r13_polarity_s1 > $R/ab_polarity_r13.md
