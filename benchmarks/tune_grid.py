"""Which grid should `napari-unet tune` search? Training's (chosen for its time budget) or a
wider one, for a biologist tuning on a lab's own images. Per model and lab: choose on the
lab's decide volume, score on its report volume (benchmarks/tune_by_lab.sh makes the sets).

    python benchmarks/tune_grid.py TAG:MODEL ...

Caches the probabilities in bench_data/probs/TAG_lab_LAB_HALF.npz (cache_probabilities.py).
Rule, written before the first run (round 17): the wide grid becomes tune's if, over all
model x lab pairs, the report AP@0.5 gains >= +0.01 on average over training's grid and no
pair loses more than 0.02. Adopted: +0.038 on average, +0.011 the least (6 pairs,
benchmarks/results/r17_tune_grid.txt); napari_unet.instances.WIDE_GRID now holds the grid.
"""

import sys

from napari_unet.instances import NEAR_TIE, WIDE_GRID, grid_for, object_size, tune

sys.path.insert(0, "benchmarks")
from cache_probabilities import cached  # noqa: E402
from watershed_study import load, post_ap  # noqa: E402

LABS = ("bbbc050", "gonuclear")
WIDE = WIDE_GRID  # defined here first; adopted by napari-unet tune after this script's runs


def main(specs):
    gains = []
    print("model lab grid chosen(floor/fg/min/dyn) decide_ap report_ap")
    for spec in specs:
        tag, path = spec.split(":", 1)
        for lab in LABS:
            sets = {}
            for half in ("decide", "report"):
                sets[half] = load(cached(path, f"bench_data/lab_{lab}_{half}",
                                         f"bench_data/probs/{tag}_lab_{lab}_{half}.npz"))
            probs, truths = sets["decide"]
            base = grid_for(probs[0].shape[0], object_size(truths)["area"])
            scores = {}
            for name, grid in (("training", base), ("wide", {**base, **WIDE})):
                post, ap = tune(probs, truths, grid, tolerance=NEAR_TIE)
                scores[name] = post_ap(post, *sets["report"])
                print(tag, lab, name, f"{post.interior_threshold}/{post.foreground_threshold}/{post.min_size}/"
                      f"{post.seed_dynamic}", f"{ap:.4f}", f"{scores[name]:.4f}", flush=True)
            gains.append(scores["wide"] - scores["training"])
    print("report gains of the wide grid:", " ".join(f"{g:+.4f}" for g in gains),
          f"mean {sum(gains) / len(gains):+.4f}, worst {min(gains):+.4f}")
    adopted = sum(gains) / len(gains) >= 0.01 and min(gains) >= -0.02
    print("rule (mean >= +0.01, none below -0.02):", "adopt the wide grid" if adopted else "keep training's grid")


if __name__ == "__main__":
    main(sys.argv[1:])
