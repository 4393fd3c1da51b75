"""A big real test image: a mosaic of 256x256 crops of DSB2018 training images, written as a
zlib-compressed tiled TIFF (what whole-slide scanners and stitching tools write).

    python benchmarks/make_mosaic.py bench_data/dsb_train/images SIZE OUT.tif
"""

import sys
from pathlib import Path

import numpy as np
import tifffile


def main() -> None:
    folder, size, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    crops = []
    for path in sorted(folder.glob("*.tif")):
        img = tifffile.imread(path)
        if img.ndim == 3:
            img = img[..., 0] if img.shape[-1] in (3, 4) else img[0]
        if min(img.shape) >= 256:
            crops.append(img[:256, :256].astype(np.uint8))
    n = size // 256
    rng = np.random.default_rng(0)

    def chunks():  # 256x256 tiles in row-major order: the mosaic is never held whole
        for _ in range(n):
            for k in rng.integers(0, len(crops), n):
                yield crops[k]

    tifffile.imwrite(out, chunks(), shape=(size, size), dtype=np.uint8, tile=(256, 256), compression="zlib")
    print(f"wrote {out}: {size}x{size} from {len(crops)} DSB2018 crops, {out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
