"""Axis layouts: any image is seen as planes of (channels, Y, X) without copying it.

Axis letters: ``Y`` and ``X`` (required, in that order), ``C`` (channels; ``S`` for RGB
samples is read as ``C``), and any number of other axes (``Z``, ``T``, ...) whose planes are
predicted one by one with the 2D network.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ALLOWED = set("TZCYXSQ")


class AxesError(ValueError):
    """The axes do not match the array; the message says what would."""


def normalize_axes(axes: str, shape: tuple[int, ...]) -> str:
    axes = axes.upper().replace("S", "C")
    if len(axes) != len(shape):
        raise AxesError(
            f"axes {axes!r} name {len(axes)} axes but the image has {len(shape)} "
            f"(shape {tuple(shape)}); give one letter per axis, e.g. {_example(shape)!r}"
        )
    bad = set(axes) - ALLOWED
    if bad:
        raise AxesError(f"unknown axis letter(s) {sorted(bad)} in {axes!r}; use T, Z, C, Y, X")
    if len(set(axes)) != len(axes):
        raise AxesError(f"axes {axes!r} repeat a letter")
    if "Y" not in axes or "X" not in axes or axes.index("Y") > axes.index("X"):
        raise AxesError(f"axes {axes!r} must contain Y and X, in that order")
    return axes


def _example(shape: tuple[int, ...]) -> str:
    return {2: "YX", 3: "ZYX or YXC", 4: "TZYX or ZCYX"}.get(len(shape), "TZCYX")


def guess_axes(shape: tuple[int, ...], in_channels: int) -> str:
    """A layout for ``shape``; raises :class:`AxesError` when the guess would be a coin toss."""
    ndim = len(shape)
    if ndim < 2:
        raise AxesError(f"an image needs at least 2 dimensions (Y, X); got shape {tuple(shape)}")
    if ndim == 2:
        return "YX"
    if ndim == 3:
        last_is_rgb = shape[-1] in (3, 4) and shape[0] > 4
        if in_channels > 1:
            if shape[-1] == in_channels:
                return "YXC"
            if shape[0] == in_channels:
                return "CYX"
            raise AxesError(
                f"the model takes {in_channels} channels but no axis of shape {tuple(shape)} "
                f"has that size; pass --axes"
            )
        if last_is_rgb:
            raise AxesError(
                f"shape {tuple(shape)} looks like an RGB(A) image but the model takes 1 "
                "channel; convert it to grayscale or pass --axes (e.g. YXC)"
            )
        return "ZYX"
    if ndim == 4:
        if in_channels > 1 and shape[1] == in_channels:
            return "ZCYX"
        if in_channels > 1 and shape[-1] == in_channels:
            return "ZYXC"
        if in_channels == 1:
            return "TZYX"
    raise AxesError(f"cannot tell the axes of shape {tuple(shape)}; pass --axes (e.g. TZCYX)")


class Planes:
    """An array seen as ``n`` planes (or volumes) of shape (channels, *spatial), read lazily.

    ``spatial`` names the axes a network sees at once: ``YX`` (2D networks: every other axis,
    Z and T included, is a loop over planes) or ``ZYX`` (3D networks: T is the loop). Works with
    numpy arrays, memory maps and any array-like that supports basic slicing (dask, zarr).
    Only the requested block is read.
    """

    def __init__(self, array: Any, axes: str, spatial: str = "YX") -> None:
        self.array = array
        self.axes = normalize_axes(axes, tuple(array.shape))
        if spatial not in ("YX", "ZYX"):
            raise AxesError(f"spatial axes must be YX or ZYX, got {spatial!r}")
        if spatial == "ZYX" and "Z" not in self.axes:
            raise AxesError(
                f"a 3D network needs a Z axis, but the image's axes are {self.axes!r}; pass --axes "
                "(e.g. ZYX) or use a 2D model"
            )
        self.spatial = spatial
        shape = dict(zip(self.axes, array.shape))
        self.other_axes = [a for a in self.axes if a != "C" and a not in spatial]
        self.other_shape = tuple(shape[a] for a in self.other_axes)
        self.n = int(math.prod(self.other_shape))
        self.channels = shape.get("C", 1)
        self.height, self.width = shape["Y"], shape["X"]
        self.spatial_shape = tuple(shape[a] for a in spatial)
        if min(self.spatial_shape) < 1 or self.n < 1:
            raise AxesError(f"the image is empty (shape {tuple(array.shape)})")

    @property
    def label_axes(self) -> str:
        """Axes of the labels: the image's, without the channel axis."""
        return self.axes.replace("C", "")

    @property
    def label_shape(self) -> tuple[int, ...]:
        shape = dict(zip(self.axes, self.array.shape))
        return tuple(shape[a] for a in self.label_axes)

    def _plane_index(self, i: int) -> dict[str, int]:
        return dict(zip(self.other_axes, np.unravel_index(i, self.other_shape))) if self.other_axes else {}

    def _index(self, i: int, slices: tuple[slice, ...], axes: str) -> tuple:
        if len(slices) != len(self.spatial):
            raise ValueError(f"{len(slices)} slices given for the spatial axes {self.spatial}")
        where = self._plane_index(i)
        along = dict(zip(self.spatial, slices))
        return tuple(along[a] if a in along else slice(None) if a == "C" else int(where[a]) for a in axes)

    def read(self, i: int, *slices: slice) -> np.ndarray:
        """Block (channels, *spatial) of plane ``i``: one slice per spatial axis."""
        block = np.asarray(self.array[self._index(i, slices, self.axes)])
        kept = [a for a in self.axes if a == "C" or a in self.spatial]
        if "C" not in kept:
            return block[None]
        return np.moveaxis(block, kept.index("C"), 0)

    def label_index(self, i: int, *slices: slice) -> tuple:
        """Index into a labels array (``label_shape``) for a block of plane ``i``."""
        return self._index(i, slices, self.label_axes)

    def describe(self) -> str:
        what = "plane" if self.spatial == "YX" else "volume"
        return (
            f"axes {self.axes}, {self.n} {what}(s) of {'x'.join(map(str, self.spatial_shape))}, "
            f"{self.channels} channel(s)"
        )
