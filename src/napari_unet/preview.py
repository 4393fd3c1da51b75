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

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import normalization as norm
from .axes import Planes
from .instances import PostProcessing
from .modelfile import UNetModel
from .predict import semantic_threshold
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


def predict_region(model: UNetModel, request: PreviewRequest, device, max_side: int = 512) -> tuple[np.ndarray, tuple]:
    """Labels of ``request.region`` (clipped to at most ``max_side``) predicted with
    ``model`` as it is now (its network stays on its device and in eval mode).

    Returns (labels, region)."""
    planes = Planes(request.image, request.axes)
    if planes.n != 1:
        raise ValueError(f"a preview predicts one plane; got {planes.n} planes ({planes.describe()})")
    region = clip_region(request.region, (planes.height, planes.width), max_side)
    y0, y1, x0, x1 = region
    halo = model.halo
    # read the region with its halo from the image; mirror only where the image ends
    ys = slice(max(0, y0 - halo), min(planes.height, y1 + halo))
    xs = slice(max(0, x0 - halo), min(planes.width, x1 + halo))
    block = planes.read(0, ys, xs)
    lo, hi = norm.percentiles(planes, model.normalization)  # of the whole plane, as in training
    crop = Planes(block, "CYX")
    plan = plan_tiles((crop.height, crop.width), model.geometry, model.tile, halo)
    instance = model.config.mode == "instance"
    probabilities = np.zeros((model.config.classes, crop.height, crop.width), np.float32) if instance else None
    labels = None if instance else np.zeros((crop.height, crop.width), np.uint16)
    threshold = semantic_threshold(model)
    gen = predict_tiles(model.network, crop, lo, hi, plan, device=device, batch=4, labels_out=labels,
                        probabilities_out=probabilities, activation=model.config.activation, threshold=threshold)
    for _ in gen:
        pass
    if instance:
        labels = PostProcessing.from_json(model.postprocessing).apply(probabilities)
    inner = (slice(y0 - ys.start, y1 - ys.start), slice(x0 - xs.start, x1 - xs.start))
    return np.ascontiguousarray(labels[inner]), region


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
