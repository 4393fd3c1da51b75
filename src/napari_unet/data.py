"""Training data: (image, labels) pairs -> normalised samples -> random patches.

Pairs come from arrays (napari layers resolved by the widget, or the user's own arrays) or
from folders ``images/`` + ``labels/`` of TIFFs with matching names. For 2D networks stacks
are split into their planes, each plane one sample; for 3D networks each volume (each time
point of a TZYX movie) is one sample. Patches are cut with mirrored borders, so images
smaller than a patch are used, not rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import normalization as norm
from .axes import AxesError, Planes, guess_axes
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
    """One normalised plane (or volume, for 3D networks) with its targets, ready for patch
    sampling; arrays are (C, [D,] H, W) for the image and ([D,] H, W) for the rest."""

    name: str
    image: np.ndarray  # (C, [D,] H, W) float32, normalised
    labels: np.ndarray  # ([D,] H, W) the user's labels (for validation metrics)
    targets: np.ndarray  # ([D,] H, W) int16, -1 = ignored
    weights: np.ndarray  # ([D,] H, W) float32
    foreground: np.ndarray  # flat indices of pixels worth centring a patch on
    distance: np.ndarray | None = None  # ([D,] H, W) float32, distance targets only
    source: str = ""  # the image (stack) the plane comes from

    @property
    def shape(self) -> tuple[int, ...]:
        return self.targets.shape

    @property
    def size(self) -> int:
        """Pixels (voxels) of the sample."""
        return int(np.prod(self.shape))

    def maps(self, index: tuple | None = None) -> np.ndarray:
        """Float maps that follow the targets through augmentation, (K, ...): the loss weights,
        then the distance targets when there are any."""
        index = (slice(None),) * self.targets.ndim if index is None else index
        if self.distance is None:
            return self.weights[index][None]
        return np.stack([self.weights[index], self.distance[index]])

    def labelled_pixels(self) -> np.ndarray:
        """Pixels that say something: objects, painted scribbles, non-background classes."""
        return self.targets > 0

    def crop(self, region: tuple[slice, ...], name: str) -> Sample:
        t = self.targets[region]
        return Sample(
            name=name,
            image=self.image[(slice(None),) + region],
            labels=self.labels[region],
            targets=t,
            weights=self.weights[region],
            foreground=_foreground(t),
            distance=None if self.distance is None else self.distance[region],
            source=self.source,
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
    """Flat indices of labelled pixels worth centring a patch on (at most ``limit``, evenly
    thinned): object or class pixels, and with scribbles every painted pixel (class 0 too)."""
    idx = np.flatnonzero(targets > 0)
    if (targets < 0).any():  # scribbles: centre on any painted pixel, background class included
        idx = np.flatnonzero(targets >= 0)
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
    instance_targets: str = "3-class",
    dims: int = 2,
    rescale_objects: float | None = None,
) -> list[Sample]:
    """Check every pair and turn it into samples (one per plane; one per volume for 3D
    networks, ``dims=3``).

    ``rescale_objects`` (2D instance labels): each plane is resized so that the median
    diameter of its objects becomes this many pixels (by a factor in [1/4, 4]), as Cellpose
    trains at one object size; prediction then estimates each image's object size."""
    if rescale_objects is not None and (mode != "instance" or dims != 2):
        raise LabelsError("rescaling training images to one object size needs 2D instance labels")
    samples = []
    spatial = "ZYX" if dims == 3 else "YX"
    for pair in pairs:
        image = np.asarray(pair.image)
        labels = np.asarray(pair.labels)
        axes = pair.axes or guess_axes(image.shape, in_channels)
        try:
            planes = Planes(image, axes, spatial)
        except AxesError as err:
            raise LabelsError(f"{pair.name}: {err}") from None
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
        label_planes = Planes(labels, planes.label_axes, spatial)
        full = (slice(None),) * dims
        for i in range(planes.n):
            lab = label_planes.read(i, *full)[0]
            if not lab.any():
                continue  # an unannotated plane of a stack teaches nothing
            img = norm.apply(planes.read(i, *full), lo, hi)
            if rescale_objects is not None:
                img, lab = rescale_to_object_size(img, lab, rescale_objects)
            targets, weights, distance = make_targets(
                lab, mode, classes, unlabelled_zero=unlabelled_zero,
                boundary_width=boundary_width, w0=w0, sigma=sigma, instance_targets=instance_targets,
            )
            name = pair.name if planes.n == 1 else f"{pair.name}[{i}]"
            samples.append(Sample(name, img, lab, targets, weights, _foreground(targets), distance, pair.name))
    if not samples:
        raise LabelsError("no labelled pixels in any of the training images")
    return samples


def rescale_to_object_size(image: np.ndarray, labels: np.ndarray, diameter: float,
                           limit: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """A (C, H, W) image and its (H, W) instance labels resized so that the median equivalent
    diameter of the objects is ``diameter`` px (factor clipped to [1/limit, limit]; image
    bilinear, smoothed when shrinking; labels nearest, ids kept). Unchanged without objects."""
    from .instances import object_size, resample_labels, resize_channels

    found = object_size([labels]).get("diameter")
    if not found:
        return image, labels
    factor = float(np.clip(diameter / found, 1 / limit, limit))
    shape = tuple(max(8, int(round(n * factor))) for n in labels.shape)
    if shape == labels.shape:
        return image, labels
    return resize_channels(image, shape), resample_labels(labels, shape)


def split_holdout(samples: list[Sample], fraction: float, rng: np.random.Generator) -> tuple[list[Sample], list[Sample]]:
    """Hold out about ``fraction`` of the labelled data for validation.

    Several images: whole images (all planes of a stack together, so that neighbouring
    z-slices or frames never fall on both sides), chosen at random. One stack: a contiguous
    block of its planes. One plane: a strip of it cut where it leaves about ``fraction`` of the
    labelled pixels on the validation side. Raises when validation would hold no labels.
    """
    if not 0 < fraction < 1:
        raise LabelsError(f"validation fraction must be between 0 and 1, got {fraction}")
    if len(samples) == 1:
        return _split_plane(samples[0], fraction)
    sources = list(dict.fromkeys(s.source for s in samples))
    if len(sources) == 1:
        n_val = min(len(samples) - 1, max(1, int(round(fraction * len(samples)))))
        return samples[:-n_val], samples[-n_val:]
    order = rng.permutation(len(sources))
    n_val = min(len(sources) - 1, max(1, int(round(fraction * len(sources)))))
    held = {sources[i] for i in order[:n_val]}
    train = [s for s in samples if s.source not in held]
    val = [s for s in samples if s.source in held]
    return train, val


def _split_plane(s: Sample, fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Cut one plane (or volume) across its longest in-plane axis so that the validation
    part (bottom or right) holds about ``fraction`` of the labelled pixels, and both parts
    hold some."""
    ndim = len(s.shape)
    y_axis = ndim - 2
    axis = y_axis if s.shape[y_axis] >= s.shape[-1] else ndim - 1
    labelled = s.labelled_pixels()
    if not labelled.any():
        labelled = s.targets >= 0
    profile = labelled.sum(axis=tuple(a for a in range(ndim) if a != axis)).astype(np.float64)
    total = profile.sum()
    cumulative = np.cumsum(profile)
    n = s.shape[axis]
    # the first line after which the rest holds no more than `fraction` of the labels
    cut = int(np.searchsorted(cumulative, total * (1 - fraction)) + 1)
    cut = min(max(cut, 1), n - 1)
    if cumulative[cut - 1] == 0 or cumulative[cut - 1] == total:
        raise LabelsError(
            f"{s.name}: the labels are too concentrated to hold part of them out for validation "
            "(all labelled pixels lie in one strip); paint objects or classes in more places, "
            "add another labelled image, or train without validation on more images"
        )

    def region(sl: slice) -> tuple[slice, ...]:
        return tuple(sl if a == axis else slice(None) for a in range(ndim))

    side = ("top", "bottom") if axis == y_axis else ("left", "right")
    train = s.crop(region(slice(0, cut)), f"{s.name} ({side[0]})")
    val = s.crop(region(slice(cut, None)), f"{s.name} ({side[1]})")
    return [train], [val]


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


SAMPLE_BY = ("area", "objects", "both")


def sampling_weights(samples: list[Sample], by: str = "area") -> np.ndarray:
    """How often each sample is drawn (sums to 1): by its area (pixels); by its number of
    objects (instance labels: every object equally likely to be trained on, as pooled AP counts
    every object once; a sample without objects counts as one); or ``both``, the geometric mean
    of the two (images of many small objects drawn more often than by area, large images with
    few objects less often, but not as rarely as by objects)."""
    if by not in SAMPLE_BY:
        raise ValueError(f"unknown sampling {by!r}; choose one of: {', '.join(SAMPLE_BY)}")
    w = np.array([s.size for s in samples], np.float64)  # area
    if by != "area":
        objects = np.array([max(1, np.unique(s.labels[s.labels > 0]).size) for s in samples], np.float64)
        w = objects if by == "objects" else np.sqrt(objects * w)
    return w / w.sum()


class PatchSampler:
    """Random patches with mirrored borders; half of them centred on foreground pixels.
    ``size`` is one side for all axes, or one per axis ((z, y, x) for volumes); samples are
    drawn as :func:`sampling_weights` ``by`` says."""

    def __init__(self, samples: list[Sample], size: int | tuple[int, ...], rng: np.random.Generator,
                 foreground: float = 0.5, by: str = "area") -> None:
        self.samples = samples
        ndim = len(samples[0].shape)
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size,) * ndim
        self.rng = rng
        self.foreground = foreground
        self.p = sampling_weights(samples, by)

    def patch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image (C, *size), targets (*size), maps (K, *size)) of one random patch."""
        s = self.samples[self.rng.choice(len(self.samples), p=self.p)]
        shape = s.shape
        if s.foreground.size and self.rng.random() < self.foreground:
            centre = np.unravel_index(s.foreground[self.rng.integers(s.foreground.size)], shape)
        else:
            centre = tuple(self.rng.integers(n) for n in shape)
        index = []
        for c, size, n in zip(centre, self.size, shape):
            start = int(c) - size // 2
            index.append(reflect_indices(start, start + size, n))
        ix = np.ix_(*index)
        return s.image[(slice(None),) + ix], s.targets[ix], s.maps(ix)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [self.patch() for _ in range(n)]
        return tuple(np.stack(p) for p in zip(*parts))
