#!/usr/bin/env bash
# Round 18, second A/B: on a CPU that trains in float32 (most laptops; here forced with --fp32
# on the Zen 4), base width 16 against the float32 default 8. Seeds 10 and 11; each seed's two
# arms side by side (one core and one torch thread each, 20 minutes).
#   bash benchmarks/ab_width_fp32.sh [MINUTES]
# Why: width 8 became the float32 default in round 5 (Zen 3), before the blur and gamma
# augmentation of round 10, on the DSB test split and one run per width on other labs' nuclei.
# On this Zen 4 in bfloat16 (ab_width_zen4.sh), width 16 kept other labs' nuclei far better
# (other_decide +0.074 over width 8) at 2.4x the step cost. In float32 here a width-16 step
# costs 3.0x a width-8 one (one thread: 0.473 / 0.156 s), about the Zen 3's ratio.
# Rule, written before these runs: width 16 becomes the float32 default if the two-seed mean
# AP@0.5 on other_decide rises by >= 0.03 with both seeds rising, and the mean on each run's
# validation images (dsb_val_sN, the same images in both arms of a seed) falls by no more
# than 0.01. DSB test, its 5 bright-background images and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
R=benchmarks/results
# As run in round 18 this loop had no val_folder.py step (ab_width_zen4.sh had made the folders);
# all four arms of each seed held out the same 70 images (checked from the model files).
for s in 10 11; do
    bash benchmarks/ab_pair.sh "$M" $s r18_fp32_w8_s$s "--fp32" r18_fp32_w16_s$s "--fp32 --base-width 16"
done
.venv/bin/python benchmarks/ab_table.py r18_fp32_w8_s10 r18_fp32_w16_s10 r18_fp32_w8_s11 r18_fp32_w16_s11 > $R/ab_width_fp32_r18.md
