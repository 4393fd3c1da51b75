"""Per-image percentile normalisation.

Statistics are computed once over the whole image (all planes, per channel) and applied to
every tile: per-tile statistics would make neighbouring tiles disagree and show as seams.
"""

from __future__ import annotations

import warnings

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
    total = planes.n * int(np.prod(planes.spatial_shape))
    stride = max(1, int(np.ceil(np.sqrt(total / EXACT_LIMIT))))  # in Y and X; every z plane
    slices = tuple(slice(None, None, stride) if a in "YX" else slice(None) for a in planes.spatial)
    blocks = [planes.read(i, *slices).reshape(planes.channels, -1) for i in range(planes.n)]
    return np.concatenate(blocks, axis=1)


#: a percentile range below this is no range: dividing by it would blow pixel values up to
#: ~1e8 and beyond, where bfloat16/float16 overflow (NaN probabilities)
MIN_RANGE = 1e-6


class NormalizationWarning(UserWarning):
    """The image's percentiles could not be used; the message says what was used instead."""


def percentiles(planes: Planes, settings: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel values mapped to 0 and 1 by :func:`apply`: the low and high percentiles over
    the whole image.

    When they are equal (sparse fluorescence: most pixels have the background value) the
    channel's minimum and maximum are used instead, and when the channel is flat, a range of
    1 from its value; both with a :class:`NormalizationWarning`. With ``polarity="auto"``, a
    channel whose median lies above the middle of that range (a bright background) gets them
    the other way round: high maps to 0 and low to 1, an inverted image.
    """
    sample = _sample(planes)
    check_finite(sample)
    lo = np.percentile(sample, settings.low, axis=1).astype(np.float32)
    hi = np.percentile(sample, settings.high, axis=1).astype(np.float32)
    for c in np.flatnonzero(hi - lo < MIN_RANGE):
        which = f"channel {c} of the image" if planes.channels > 1 else "the image"
        low, high = float(sample[c].min()), float(sample[c].max())
        if high - low >= MIN_RANGE:
            warnings.warn(
                f"{which}: the {settings.low:g} and {settings.high:g} percentiles are both {float(lo[c]):g} "
                f"(most pixels have that value: a sparse signal?); normalising with its minimum and "
                f"maximum ({low:g} .. {high:g}) instead",
                NormalizationWarning, stacklevel=2,
            )
            lo[c], hi[c] = low, high
        else:
            warnings.warn(
                f"{which} is flat (every pixel is {low:g}): there is nothing to segment; normalising "
                "with a scale of 1",
                NormalizationWarning, stacklevel=2,
            )
            lo[c], hi[c] = low, low + 1
    if settings.polarity == "auto":
        bright = np.median(sample, axis=1) > (lo + hi) / 2
        lo, hi = np.where(bright, hi, lo), np.where(bright, lo, hi)
    return lo, hi


def apply(block: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map ``lo`` to 0 and ``hi`` to 1 for a (channels, ...) block; float32 result (``hi``
    below ``lo``: an inverted channel)."""
    shape = (-1,) + (1,) * (block.ndim - 1)
    scale = hi - lo
    scale = np.copysign(np.maximum(np.abs(scale), MIN_RANGE), scale).reshape(shape)
    return (block.astype(np.float32) - lo.reshape(shape)) / scale
