#!/usr/bin/env bash
# Round 18: base width 8 against the default 16 on a CPU that computes bfloat16 natively with
# AVX512-BF16 but has no AMX (AMD Zen 4). Two new seeds (10 and 11); each seed's two arms side
# by side (one core and one torch thread each, 20 minutes), so that both arms of a seed share
# the machine's speed of the moment.
#   bash benchmarks/ab_width_zen4.sh [MINUTES]
# Why: width 16 became the bf16 default on a Xeon with AMX (round 6), where a width-16 step
# costs 1.4x a width-8 one (0.144 / 0.103 s). On this Zen 4 (one thread, 8 x 128^2 patches,
# bf16, channels-last; round 18) it costs 2.4x (0.269 / 0.112 s; two threads 0.144 / 0.070 s):
# the ratio of a float32 CPU, where width 8 won by measurement (round 5). Round 17's width-16
# runs here were still improving at their last validation.
# Rule, written before these runs: on CPUs with AVX512-BF16 and no AMX, width 8 becomes the
# default if the two-seed mean AP@0.5 on each run's validation images (dsb_val_sN, the same
# images in both arms of a seed) rises by >= 0.01, and other_decide falls by no more than 0.01.
# DSB test, its 5 bright-background images and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
R=benchmarks/results
grep -q avx512_bf16 /proc/cpuinfo || { echo "this A/B is for a CPU with AVX512-BF16" >&2; exit 1; }
! grep -q amx_tile /proc/cpuinfo || { echo "this A/B is for a CPU without AMX" >&2; exit 1; }
for s in 10 11; do
    bash benchmarks/ab_pair.sh "$M" $s r18_w16_s$s "" r18_w8_s$s "--base-width 8"
done
.venv/bin/python benchmarks/ab_table.py r18_w16_s10 r18_w8_s10 r18_w16_s11 r18_w8_s11 > $R/ab_width_zen4_r18.md
