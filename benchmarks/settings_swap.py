"""Separate what the network learned from what the tuning chose: AP@0.5 of each model's cached
probabilities with its own stored post-processing and with fixed seed settings (floor, dynamic),
the foreground threshold and minimum size kept as stored.

    python benchmarks/settings_swap.py TAG:MODEL ... -- PART ...

Needs bench_data/probs/TAG_PART.npz (benchmarks/cache_probabilities.py MODEL FOLDER OUT.npz).
"""

import sys
from dataclasses import replace

from napari_unet.instances import PostProcessing
from napari_unet.modelfile import UNetModel

sys.path.insert(0, "benchmarks")
from watershed_study import load, post_ap  # noqa: E402

SEEDS = ((0.4, 0.1), (0.5, 0.2))


def main(args):
    split = args.index("--")
    models, parts = args[:split], args[split + 1:]
    print("model part stored own " + " ".join(f"floor{f}/dyn{d}" for f, d in SEEDS))
    for spec in models:
        tag, path = spec.split(":", 1)
        stored = PostProcessing.from_json(UNetModel.load(path).postprocessing, 2)
        for part in parts:
            probs, truths = load(f"bench_data/probs/{tag}_{part}.npz")
            row = [f"{post_ap(stored, probs, truths):.4f}"]
            for floor, dynamic in SEEDS:
                post = replace(stored, interior_threshold=floor, seed_dynamic=dynamic)
                row.append(f"{post_ap(post, probs, truths):.4f}")
            print(tag, part, f"({stored.interior_threshold}/{stored.seed_dynamic}/fg{stored.foreground_threshold}/"
                  f"min{stored.min_size})", " ".join(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
