"""Cost of the live preview while training (issue 8): preview seconds against epoch seconds.

Trains the default model on the bundled sample image (520x696 DSB2018 nuclei) as the Train
widget would (default settings, no time limit), with the preview asking for the whole plane
(clipped to 512x512), and prints per epoch: training time, preview time, and the share of the
run spent in previews. ``--budget 1`` previews every epoch (the raw cost); the widget uses 0.1.

    python benchmarks/preview_cost.py --epochs 8 --budget 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import time

import tifffile
import torch

from napari_unet.data import Pair
from napari_unet.preview import Preview, PreviewRequest, with_previews
from napari_unet.sample import SAMPLE_IMAGE, SAMPLE_LABELS
from napari_unet.training import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, labels = tifffile.imread(SAMPLE_IMAGE), tifffile.imread(SAMPLE_LABELS)
    trainer = Trainer([Pair("nuclei", image, labels, "YX")], TrainConfig(epochs=args.epochs, device="cpu"),
                      prepare=False)
    request = PreviewRequest(image, "YX", (0, image.shape[0], 0, image.shape[1]))
    gen = with_previews(trainer.run(), lambda: trainer.model, lambda: trainer.device, lambda: request,
                        budget=args.budget)
    start = time.perf_counter()
    last_epoch_end, rows, preview = start, [], None
    for item in gen:
        if isinstance(item, Preview):
            preview = item
            rows[-1]["preview_s"] = round(item.seconds, 3)
            rows[-1]["preview_share_so_far"] = round(item.share, 3)
            last_epoch_end = time.perf_counter()
        elif item.kind == "epoch":
            now = time.perf_counter()
            rows.append({"epoch": item.epoch, "epoch_s": round(now - last_epoch_end, 2)})
            last_epoch_end = now
    total = time.perf_counter() - start
    spent = sum(r.get("preview_s", 0.0) for r in rows)
    for r in rows:
        print(json.dumps(r))
    region = preview.region if preview else None
    print(json.dumps({"previews": sum("preview_s" in r for r in rows), "epochs": len(rows), "preview_s": round(spent, 2),
                      "run_s": round(total, 1), "share": round(spent / total, 3), "region": region,
                      "budget": args.budget, "threads": args.threads}))


if __name__ == "__main__":
    main()
