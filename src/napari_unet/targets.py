"""Training targets and weight maps from the user's labels.

Instance labels (one id per object) become three classes, background / interior / boundary,
and the weight map of the U-Net paper,

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2)),

where w_c balances class frequencies and d1, d2 are the distances to the nearest and second
nearest object: the narrow background gaps between touching objects weigh most.

The ``distance`` representation (the default for instances) is a foreground mask plus, inside
each object, the Euclidean distance to the object's boundary divided by the object's largest
such distance: 1 at the centre, falling towards 0 at the border, and 0 where two objects touch.
A seeded watershed on it separates touching nuclei (torch-em and micro-sam use the same idea).

Semantic labels are classes already; with ``unlabelled_zero`` the value 0 means "not
annotated" (scribbles) and is ignored by the loss.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

IGNORE = -1  # target value of pixels the loss ignores


class LabelsError(ValueError):
    """Labels that cannot be trained on; the message says why and what to do."""


def check_labels(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """Integer, non-negative, not all zero; returns the labels as a numpy array."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.all(labels == np.round(labels)):
            raise LabelsError(
                f"{what} hold fractional or NaN values ({labels.dtype}); labels must be integers "
                "(0 = background, 1, 2, ... = objects or classes). Is this an image layer?"
            )
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise LabelsError(f"{what} have type {labels.dtype}; labels must be integers")
    if labels.size and labels.min() < 0:
        raise LabelsError(f"{what} hold negative values (min {labels.min()}); labels must be >= 0")
    if not labels.any():
        raise LabelsError(f"{what} are all zero: paint some objects or classes before training")
    return labels


def instance_classes(labels: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """0 = background, 1 = interior, 2 = boundary (the ``boundary_width`` outermost pixels of
    each object, including where two objects touch)."""
    labels = np.asarray(labels)
    size = 2 * boundary_width + 1
    low = ndi.minimum_filter(labels, size=size, mode="nearest")
    high = ndi.maximum_filter(labels, size=size, mode="nearest")
    interior = (labels > 0) & (low == labels) & (high == labels)
    out = np.zeros(labels.shape, np.int8)
    out[labels > 0] = 2
    out[interior] = 1
    return out


def class_balance(targets: np.ndarray, classes: int) -> np.ndarray:
    """w_c per class: inverse frequency among labelled pixels, mean 1, clipped to [0.1, 10]."""
    counts = np.bincount(targets[targets >= 0].ravel(), minlength=classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return np.clip(w, 0.1, 10.0)


def border_distances(labels: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d1, d2 of every pixel to the nearest and second nearest object, computed in
    a window of ``reach`` pixels around each object (beyond it the weight term is ~0)."""
    d1 = np.full(labels.shape, np.inf, np.float32)
    d2 = np.full(labels.shape, np.inf, np.float32)
    r = int(np.ceil(reach))
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        win = tuple(slice(max(0, s.start - r), min(n, s.stop + r)) for s, n in zip(sl, labels.shape))
        d = ndi.distance_transform_edt(labels[win] != i).astype(np.float32)
        a, b = d1[win], d2[win]
        d2[win] = np.minimum(b, np.maximum(a, d))
        d1[win] = np.minimum(a, d)
    return d1, d2


def boundary_distance(labels: np.ndarray) -> np.ndarray:
    """Per object, the distance of each pixel to the object's boundary (background or another
    object), divided by the largest value in that object: float32 in [0, 1], 0 on background."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        win = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(sl, labels.shape))
        inside = labels[win] == i
        d = ndi.distance_transform_edt(inside)
        top = d.max()
        if top > 0:
            out[win][inside] = (d[inside] / top).astype(np.float32)
    return out


def paper_weights(
    labels: np.ndarray, targets: np.ndarray, classes: int, w0: float = 10.0, sigma: float = 5.0
) -> np.ndarray:
    """The U-Net paper's weight map for instance labels (border term on background pixels)."""
    wc = class_balance(targets, classes)
    w = np.where(targets >= 0, wc[np.clip(targets, 0, None)], 0.0).astype(np.float32)
    if w0 > 0:
        d1, d2 = border_distances(labels, reach=4 * sigma)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
        background = labels == 0
        w[background] += np.nan_to_num(border[background], nan=0.0, posinf=0.0)
    return w


def semantic_targets(labels: np.ndarray, unlabelled_zero: bool) -> np.ndarray:
    """Class per pixel (int16); IGNORE where unlabelled."""
    labels = np.asarray(labels)
    if unlabelled_zero:
        return (labels.astype(np.int16) - 1).clip(IGNORE)
    return labels.astype(np.int16)


def make_targets(
    labels: np.ndarray,
    mode: str,
    classes: int,
    *,
    unlabelled_zero: bool = False,
    boundary_width: int = 2,
    w0: float = 10.0,
    sigma: float = 5.0,
    instance_targets: str = "3-class",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(targets, weights, distance) for one 2D label image; computed once, before training.

    ``distance`` is None except for instance labels with ``distance`` targets, where
    ``targets`` is then the foreground (0/1) and ``distance`` the scaled boundary distance.
    """
    if mode == "instance" and instance_targets == "distance":
        targets = (np.asarray(labels) > 0).astype(np.int16)
        return targets, paper_weights(labels, targets, 2, w0, sigma), boundary_distance(labels)
    if mode == "instance":
        targets = instance_classes(labels, boundary_width)
        return targets, paper_weights(labels, targets, 3, w0, sigma), None
    targets = semantic_targets(labels, unlabelled_zero)
    if targets.max() >= classes:
        raise LabelsError(
            f"labels hold class {int(targets.max()) + (1 if unlabelled_zero else 0)} but the "
            f"model has {classes} classes"
        )
    wc = class_balance(targets, classes)
    weights = np.where(targets >= 0, wc[np.clip(targets, 0, None)], 0.0).astype(np.float32)
    return targets, weights, None


def semantic_classes(labels: list[np.ndarray], unlabelled_zero: bool) -> int:
    """Number of classes the labels describe (at least 2)."""
    top = max(int(np.max(lab)) for lab in labels)
    return max(2, top if unlabelled_zero else top + 1)
