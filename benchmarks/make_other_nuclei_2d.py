"""2D nuclei images from other labs and microscopes, for generalisation checks (never trained on).

    python benchmarks/make_other_nuclei_2d.py ../shared/data bench_data/other_nuclei_2d [EVERY]

XY slices of the two real 3D nuclei sets in ``shared/data/3d`` (see its README): BBBC050 mouse
embryo nuclei (H2B-mRFP1 widefield/confocal, 0.8 um pixels, every 5th of 51 slices) and GoNuclear
Arabidopsis ovule nuclei (confocal, 0.127 um pixels, textured DNA staining, every 10th of 100
slices). Slices with fewer than 2 nuclei are skipped. A slice's labels are the 3D instance ids
cut at that plane, renumbered (an object's cross-section keeps one id). ``EVERY``: take every
EVERY-th slice of both sets instead (round 17's denser per-lab sets use 2).
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
from skimage.segmentation import relabel_sequential

SETS = {"bbbc050_qcanet_nuclei": 5, "gonuclear_ovule_nuclei_mini": 10}


def main(data: str, out: str, step: str | None = None) -> None:
    data, out = Path(data) / "3d", Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    n = 0
    for name, every in SETS.items():
        every = int(step) if step else every
        for path in sorted((data / name / "images").glob("*.tif")):
            image = tifffile.imread(path)
            labels = tifffile.imread(data / name / "labels" / path.name)
            for z in range(every // 2, image.shape[0], every):
                lab, _, _ = relabel_sequential(labels[z].astype(np.int32))
                if lab.max() < 2:
                    continue
                stem = f"{name.split('_')[0]}_{path.stem}_z{z:03d}"
                tifffile.imwrite(out / "images" / f"{stem}.tif", image[z])
                tifffile.imwrite(out / "labels" / f"{stem}.tif", lab.astype(np.uint16))
                n += 1
    print(f"wrote {n} slices to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
