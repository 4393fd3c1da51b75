"""Live preview while training: the current model's labels for a region of one image plane.

A front end asks for a region (the part of the image its canvas shows) through a callable;
:func:`with_previews` wraps the training generator and, at each epoch end, while training is
suspended at its epoch yield, predicts that region with the current weights in the same thread
and yields a :class:`Preview`. Its cost is bounded: the region is at most ``max_side`` pixels
on a side, and an epoch's preview is skipped when previews would take more than ``budget`` of
the run's time so far.

The region is predicted with the overlap-tile rules: the halo around it is read from the image
(mirrored only at the image's own borders), and the image is normalised with the percentiles of
the whole plane, as in training and prediction. So the preview shows what prediction of the
whole image would give there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import normalization as norm
from .axes import Planes
from .instances import PostProcessing
from .modelfile import UNetModel
from .predict import semantic_classes
from .tiling import plan_tiles, predict_tiles


@dataclass(frozen=True)
class PreviewRequest:
    """What to preview: ``image`` is one plane (axes ``YX``, ``CYX`` or ``YXC``) and ``region``
    (y0, y1, x0, x1) the wanted part of it, in the plane's pixels."""

    image: Any
    axes: str
    region: tuple[int, int, int, int]


@dataclass
class Preview:
    """Labels of ``region`` (y0, y1, x0, x1) of the requested plane after epoch ``epoch``."""

    labels: np.ndarray
    region: tuple[int, int, int, int]
    plane_shape: tuple[int, int]
    epoch: int
    seconds: float
    share: float  # all previews' time so far / the run's time so far
    request: PreviewRequest | None = None


def clip_region(region: tuple[int, int, int, int], shape: tuple[int, int], max_side: int) -> tuple[int, int, int, int]:
    """``region`` (y0, y1, x0, x1) inside an image of ``shape``, at most ``max_side`` on a side
    (keeping its centre). An empty or off-image region becomes the image's centre."""
    h, w = shape
    out = []
    for (a, b), n in (((region[0], region[1]), h), ((region[2], region[3]), w)):
        a, b = max(0, int(np.floor(a))), min(n, int(np.ceil(b)))
        if b <= a:
            a, b = 0, n
        if b - a > max_side:
            centre = (a + b) // 2
            a = min(max(0, centre - max_side // 2), n - max_side)
            b = a + max_side
        out += [a, b]
    return tuple(out)


def region_probabilities(model: UNetModel, request: PreviewRequest, device, max_side: int = 512) -> tuple[np.ndarray, tuple]:
    """Class probabilities (K, h, w) of ``request.region`` (clipped to at most ``max_side``)
    with ``model`` as it is now (its network stays on its device, in eval mode).

    The region is read with the model's halo from the image, mirrored only where the image
    ends, and normalised with the whole plane's percentiles: the same numbers as predicting the
    whole image (up to the tiling tolerance of padded networks). A padded network runs once on
    region + halo; a valid one (``unet-paper``) tiles the read block as prediction does.
    Returns (probabilities, region)."""
    planes = Planes(request.image, request.axes)
    if planes.n != 1:
        raise ValueError(f"a preview predicts one plane; got {planes.n} planes ({planes.describe()})")
    region = clip_region(request.region, (planes.height, planes.width), max_side)
    geometry, halo = model.geometry, model.halo
    # predict from the pooling grid's nearest line before the region, as the tiler does (its
    # tiles start at multiples of the step): a network with pooling is only shift-invariant
    # by multiples of its step
    y0, x0 = (region[0] // geometry.step) * geometry.step, (region[2] // geometry.step) * geometry.step
    y1, x1 = region[1], region[3]
    ys = slice(max(0, y0 - halo), min(planes.height, y1 + halo))
    xs = slice(max(0, x0 - halo), min(planes.width, x1 + halo))
    block = planes.read(0, ys, xs)
    lo, hi = norm.percentiles(planes, model.normalization)  # of the whole plane, as in training
    if geometry.padded:
        # mirror where the image ends (numpy's reflect = the tiler's), then one pass, no halo
        before_y, before_x = halo - (y0 - ys.start), halo - (x0 - xs.start)
        pad = ((0, 0), (before_y, halo - (ys.stop - y1)), (before_x, halo - (xs.stop - x1)))
        block = np.pad(block, pad, mode="reflect") if any(any(p) for p in pad) else block
        side = max(block.shape[1:])
        plan = plan_tiles(block.shape[1:], geometry, math.ceil(side / geometry.step) * geometry.step, 0)
        inner = (slice(halo, halo + y1 - y0), slice(halo, halo + x1 - x0))
    else:
        plan = plan_tiles(block.shape[1:], geometry, model.tile, halo)
        inner = (slice(y0 - ys.start, y1 - ys.start), slice(x0 - xs.start, x1 - xs.start))
    crop = Planes(block, "CYX")
    probabilities = np.zeros((model.config.classes, crop.height, crop.width), np.float32)
    for _ in predict_tiles(model.network, crop, lo, hi, plan, device=device, batch=1,
                           probabilities_out=probabilities, activation=model.config.activation):
        pass
    dy, dx = region[0] - y0, region[2] - x0
    inner = (slice(inner[0].start + dy, inner[0].stop), slice(inner[1].start + dx, inner[1].stop))
    return np.ascontiguousarray(probabilities[(slice(None),) + inner]), region


def predict_region(model: UNetModel, request: PreviewRequest, device, max_side: int = 512) -> tuple[np.ndarray, tuple]:
    """Labels of ``request.region`` (see :func:`region_probabilities`): instance ids from the
    model's post-processing (objects cut by the region's edge stay cut), or classes.
    Returns (labels, region)."""
    probabilities, region = region_probabilities(model, request, device, max_side)
    if model.config.mode == "instance":
        return PostProcessing.from_json(model.postprocessing, model.config.classes).apply(probabilities), region
    return semantic_classes(model, probabilities).astype(np.uint16), region


def with_previews(
    progress: Generator,
    model: Callable[[], UNetModel | None],
    device: Callable[[], Any],
    request: Callable[[], PreviewRequest | None],
    budget: float = 0.1,
    max_side: int = 512,
    clock: Callable[[], float] = time.perf_counter,
) -> Generator:
    """Pass ``progress`` (a training generator) through, adding a :class:`Preview` after each
    ``epoch`` record when ``request()`` asks for one and the budget allows it.

    ``budget``: previews may take at most this share of the run's time (training included);
    an epoch's preview is skipped when the last one's cost would pass it.
    """
    start = clock()
    spent, last = 0.0, 0.0
    try:
        while True:
            try:
                item = next(progress)
            except StopIteration as stop:
                return stop.value
            yield item
            if getattr(item, "kind", None) != "epoch":
                continue
            wanted, current = request(), model()
            if wanted is None or current is None:
                continue
            if spent + last > budget * (clock() - start):
                continue  # over budget: skip this epoch's preview
            t0 = clock()
            labels, region = predict_region(current, wanted, device(), max_side)
            last = clock() - t0
            spent += last
            planes = Planes(wanted.image, wanted.axes)
            yield Preview(labels, region, (planes.height, planes.width), item.epoch, last,
                          spent / max(clock() - start, 1e-9), wanted)
    finally:
        progress.close()
