"""Training data: (image, labels) pairs -> normalised 2D samples -> random patches.

Pairs come from arrays (napari layers resolved by the widget, or the user's own arrays) or
from folders ``images/`` + ``labels/`` of TIFFs with matching names. Stacks are split into
their planes; each plane is one sample. Patches are cut with mirrored borders, so images
smaller than a patch are used, not rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import normalization as norm
from .axes import Planes, guess_axes
from .config import Normalization
from .io import ImageFileError, list_tiffs, read_image
from .targets import LabelsError, check_labels, make_targets
from .tiling import reflect_indices


@dataclass
class Pair:
    """One image with its labels, as the user gave them."""

    name: str
    image: Any
    labels: Any
    axes: str | None = None


@dataclass
class Sample:
    """One normalised 2D plane with its targets, ready for patch sampling."""

    name: str
    image: np.ndarray  # (C, H, W) float32, normalised
    labels: np.ndarray  # (H, W) the user's labels (for validation metrics)
    targets: np.ndarray  # (H, W) int16, -1 = ignored
    weights: np.ndarray  # (H, W) float32
    foreground: np.ndarray  # flat indices of pixels worth centring a patch on

    @property
    def shape(self) -> tuple[int, int]:
        return self.targets.shape

    def crop(self, rows: slice, name: str) -> Sample:
        t = self.targets[rows]
        return Sample(
            name=name,
            image=self.image[:, rows],
            labels=self.labels[rows],
            targets=t,
            weights=self.weights[rows],
            foreground=_foreground(t),
        )


def pairs_from_folders(images: str | Path, labels: str | Path) -> list[Pair]:
    """Pairs of ``images/NAME.tif`` and ``labels/NAME.tif``; every image needs its labels."""
    image_files = list_tiffs(images)
    label_files = {p.stem: p for p in list_tiffs(labels)}
    missing = [p.name for p in image_files if p.stem not in label_files]
    if missing:
        raise ImageFileError(
            f"{len(missing)} image(s) in {images} have no labels of the same name in {labels}: "
            f"{', '.join(missing[:5])}"
        )
    return [
        Pair(p.stem, read_image(p, memmap=False), read_image(label_files[p.stem], memmap=False))
        for p in image_files
    ]


def _foreground(targets: np.ndarray, limit: int = 200_000) -> np.ndarray:
    """Flat indices of object/class pixels (at most ``limit``, evenly thinned)."""
    idx = np.flatnonzero(targets > 0)
    if idx.size > limit:
        idx = idx[:: idx.size // limit + 1]
    return idx.astype(np.int64)


def prepare(
    pairs: list[Pair],
    mode: str,
    classes: int,
    in_channels: int,
    normalization: Normalization,
    *,
    unlabelled_zero: bool = False,
    boundary_width: int = 2,
    w0: float = 10.0,
    sigma: float = 5.0,
) -> list[Sample]:
    """Check every pair and turn it into samples (one per plane)."""
    samples = []
    for pair in pairs:
        image = np.asarray(pair.image)
        labels = np.asarray(pair.labels)
        axes = pair.axes or guess_axes(image.shape, in_channels)
        planes = Planes(image, axes)
        if planes.channels != in_channels:
            raise LabelsError(
                f"{pair.name}: the image has {planes.channels} channel(s) but the model takes "
                f"{in_channels}"
            )
        if labels.shape != planes.label_shape:
            raise LabelsError(
                f"{pair.name}: labels have shape {labels.shape} but the image ({planes.describe()}) "
                f"needs labels of shape {planes.label_shape}"
            )
        labels = check_labels(labels, f"{pair.name}: labels")
        lo, hi = norm.percentiles(planes, normalization)
        label_planes = Planes(labels, planes.label_axes)
        full = (slice(None), slice(None))
        for i in range(planes.n):
            lab = label_planes.read(i, *full)[0]
            if not lab.any():
                continue  # an unannotated plane of a stack teaches nothing
            img = norm.apply(planes.read(i, *full), lo, hi)
            targets, weights = make_targets(
                lab, mode, classes, unlabelled_zero=unlabelled_zero,
                boundary_width=boundary_width, w0=w0, sigma=sigma,
            )
            name = pair.name if planes.n == 1 else f"{pair.name}[{i}]"
            samples.append(Sample(name, img, lab, targets, weights, _foreground(targets)))
    if not samples:
        raise LabelsError("no labelled pixels in any of the training images")
    return samples


def split_holdout(samples: list[Sample], fraction: float, rng: np.random.Generator) -> tuple[list[Sample], list[Sample]]:
    """Random hold-out of ``fraction`` of the samples (at least one); with a single sample, the
    bottom ``fraction`` of its rows is held out instead."""
    if not 0 < fraction < 1:
        raise LabelsError(f"validation fraction must be between 0 and 1, got {fraction}")
    if len(samples) == 1:
        s = samples[0]
        cut = int(round(s.shape[0] * (1 - fraction)))
        cut = min(max(cut, 1), s.shape[0] - 1)
        train, val = s.crop(slice(0, cut), f"{s.name} (top)"), s.crop(slice(cut, None), f"{s.name} (bottom)")
        if not train.foreground.size and not (train.targets >= 0).any():
            raise LabelsError("the training part of the only image holds no labels")
        return [train], [val]
    order = rng.permutation(len(samples))
    n_val = min(len(samples) - 1, max(1, int(round(fraction * len(samples)))))
    val = [samples[i] for i in sorted(order[:n_val])]
    train = [samples[i] for i in sorted(order[n_val:])]
    return train, val


def kfold(samples: list[Sample], k: int, rng: np.random.Generator) -> list[tuple[list[Sample], list[Sample]]]:
    """K (train, validation) splits; every sample is validated exactly once."""
    if k < 2:
        raise LabelsError(f"K-fold cross-validation needs at least 2 folds, got {k}")
    if len(samples) < k:
        raise LabelsError(
            f"{k} folds need at least {k} images (planes), but only {len(samples)} are labelled"
        )
    order = rng.permutation(len(samples))
    folds = np.array_split(order, k)
    return [
        ([samples[i] for i in sorted(np.concatenate(folds[:j] + folds[j + 1 :]))], [samples[i] for i in sorted(f)])
        for j, f in enumerate(folds)
    ]


class PatchSampler:
    """Random patches with mirrored borders; half of them centred on foreground pixels."""

    def __init__(self, samples: list[Sample], size: int, rng: np.random.Generator, foreground: float = 0.5) -> None:
        self.samples = samples
        self.size = size
        self.rng = rng
        self.foreground = foreground
        area = np.array([s.shape[0] * s.shape[1] for s in samples], np.float64)
        self.p = area / area.sum()

    def patch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.samples[self.rng.choice(len(self.samples), p=self.p)]
        h, w = s.shape
        if s.foreground.size and self.rng.random() < self.foreground:
            cy, cx = np.unravel_index(s.foreground[self.rng.integers(s.foreground.size)], (h, w))
        else:
            cy, cx = self.rng.integers(h), self.rng.integers(w)
        y0, x0 = int(cy) - self.size // 2, int(cx) - self.size // 2
        rows = reflect_indices(y0, y0 + self.size, h)
        cols = reflect_indices(x0, x0 + self.size, w)
        ix = np.ix_(rows, cols)
        return s.image[(slice(None),) + ix], s.targets[ix], s.weights[ix]

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [self.patch() for _ in range(n)]
        return tuple(np.stack(p) for p in zip(*parts))
