"""What the post-processing tuning at the end of instance training costs on this machine.

    python benchmarks/tuning_cost.py MODEL [IMAGES_DIR LABELS_DIR] [N]

Takes the first N (default 12) validation images named in the model file, predicts them,
keeps their top-left 256x256 window (as training validates on 256x256 windows) and times
``instances.tune`` over the default grid, then the parts of one watershed setting. The time
limit of training reserves time for this tuning from these figures (training.py, _tail_seconds).
"""

import os
import sys
import time

import tifffile
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from napari_unet import instances as I
from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict


def main(model_path, images="bench_data/dsb_train/images", labels="bench_data/dsb_train/labels", n=12):
    model = UNetModel.load(model_path)
    probs, truths = [], []
    for name in model.training["validation_images"][: int(n)]:
        p = run(predict(model, tifffile.imread(f"{images}/{name}.tif"), settings=PredictConfig(device="cpu"),
                        probabilities=True)).probabilities
        probs.append(p[:, :256, :256].copy())
        truths.append(tifffile.imread(f"{labels}/{name}.tif")[:256, :256].copy())
    mpx = sum(p[0].size for p in probs) / 1e6
    grid = I.grid_for(probs[0].shape[0])
    settings = len(grid["interior_threshold"]) * len(grid["foreground_threshold"]) * len(grid["seed_dynamic"])
    t = time.perf_counter()
    post, ap = I.tune(probs, truths)
    dt = time.perf_counter() - t
    print(f"machine: {os.cpu_count()} cores; {len(probs)} windows, {mpx:.2f} Mpx, {settings} settings")
    print(f"tune: {dt:.2f} s = {dt / settings / mpx:.3f} s per setting per Mpx; chose {post} (AP@0.5 {ap:.3f})")
    p = probs[0]
    h = p[1]
    parts = [("gaussian", lambda: ndi.gaussian_filter(h, 1.0)),
             ("h-maxima (once per dynamic)", lambda: h_maxima(ndi.gaussian_filter(h, 1.0), 0.1)),
             ("watershed", lambda: watershed(-h, ndi.label(h > 0.6)[0], mask=p[0] > 0.5)),
             ("watershed + merge_enclosed", lambda: I.merge_enclosed(watershed(-h, ndi.label(h > 0.6)[0], mask=p[0] > 0.5)))]
    for name, f in parts:
        t = time.perf_counter()
        for _ in range(10):
            f()
        ms = (time.perf_counter() - t) / 10 * 1000
        print(f"{name}: {ms:.1f} ms per 256x256 window = {ms / 1000 / 0.065536:.2f} s per Mpx")


if __name__ == "__main__":
    main(*sys.argv[1:])
