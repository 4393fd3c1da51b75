#!/usr/bin/env bash
# Round 14: training batch 4 instead of 8 on a float32 CPU (width 8): a step of half the patches
# costs about half (or less), so a 20-minute run makes about twice the updates on the same
# number of pixels. Seeds 2 and 3 side by side (one core and one torch thread each, 20 minutes),
# the same layout as this session's baselines r14_asis_s{2,3} (ab_polarity_seeds.sh, default
# settings), which they are compared with.
#   bash benchmarks/ab_batch4.sh [MINUTES]
# Rule, written before the run: --batch 4 becomes the default on CPUs that train in float32 if
# the two-seed mean AP@0.5 on each run's 70 validation images (dsb_val_s2, dsb_val_s3, the same
# images as the baselines') rises by >= 0.01 and other_decide falls by no more than 0.01.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
for s in 2 3; do
    OMP_NUM_THREADS=1 QUICK=1 taskset -c $((s - 2)) bash benchmarks/accuracy_cpu.sh r14_batch4_s$s "$M" --seed $s --batch 4 > /dev/null &
done
wait
for s in 2 3; do  # the same held-out images as the baselines
    .venv/bin/python benchmarks/val_folder.py $B/dsb_val_s$s $B/dsb_train $R/r14_asis_s$s.safetensors $R/r14_batch4_s$s.safetensors
done
for s in 2 3; do
    OMP_NUM_THREADS=1 taskset -c $((s - 2)) bash benchmarks/eval_sets.sh $R/r14_batch4_s$s.safetensors \
        $R/r14_batch4_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
done
wait
.venv/bin/python benchmarks/ab_table.py r14_asis_s2 r14_batch4_s2 r14_asis_s3 r14_batch4_s3 > $R/ab_batch4_r14.md
cat $R/ab_batch4_r14.md
