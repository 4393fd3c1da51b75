"""Tune a model's post-processing on its own validation images and store it.

    python benchmarks/tune_postprocessing.py MODEL IMAGES_DIR LABELS_DIR OUT_MODEL

The validation images are the ones named in the model file (``training.validation_images``),
looked up in IMAGES_DIR/LABELS_DIR (the training folders): never tune on test images. Training
does this automatically at its end; this script brings older model files up to date.
Instance models: the watershed settings (best AP@0.5). Two-class semantic (membrane) models:
the threshold, then closed membranes (kept when their adapted Rand error is lower), as
training's own tuning does.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import tifffile

from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.evaluation import tune_membranes_steps
from napari_unet.instances import tune
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict
from napari_unet.targets import semantic_targets


def main(model_path: str, images: str, labels: str, out: str) -> None:
    model = UNetModel.load(model_path)
    names = model.training["validation_images"]
    probs, truths = [], []
    for name in names:
        image = tifffile.imread(Path(images) / f"{name}.tif")
        truths.append(tifffile.imread(Path(labels) / f"{name}.tif"))
        probs.append(run(predict(model, image, "YX", PredictConfig(tile=512), probabilities=True)).probabilities)
    if model.config.mode == "instance":
        post, ap = tune(probs, truths)
        model.postprocessing = {**post.to_json(), "validation_ap@0.5": ap}
        print(f"{len(names)} validation images: {post} -> AP@0.5 {ap:.4f}; saved {out}")
    else:
        samples = [SimpleNamespace(targets=semantic_targets(t, False)) for t in truths]
        model.postprocessing = run(tune_membranes_steps(samples, probs))
        print(f"{len(names)} validation images: {model.postprocessing}; saved {out}")
    model.save(out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
