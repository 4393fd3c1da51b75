"""What kind of error each missed object is: the objects AP@0.5 counts as false negatives, sorted
into missed (no prediction covers 20 % of it), merged (its best prediction also covers 30 % of
another true object), split (two or more predictions each cover 20 % of it) and shape (one
prediction, IoU below 0.5), per group of images by median object area (small < 150 px <= mid
< 600 px <= large) and background (dark: mean intensity <= 100).

    python benchmarks/error_kinds.py MODEL IMAGES_DIR LABELS_DIR

Prediction with the model's defaults (tile 512, no object size), as `napari-unet evaluate`.
"""

import collections
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict

KINDS = ("true", "found", "missed", "merged", "split", "shape")


def kinds(truth: np.ndarray, pred: np.ndarray) -> dict:
    n_t, n_p = int(truth.max()) + 1, int(pred.max()) + 1
    inter = np.bincount(truth.ravel().astype(np.int64) * n_p + pred.ravel(), minlength=n_t * n_p).reshape(n_t, n_p)
    t_area, p_area = inter.sum(1), inter.sum(0)
    out = dict.fromkeys(KINDS, 0)
    for t in range(1, n_t):
        if t_area[t] == 0:
            continue
        out["true"] += 1
        row = inter[t, 1:]
        if row.sum() < 0.2 * t_area[t]:
            out["missed"] += 1
            continue
        p = 1 + int(np.argmax(row))
        if inter[t, p] / (t_area[t] + p_area[p] - inter[t, p]) >= 0.5:
            out["found"] += 1
        elif any(inter[u, p] > 0.3 * t_area[u] for u in range(1, n_t) if u != t and t_area[u]):
            out["merged"] += 1
        elif (row >= 0.2 * t_area[t]).sum() >= 2:
            out["split"] += 1
        else:
            out["shape"] += 1
    return out


def main(model_path: str, images: str, labels: str) -> None:
    model = UNetModel.load(model_path)
    groups = collections.defaultdict(collections.Counter)
    for path in sorted(Path(images).glob("*.tif*")):
        image, truth = tifffile.imread(path), tifffile.imread(Path(labels) / path.name)
        areas = np.bincount(truth.ravel())[1:]
        area = np.median(areas[areas > 0])
        size = "small" if area < 150 else "mid" if area < 600 else "large"
        group = f"{'bright' if image.mean() > 100 else 'dark'} background, {size} objects"
        pred = run(predict(model, image, settings=PredictConfig(device="cpu", tile=512))).labels
        groups[group].update(kinds(truth, pred))
        groups[group]["images"] += 1
    print(f"{model_path} on {images}")
    print("| images | n | true objects | found (IoU >= 0.5) | missed | merged | split | shape |")
    print("|---|---|---|---|---|---|---|---|")
    total = collections.Counter()
    for group in sorted(groups):
        total.update(groups[group])
        g = groups[group]
        print(f"| {group} | {g['images']} | " + " | ".join(str(g[k]) for k in KINDS) + " |")
    print(f"| all | {total['images']} | " + " | ".join(str(total[k]) for k in KINDS) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
