"""Post-processing study on cached probabilities (benchmarks/cache_probabilities.py).

    python benchmarks/watershed_study.py CACHE.npz [VARIANT ...]

For distance-target models ((2, Y, X): foreground probability, scaled boundary distance).
Each variant is tuned over its own grid on the cached images (as training tunes on
validation images) and its best AP@0.5 is printed, with the oracle-seed score (one seed per
true object) that says how much of the loss is the landscape rather than the seeds.
"""

import itertools
import sys
import time

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from napari_unet.instances import drop_small, merge_enclosed

sys.path.insert(0, "benchmarks")
from seed_oracle import ap, deepest_pixels as deepest  # noqa: E402


def load(path):
    data = np.load(path)
    names = sorted(k[2:] for k in data.files if k.startswith("p/"))
    return [data[f"p/{n}"].astype(np.float32) for n in names], [data[f"t/{n}"] for n in names]


def post_ap(post, probs, truths):
    """AP@0.5 of post-processing settings applied to cached probabilities."""
    return ap([post.apply(p) for p in probs], truths)


def height_of(p, kind, fg_t):
    d = ndi.gaussian_filter(p[1], 1.0)
    if kind in ("dist", "raw"):
        return d
    fg = p[0] > fg_t
    e = ndi.distance_transform_edt(fg)
    if kind == "edt":
        return ndi.gaussian_filter(e.astype(np.float32), 1.0)
    if kind.startswith("mix"):  # distance times a capped geometric distance
        cap = float(kind[3:])
        return d * np.minimum(e / cap, 1.0)
    if kind == "prod":
        return ndi.gaussian_filter(p[1] * p[0], 1.0)
    raise ValueError(kind)


def seg(p, height, seeds_mask, fg, compact):
    markers, n = ndi.label(seeds_mask & fg)
    if n == 0:
        return np.zeros(fg.shape, np.int32)
    return merge_enclosed(watershed(-height, markers=markers, mask=fg, compactness=compact))


def study(probs, truths, kind, compacts=(0.0,), dynamics=(0.05, 0.1, 0.2), floors=(0.3, 0.4, 0.5, 0.6),
          fgs=(0.5, 0.6), sizes=(15, 30)):
    best = (-1, None)
    for fg_t in fgs:
        heights = [height_of(p, kind, fg_t) for p in probs]
        fgm = [p[0] > fg_t for p in probs]
        # heights divided by their image's maximum ("raw": as they are)
        scale = [1.0 if kind == "raw" else max(float(h.max()), 1e-6) for h in heights]
        for dyn in dynamics:
            peaks = [h_maxima(h / s, dyn).astype(bool) for h, s in zip(heights, scale)]
            for floor, c in itertools.product(floors, compacts):
                segs = [seg(p, h, pk & (h / s > floor), f, c) for p, h, pk, f, s in zip(probs, heights, peaks, fgm, scale)]
                for size in sizes:
                    a = ap([drop_small(s, size) for s in segs], truths)
                    if a > best[0]:
                        best = (a, dict(fg=fg_t, dyn=dyn, floor=floor, compact=c, size=size))
    return best


def oracle(probs, truths, kind, compact=0.0, fg_t=0.5):
    out = []
    for p, t in zip(probs, truths):
        h = height_of(p, kind, fg_t)
        fg = (p[0] > fg_t) | (deepest(t) > 0)
        out.append(drop_small(merge_enclosed(watershed(-h, markers=deepest(t), mask=fg, compactness=compact)), 15))
    return ap(out, truths)


if __name__ == "__main__":
    probs, truths = load(sys.argv[1])
    variants = sys.argv[2:] or ["dist"]
    for v in variants:
        kind, _, c = v.partition("@")
        compacts = (float(c),) if c else (0.0,)
        t0 = time.time()
        a, s = study(probs, truths, kind, compacts)
        print(f"{sys.argv[1]} {v}: tuned AP@0.5 {a:.4f} {s}; oracle seeds {oracle(probs, truths, kind, compacts[0]):.4f}"
              f" ({time.time() - t0:.0f} s)", flush=True)
