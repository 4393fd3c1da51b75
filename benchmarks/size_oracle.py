"""How good is the estimated object size? For each image: AP@0.5 with the model's defaults,
with ``--object-size auto`` and with the true median diameter of its labels (the oracle size),
and the estimated diameter against the true one.

    python benchmarks/size_oracle.py MODEL IMAGES_DIR LABELS_DIR

Prints one line per image and AP@0.5 over all images (true/false positives summed, as
`napari-unet evaluate`) for each way of choosing the size.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.metrics import match_counts, summarize_matches
from napari_unet.modelfile import UNetModel
from napari_unet.predict import median_diameter, predict


def main(model_path: str, images: str, labels: str) -> None:
    model = UNetModel.load(model_path)
    ways = {"default": None, "auto": "auto", "oracle": None}
    counts = {w: [] for w in ways}
    ratios = []
    for f in sorted(Path(images).glob("*.tif")):
        image, truth = tifffile.imread(f), tifffile.imread(Path(labels) / f.name)
        true_d = median_diameter(truth)
        line = [f.stem]
        for way, size in ways.items():
            size = true_d if way == "oracle" else size
            settings = PredictConfig(device="cpu", tile=512, object_size=size)
            out = run(predict(model, image, None, settings))
            counts[way].append(match_counts(truth, out.labels, (0.5,)))
            line.append(f"{way} {summarize_matches([counts[way][-1]])['ap@0.5']:.3f}")
            if way == "auto":
                est = next((float(n.split()[3]) for n in out.notes if n.startswith("estimated object size")), None)
                est = est if est is not None else median_diameter(out.labels)
                ratios.append(est / true_d if est and true_d else np.nan)
                line.append(f"size est {est or 0:.1f} true {true_d or 0:.1f}")
        print("  ".join(line), flush=True)
    r = np.array(ratios, float)
    print(f"estimated/true diameter: median {np.nanmedian(r):.2f}, within 1.25x: {np.mean((r > 0.8) & (r < 1.25)):.2f}"
          f" of {len(r)} images")
    for way in ways:
        print(f"{way}: AP@0.5 {summarize_matches(counts[way])['ap@0.5']:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
