#!/usr/bin/env bash
# Round 16, second A/B: training patches drawn per image in proportion to the geometric mean of
# its area and its number of objects (--sample-by both), seeds 6 and 7 side by side (one core and
# one torch thread each, 20 minutes), against this session's --sample-by area runs of the same
# seeds (benchmarks/ab_sample_by.sh, run just before on the same machine; their step counts are
# reported beside these so that the machine's speed can be compared).
#   bash benchmarks/ab_sample_both.sh [MINUTES]
# Why: --sample-by objects lost the 5 bright-background DSB test images entirely in both seeds
# (their 6 training images, large with few nuclei, fell from 11 % of the patches to 3.2 %) and
# scored -0.0125 on validation, but +0.11 on other_report in both seeds. 'both' keeps 6.5 % for
# those images and gives the small-nuclei images 21 % (area: 16.5 %, objects: 25.7 %).
# Rule, written before these runs: --sample-by both becomes the instance-mode default if the
# two-seed mean AP@0.5 on each run's validation images (dsb_val_sN) rises by >= 0.01 over
# r16_area_sN, other_decide falls by no more than 0.01, and the bright DSB test images
# (dsb_test_bright) fall by no more than 0.05 on average.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
R=benchmarks/results
for s in 6 7; do
    OMP_NUM_THREADS=1 QUICK=1 taskset -c $((s - 6)) bash benchmarks/accuracy_cpu.sh r16_both_s$s "$M" --seed $s --sample-by both > /dev/null &
done
wait
for s in 6 7; do
    bash benchmarks/ab_eval.sh r16_both_s$s $s $((s - 6)) &
done
wait
.venv/bin/python benchmarks/ab_table.py r16_area_s6 r16_objects_s6 r16_both_s6 r16_area_s7 r16_objects_s7 r16_both_s7 > $R/ab_sample_by_r16.md
