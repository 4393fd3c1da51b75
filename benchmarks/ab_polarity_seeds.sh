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
val_folder() {  # seed: links to the validation images listed in both arms' model files
    .venv/bin/python - "$R/r14_asis_s$1.safetensors" "$R/r14_polarity_s$1.safetensors" "$B/dsb_val_s$1" "$B/dsb_train" <<'PY'
import sys
from pathlib import Path
from napari_unet.modelfile import UNetModel
a, b, out, train = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
names = UNetModel.load(a).training["validation_images"]
assert sorted(UNetModel.load(b).training["validation_images"]) == sorted(names), "the arms held out different images"
for kind in ("images", "labels"):
    (out / kind).mkdir(parents=True, exist_ok=True)
    for n in names:
        dst = out / kind / f"{n}.tif"
        if not dst.exists():
            dst.symlink_to((train / kind / f"{n}.tif").resolve())
print(f"{len(names)} validation images in {out}")
PY
}
for s in 2 3; do
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r14_asis_s$s "$M" --seed $s --polarity as-is > /dev/null &
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r14_polarity_s$s "$M" --seed $s --polarity auto > /dev/null &
    wait
    val_folder $s
    OMP_NUM_THREADS=1 taskset -c 0 bash benchmarks/eval_sets.sh $R/r14_asis_s$s.safetensors \
        $R/r14_asis_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
    OMP_NUM_THREADS=1 taskset -c 1 bash benchmarks/eval_sets.sh $R/r14_polarity_s$s.safetensors \
        $R/r14_polarity_s${s}_eval.jsonl dsb_val_s$s other_decide other_report dsb_test_bright > /dev/null &
    wait
done
.venv/bin/python benchmarks/ab_table.py r13_asis_s0 r13_polarity_s0 r13_asis_s1 r13_polarity_s1 \
    r14_asis_s2 r14_polarity_s2 r14_asis_s3 r14_polarity_s3 > $R/ab_polarity_seeds_r14.md
