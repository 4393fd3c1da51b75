"""Per-image percentile normalisation.

Statistics are computed once over the whole image (all planes, per channel) and applied to
every tile: per-tile statistics would make neighbouring tiles disagree and show as seams.
"""

from __future__ import annotations

import numpy as np

from .axes import Planes
from .config import Normalization

#: above this many pixels per channel, percentiles are taken on a regular sub-grid
EXACT_LIMIT = 2**25


class NonFiniteError(ValueError):
    """The image has NaN or infinite pixels."""


def check_finite(block: np.ndarray, what: str = "the image") -> None:
    if np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
        bad = int((~np.isfinite(block)).sum())
        raise NonFiniteError(
            f"{what} contains {bad} NaN or infinite pixel(s); replace them (for example with "
            "the image's median or 0) before using it"
        )


def _sample(planes: Planes) -> np.ndarray:
    """(channels, k) pixel values: every pixel, or a regular grid of about EXACT_LIMIT."""
    total = planes.n * planes.height * planes.width
    stride = max(1, int(np.ceil(np.sqrt(total / EXACT_LIMIT))))
    ys, xs = slice(None, None, stride), slice(None, None, stride)
    blocks = [planes.read(i, ys, xs).reshape(planes.channels, -1) for i in range(planes.n)]
    return np.concatenate(blocks, axis=1)


def percentiles(planes: Planes, settings: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel low and high percentiles over the whole image."""
    sample = _sample(planes)
    check_finite(sample)
    lo = np.percentile(sample, settings.low, axis=1).astype(np.float32)
    hi = np.percentile(sample, settings.high, axis=1).astype(np.float32)
    return lo, hi


def apply(block: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map ``lo`` to 0 and ``hi`` to 1 for a (channels, ...) block; float32 result."""
    shape = (-1,) + (1,) * (block.ndim - 1)
    scale = np.maximum(hi - lo, 1e-6).reshape(shape)
    return (block.astype(np.float32) - lo.reshape(shape)) / scale
