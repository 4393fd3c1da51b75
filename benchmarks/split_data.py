"""Make the train/test folders used in docs/benchmarks.md (symbolic links, nothing copied).

DSB2018: sorted file names, every fifth file (index % 5 == 0) is the test split (88 images),
the rest train (348 images). ISBI 2012: slices 00-24 train, 25-29 test (as the data README says).

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
    print(f"wrote {out}/dsb_train, dsb_test, isbi_train, isbi_test")


if __name__ == "__main__":
    main(*sys.argv[1:3])
