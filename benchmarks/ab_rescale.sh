#!/usr/bin/env bash
# Round 12 A/B: training at the images' own scale (the default) against training with every
# image resized so that its nuclei are 24 px across (--rescale-objects 24, as Cellpose trains
# at one diameter; prediction then estimates each image's object size, --object-size auto).
# Two seeds, 20 minutes each, two runs side by side, each on one core with one torch thread.
#   bash benchmarks/split_other_nuclei.sh && bash benchmarks/ab_rescale.sh [MINUTES]
# Decision rule (fixed before any score was seen): --rescale-objects 24 becomes the default for
# 2D instance training if, averaged over the two seeds, AP@0.5 on the validation images at
# their own size (dsb_val: the images each run held out, the same for both arms of a seed;
# each model predicts with its own defaults) rises by >= 0.01 and AP@0.5 on other_decide falls
# by no more than 0.01. (The tuned validation AP in the training log is not comparable: the
# rescaled arm validates at the learned size.) DSB test and other_report are only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-20}
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
val_folder() {  # model, folder: links to the validation images listed in the model file
    .venv/bin/python - "$1" "$2" "$B/dsb_train" <<'PY'
import sys
from pathlib import Path
from napari_unet.modelfile import UNetModel
model, out, train = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
names = UNetModel.load(model).training["validation_images"]
for kind in ("images", "labels"):
    (out / kind).mkdir(parents=True, exist_ok=True)
    for n in names:
        dst = out / kind / f"{n}.tif"
        if not dst.exists():
            dst.symlink_to((train / kind / f"{n}.tif").resolve())
other = UNetModel.load(model.replace("_base_", "_rescale24_")).training["validation_images"]
assert sorted(other) == sorted(names), "the two arms held out different validation images"
print(f"{len(names)} validation images in {out}")
PY
}
pair() {  # seed
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 0 bash benchmarks/accuracy_cpu.sh r12_base_s$1 "$M" --seed "$1" > /dev/null &
    OMP_NUM_THREADS=1 QUICK=1 taskset -c 1 bash benchmarks/accuracy_cpu.sh r12_rescale24_s$1 "$M" --seed "$1" --rescale-objects 24 > /dev/null &
    wait
}
score() {  # seed
    val_folder $R/r12_base_s$1.safetensors $B/dsb_val_s$1
    OMP_NUM_THREADS=1 taskset -c 0 bash benchmarks/eval_sets.sh $R/r12_base_s$1.safetensors \
        $R/r12_base_s$1_eval.jsonl dsb_val_s$1 other_decide other_report > /dev/null &
    OMP_NUM_THREADS=1 taskset -c 1 bash benchmarks/eval_sets.sh $R/r12_rescale24_s$1.safetensors \
        $R/r12_rescale24_s$1_eval.jsonl dsb_val_s$1 other_decide other_report > /dev/null &
    wait
}
pair 0
pair 1
score 0
score 1
