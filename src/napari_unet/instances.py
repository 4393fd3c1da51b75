"""From a stitched 3-class probability map (background, interior, boundary) to instance ids.

Post-processing runs on the whole stitched map, never per tile, so an object lying across a
tile border is found once, whole.
"""

from __future__ import annotations

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
