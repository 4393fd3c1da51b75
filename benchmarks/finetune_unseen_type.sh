#!/usr/bin/env bash
# Fine-tuning that pays, on an image type the model never saw (issue 7, goal 7):
# train a base model as the default recipe does but without DSB2018's dark-nuclei images
# (brightfield, stained tissue), score it zero-shot on the dark-nuclei test images, fine-tune it
# for FT_MINUTES on 3 dark-nuclei training images, score again (and on the whole test split,
# to see what the fine-tuned model forgot).
#   bash benchmarks/finetune_unseen_type.sh NAME BASE_MINUTES FT_MINUTES [fine-tuning flags...]
# Needs: python benchmarks/make_unseen_type.py bench_data. BASE=MODEL skips the base training
# and its zero-shot scores (other fine-tuning settings from the same base).
# Writes benchmarks/results/NAME_{base_train.log,ft_train.log,scores.jsonl}.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; BASE_MIN=$2; FT_MIN=$3; shift 3
B=${BENCH_DATA:-bench_data}
R=benchmarks/results
NU=.venv/bin/napari-unet
machine="$(nproc) cores, $(lscpu | sed -n 's/Model name: *//p'), torch threads $(.venv/bin/python -c 'import torch; print(torch.get_num_threads())')"
BASE_MODEL=${BASE:-$R/${NAME}_base.safetensors}
if [[ -z "${BASE:-}" ]]; then
    { echo "command: napari-unet train --images $B/dsb_train_bright/images --labels $B/dsb_train_bright/labels --out $BASE_MODEL --mode instance --device cpu --time-limit $BASE_MIN"
      echo "machine: $machine"; } > $R/${NAME}_base_train.log
    $NU train --images $B/dsb_train_bright/images --labels $B/dsb_train_bright/labels --out $BASE_MODEL \
        --mode instance --device cpu --time-limit "$BASE_MIN" --quiet 2>> $R/${NAME}_base_train.log
fi
score() {  # label, model, set
    local json
    json=$($NU evaluate "$2" --images $B/$3/images --labels $B/$3/labels --device cpu --tile 512 --quiet 2>/dev/null)
    .venv/bin/python -c "
import json, sys
d = json.loads(sys.argv[3])
keys = ['ap@0.5', 'ap@0.7', 'ap@0.9', 'precision@0.5', 'recall@0.5']
print(json.dumps({'model': sys.argv[1], 'set': sys.argv[2], 'images': d['images'], **{k: round(d[k], 4) for k in keys}}))
" "$1" "$3" "$json" | tee -a $R/${NAME}_scores.jsonl
}
: > $R/${NAME}_scores.jsonl
if [[ -z "${BASE:-}" ]]; then  # the base model's own scores, once
    score zero-shot $BASE_MODEL dsb_dark_test
    score zero-shot $BASE_MODEL dsb_test
fi
FT=$R/${NAME}_ft.safetensors
rm -f $FT
{ echo "command: napari-unet train --images $B/dsb_dark_tune/images --labels $B/dsb_dark_tune/labels --init $BASE_MODEL --out $FT --mode instance --device cpu --time-limit $FT_MIN $*"
  echo "machine: $machine"; } > $R/${NAME}_ft_train.log
$NU train --images $B/dsb_dark_tune/images --labels $B/dsb_dark_tune/labels --init $BASE_MODEL --out $FT \
    --mode instance --device cpu --time-limit "$FT_MIN" --quiet "$@" 2>> $R/${NAME}_ft_train.log
if [[ -f $FT ]]; then
    score "fine-tuned $FT_MIN min $*" $FT dsb_dark_test
    score "fine-tuned $FT_MIN min $*" $FT dsb_test
else
    echo "fine-tuning kept the starting model (no file written)" | tee -a $R/${NAME}_scores.jsonl
fi
