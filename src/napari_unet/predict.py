"""Prediction of whole images (2D, stacks, multi-channel) with a :class:`UNetModel`.

:func:`predict` is a generator: it yields :class:`~napari_unet.tiling.TileProgress` records and
returns a :class:`Prediction`. Drive it with :func:`run` when no progress is needed.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import normalization as norm
from ._generators import run  # noqa: F401 - re-exported: predict.run(gen)
from .axes import AxesError, Planes, guess_axes
from .config import POSTPROCESSING_FIELDS, ConfigError, PredictConfig
from .devices import release_memory, resolve_device
from .instances import PostProcessing, close_membranes, drop_small, link_planes, resample_labels, resize_channels
from .modelfile import UNetModel
from .models import axes_geometry
from .tiling import TilePlan, TileProgress, decide, per_axis, plan_tiles, predict_tiles

@dataclass
class Prediction:
    """What a prediction gives back. ``labels`` has the image's shape without its channel axis
    (classes, or instance ids for instance models); ``probabilities`` has the classes first."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    axes: str
    plan: TilePlan
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)


def image_planes(image: Any, axes: str | None, in_channels: int, dims: int = 2) -> Planes:
    """The image seen as planes (2D models) or volumes (3D models, ``dims=3``); checks the
    channel count against the model."""
    axes = axes or guess_axes(tuple(image.shape), in_channels)
    planes = Planes(image, axes, "ZYX" if dims == 3 else "YX")
    if planes.channels != in_channels:
        raise AxesError(
            f"the image has {planes.channels} channel(s) ({planes.describe()}) but the model "
            f"takes {in_channels}; pass the right --axes or use a model trained on "
            f"{planes.channels}-channel images"
        )
    return planes


def tile_plan(model: UNetModel, planes: Planes, settings: PredictConfig) -> TilePlan:
    """The tile grid of ``planes``: the settings' tile and halo, else the model's."""
    tile = settings.tile or model.tile
    halo = model.halo if settings.halo is None else settings.halo
    return plan_tiles(planes.spatial_shape, model.geometry, tile, halo)


def semantic_threshold(model: UNetModel) -> float | None:
    """The class-1 probability threshold of a two-class semantic model, tuned on validation
    images at the end of training (None: argmax)."""
    if model.config.mode != "semantic" or model.config.classes != 2:
        return None
    return model.postprocessing.get("threshold")


def membrane_seeds(model: UNetModel) -> float | None:
    """The seed threshold of a two-class semantic (membrane) model whose membranes are closed
    by a watershed (:func:`~napari_unet.instances.close_membranes`), when the tuning at the end
    of training chose it over the threshold alone (None: the threshold, or argmax)."""
    if model.config.mode != "semantic" or model.config.classes != 2:
        return None
    seeds = model.postprocessing.get("membrane_seeds")
    return None if seeds is None else float(seeds)


def semantic_classes(model: UNetModel, probabilities: np.ndarray) -> np.ndarray:
    """Classes of a semantic model from its (K, ...) probabilities of one plane or volume, as
    :func:`predict` decides them: closed membranes, the tuned threshold, or the argmax."""
    seeds = membrane_seeds(model)
    if seeds is not None:
        return close_membranes(probabilities[1], seeds)
    return decide(probabilities, semantic_threshold(model))


def instance_postprocessing(model: UNetModel, settings: PredictConfig) -> PostProcessing:
    """How an instance model's probabilities become objects: the model's stored settings
    (tuned on its validation images), with what ``settings`` gives instead. Refuses
    instance settings for a semantic model, which has no objects to separate."""
    overrides = settings.postprocessing_overrides()
    if model.config.mode != "instance":
        if overrides:
            names = ", ".join(n.replace("_", " ") for n, f in POSTPROCESSING_FIELDS.items() if f in overrides)
            raise ConfigError(f"{names}: settings of instance models, and this model is {model.config.mode} "
                              f"({model.config.classes} classes); leave them out")
        return PostProcessing()
    return replace(PostProcessing.from_json(model.postprocessing, model.config.classes), **overrides)


def labels_dtype(model: UNetModel) -> np.dtype:
    if model.config.mode == "instance":
        return np.dtype(np.int32)
    return np.dtype(np.uint8 if model.config.classes < 256 else np.uint16)


def predict(
    model: UNetModel,
    image: Any,
    axes: str | None = None,
    settings: PredictConfig | None = None,
    probabilities: bool = False,
    labels_out: Any = None,
    probabilities_out: Any = None,
) -> Generator[TileProgress, None, Prediction]:
    """Overlap-tile prediction of ``image`` (numpy, memory map, dask or zarr array).

    Parameters
    ----------
    model : UNetModel
        The model (its defaults give the tile and halo when ``settings`` leaves them unset).
    image : array-like
        2D image, stack or multi-channel image; the user's array is never modified.
    axes : str, optional
        Axis letters (``YX``, ``ZYX``, ``TYX``, ``CYX``, ``YXC``, ...); guessed when omitted.
    settings : PredictConfig, optional
        Tile, halo, batch and device; for instance models, also the object size and any
        post-processing setting (seed threshold and dynamic, foreground threshold, minimum
        size) that should replace the model's own.
    probabilities : bool
        Also return per-class probabilities (float32, whole image: memory heavy for big images).
    labels_out, probabilities_out : array-like, optional
        Preallocated outputs (e.g. memory maps) to write into tile by tile.
    """
    settings = settings or PredictConfig()
    instance_postprocessing(model, settings)  # instance settings for a semantic model: refused before any work
    if settings.object_size is None and rescaled_to(model):
        settings = replace(settings, object_size="auto")  # trained at one object size: find this image's
    if settings.object_size is not None and model.config.mode == "instance" and model.dims == 2:
        result = yield from _predict_at_object_size(model, image, axes, settings, probabilities)
        return _into(result, labels_out, probabilities_out)
    return (yield from _predict_native(model, image, axes, settings, probabilities, labels_out, probabilities_out))


def _into(result: Prediction, labels_out: Any, probabilities_out: Any) -> Prediction:
    """The whole-image result written into the caller's preallocated outputs (memory maps)."""
    for out, name in ((labels_out, "labels"), (probabilities_out, "probabilities")):
        value = getattr(result, name)
        if out is None or value is None:
            continue
        if tuple(out.shape) != value.shape:
            raise ValueError(f"{name}_out has shape {tuple(out.shape)}, expected {value.shape}")
        out[...] = value
        setattr(result, name, out)
    return result


def _predict_native(
    model: UNetModel, image: Any, axes: str | None, settings: PredictConfig, probabilities: bool,
    labels_out: Any = None, probabilities_out: Any = None,
) -> Generator[TileProgress, None, Prediction]:
    """:func:`predict` at the image's own scale."""
    start = time.perf_counter()
    planes = image_planes(image, axes, model.config.in_channels, model.dims)
    device = resolve_device(settings.device)
    plan = tile_plan(model, planes, settings)
    notes = []
    if plan.rounded and settings.tile:
        notes.append(f"tile {settings.tile} rounded to {max(plan.largest)} (multiple of {axes_geometry(model.geometry)[-1].step})")
    if settings.halo is not None and plan.halo != per_axis(settings.halo, plan.ndim):
        shown = plan.halo[0] if len(set(plan.halo)) == 1 else "x".join(map(str, plan.halo))
        notes.append(
            f"halo {settings.halo} changed to {shown}"
            + (" (fixed by the valid convolutions of unet-paper)" if not axes_geometry(model.geometry)[-1].padded else "")
        )
    lo, hi = norm.percentiles(planes, model.normalization)
    instance = model.config.mode == "instance"
    seeds = membrane_seeds(model)
    whole = instance or seeds is not None  # post-processing of whole planes, after the tiles
    classes = model.config.classes
    if probabilities_out is None and (probabilities or whole):
        dtype = np.float32 if probabilities else np.float16
        probabilities_out = np.zeros((classes,) + planes.label_shape, dtype)
    if labels_out is None:
        labels_out = np.zeros(planes.label_shape, labels_dtype(model))
    elif tuple(labels_out.shape) != planes.label_shape:
        raise ValueError(f"labels_out has shape {labels_out.shape}, expected {planes.label_shape}")
    network = model.network.to(device)
    try:
        result = yield from predict_tiles(
            network,
            planes,
            lo,
            hi,
            plan,
            device=device,
            batch=settings.batch,
            labels_out=None if whole else labels_out,
            probabilities_out=probabilities_out,
            mixed_precision=settings.mixed_precision,
            activation=model.config.activation,
            tta=settings.tta,
            threshold=semantic_threshold(model),
        )
    finally:
        if device.type != "cpu":  # give the GPU memory of the weights back too
            model.network.to("cpu")
            release_memory(device)
    if result.batch_reduced:
        notes.append(f"GPU memory was short: tile batch reduced to {result.batch}")
    if whole:
        message = "separating objects" if instance else "closing membranes"
        yield TileProgress(done=0, total=planes.n, batch=0, message=message)
        post = instance_postprocessing(model, settings)
        next_id = 1
        for i in range(planes.n):
            full = (slice(None),) * len(planes.spatial)
            where = planes.label_index(i, *full)
            plane_probs = probabilities_out[(slice(None),) + where]
            if instance:
                plane_labels = post.apply(plane_probs, first_id=next_id)
                next_id = max(next_id, int(plane_labels.max()) + 1)
            else:
                plane_labels = semantic_classes(model, plane_probs)
            labels_out[where] = plane_labels
            yield TileProgress(done=i + 1, total=planes.n, batch=0, message=message)
        if instance and settings.link_z is not None:
            if model.dims == 3 or "Z" not in planes.label_axes or not planes.label_axes.endswith("YX"):
                notes.append("linking through z applies to 2D models on Z stacks: nothing to link")
            else:
                yield TileProgress(done=0, total=1, batch=0, message="linking objects through z")
                z = planes.label_axes.index("Z")
                stacks = np.moveaxis(np.asarray(labels_out), z, 0)
                flat = stacks.reshape(stacks.shape[0], -1, *stacks.shape[-2:])  # Z, others, Y, X
                linked = np.stack([link_planes(flat[:, k], settings.link_z) for k in range(flat.shape[1])], axis=1)
                offsets = np.cumsum([0] + [int(linked[:, k].max()) for k in range(linked.shape[1] - 1)])
                linked = np.where(linked > 0, linked + offsets[None, :, None, None], 0)
                labels_out[...] = np.moveaxis(linked.reshape(stacks.shape), 0, z)
                notes.append(f"objects linked through z (IoU > {settings.link_z:g})")
        if not probabilities:
            probabilities_out = None
    return Prediction(
        labels=labels_out,
        probabilities=probabilities_out,
        axes=planes.label_axes,
        plan=plan,
        device=str(device),
        seconds=time.perf_counter() - start,
        notes=notes,
    )



# ---------------------------------------------------------------------------------------------
# object size: rescale the image so that objects have the size the model learned


def trained_diameter(model: UNetModel) -> float | None:
    """Median object diameter (px) of the model's training labels, when it was recorded."""
    return (model.training.get("object_size") or {}).get("diameter")


def rescaled_to(model: UNetModel) -> float | None:
    """The object diameter (px) every training image was resized to (``rescale_objects``), or None."""
    return (model.training.get("object_size") or {}).get("rescaled_to")


def median_diameter(labels: np.ndarray) -> float | None:
    """Median equivalent diameter (px) of the objects in an instance labels array."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if areas.size else None


def _predict_at_object_size(
    model: UNetModel, image: Any, axes: str | None, settings: PredictConfig, probabilities: bool,
) -> Generator[TileProgress, None, Prediction]:
    """Predict with objects rescaled to the learned size; labels come back at image size."""
    plain = replace(settings, object_size=None)
    trained = trained_diameter(model)
    if trained is None:
        result = yield from _predict_native(model, image, axes, plain, probabilities)
        result.notes.append("the model file records no object size: predicted without rescaling")
        return result
    notes = []
    diameter = settings.object_size
    if diameter == "auto":
        first = yield from _predict_native(model, image, axes, plain, probabilities)
        diameter = median_diameter(first.labels)
        if diameter is None or abs(np.log(trained / diameter)) < np.log(1.25):
            found = "no objects found" if diameter is None else f"estimated object size {diameter:.0f} px"
            first.notes.append(f"{found}; the model learned {trained:.0f} px: not rescaled")
            return first
        notes.append(f"estimated object size {diameter:.0f} px")
    factor = trained / float(diameter)
    start = time.perf_counter()
    planes = image_planes(image, axes, model.config.in_channels)
    full = (slice(None), slice(None))
    small = tuple(max(8, int(round(n * factor))) for n in (planes.height, planes.width))
    scaled = np.stack([resize_channels(planes.read(i, *full), small) for i in range(planes.n)])
    scaled_axes = "ZCYX" if planes.n > 1 else "CYX"
    inner = yield from _predict_native(model, scaled if planes.n > 1 else scaled[0], scaled_axes, plain, probabilities=True)
    classes = model.config.classes
    probs = np.zeros((classes,) + planes.label_shape, np.float32 if probabilities else np.float16)
    labels = np.zeros(planes.label_shape, labels_dtype(model))
    post = instance_postprocessing(model, settings)
    small_size = max(1, int(round(post.min_size / factor**2)))  # the same objects, counted at image size
    next_id = 1
    for i in range(planes.n):
        scaled_p = np.asarray(inner.probabilities[(slice(None), i) if planes.n > 1 else (slice(None),)], np.float32)
        p = resize_channels(scaled_p, (planes.height, planes.width))
        where = planes.label_index(i, *full)
        probs[(slice(None),) + where] = p
        if factor > 1:
            # small objects, enlarged: segment on the enlarged grid, where the seeds of touching
            # objects are apart and the tuned settings hold, then take the labels back to image size
            # (shrinking the probabilities first would blur neighbouring seeds together)
            fine = post.apply(scaled_p)
            plane_labels = drop_small(resample_labels(fine, (planes.height, planes.width)), small_size, next_id)
        else:
            plane_labels = replace(post, min_size=small_size).apply(p, first_id=next_id)
        labels[where] = plane_labels
        next_id = max(next_id, int(plane_labels.max()) + 1)
    notes.append(f"objects of {float(diameter):.0f} px rescaled by {factor:.2f} to the learned {trained:.0f} px")
    return Prediction(
        labels=labels, probabilities=probs if probabilities else None, axes=planes.label_axes,
        plan=inner.plan, device=inner.device, seconds=time.perf_counter() - start, notes=inner.notes + notes,
    )
