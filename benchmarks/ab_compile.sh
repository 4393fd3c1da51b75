#!/usr/bin/env bash
# Round 10: default training (blur and gamma included) with and without torch.compile, seed 0,
# 20 minutes each, side by side, each on one core with one torch thread. The inductor cache is
# emptied first, so the compiled run pays the compilation a first run pays. (The logs show the
# flags of the time, `--compile on|off`; the option is now the switch `--compile`.)
#   bash benchmarks/ab_compile.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
rm -rf /tmp/torchinductor_"$(id -un)"
OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r10_compile_off "$M" > /dev/null &
OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r10_compile_on "$M" --compile > /dev/null &
wait
for run in r10_compile_off r10_compile_on; do
    OMP_NUM_THREADS=2 bash benchmarks/eval_sets.sh benchmarks/results/$run.safetensors \
        benchmarks/results/${run}_eval.jsonl other_decide other_report
done
