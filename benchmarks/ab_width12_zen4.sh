#!/usr/bin/env bash
# Round 18, second A/B: base width 12 against the default 16 on a CPU with AVX512-BF16 and no
# AMX (AMD Zen 4), seeds 10 and 11, the two width-12 runs side by side (one core and one torch
# thread each, 20 minutes). Their width-16 arms are those of benchmarks/ab_width_zen4.sh (same
# seeds, same machine, each beside one other 20-minute run, as here).
#   bash benchmarks/ab_width12_zen4.sh [MINUTES]
# Why: width 8 (ab_width_zen4.sh) gained on DSB2018 (validation images +0.010, test +0.018) and
# lost other labs' nuclei (other_decide -0.074), so it failed its rule. Width 12 lies between
# in cost and capacity.
# Rule, written before these runs: on CPUs with AVX512-BF16 and no AMX, width 12 becomes the
# default if the two-seed mean AP@0.5 on each run's validation images (dsb_val_sN) rises by
# >= 0.01 over the width-16 arms, and other_decide falls by no more than 0.01.
# DSB test, its 5 bright-background images and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
grep -q avx512_bf16 /proc/cpuinfo || { echo "this A/B is for a CPU with AVX512-BF16" >&2; exit 1; }
! grep -q amx_tile /proc/cpuinfo || { echo "this A/B is for a CPU without AMX" >&2; exit 1; }
OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r18_w12_s10 "$M" --seed 10 --base-width 12 > /dev/null &
OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r18_w12_s11 "$M" --seed 11 --base-width 12 > /dev/null &
wait
bash benchmarks/ab_eval.sh r18_w12_s10 10 0 &
bash benchmarks/ab_eval.sh r18_w12_s11 11 1 &
wait
.venv/bin/python benchmarks/ab_table.py r18_w16_s10 r18_w8_s10 r18_w12_s10 r18_w16_s11 r18_w8_s11 r18_w12_s11 > $R/ab_width12_zen4_r18.md
