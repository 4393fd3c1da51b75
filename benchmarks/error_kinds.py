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
from napari_unet.modelfile import UNetModel  # noqa: E402
from napari_unet.predict import predict  # noqa: E402


def overlaps(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(true ids + 1, predicted ids + 1) pixel counts, 0 = background."""
    t, p = true.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    nt, npred = int(t.max()) + 1, int(p.max()) + 1
    return np.bincount(t * npred + p, minlength=nt * npred).reshape(nt, npred)


def causes(true: np.ndarray, pred: np.ndarray) -> Counter:
    o = overlaps(true, pred)
    o = o[np.r_[0, np.flatnonzero(o.sum(1)[1:]) + 1]][:, np.r_[0, np.flatnonzero(o.sum(0)[1:]) + 1]]  # ids in use
    area_t, area_p = o.sum(1), o.sum(0)
    union = area_t[:, None] + area_p[None, :] - o
    iou = np.where(union > 0, o / np.maximum(union, 1), 0.0)
    iou[0, :] = iou[:, 0] = 0
    out = Counter()
    matched_t = (iou[1:] >= 0.5).any(1)
    matched_p = (iou[:, 1:] >= 0.5).any(0)
    out["true objects"] += len(matched_t)
    out["matched"] += int(matched_t.sum())
    share = o[1:, 1:] / np.maximum(area_t[1:, None], 1)  # of each true object, per predicted object
    holds = share >= 0.5  # the predicted object holds most of the true object
    for i in np.flatnonzero(~matched_t):
        row = share[i]
        j = int(np.argmax(row)) if row.size else -1
        if row.size and row[j] >= 0.5 and holds[:, j].sum() >= 2:
            out["merged"] += 1
        elif row.size and (row >= 0.2).sum() >= 2:
            out["split"] += 1
        elif row.sum() < 0.5 if row.size else True:
            out["missed"] += 1
        else:
            out["bad outline"] += 1
    on_true = o[1:, 1:].sum(0) / np.maximum(area_p[1:], 1)
    out["spurious"] += int(((~matched_p) & (on_true < 0.5)).sum())
    out["predicted objects"] += len(matched_p)
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
