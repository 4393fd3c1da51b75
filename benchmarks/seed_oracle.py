"""Which part of instance post-processing limits AP: the seeds, or the rest?

    python benchmarks/seed_oracle.py MODEL IMAGES_DIR LABELS_DIR [OUT.txt]

On the model's own validation images (``training.validation_images``, looked up in the training
folders: never the test split), the model's probabilities are segmented three ways:
- *tuned*: the model's stored post-processing (h-maxima seeds of the predicted distance);
- *oracle seeds*: one seed per true object (the pixel deepest inside it), grown by the same
  watershed on the predicted distance into the predicted foreground: what perfect seed
  detection would give with this network's maps;
- *oracle markers*: the true objects themselves as markers: what is left is only the
  foreground and the watershed lines.
The gaps between the three say where AP@0.5 is lost. Then seed settings beyond the tuning
grid (smoothing of the height, lower dynamics) on the same images.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from napari_unet._generators import run
from napari_unet.config import PredictConfig
from napari_unet.instances import PostProcessing, drop_small, maxima, merge_enclosed, segment
from napari_unet.metrics import match_counts, summarize_matches
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict


def ap(predicted: list, truths: list) -> float:
    return summarize_matches([match_counts(t, p, (0.5,)) for p, t in zip(predicted, truths)])["ap@0.5"]


def deepest_pixels(labels: np.ndarray) -> np.ndarray:
    """One marker pixel per object, where its distance to the outline is largest."""
    seeds = np.zeros(labels.shape, np.int32)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        d = ndi.distance_transform_edt(labels[sl] == i)
        at = np.unravel_index(np.argmax(d), d.shape)
        seeds[tuple(s.start + a for s, a in zip(sl, at))] = i
    return seeds


def grown(p: np.ndarray, markers: np.ndarray, post: PostProcessing) -> np.ndarray:
    foreground = (p[0] > post.foreground_threshold) | (markers > 0)
    return drop_small(merge_enclosed(watershed(-p[1], markers=markers, mask=foreground)), post.min_size)


def main(model_path: str, images: str, labels: str, out: str | None = None) -> None:
    model = UNetModel.load(model_path)
    if model.config.instance_outputs() != 2:
        raise SystemExit("this benchmark is for models with distance targets")
    post = PostProcessing.from_json(model.postprocessing, model.config.classes)
    probs, truths = [], []
    for name in model.training["validation_images"]:
        image = tifffile.imread(Path(images) / f"{name}.tif")
        truths.append(tifffile.imread(Path(labels) / f"{name}.tif"))
        probs.append(run(predict(model, image, "YX", PredictConfig(tile=512), probabilities=True)).probabilities)
    lines = [f"model {model_path}, {len(probs)} validation images, stored post-processing {post}"]
    lines.append(f"tuned (stored settings):              AP@0.5 {ap([post.apply(p) for p in probs], truths):.4f}")
    lines.append(f"oracle seeds (one per true object):   AP@0.5 "
                 f"{ap([grown(p, deepest_pixels(t), post) for p, t in zip(probs, truths)], truths):.4f}")
    lines.append(f"oracle markers (the true objects):    AP@0.5 "
                 f"{ap([grown(p, t.astype(np.int32), post) for p, t in zip(probs, truths)], truths):.4f}")
    for dynamic in (0.02, 0.05, 0.1, 0.2):
        peaks = [maxima(p, dynamic) for p in probs]  # once per dynamic, as the tuning does
        for seed in (0.3, 0.5):
            segmented = [drop_small(segment(p, seed, post.foreground_threshold, dynamic, m), post.min_size)
                         for p, m in zip(probs, peaks)]
            lines.append(f"seeds: dynamic {dynamic}, height > {seed}: AP@0.5 {ap(segmented, truths):.4f}")
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
