"""Layers <-> arrays: the only place that knows about napari layers' shapes and axes."""

from __future__ import annotations

import zlib

import numpy as np

AXES_CHOICES = {
    2: ["YX"],
    3: ["ZYX", "TYX", "CYX", "YXC"],
    4: ["TZYX", "ZCYX", "CZYX", "TCYX"],
    5: ["TZCYX"],
}


def layer_choices(viewer, kind: str) -> list[tuple[str, object]]:
    """(name, layer) pairs of the viewer's ``image`` or ``labels`` layers, for a ComboBox."""
    import napari

    cls = napari.layers.Image if kind == "image" else napari.layers.Labels
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, cls)]


def axes_choices(layer) -> list[str]:
    """Axis layouts that make sense for an image layer ("auto" first)."""
    if layer is None:
        return ["auto"]
    if getattr(layer, "rgb", False):
        return ["YXC"]
    return ["auto"] + AXES_CHOICES.get(layer.data.ndim, [])


def resolve_axes(layer, choice: str, in_channels: int) -> str:
    """The axes of an image layer: RGB layers are YXC; otherwise the choice or a guess."""
    from napari_unet.axes import guess_axes

    if getattr(layer, "rgb", False):
        return "YXC"
    if choice and choice != "auto":
        return choice
    return guess_axes(tuple(layer.data.shape), in_channels)


def spatial_transform(layer, axes: str) -> dict:
    """scale/translate of the labels made from ``layer`` (channel axis dropped)."""
    scale = list(layer.scale)
    translate = list(layer.translate)
    data_axes = axes if not getattr(layer, "rgb", False) else axes.replace("C", "")
    if "C" in data_axes and len(scale) == len(data_axes):
        i = data_axes.index("C")
        del scale[i], translate[i]
    return {"scale": scale, "translate": translate}


def checksum(data) -> int:
    """Cheap fingerprint of a layer's data, to notice edits by the user."""
    arr = np.ascontiguousarray(np.asarray(data))
    return zlib.crc32(arr.view(np.uint8).ravel()) if arr.size else 0
