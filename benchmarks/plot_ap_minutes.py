"""Validation AP@0.5 against training minutes, from the history stored in model files.

    python benchmarks/plot_ap_minutes.py OUT.png LABEL=MODEL [LABEL=log:TRAIN.log ...] [LABEL=@minutes:ap,minutes:ap]

``LABEL=log:PATH`` reads the epoch lines of a committed training log (``benchmarks/results/*_train.log``,
for runs whose model file is not committed). ``LABEL=@...`` adds measured points by hand (e.g. the
old default, whose model file and log are gone).
Each model's history records, per validation, the seconds since the run started and the
validation AP (on that run's validation subset; the final test scores are in benchmarks.md).
"""

import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from napari_unet.modelfile import UNetModel  # noqa: E402


_EPOCH = re.compile(r"^epoch \d+/\d+: .*ap@0\.5 ([0-9.]+) .*, (\d+) s$")


def log_points(path: str) -> list[tuple[float, float]]:
    """(minutes, validation AP@0.5) of each epoch line of a ``napari-unet train`` log."""
    pts = []
    with open(path) as f:
        for line in f:
            m = _EPOCH.match(line.strip())
            if m:
                pts.append((int(m.group(2)) / 60, float(m.group(1))))
    if not pts:
        raise SystemExit(f"{path}: no epoch lines with 'ap@0.5 ...' and seconds")
    return pts


def main(out: str, *series: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for item in series:
        label, source = item.split("=", 1)
        if source.startswith("@"):
            pts = [tuple(map(float, p.split(":"))) for p in source[1:].split(",")]
        elif source.startswith("log:"):
            pts = log_points(source[4:])
        else:
            history = UNetModel.load(source).history
            pts = [(h["seconds"] / 60, h["ap@0.5"]) for h in history if "ap@0.5" in h and "seconds" in h]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("training minutes (CPU: 2 cores unless the label says 1)")
    ax.set_ylabel("validation AP@0.5")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
