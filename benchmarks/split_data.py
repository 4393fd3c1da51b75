"""Make the train/test folders used in docs/benchmarks.md (symbolic links, nothing copied).

DSB2018: sorted file names, every fifth file (index % 5 == 0) is the test split (88 images),
the rest train (348 images). ISBI 2012: slices 00-24 train, 25-29 test (as the data README says).
Volumes (3D nuclei, ZYX): GoNuclear ovule crop 1135 trains, 1136 tests; BBBC050 embryo
8-cell trains, 16-cell tests (``vol_<set>_train``, ``vol_<set>_test``).

    python benchmarks/split_data.py ../shared/data bench_data
"""

import sys
from pathlib import Path


def link(files, labels_dir, out):
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for f in files:
        for kind, src in (("images", f), ("labels", labels_dir / f.name)):
            dst = out / kind / f.name
            if not dst.exists():
                dst.symlink_to(src.resolve())


def main(data: str, out: str) -> None:
    data, out = Path(data), Path(out)
    dsb = sorted((data / "dsb2018" / "images").glob("*.tif"))
    link([f for i, f in enumerate(dsb) if i % 5 != 0], data / "dsb2018" / "labels", out / "dsb_train")
    link([f for i, f in enumerate(dsb) if i % 5 == 0], data / "dsb2018" / "labels", out / "dsb_test")
    isbi = sorted((data / "isbi2012_em" / "images").glob("*.tif"))
    link([f for f in isbi if int(f.stem) <= 24], data / "isbi2012_em" / "labels", out / "isbi_train")
    link([f for f in isbi if int(f.stem) >= 25], data / "isbi2012_em" / "labels", out / "isbi_test")
    volumes = {"gonuclear": ("gonuclear_ovule_nuclei_mini", "1135", "1136"),
               "bbbc050": ("bbbc050_qcanet_nuclei", "embryo_8cell", "embryo_16cell")}
    for short, (folder, train, test) in volumes.items():
        src = data / "3d" / folder
        for split, name in (("train", train), ("test", test)):
            link([src / "images" / f"{name}.tif"], src / "labels", out / f"vol_{short}_{split}")
    print(f"wrote {out}/dsb_train, dsb_test, isbi_train, isbi_test, vol_*_train, vol_*_test")


if __name__ == "__main__":
    main(*sys.argv[1:3])
