"""Should training's own tuning search further too? Round 17's per-lab tuning always chose the
upper ends of the wide grid (foreground 0.7, dynamic 0.4), beyond training's grid (foreground
0.5 / 0.6, dynamic 0.05-0.2). Here: tune a 20-minute model on its own DSB2018 validation images
(whole images, as a proxy for training's validation windows) with training's grid and with it
extended to foreground 0.7 and dynamics 0.3 / 0.4; score the DSB2018 test split and other labs'
nuclei (other_nuclei_2d) with each choice.

    python benchmarks/train_grid_dsb.py TAG:MODEL:VALFOLDER ...

VALFOLDER: benchmarks/val_folder.py OUT bench_data/dsb_train MODEL. Probabilities are cached in
bench_data/probs/TAG_{val,dsb_test,other}.npz.
Rule, written before the first run (round 17): training's grid is extended only if DSB test
gains >= +0.01 AP@0.5 for every model and other_nuclei_2d loses no more than 0.01 for any.
"""

import sys

from napari_unet.instances import NEAR_TIE, grid_for, object_size, tune

sys.path.insert(0, "benchmarks")
from cache_probabilities import cached  # noqa: E402
from watershed_study import load, post_ap  # noqa: E402

EXTENDED = {"foreground_threshold": (0.5, 0.6, 0.7), "seed_dynamic": (0.05, 0.1, 0.2, 0.3, 0.4)}


def main(specs):
    verdict = []
    print("model grid chosen(floor/fg/min/dyn) val_ap dsb_test other_nuclei_2d")
    for spec in specs:
        tag, path, val = spec.split(":")
        sets = {}
        for part, folder in (("val", val), ("dsb_test", "bench_data/dsb_test"), ("other", "bench_data/other_nuclei_2d")):
            sets[part] = load(cached(path, folder, f"bench_data/probs/{tag}_{part}.npz"))
        probs, truths = sets["val"]
        base = grid_for(probs[0].shape[0], object_size(truths)["area"])
        scores = {}
        for name, grid in (("training", base), ("extended", {**base, **EXTENDED})):
            post, ap = tune(probs, truths, grid, tolerance=NEAR_TIE)
            scores[name] = [post_ap(post, *sets[p]) for p in ("dsb_test", "other")]
            print(tag, name, f"{post.interior_threshold}/{post.foreground_threshold}/{post.min_size}/{post.seed_dynamic}",
                  f"{ap:.4f}", " ".join(f"{x:.4f}" for x in scores[name]), flush=True)
        verdict.append((scores["extended"][0] - scores["training"][0], scores["extended"][1] - scores["training"][1]))
    print("gains of the extended grid (dsb_test, other):", verdict)
    extend = all(d >= 0.01 for d, _ in verdict) and all(o >= -0.01 for _, o in verdict)
    print("rule (dsb_test >= +0.01 for every model, other >= -0.01):", "extend training's grid" if extend else "keep it")


if __name__ == "__main__":
    main(sys.argv[1:])
