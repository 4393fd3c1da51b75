"""Seed smoothing that follows the object size of each image, on cached probabilities.

    python benchmarks/seed_smoothing.py K VAL_CACHE.npz [OTHER_CACHE.npz ...]

The watershed's height (the predicted distance) is smoothed by a Gaussian of sigma 1 pixel
before its h-maxima become seeds. Here sigma = max(1, K x the image's object diameter), the
diameter estimated from a first segmentation with sigma 1 (median object area). K = 0 is
today's rule. The post-processing grid is tuned on VAL_CACHE (whole validation images) and
the chosen settings are scored on every cache.
"""

import itertools
import sys

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from napari_unet.instances import drop_small, grid_for, merge_enclosed, segment

sys.path.insert(0, "benchmarks")
from watershed_study import ap, load  # noqa: E402


def sigma_for(p, k):
    if k == 0:
        return 1.0
    first = segment(p, 0.5, 0.6, 0.2)
    areas = np.bincount(first.ravel())[1:]
    areas = areas[areas >= 10]
    if areas.size == 0:
        return 1.0
    return max(1.0, k * 2 * np.sqrt(np.median(areas) / np.pi))


def segmentations(probs, k, grid):
    sig = [sigma_for(p, k) for p in probs]
    heights = [ndi.gaussian_filter(p[1], s) for p, s in zip(probs, sig)]
    for dyn in grid["seed_dynamic"]:
        peaks = [h_maxima(h, dyn).astype(bool) for h in heights]
        for floor, fg_t in itertools.product(grid["interior_threshold"], grid["foreground_threshold"]):
            out = []
            for p, h, pk in zip(probs, heights, peaks):
                fg = p[0] > fg_t
                markers, n = ndi.label(pk & fg & (h > floor))
                out.append(merge_enclosed(watershed(-h, markers=markers, mask=fg)) if n else np.zeros(fg.shape, np.int32))
            yield (floor, fg_t, dyn), out


def main(k, val, *others):
    k = float(k)
    grid = grid_for(2, 345.0)
    probs, truths = load(val)
    best = (-1, None)
    for setting, segs in segmentations(probs, k, grid):
        for size in grid["min_size"]:
            a = ap([drop_small(s, size) for s in segs], truths)
            if a > best[0]:
                best = (a, (*setting, size))
    floor, fg_t, dyn, size = best[1]
    line = [f"K={k} tuned {best[1]}: {val} {best[0]:.4f}"]
    one = {"interior_threshold": (floor,), "foreground_threshold": (fg_t,), "seed_dynamic": (dyn,)}
    for cache in others:
        p, t = load(cache)
        segs = next(segmentations(p, k, one))[1]
        line.append(f"{cache} {ap([drop_small(s, size) for s in segs], t):.4f}")
    print("  ".join(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
