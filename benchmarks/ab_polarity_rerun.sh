#!/usr/bin/env bash
# Round 13, confirmation of ab_polarity.sh: the default arm run again in the same session as
# the --polarity auto arm (round 12's default arm made 6-12 % fewer steps than the new arm in
# 20 minutes: the machine's speed varies between sessions), with --polarity as-is, the old default.
#   bash benchmarks/ab_polarity_rerun.sh [MINUTES]
# Rule (written before this run): the adoption of --polarity auto stands if the two-seed mean
# AP@0.5 on the validation images also rises by >= 0.01 over these baselines, and other_decide
# falls by no more than 0.01; otherwise the default goes back to as-is.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
R=benchmarks/results
for s in 0 1; do
    OMP_NUM_THREADS=1 QUICK=1 taskset -c $s bash benchmarks/accuracy_cpu.sh r13_asis_s$s "$M" --seed $s --polarity as-is > /dev/null &
done
wait
for s in 0 1; do
    OMP_NUM_THREADS=1 taskset -c $s bash benchmarks/eval_sets.sh $R/r13_asis_s$s.safetensors \
        $R/r13_asis_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
done
wait
.venv/bin/python benchmarks/ab_table.py r13_asis_s0 r13_polarity_s0 r13_asis_s1 r13_polarity_s1 > $R/ab_polarity_rerun_r13.md
