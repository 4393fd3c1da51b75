"""Record the object size of a model's training labels in its file (for models trained before
napari-unet stored it; newer training does it by itself).

    python benchmarks/record_object_size.py MODEL LABELS_DIR [OUT]

The labels are the ones named in the model file (``training.train_images``), looked up in
LABELS_DIR; the median area and equivalent diameter go to ``training.object_size``, which
``--object-size`` uses to rescale images.
"""

import sys
from pathlib import Path

import tifffile

from napari_unet.instances import object_size
from napari_unet.modelfile import UNetModel


def main(model_path: str, labels: str, out: str | None = None) -> None:
    model = UNetModel.load(model_path)
    names = model.training["train_images"]
    size = object_size([tifffile.imread(Path(labels) / f"{n}.tif") for n in names])
    model.training["object_size"] = size
    model.save(out or model_path)
    print(f"{len(names)} training label images: {size} -> {out or model_path}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
