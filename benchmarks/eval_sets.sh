#!/usr/bin/env bash
# Score one model on held-out sets, one JSON line per set and setting.
#   bash benchmarks/eval_sets.sh MODEL OUT.jsonl SET[:FLAGS] ...
# SET is a folder under bench_data with images/ and labels/; FLAGS (after ':', spaces as ',')
# are passed to `napari-unet evaluate`, e.g.  dsb_test  dsb_test:--object-size,auto  other_nuclei_2d:--tta
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; OUT=$2; shift 2
B=${BENCH_DATA:-bench_data}
for spec in "$@"; do
    set_name=${spec%%:*}; flags=""
    [[ "$spec" == *:* ]] && flags=${spec#*:} && flags=${flags//,/ }
    t0=$(date +%s.%N)
    json=$(.venv/bin/napari-unet evaluate "$MODEL" --images $B/$set_name/images --labels $B/$set_name/labels \
        --device cpu --tile 512 --quiet $flags 2>/dev/null)
    t1=$(date +%s.%N)
    .venv/bin/python - "$MODEL" "$set_name" "$flags" "$t0" "$t1" "$json" >> "$OUT" <<'PY'
import json, sys
model, name, flags, t0, t1, d = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), json.loads(sys.argv[6])
keys = ["ap@0.5", "ap@0.6", "ap@0.7", "ap@0.8", "ap@0.9", "precision@0.5", "recall@0.5", "f1@0.5"]
print(json.dumps({"model": model, "set": name, "flags": flags, "seconds": round(t1 - t0, 1), "images": d["images"],
                  **{k: None if d[k] is None else round(d[k], 4) for k in keys}}))
PY
    tail -1 "$OUT"
done
