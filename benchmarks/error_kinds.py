"""What kind of errors a model makes on a held-out set: missed, merged, split, spurious objects.

    python benchmarks/error_kinds.py MODEL bench_data/dsb_test [--tta] [OUT.md]

Every true object that is not matched at IoU >= 0.5 gets one cause, from the overlaps:
- *merged*: most of it lies in one predicted object that also holds most of another true object;
- *split*: two or more predicted objects each cover at least 20 % of it;
- *missed*: less than half of it is predicted foreground;
- *bad outline*: the rest (found, one predicted object, but IoU < 0.5).
Every unmatched predicted object is *spurious* when less than half of it lies on true objects,
else a by-product of the causes above. Counts are over all images, and per kind of image
(bright or dark nuclei, see ap_by_type.py).
"""

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from ap_by_type import image_kind  # noqa: E402

from napari_unet._generators import run  # noqa: E402
from napari_unet.config import PredictConfig  # noqa: E402
from napari_unet.metrics import overlap_counts  # noqa: E402
from napari_unet.modelfile import UNetModel  # noqa: E402
from napari_unet.predict import predict  # noqa: E402


def causes(true: np.ndarray, pred: np.ndarray) -> Counter:
    inter, area_t, area_p, _, _ = overlap_counts(true, pred)
    iou = inter / np.maximum(area_t[:, None] + area_p[None, :] - inter, 1)
    matched_t, matched_p = (iou >= 0.5).any(1), (iou >= 0.5).any(0)
    share = inter / np.maximum(area_t[:, None], 1)  # of each true object, per predicted object
    holds = (share >= 0.5).sum(0)  # true objects that each predicted object holds most of
    out = Counter({"true objects": len(area_t), "matched": int(matched_t.sum()), "predicted objects": len(area_p)})
    for row in share[~matched_t]:
        if row.size and row.max() >= 0.5 and holds[row.argmax()] >= 2:
            out["merged"] += 1
        elif (row >= 0.2).sum() >= 2:
            out["split"] += 1
        elif row.sum() < 0.5:
            out["missed"] += 1
        else:
            out["bad outline"] += 1
    on_true = inter.sum(0) / np.maximum(area_p, 1)
    out["spurious"] += int(((~matched_p) & (on_true < 0.5)).sum())
    return out


def main(model_path: str, data: str, *rest: str) -> None:
    tta = "--tta" in rest
    out_path = next((r for r in rest if not r.startswith("--")), None)
    model = UNetModel.load(model_path)
    data = Path(data)
    totals: dict[str, Counter] = defaultdict(Counter)
    for f in sorted((data / "images").glob("*.tif")):
        image = tifffile.imread(f)
        true = tifffile.imread(data / "labels" / f.name)
        pred = run(predict(model, image, None, PredictConfig(device="cpu", tile=512, tta=tta))).labels
        c = causes(true, pred)
        kind, _ = image_kind(image, true)
        totals["all"] += c
        totals[kind] += c
    keys = ["true objects", "matched", "merged", "split", "missed", "bad outline", "predicted objects", "spurious"]
    lines = ["| images | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for group in sorted(totals, key=lambda g: g != "all"):
        lines.append(f"| {group} | " + " | ".join(str(totals[group][k]) for k in keys) + " |")
    text = "\n".join(lines)
    print(text)
    if out_path:
        Path(out_path).write_text(f"python benchmarks/error_kinds.py {model_path} {data} {' '.join(rest)}\n\n{text}\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
