"""Training and evaluation reports as PNG files and JSON (what the seed tutorials show)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .modelfile import atomic_write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_curves(history: list[dict], path: Path) -> Path | None:
    """Loss (training and validation) and the validation metric per epoch."""
    if not history:
        return None
    Figure = _figure()
    fig = Figure(figsize=(9, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax1.plot(epochs, [h["loss"] for h in history], label="training loss")
    ax1.plot(epochs, [h.get("val_loss", np.nan) for h in history], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("weighted cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [h.get("score", np.nan) for h in history], color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation metric (AP@0.5 or F1)")
    ax2.set_ylim(0, 1)
    return _save(fig, path)


def write_examples(examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path | None:
    """Input / true mask / predicted mask side by side for a few images."""
    if not examples:
        return None
    Figure = _figure()
    fig = Figure(figsize=(9, 3 * len(examples)))
    axes = np.atleast_2d(fig.subplots(len(examples), 3))
    for row, (name, image, truth, pred) in zip(axes, examples):
        img = np.asarray(image)
        if img.ndim == 3:
            img = img[..., 0] if img.shape[-1] <= 4 else img[0]
        row[0].imshow(img, cmap="gray")
        row[0].set_title(name)
        for ax, lab, title in ((row[1], truth, "true"), (row[2], pred, "predicted")):
            ax.imshow(_colour(np.asarray(lab)), interpolation="nearest")
            ax.set_title(title)
        for ax in row:
            ax.axis("off")
    return _save(fig, path)


def _colour(labels: np.ndarray) -> np.ndarray:
    """Random but stable colours per id, black background."""
    rng = np.random.default_rng(1)
    n = int(labels.max()) + 1 if labels.size else 1
    lut = rng.uniform(0.2, 1.0, (max(n, 2), 3))
    lut[0] = 0
    return lut[np.clip(labels, 0, None)]


def write_json(data: dict, path: Path) -> Path:
    atomic_write_bytes(path, json.dumps(data, indent=2, default=float).encode())
    return path
