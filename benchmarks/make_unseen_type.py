"""Folders for measuring fine-tuning on an image type the model never saw (issue 7, goal 7).

    python benchmarks/make_unseen_type.py bench_data

From the DSB2018 splits of split_data.py, by the kind of each image (ap_by_type.image_kind:
"dark nuclei" = brightfield and stained tissue, objects darker than the background):
- ``dsb_train_nodark``: the training split without its dark-nuclei images (what the base model
  learns from; it never sees a dark-nuclei image);
- ``dsb_dark_tune``: 3 dark-nuclei images of the training split (the user's few annotated images);
- ``dsb_dark_test``: the dark-nuclei images of the test split (scored; never trained or tuned on).
Symbolic links, nothing copied.
"""

import sys
from pathlib import Path

import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from ap_by_type import image_kind  # noqa: E402
from split_data import link  # noqa: E402


def dark(folder: Path) -> list[Path]:
    return [f for f in sorted((folder / "images").glob("*.tif"))
            if image_kind(tifffile.imread(f), tifffile.imread(folder / "labels" / f.name))[0] == "dark nuclei"]


def main(bench: str) -> None:
    bench = Path(bench)
    train, test = bench / "dsb_train", bench / "dsb_test"
    dark_train, dark_test = dark(train), dark(test)
    names = {f.name for f in dark_train}
    link([f for f in sorted((train / "images").glob("*.tif")) if f.name not in names], train / "labels",
         bench / "dsb_train_nodark")
    link(dark_train[:3], train / "labels", bench / "dsb_dark_tune")
    link(dark_test, test / "labels", bench / "dsb_dark_test")
    print(f"dark-nuclei images: {len(dark_train)} in train ({len(dark_train[:3])} to fine-tune on), "
          f"{len(dark_test)} in test; dsb_train_nodark holds the other {len(list((train / 'images').glob('*.tif'))) - len(dark_train)}")


if __name__ == "__main__":
    main(sys.argv[1])
