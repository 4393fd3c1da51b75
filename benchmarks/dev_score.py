"""Score a model on its own validation images (a "dev" score for choosing settings).

    python benchmarks/dev_score.py MODEL IMAGES_DIR LABELS_DIR [--tta]

The images are the ones named in the model file (``training.validation_images``), looked up
in the training folders: held out from training, never the test split. Settings (targets,
architecture, schedule) are chosen on this score; the test split is scored once, at the end.
"""

import argparse
import json
from pathlib import Path

import tifffile

from napari_unet.config import PredictConfig
from napari_unet.evaluation import Scorer
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict, run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("labels")
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()
    model = UNetModel.load(args.model)
    scorer = Scorer(model)
    names = model.training["validation_images"]
    for name in names:
        image = tifffile.imread(Path(args.images) / f"{name}.tif")
        labels = tifffile.imread(Path(args.labels) / f"{name}.tif")
        result = run(predict(model, image, "YX", PredictConfig(tile=512, device="cpu", tta=args.tta)))
        scorer.add(labels, result.labels)
    summary = scorer.summary()
    keys = ["ap@0.5", "ap@0.7", "ap@0.9", "precision@0.5", "recall@0.5"]
    print(json.dumps({"model": args.model, "dev_images": len(names), "tta": args.tta,
                      **{k: round(summary[k], 4) for k in keys if k in summary}}))


if __name__ == "__main__":
    main()
