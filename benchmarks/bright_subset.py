"""Links to the images of a split whose background is bright (median above the middle of the
1st-99.8th percentile range: DSB2018's grey brightfield-like images with dark nuclei), with
their labels, in SRC_bright/{images,labels}; prints how many nuclei they hold. "Bright" is
what ``train --polarity auto`` inverts: the decision of ``normalization.percentiles``.

    python benchmarks/bright_subset.py bench_data/dsb_test [bench_data/dsb_val_s0 ...]
"""

import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_unet.axes import Planes
from napari_unet.config import Normalization
from napari_unet.normalization import percentiles


def bright(path: Path) -> bool:
    lo, hi = percentiles(Planes(tifffile.imread(path), "YX"), Normalization(polarity="auto"))
    return bool(lo[0] > hi[0])  # inverted: the low percentile maps to 1


def main(split: str) -> None:
    src = Path(split)
    out = src.with_name(src.name + "_bright")
    found = objects = total = 0
    for f in sorted((src / "images").glob("*.tif")):
        n = len(np.unique(tifffile.imread(src / "labels" / f.name))) - 1
        total += n
        if not bright(f):
            continue
        found, objects = found + 1, objects + n
        for kind in ("images", "labels"):
            (out / kind).mkdir(parents=True, exist_ok=True)
            link = out / kind / f.name
            if not link.exists():
                link.symlink_to((src / kind / f.name).resolve())
    print(f"{src}: {found} images with a bright background, {objects} of {total} nuclei -> {out}")


if __name__ == "__main__":
    for split in sys.argv[1:]:
        main(split)
