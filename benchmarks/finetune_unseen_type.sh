#!/usr/bin/env bash
# Fine-tuning that pays, on an image type the model never saw (issue 7, goal 7):
# train a base model as the default recipe does but without DSB2018's dark-nuclei images
# (brightfield, stained tissue), score it zero-shot on the dark-nuclei test images, fine-tune it
# for FT_MINUTES on 3 dark-nuclei training images, score again (and on the whole test split,
# to see what the fine-tuned model forgot).
#   bash benchmarks/finetune_unseen_type.sh NAME BASE_MINUTES FT_MINUTES [fine-tuning flags...]
# Needs: python benchmarks/make_unseen_type.py bench_data. BASE=MODEL skips the base training
# and its zero-shot scores (other fine-tuning settings from the same base). BASE_FLAGS="..."
# adds flags to the base training only (e.g. --polarity auto; a fine-tune keeps its start's).
# Writes benchmarks/results/NAME_{base_train.log,ft_train.log,scores.jsonl}.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; BASE_MIN=$2; FT_MIN=$3; shift 3
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
NU=.venv/bin/napari-unet
BASE_MODEL=${BASE:-$R/${NAME}_base.safetensors}
if [[ -z "${BASE:-}" ]]; then
    { echo "command: napari-unet train --images $B/dsb_train_nodark/images --labels $B/dsb_train_nodark/labels --out $BASE_MODEL --mode instance --device cpu --time-limit $BASE_MIN ${BASE_FLAGS:-}"
      bash benchmarks/machine.sh; } > $R/${NAME}_base_train.log
    $NU train --images $B/dsb_train_nodark/images --labels $B/dsb_train_nodark/labels --out $BASE_MODEL \
        --mode instance --device cpu --time-limit "$BASE_MIN" --quiet ${BASE_FLAGS:-} 2>> $R/${NAME}_base_train.log
fi
score() { bash benchmarks/eval_sets.sh "$1" $R/${NAME}_scores.jsonl dsb_dark_test dsb_test; }  # model
: > $R/${NAME}_scores.jsonl
if [[ -z "${BASE:-}" ]]; then  # the base model's own scores, once
    score $BASE_MODEL
fi
FT=$R/${NAME}_ft.safetensors
rm -f $FT
{ echo "command: napari-unet train --images $B/dsb_dark_tune/images --labels $B/dsb_dark_tune/labels --init $BASE_MODEL --out $FT --mode instance --device cpu --time-limit $FT_MIN $*"
  bash benchmarks/machine.sh; } > $R/${NAME}_ft_train.log
$NU train --images $B/dsb_dark_tune/images --labels $B/dsb_dark_tune/labels --init $BASE_MODEL --out $FT \
    --mode instance --device cpu --time-limit "$FT_MIN" --quiet "$@" 2>> $R/${NAME}_ft_train.log
if [[ -f $FT ]]; then
    score $FT
else
    echo "fine-tuning kept the starting model (no file written)" | tee -a $R/${NAME}_scores.jsonl
fi
