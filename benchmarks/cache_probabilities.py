"""Predict a folder once and keep the probabilities, for post-processing studies.

    python benchmarks/cache_probabilities.py MODEL FOLDER OUT.npz

FOLDER holds images/ and labels/ (same file names). OUT.npz stores, per image, the model's
probabilities (as ``predict`` returns them with the model's own defaults, float16) and the
true labels, so that post-processing rules can be compared without predicting again.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict


def main(model_path: str, folder: str, out: str) -> None:
    model = UNetModel.load(model_path)
    arrays = {}
    for path in sorted((Path(folder) / "images").glob("*.tif")):
        image = tifffile.imread(path)
        result = run(predict(model, image, "YX", PredictConfig(tile=512), probabilities=True))
        arrays[f"p/{path.stem}"] = result.probabilities.astype(np.float16)
        arrays[f"t/{path.stem}"] = tifffile.imread(Path(folder) / "labels" / path.name).astype(np.int32)
    tmp = Path(out).with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    print(f"{out}: {len(arrays) // 2} images")


def cached(model_path: str, folder: str, out: str) -> str:
    """``out``, computed by :func:`main` first when it does not exist yet."""
    if not Path(out).exists():
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        main(model_path, folder, out)
    return out


if __name__ == "__main__":
    main(*sys.argv[1:4])
