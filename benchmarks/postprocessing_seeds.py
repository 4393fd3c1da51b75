"""Seeds for the watershed: thresholded distance vs h-maxima, on a model's validation images.

    python benchmarks/postprocessing_seeds.py MODEL [IMAGES_DIR LABELS_DIR]

Predicts the model's own validation images (``training.validation_images``, looked up in the
DSB2018 training folders: never the test split) once, then scores AP@0.5 of several seed rules
on the same probabilities: fixed thresholds of the distance (the old rule) and h-maxima with
their dynamic and height floor. Prints one line per setting: AP@0.5, TP, FP, FN.
"""

import itertools
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_unet import metrics as M
from napari_unet.config import PredictConfig
from napari_unet.instances import drop_small, segment
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict, run


def main(model_path: str, images: str = "bench_data/dsb_train/images", labels: str = "bench_data/dsb_train/labels") -> None:
    model = UNetModel.load(model_path)
    names = model.training["validation_images"]
    probs, truth = [], []
    for name in names:
        image = tifffile.imread(Path(images) / f"{name}.tif")
        truth.append(tifffile.imread(Path(labels) / f"{name}.tif"))
        result = run(predict(model, image, "YX", PredictConfig(tile=512, device="cpu"), probabilities=True))
        probs.append(np.asarray(result.probabilities, np.float32))
    min_size = int(model.postprocessing.get("min_size", 15))

    def score(**kw) -> str:
        counts = [M.match_counts(t, drop_small(segment(p, **kw), min_size), (0.5,)) for p, t in zip(probs, truth)]
        s = M.summarize_matches(counts)
        return f"AP@0.5 {s['ap@0.5']:.4f}  TP {s['tp@0.5']}  FP {s['fp@0.5']}  FN {s['fn@0.5']}"

    print(f"{len(names)} validation images of {model_path}, minimum size {min_size}")
    for t in (0.3, 0.4, 0.5, 0.6, 0.7):
        print(f"threshold seeds {t}, foreground 0.5: {score(interior_threshold=t, foreground_threshold=0.5)}")
    for t, h, fg in itertools.product((0.3, 0.4, 0.5), (0.05, 0.1, 0.2), (0.5, 0.6)):
        print(f"h-maxima floor {t}, dynamic {h}, foreground {fg}: "
              f"{score(interior_threshold=t, foreground_threshold=fg, seed_dynamic=h)}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
