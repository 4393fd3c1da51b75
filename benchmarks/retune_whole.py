"""Post-processing tuned on whole validation images instead of the training's crops.

    python benchmarks/retune_whole.py MODEL VAL_CACHE.npz [OTHER_CACHE.npz ...]

Caches come from benchmarks/cache_probabilities.py (VAL_CACHE: the model's own held-out
validation images, whole). Tunes the model's post-processing grid (``instances.grid_for``) on
them and prints AP@0.5 of the stored settings (tuned at the end of training on 256x256 crops of
the same images) and of the re-tuned ones, on every cache given.
"""

import sys
import time

from napari_unet.instances import PostProcessing, grid_for, tune
from napari_unet.modelfile import UNetModel

sys.path.insert(0, "benchmarks")
from watershed_study import load, post_ap as ap  # noqa: E402



def main(model_path, val, *others):
    model = UNetModel.load(model_path)
    stored = PostProcessing.from_json(model.postprocessing, 2)
    probs, truths = load(val)
    t0 = time.time()
    retuned, val_ap = tune(probs, truths, grid_for(2, model.training.get("object_size", {}).get("area")))
    print(f"{model_path}: stored {stored}\n  re-tuned on {val} ({time.time() - t0:.0f} s): {retuned}")
    for cache in (val, *others):
        p, t = (probs, truths) if cache == val else load(cache)
        print(f"  {cache}: stored {ap(stored, p, t):.4f}  re-tuned {ap(retuned, p, t):.4f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
