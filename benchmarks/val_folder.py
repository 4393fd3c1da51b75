"""Links to the validation images that training runs held out, for scoring them at their own size.

    python benchmarks/val_folder.py OUT TRAIN_SPLIT MODEL [MODEL ...]

Reads ``training.validation_images`` from each model file, checks that all the models held out
the same images (the arms of an A/B with one seed must), and links those images and their
labels from TRAIN_SPLIT/{images,labels} into OUT/{images,labels}. Existing links are kept.
"""

import sys
from pathlib import Path

from napari_unet.modelfile import UNetModel


def main(out: str, train: str, models: list[str]) -> None:
    held_out = [sorted(UNetModel.load(m).training["validation_images"]) for m in models]
    names = held_out[0]
    for model, other in zip(models[1:], held_out[1:]):
        if other != names:
            sys.exit(f"{model} held out other validation images than {models[0]}")
    for kind in ("images", "labels"):
        (Path(out) / kind).mkdir(parents=True, exist_ok=True)
        for n in names:
            dst = Path(out) / kind / f"{n}.tif"
            if not dst.exists():
                dst.symlink_to((Path(train) / kind / f"{n}.tif").resolve())
    print(f"{len(names)} validation images in {out}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
