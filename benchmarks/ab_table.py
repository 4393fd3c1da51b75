"""A markdown table of finished runs: tuned validation AP@0.5 (stored in the model file) and
AP@0.5 on each scored set (NAME_eval.jsonl, last line per set), one row per run.

    python benchmarks/ab_table.py r10_base_s0 r10_blurgamma_s0 ...   # names under benchmarks/results
"""

import json
import sys
from pathlib import Path

from napari_unet.modelfile import UNetModel

RESULTS = Path(__file__).parent / "results"


def row(name: str) -> tuple[dict, float]:
    scores = {}
    for line in (RESULTS / f"{name}_eval.jsonl").read_text().splitlines():
        d = json.loads(line)
        scores[d["set"]] = d["ap@0.5"]
    model = UNetModel.load(RESULTS / f"{name}.safetensors")
    return scores, model.postprocessing.get("validation_ap@0.5", float("nan"))


def main(names: list[str]) -> None:
    rows = {n: row(n) for n in names}
    sets = list(dict.fromkeys(s for scores, _ in rows.values() for s in scores))
    print("| run | validation (tuned) | " + " | ".join(sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for n, (scores, val) in rows.items():
        cells = [f"{scores[s]:.3f}" if s in scores else "" for s in sets]
        print(f"| {n} | {val:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
