"""AP@0.5 of one evaluation per kind of image: where on DSB2018 the errors are.

    napari-unet evaluate MODEL --images bench_data/dsb_test/images --labels bench_data/dsb_test/labels \\
        --device cpu --tile 512 --quiet --report /tmp/ev
    python benchmarks/ap_by_type.py /tmp/ev/metrics.json bench_data/dsb_test [OUT.md]

The kind of each image comes from its ground truth only (never from the prediction):
- contrast: "bright nuclei" (fluorescence: objects brighter than the background) or "dark nuclei"
  (brightfield and stained tissue: objects darker), by the median intensity inside and outside
  the labelled objects;
- size: the median equivalent diameter of its labelled objects, in three bins.
Counts are summed per group before dividing (AP = TP / (TP + FP + FN)), as for the whole set.
StarDist's DSB2018 figures (Schmidt et al. 2018) are on a fluorescence-only subset; the
"bright nuclei" row is the closer comparison.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import tifffile


def image_kind(image: np.ndarray, labels: np.ndarray) -> tuple[str, float]:
    img = image if image.ndim == 2 else image[..., 0] if image.shape[-1] <= 4 else image[0]
    lab = labels if labels.ndim == 2 else labels[0]
    inside, outside = lab > 0, lab == 0
    contrast = "bright nuclei" if np.median(img[inside]) >= np.median(img[outside]) else "dark nuclei"
    ids, areas = np.unique(lab[inside], return_counts=True)
    diameter = float(np.median(2 * np.sqrt(areas / np.pi))) if ids.size else 0.0
    return contrast, diameter


def size_bin(d: float) -> str:
    return "diameter < 15 px" if d < 15 else "diameter 15-30 px" if d < 30 else "diameter >= 30 px"


def _file(folder: Path, name: str) -> Path:
    """The image file of a report entry (reports name images by their stem)."""
    return folder / name if (folder / name).exists() else next(folder.glob(f"{name}.*"))


def main(metrics: str, data: str, out: str | None = None) -> None:
    per_image = json.loads(Path(metrics).read_text())["per_image"]
    data = Path(data)
    groups: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0])  # tp, fp, fn, images
    for name, m in per_image.items():
        image = tifffile.imread(_file(data / "images", name))
        labels = tifffile.imread(_file(data / "labels", name))
        contrast, diameter = image_kind(image, labels)
        for key in ("all", contrast, size_bin(diameter), f"{contrast}, {size_bin(diameter)}"):
            g = groups[key]
            g[0] += m["tp@0.5"]
            g[1] += m["fp@0.5"]
            g[2] += m["fn@0.5"]
            g[3] += 1
    lines = ["| images | n | true objects | AP@0.5 | precision | recall |", "|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k != "all", "," in k, k)):
        tp, fp, fn, n = groups[key]
        ap = tp / max(tp + fp + fn, 1)
        lines.append(f"| {key} | {n} | {tp + fn} | {ap:.3f} | {tp / max(tp + fp, 1):.3f} | {tp / max(tp + fn, 1):.3f} |")
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
