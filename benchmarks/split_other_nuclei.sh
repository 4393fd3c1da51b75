#!/usr/bin/env bash
# Split other labs' nuclei slices (make_other_nuclei_2d.py) by source volume into a half that
# decides (bbbc050 embryo_8cell + gonuclear 1135) and a half that is only reported (embryo_16cell
# + 1136), 16 slices each: a choice made on the first half is then scored on volumes it never saw.
#   bash benchmarks/split_other_nuclei.sh [bench_data]
set -euo pipefail
B=${1:-bench_data}
for half in other_decide other_report; do rm -rf "$B/$half"; mkdir -p "$B/$half/images" "$B/$half/labels"; done
for d in images labels; do
    cp "$B"/other_nuclei_2d/$d/bbbc050_embryo_8cell_* "$B"/other_nuclei_2d/$d/gonuclear_1135_* "$B/other_decide/$d/"
    cp "$B"/other_nuclei_2d/$d/bbbc050_embryo_16cell_* "$B"/other_nuclei_2d/$d/gonuclear_1136_* "$B/other_report/$d/"
done
echo "other_decide: $(ls "$B/other_decide/images" | wc -l) slices, other_report: $(ls "$B/other_report/images" | wc -l) slices"
