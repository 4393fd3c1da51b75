"""DSB2018 test images rescaled by a factor (nuclei smaller or larger than in training).

    python benchmarks/make_rescaled.py bench_data/dsb_test 0.5 bench_data/dsb_test_x0.5
    python benchmarks/make_rescaled.py bench_data/dsb_test 2 bench_data/dsb_test_x2

Images: linear interpolation (anti-aliased when shrinking); labels: nearest neighbour, so every
nucleus keeps its id (nuclei smaller than a pixel or two after shrinking may vanish).
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
from skimage.transform import rescale


def main(src: str, factor: str, out: str) -> None:
    src, out, f = Path(src), Path(out), float(factor)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "images").glob("*.tif")):
        image = tifffile.imread(path)
        labels = tifffile.imread(src / "labels" / path.name)
        img = rescale(image.astype(np.float32), f, order=1, anti_aliasing=f < 1, preserve_range=True)
        lab = rescale(labels, f, order=0, anti_aliasing=False, preserve_range=True).astype(labels.dtype)
        tifffile.imwrite(out / "images" / path.name, np.clip(img, 0, 255).astype(image.dtype))
        tifffile.imwrite(out / "labels" / path.name, lab)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
