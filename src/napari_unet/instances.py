"""From a stitched 3-class probability map (background, interior, boundary) to instance ids.

Post-processing runs on the whole stitched map, never per tile, so an object lying across a
tile border is found once, whole. Everything works on planes (Y, X) and volumes (Z, Y, X)
alike: a 3D model's volume is segmented in 3D, so an object keeps one id through z.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from ._generators import run

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def instances_from_probabilities(
    probabilities: np.ndarray,
    min_size: int = 15,
    interior_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    first_id: int = 1,
    seed_dynamic: float | None = None,
) -> np.ndarray:
    """Instance labels (int32, 0 = background) of one plane.

    ``probabilities`` is either (3, Y, X) background / interior / boundary probabilities, or
    (2, Y, X) foreground probability and scaled boundary distance (``distance`` targets).
    The height map is P(interior), or the distance. Seeds are, without ``seed_dynamic``,
    the connected regions where the height exceeds ``interior_threshold``; with it, the
    regional maxima of the (slightly smoothed) height whose dynamic is at least
    ``seed_dynamic`` and whose height exceeds ``interior_threshold`` (h-maxima: two touching
    nuclei whose distance ridges merge above any fixed threshold still get one seed each).
    Seeds grow by a watershed on -height into the foreground (P(foreground) >
    ``foreground_threshold``). Then holes inside an object are filled, fragments enclosed by
    a single object are merged into it, objects smaller than ``min_size`` pixels are dropped,
    and ids start at ``first_id`` and are consecutive.
    """
    labels = segment(probabilities, interior_threshold, foreground_threshold, seed_dynamic)
    return drop_small(labels, min_size, first_id)


def _checked(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float32)
    if p.ndim not in (3, 4) or p.shape[0] not in (2, 3):
        raise ValueError(f"expected probabilities of shape (3 or 2, [Z,] Y, X), got {p.shape}")
    if not np.isfinite(p).all():  # never expected; h-maxima would not return on NaN
        p = np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0)
    return p


def _height(p: np.ndarray) -> np.ndarray:
    """The watershed's height map: P(interior) (3 classes) or the distance (2 channels)."""
    return p[INTERIOR] if p.shape[0] == 3 else p[1]


def maxima(probabilities: np.ndarray, seed_dynamic: float) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed height and its h-maxima of dynamic ``seed_dynamic`` (the costly part of
    :func:`segment`; the tuning computes it once per image and dynamic)."""
    # one pixel of smoothing: single-pixel noise on a ridge must not count as a maximum
    height = ndi.gaussian_filter(_height(_checked(probabilities)), 1.0)
    return height, h_maxima(height, seed_dynamic).astype(bool)


def segment(
    probabilities: np.ndarray, interior_threshold: float, foreground_threshold: float,
    seed_dynamic: float | None = None, precomputed: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Seeded watershed and :func:`merge_enclosed`, before any size filter (ids not consecutive).
    ``precomputed``: :func:`maxima` of these probabilities for ``seed_dynamic``."""
    p = _checked(probabilities)
    height = _height(p)
    if p.shape[0] == 3:
        foreground = (1.0 - p[BACKGROUND]) > foreground_threshold
    else:
        foreground = p[0] > foreground_threshold
    if seed_dynamic:
        height, peaks = precomputed if precomputed is not None else maxima(p, seed_dynamic)
        seeds, n = ndi.label(peaks & foreground & (height > interior_threshold))
    else:
        seeds, n = ndi.label((height > interior_threshold) & foreground)
    if n == 0:
        return np.zeros(p.shape[1:], np.int32)
    labels = watershed(-height, markers=seeds, mask=foreground)
    return merge_enclosed(labels)


def drop_small(labels: np.ndarray, min_size: int, first_id: int = 1) -> np.ndarray:
    """Objects of fewer than ``min_size`` pixels removed; ids consecutive from ``first_id``."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(1, min_size)  # ids with no pixel left are dropped too: ids stay consecutive
    keep[0] = False
    new_ids = np.zeros(len(sizes), np.int32)
    new_ids[keep] = np.arange(first_id, first_id + int(keep.sum()), dtype=np.int32)
    return new_ids[labels]


def merge_enclosed(labels: np.ndarray) -> np.ndarray:
    """Fill holes and absorb objects that lie inside one object.

    A background region that does not touch the image border and is surrounded by a single
    object becomes part of that object; an object whose whole outline touches one other object
    (no background) is merged into it. Nuclei with bright chromocentres otherwise come out as
    rings with small objects inside. Returns a new array; ``labels`` is not modified.
    """
    labels = np.array(labels, dtype=np.int32, copy=True)
    background, n_bg = ndi.label(labels == 0)
    # regions to check: background components (negative ids) and objects
    for region, count, is_background in ((background, n_bg, True), (labels, int(labels.max()), False)):
        slices = ndi.find_objects(region)
        for i, sl in enumerate(slices, start=1):
            if sl is None:
                continue
            if is_background and any(s.start == 0 or s.stop == n for s, n in zip(sl, labels.shape)):
                continue  # open to the image border: not a hole
            win = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(sl, labels.shape))
            inside = region[win] == i
            ring = ndi.binary_dilation(inside) & ~inside
            around = np.unique(labels[win][ring])
            if around.size == 1 and around[0] != 0 and (is_background or around[0] != i):
                labels[win][inside] = around[0]
    return labels


@dataclass(frozen=True)
class PostProcessing:
    """Settings that turn probabilities into instances (stored in the model file)."""

    interior_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_size: int = 15
    seed_dynamic: float | None = None

    def apply(self, probabilities: np.ndarray, first_id: int = 1) -> np.ndarray:
        return instances_from_probabilities(
            probabilities, self.min_size, self.interior_threshold, self.foreground_threshold, first_id,
            self.seed_dynamic,
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None, channels: int = 3) -> PostProcessing:
        """From a model file's metadata (extra keys such as the tuning score are ignored).
        Nothing tuned yet (during training): the defaults of the representation, h-maxima
        seeds for distance targets (``channels`` 2)."""
        names = {"interior_threshold", "foreground_threshold", "min_size", "seed_dynamic"}
        settings = {k: v for k, v in (data or {}).items() if k in names}
        if not settings and channels == 2:
            return cls(interior_threshold=0.4, foreground_threshold=0.5, min_size=15, seed_dynamic=0.1)
        return cls(**settings)


GRID = {
    "interior_threshold": (0.5, 0.6, 0.7),
    "foreground_threshold": (0.5, 0.6),
    "min_size": (15, 30),
    "seed_dynamic": (None,),
}


def grid_for(channels: int, object_area: float | None = None) -> dict:
    """Candidate settings: seed thresholds suited to the representation, minimum sizes
    relative to the typical object area of the training labels when it is known."""
    grid = dict(GRID)
    if channels == 2:
        # distance targets: h-maxima seeds (measured on DSB2018 validation images: +0.08 AP@0.5
        # over thresholded seeds, docs/benchmarks.md), the height floor and dynamic tuned
        grid["interior_threshold"] = (0.3, 0.4, 0.5, 0.6)
        grid["foreground_threshold"] = (0.5, 0.6)
        grid["seed_dynamic"] = (0.05, 0.1, 0.2)
    if object_area:
        grid["min_size"] = tuple(sorted({max(3, int(round(f * object_area))) for f in (0.05, 0.15, 0.3)}))
    return grid


# `napari-unet tune` on a lab's own images: a wider search than training's (which is sized for
# its time budget). Distance models, per lab, chosen on one volume and scored on another: +0.011
# to +0.082 AP@0.5 over training's grid in all 6 model x lab pairs (docs/benchmarks.md, round 17).
WIDE_GRID = {"interior_threshold": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
             "foreground_threshold": (0.3, 0.4, 0.5, 0.6, 0.7), "seed_dynamic": (0.05, 0.1, 0.2, 0.3, 0.4)}


def tuning_grid(channels: int, object_area: float | None = None) -> dict:
    """The settings ``napari-unet tune`` searches: :func:`grid_for`'s minimum sizes, and for
    distance models (``channels`` 2) the wide thresholds and dynamics of ``WIDE_GRID``
    (3-class models keep training's grid: the wide one was not measured on them)."""
    grid = grid_for(channels, object_area)
    return {**grid, **WIDE_GRID} if channels == 2 else grid


def object_size(labels: list[np.ndarray]) -> dict:
    """Typical object size of instance labels: median area (px) and equivalent diameter (px)."""
    areas = np.concatenate([np.bincount(np.asarray(lab).ravel())[1:] for lab in labels])
    areas = areas[areas > 0]
    if areas.size == 0:
        return {}
    area = float(np.median(areas))
    if np.asarray(labels[0]).ndim == 3:  # volumes: "area" is the median volume in voxels
        return {"area": area, "diameter": float((6 * area / np.pi) ** (1 / 3)), "objects": int(areas.size),
                "volume": True}
    return {"area": area, "diameter": float(2 * np.sqrt(area / np.pi)), "objects": int(areas.size)}


def resize_channels(block: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """(C, H, W) float block resized to (C, *shape), smoothing first when shrinking."""
    from skimage.transform import resize

    return np.stack([
        resize(c.astype(np.float32), shape, order=order, mode="reflect",
               anti_aliasing=shape[0] < c.shape[0], preserve_range=True).astype(np.float32)
        for c in block
    ])


def resample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Instance labels resized to ``shape`` (larger or smaller) by taking the pixel nearest each
    output pixel's centre: ids are kept, never blended."""
    rows = ((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(int)
    return labels[np.ix_(rows, cols)]


# Training's tuning takes, among settings within this AP@0.5 of the best, the one with the
# fewest seeds: on nuclei from other labs it scored +0.05 AP@0.5 on average (5 models) at no
# cost on the DSB2018 test split (docs/benchmarks.md, round 15).
NEAR_TIE = 0.005


def tune(
    probabilities: list[np.ndarray], labels: list[np.ndarray], grid: dict | None = None,
    object_area: float | None = None, tolerance: float = 0.0,
) -> tuple[PostProcessing, float]:
    """The post-processing with the best AP@0.5 on labelled images (use validation images,
    never test images). Returns the settings and their AP.

    ``tolerance``: among the settings whose AP@0.5 is within ``tolerance`` of the best, the
    one that makes the fewest seeds (highest seed threshold, then highest seed dynamic) is
    chosen, and the AP returned is its own.
    """
    return run(tune_steps(probabilities, labels, grid, object_area, tolerance))


def fewest_seeds(scored: list[tuple[float, PostProcessing]], tolerance: float) -> tuple[PostProcessing, float]:
    """Of (AP, settings) pairs, the settings within ``tolerance`` of the best AP that make the
    fewest seeds (highest threshold, then highest dynamic; then the higher AP), and their AP."""
    top = max(a for a, _ in scored)
    near = [(a, s) for a, s in scored if a >= top - tolerance - 1e-9]
    a, s = max(near, key=lambda pair: (pair[1].interior_threshold, pair[1].seed_dynamic or 0.0, pair[0]))
    return s, a


def tune_steps(
    probabilities: list[np.ndarray], labels: list[np.ndarray], grid: dict | None = None,
    object_area: float | None = None, tolerance: float = 0.0,
) -> Generator[tuple[int, int], None, tuple[PostProcessing, float]]:
    """:func:`tune` as a generator: yields (done, total) after each watershed setting, so that
    a caller (the widget's worker) can cancel between them."""
    from .metrics import match_counts, summarize_matches

    if grid is None:
        grid = grid_for(probabilities[0].shape[0] if probabilities else 3, object_area)
    best, best_ap = PostProcessing(), -1.0
    scored: list[tuple[float, PostProcessing]] = []
    settings = list(itertools.product(grid["interior_threshold"], grid["foreground_threshold"],
                                      grid.get("seed_dynamic", (None,))))
    computed: dict = {}  # h-maxima per image and dynamic: the thresholds do not change them
    for done, (seed, fg, dynamic) in enumerate(settings, start=1):
        if dynamic:
            for k, p in enumerate(probabilities):
                if (k, dynamic) not in computed:
                    computed[k, dynamic] = maxima(p, dynamic)
        segmented = [segment(p, seed, fg, dynamic, computed.get((k, dynamic)))  # the size filter comes after
                     for k, p in enumerate(probabilities)]
        for min_size in grid["min_size"]:
            counts = [match_counts(lab, drop_small(seg, min_size), (0.5,)) for seg, lab in zip(segmented, labels)]
            ap = summarize_matches(counts)["ap@0.5"]
            scored.append((ap, PostProcessing(seed, fg, int(min_size), dynamic)))
            if ap > best_ap + 1e-9:
                best, best_ap = scored[-1][1], ap
        yield done, len(settings)
    if tolerance > 0 and scored:
        return fewest_seeds(scored, tolerance)
    return best, best_ap


MEMBRANE_SEEDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def close_membranes(membrane: np.ndarray, seed_threshold: float) -> np.ndarray:
    """Membranes (class 1, uint8) as the one-pixel watershed lines between cells, from the
    class-1 probability of a plane (Y, X) or volume (Z, Y, X).

    Seeds are the connected regions where the membrane probability is below
    ``seed_threshold`` (cell interiors); they grow by a watershed on the probability until
    they meet, and where they meet is membrane. A faint stretch of membrane therefore still
    separates two cells (a threshold would leave a gap and merge them), and membranes are
    thin, so no pixel of a cell is lost to them. This is what the adapted Rand error of the
    regions between membranes rewards (ISBI 2012). Without any seed (no cell): all membrane.
    """
    p = np.nan_to_num(np.asarray(membrane, dtype=np.float32), nan=1.0, posinf=1.0, neginf=0.0)
    seeds, n = ndi.label(p < seed_threshold)
    if n == 0:
        return np.ones(p.shape, np.uint8)
    cells = watershed(p, markers=seeds, watershed_line=True)
    return (cells == 0).astype(np.uint8)


def link_planes(labels: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Give objects of consecutive planes one id when they overlap (stacks predicted plane by
    plane with a 2D model), like Cellpose's stitch threshold.

    ``labels`` (Z, Y, X), each plane's objects with their own ids. Going down the stack, an
    object takes the id of the object of the plane above with which its IoU is highest, if
    that IoU exceeds ``threshold`` and that object is not already taken by a better match
    (pairs are assigned by decreasing IoU); otherwise it keeps a new id. Ids are consecutive
    from 1. Returns a new array.
    """
    from .metrics import iou_matrix

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"linking needs a stack of planes (Z, Y, X), got shape {labels.shape}")
    out = np.zeros(labels.shape, np.int32)
    next_id = 1
    for z in range(labels.shape[0]):
        plane = labels[z]
        ids = np.unique(plane[plane > 0])
        mapping = {}
        if z > 0 and ids.size and out[z - 1].any():
            iou, prev_ids, cur_ids = iou_matrix(out[z - 1], plane)
            rows, cols = np.nonzero(iou > threshold)
            taken = set()
            for k in np.argsort(-iou[rows, cols], kind="stable"):
                p, c = int(prev_ids[rows[k]]), int(cur_ids[cols[k]])
                if p in taken or c in mapping:
                    continue
                mapping[c] = p
                taken.add(p)
        for i in ids:
            if int(i) not in mapping:
                mapping[int(i)] = next_id
                next_id += 1
            next_id = max(next_id, mapping[int(i)] + 1)
        lut = np.zeros(int(plane.max()) + 1, np.int32)
        for c, p in mapping.items():
            lut[c] = p
        out[z] = lut[plane]
    # consecutive ids
    used = np.unique(out[out > 0])
    lut = np.zeros(int(out.max()) + 1, np.int32)
    lut[used] = np.arange(1, used.size + 1, dtype=np.int32)
    return lut[out]
