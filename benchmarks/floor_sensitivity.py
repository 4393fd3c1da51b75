"""AP@0.5 of a model's stored post-processing with the seed floor (interior_threshold) varied.

    python benchmarks/floor_sensitivity.py MODEL TAG

Needs bench_data/probs/TAG_{val,test,other_decide}.npz (benchmarks/cache_probabilities.py).
"""

import sys

from napari_unet.instances import PostProcessing
from napari_unet.modelfile import UNetModel

sys.path.insert(0, "benchmarks")
from watershed_study import load, post_ap  # noqa: E402


def main(model_path, tag):
    stored = PostProcessing.from_json(UNetModel.load(model_path).postprocessing, 2)
    for part in ("val", "test", "other_decide"):
        probs, truths = load(f"bench_data/probs/{tag}_{part}.npz")
        row = []
        for floor in (0.3, 0.4, 0.5, 0.6):
            post = PostProcessing(floor, stored.foreground_threshold, stored.min_size, stored.seed_dynamic)
            row.append(f"{floor}:{post_ap(post, probs, truths):.4f}")
        print(tag, part, stored, " ".join(row), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
