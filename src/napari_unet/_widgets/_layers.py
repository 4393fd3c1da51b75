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


def visible_plane(viewer, layer, axes: str, data) -> tuple:
    """The plane of ``data`` (an image layer's array, or a copy of it, with ``axes``) that the
    canvas shows, and the visible part of it.

    Returns (plane, plane_axes, region, transform): the plane keeps only the C, Y and X axes;
    region is (y0, y1, x0, x1) in its pixels (the whole plane when the canvas has not drawn
    yet); transform is the 2D scale/translate that puts a (Y, X) array over the layer.
    """
    dims_axes = axes.replace("C", "") if getattr(layer, "rgb", False) else axes
    point = np.asarray(layer.world_to_data(viewer.dims.point), float)
    index = []
    for a, n in zip(axes, data.shape):
        if a in "CYX":
            index.append(slice(None))
        else:
            i = int(round(point[dims_axes.index(a)])) if len(point) == len(dims_axes) else 0
            index.append(min(max(i, 0), n - 1))
    plane = data[tuple(index)]
    plane_axes = "".join(a for a in axes if a in "CYX")
    y, x = dims_axes.index("Y"), dims_axes.index("X")
    corners = np.asarray(layer.corner_pixels)
    height, width = data.shape[axes.index("Y")], data.shape[axes.index("X")]
    region = (0, height, 0, width)
    if corners.shape == (2, len(dims_axes)) and corners[1, y] > corners[0, y] and corners[1, x] > corners[0, x]:
        region = (int(corners[0, y]), int(corners[1, y]) + 1, int(corners[0, x]), int(corners[1, x]) + 1)
    scale, translate = np.asarray(layer.scale), np.asarray(layer.translate)
    transform = {"scale": (scale[y], scale[x]), "translate": (translate[y], translate[x])}
    return plane, plane_axes, region, transform
