"""napari sample data: a real DSB2018 nuclei image (CC0) with its instance labels."""

from __future__ import annotations


def nuclei() -> list[tuple]:
    import tifffile

    from .sample import SAMPLE_IMAGE, SAMPLE_LABELS

    return [
        (tifffile.imread(SAMPLE_IMAGE), {"name": "nuclei"}, "image"),
        (tifffile.imread(SAMPLE_LABELS), {"name": "nuclei labels"}, "labels"),
    ]
