#!/usr/bin/env bash
# Round 15: two new 20-minute default runs (seeds 4 and 5, one core and one torch thread each,
# side by side) whose final tuning takes the fewest seeds among near-ties (instances.NEAR_TIE).
# Reported, not a decision: the stored choice, its scores on each run's validation images
# (dsb_val_sN), other_decide, other_report, the bright DSB test images and the DSB test split,
# and (benchmarks/tie_break.py on cached probabilities) what tolerance 0 would have chosen.
#   bash benchmarks/confirm_near_tie.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
P=$B/probs
mkdir -p $P
for s in 4 5; do
    OMP_NUM_THREADS=1 QUICK=1 taskset -c $((s - 4)) bash benchmarks/accuracy_cpu.sh r15_default_s$s "$M" --seed $s > /dev/null &
done
wait
for s in 4 5; do
    .venv/bin/python benchmarks/val_folder.py $B/dsb_val_s$s $B/dsb_train $R/r15_default_s$s.safetensors
done
for s in 4 5; do
    ( OMP_NUM_THREADS=1 taskset -c $((s - 4)) bash benchmarks/eval_sets.sh $R/r15_default_s$s.safetensors \
        $R/r15_default_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null
      for part in "val dsb_val_s$s" "test dsb_test" "other_decide other_decide" "other_report other_report"; do
          set -- $part
          OMP_NUM_THREADS=1 taskset -c $((s - 4)) .venv/bin/python benchmarks/cache_probabilities.py \
              $R/r15_default_s$s.safetensors $B/$2 $P/r15s${s}_$1.npz
      done
      OMP_NUM_THREADS=1 taskset -c $((s - 4)) .venv/bin/python benchmarks/tie_break.py \
          $R/r15_default_s$s.safetensors r15s$s > $R/r15_tie_break_s$s.txt ) &
done
wait
.venv/bin/python benchmarks/ab_table.py r15_default_s4 r15_default_s5 > $R/r15_default.md
