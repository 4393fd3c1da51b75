#!/usr/bin/env bash
# Round 14: --polarity auto against as-is with two more seeds (2 and 3), each seed's two arms
# side by side (one core and one torch thread each, 20 minutes), so that both arms of a seed
# share the machine's speed of the moment. Together with round 13's same-session pairs
# (r13_asis_s{0,1}, r13_polarity_s{0,1}) this makes four seeds.
#   bash benchmarks/ab_polarity_seeds.sh [MINUTES]
# Rules, written before these runs:
#  1. Default: --polarity auto becomes the instance-mode default if the four-seed mean AP@0.5 on
#     each run's validation images (dsb_val_sN, the same images in both arms of a seed) rises
#     by >= 0.01, and other_decide falls by no more than 0.01.
#  2. Question left open by round 13 (other labs' nuclei gained in both of its seeds, though the
#     inversion never touches those fluorescence images): the gain counts as reproduced only if
#     other_decide rises by >= 0.02 in BOTH new seeds; otherwise it is recorded as seed noise.
#  DSB test, its 5 bright images and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
for s in 2 3; do
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r14_asis_s$s "$M" --seed $s --polarity as-is > /dev/null &
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r14_polarity_s$s "$M" --seed $s --polarity auto > /dev/null &
    wait
    .venv/bin/python benchmarks/val_folder.py $B/dsb_val_s$s $B/dsb_train $R/r14_asis_s$s.safetensors $R/r14_polarity_s$s.safetensors
    OMP_NUM_THREADS=1 taskset -c 0 bash benchmarks/eval_sets.sh $R/r14_asis_s$s.safetensors \
        $R/r14_asis_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
    OMP_NUM_THREADS=1 taskset -c 1 bash benchmarks/eval_sets.sh $R/r14_polarity_s$s.safetensors \
        $R/r14_polarity_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
    wait
done
.venv/bin/python benchmarks/ab_table.py r13_asis_s0 r13_polarity_s0 r13_asis_s1 r13_polarity_s1 \
    r14_asis_s2 r14_polarity_s2 r14_asis_s3 r14_polarity_s3 > $R/ab_polarity_seeds_r14.md
