"""Membrane post-processing variants of a trained ISBI model, on its validation slices and on
the test slices 25-29 (adapted Rand error of the regions between membranes; lower is better).

    python benchmarks/membrane_postprocessing.py MODEL [BENCH_DATA]

Variants: the threshold alone (what prediction did before closed membranes), and watershed
lines from seeds below a threshold (the shipped ``close_membranes``), with smoothing and a
minimum seed size, and from h-minima. Choose on the validation column only; the test column
is reported, never tuned on. The probabilities are cached next to the model (``.probs.npz``).
"""

import os
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error
from skimage.morphology import h_minima
from skimage.segmentation import watershed

from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict


def probabilities(model, folder: Path, names=None):
    out = []
    for f in sorted((folder / "images").glob("*.tif")):
        if names is not None and f.stem not in names:
            continue
        labels = tifffile.imread(folder / "labels" / f.name)
        p = run(predict(model, tifffile.imread(f), settings=PredictConfig(device="cpu"), probabilities=True))
        out.append((labels, p.probabilities[1]))
    return out


def error(labels, cells):
    true, _ = ndi.label(labels == 0)  # 1 = membrane
    return adapted_rand_error(true, cells)[0]


def thresholded(p, t):
    return ndi.label(p <= t)[0]


def lines(p, seed, sigma=0.0, min_seed=0, h=None):
    q = ndi.gaussian_filter(p, sigma) if sigma else p
    seeds = ndi.label(h_minima(q, h) if h else q < seed)[0]
    if min_seed:
        small = np.bincount(seeds.ravel()) < min_seed
        small[0] = False
        seeds[small[seeds]] = 0
    return watershed(q, seeds, watershed_line=True)


def main(model_path: str, data: str = "bench_data") -> None:
    model = UNetModel.load(model_path)
    cache = Path(model_path + ".probs.npz")
    if cache.exists():
        d = np.load(cache, allow_pickle=True)
        val, test = list(d["val"]), list(d["test"])
    else:
        val = probabilities(model, Path(data) / "isbi_train", set(model.training["validation_images"]))
        test = probabilities(model, Path(data) / "isbi_test")
        np.savez(cache, val=np.array(val, dtype=object), test=np.array(test, dtype=object))

    def score(sets, f):
        return float(np.mean([error(lab, f(p)) for lab, p in sets]))

    variants = [(f"threshold {t:.2f}", lambda p, t=t: thresholded(p, t)) for t in np.arange(0.3, 0.91, 0.05)]
    variants += [(f"lines, seeds < {s} sigma {g} min seed {m}", lambda p, s=s, g=g, m=m: lines(p, s, g, m))
                 for s in (0.1, 0.2, 0.3, 0.4, 0.5) for g in (0, 1, 2) for m in (0, 20)]
    variants += [(f"lines, h-minima {h} sigma {g}", lambda p, h=h, g=g: lines(p, 0, g, h=h))
                 for h in (0.05, 0.1, 0.2, 0.3) for g in (1, 2)]
    print(f"{os.path.basename(model_path)}: {len(val)} validation, {len(test)} test slices")
    for name, f in variants:
        print(f"{name:40s} validation {score(val, f):.4f}  test {score(test, f):.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
