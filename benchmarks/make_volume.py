"""A big real test volume: a 3D mosaic of crops of a real nuclei volume (random flips), written
page by page as a zlib-compressed, 256x256-tiled TIFF (never held whole in memory).

    python benchmarks/make_volume.py SOURCE.tif Z,Y,X OUT.tif
    e.g. python benchmarks/make_volume.py bench_data/vol_bbbc050_train/images/embryo_8cell.tif 512,1024,1024 /tmp/vol.tif
"""

import sys
from pathlib import Path

import numpy as np
import tifffile

CROP = (32, 64, 64)  # mosaic cell, a divisor of the 256x256 TIFF tiles in y and x


def main() -> None:
    source, shape, out = Path(sys.argv[1]), tuple(int(v) for v in sys.argv[2].split(",")), Path(sys.argv[3])
    vol = tifffile.imread(source)
    rng = np.random.default_rng(0)
    cz, cy, cx = CROP
    nz, ny, nx = (n // c for n, c in zip(shape, CROP))
    starts = [(z, y, x) for z in range(0, vol.shape[0] - cz + 1, 8) for y in range(0, vol.shape[1] - cy + 1, 16)
              for x in range(0, vol.shape[2] - cx + 1, 16)]

    def cell():
        z, y, x = starts[rng.integers(len(starts))]
        c = vol[z:z + cz, y:y + cy, x:x + cx]
        for axis in (0, 1, 2):
            if rng.random() < 0.5:
                c = np.flip(c, axis)
        return c

    def tiles():  # per slab of CROP[0] planes: its cells, then the planes' 256x256 tiles in order
        for _ in range(nz):
            slab = np.empty((cz, ny * cy, nx * cx), vol.dtype)
            for j in range(ny):
                for i in range(nx):
                    slab[:, j * cy:(j + 1) * cy, i * cx:(i + 1) * cx] = cell()
            for plane in slab:
                for y in range(0, plane.shape[0], 256):
                    for x in range(0, plane.shape[1], 256):
                        yield np.ascontiguousarray(plane[y:y + 256, x:x + 256])

    full = (nz * cz, ny * cy, nx * cx)
    tifffile.imwrite(out, tiles(), shape=full, dtype=vol.dtype, tile=(256, 256), compression="zlib",
                     metadata={"axes": "ZYX"})
    print(f"wrote {out}: {'x'.join(map(str, full))} {vol.dtype} from crops of {source.name}, "
          f"{out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
