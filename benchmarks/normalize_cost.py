"""Cost of normalising one tile (``normalization.apply``, run on every tile of every prediction),
for an ordinary channel and an inverted one (``polarity="auto"`` on a bright background).

    python benchmarks/normalize_cost.py
"""

import timeit

import numpy as np

from napari_unet import normalization as norm

block = np.random.default_rng(0).integers(0, 4096, (1, 700, 700)).astype(np.uint16)  # a 512 core + halo
lo, hi = np.array([100.0], np.float32), np.array([3000.0], np.float32)
for name, a, b in (("as-is", lo, hi), ("inverted", hi, lo)):
    seconds = min(timeit.repeat(lambda: norm.apply(block, a, b), number=20, repeat=5)) / 20
    print(f"{name}: {seconds * 1e3:.2f} ms per 700x700 uint16 tile")
