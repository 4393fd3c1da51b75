"""From a stitched 3-class probability map (background, interior, boundary) to instance ids.

Post-processing runs on the whole stitched map, never per tile, so an object lying across a
tile border is found once, whole.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def instances_from_probabilities(
    probabilities: np.ndarray,
    min_size: int = 15,
    interior_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    first_id: int = 1,
) -> np.ndarray:
    """Instance labels (int32, 0 = background) of one plane.

    Seeds are connected regions where P(interior) > ``interior_threshold``; they grow by a
    watershed on -P(interior) into the foreground (1 - P(background) > ``foreground_threshold``);
    objects smaller than ``min_size`` pixels are dropped; ids start at ``first_id`` and are
    consecutive.
    """
    p = np.asarray(probabilities, dtype=np.float32)
    if p.ndim != 3 or p.shape[0] != 3:
        raise ValueError(f"expected probabilities of shape (3, Y, X), got {p.shape}")
    interior = p[INTERIOR] > interior_threshold
    foreground = (1.0 - p[BACKGROUND]) > foreground_threshold
    seeds, n = ndi.label(interior)
    if n == 0:
        return np.zeros(p.shape[1:], np.int32)
    labels = watershed(-p[INTERIOR], markers=seeds, mask=foreground | interior)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    new_ids = np.zeros(len(sizes), np.int32)
    new_ids[keep] = np.arange(first_id, first_id + int(keep.sum()), dtype=np.int32)
    return new_ids[labels]


@dataclass(frozen=True)
class PostProcessing:
    """Settings that turn probabilities into instances (stored in the model file)."""

    interior_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_size: int = 15

    def apply(self, probabilities: np.ndarray, first_id: int = 1) -> np.ndarray:
        return instances_from_probabilities(
            probabilities, self.min_size, self.interior_threshold, self.foreground_threshold, first_id
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> PostProcessing:
        """From a model file's metadata (extra keys such as the tuning score are ignored)."""
        names = {"interior_threshold", "foreground_threshold", "min_size"}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


GRID = {
    "interior_threshold": (0.5, 0.6, 0.7),
    "foreground_threshold": (0.5, 0.6),
    "min_size": (15, 30),
}


def tune(probabilities: list[np.ndarray], labels: list[np.ndarray], grid: dict = GRID) -> tuple[PostProcessing, float]:
    """The post-processing with the best AP@0.5 on labelled images (use validation images,
    never test images). Returns the settings and their AP."""
    from .metrics import match_counts, summarize_matches

    best, best_ap = PostProcessing(), -1.0
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        candidate = PostProcessing(**dict(zip(keys, values)))
        counts = [match_counts(lab, candidate.apply(p), (0.5,)) for p, lab in zip(probabilities, labels)]
        ap = summarize_matches(counts)["ap@0.5"]
        if ap > best_ap + 1e-9:
            best, best_ap = candidate, ap
    return best, best_ap
