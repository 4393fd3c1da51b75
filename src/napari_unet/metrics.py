"""Segmentation metrics (pure functions on label arrays).

- Pixel metrics per class from a confusion matrix: accuracy, precision, recall, F1 (= Dice)
  and IoU.
- Instance matching at IoU thresholds: a true and a predicted object match when their IoU is
  at least the threshold, with an optimal one-to-one assignment (Hungarian). AP = TP / (TP +
  FP + FN), the definition of the StarDist paper and the DSB2018 challenge.
- Adapted Rand error (scikit-image) of the cell regions enclosed by membranes (ISBI 2012).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def confusion(true: np.ndarray, pred: np.ndarray, classes: int, ignore: np.ndarray | None = None) -> np.ndarray:
    """(classes, classes) counts, rows = true class, columns = predicted class."""
    true = np.asarray(true).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    keep = (true >= 0) & (true < classes)
    if ignore is not None:
        keep &= ~np.asarray(ignore).ravel()
    idx = true[keep] * classes + np.clip(pred[keep], 0, classes - 1)
    return np.bincount(idx, minlength=classes * classes).reshape(classes, classes)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def pixel_metrics(cm: np.ndarray, names: tuple[str, ...] | None = None) -> dict:
    """Accuracy and per-class precision, recall, F1 (Dice) and IoU from a confusion matrix."""
    cm = np.asarray(cm, np.float64)
    k = cm.shape[0]
    names = names or tuple(str(i) for i in range(k))
    tp = np.diag(cm)
    out: dict = {"accuracy": _ratio(tp.sum(), cm.sum()), "per_class": {}}
    for i in range(k):
        fp, fn = cm[:, i].sum() - tp[i], cm[i, :].sum() - tp[i]
        out["per_class"][names[i]] = {
            "precision": _ratio(tp[i], tp[i] + fp),
            "recall": _ratio(tp[i], tp[i] + fn),
            "f1": _ratio(2 * tp[i], 2 * tp[i] + fp + fn),
            "iou": _ratio(tp[i], tp[i] + fp + fn),
        }
    return out


def overlap_counts(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pixels shared by every true object (rows) and predicted object (columns), the objects'
    areas and their ids: (intersection, true areas, predicted areas, true ids, predicted ids)."""
    true = np.asarray(true).ravel()
    pred = np.asarray(pred).ravel()
    t_ids = np.unique(true[true > 0])
    p_ids = np.unique(pred[pred > 0])
    ti = np.searchsorted(t_ids, true)
    pi = np.searchsorted(p_ids, pred)
    both = (true > 0) & (pred > 0)
    inter = np.zeros((t_ids.size, p_ids.size))
    np.add.at(inter, (ti[both], pi[both]), 1)
    t_area = np.bincount(ti[true > 0], minlength=t_ids.size)
    p_area = np.bincount(pi[pred > 0], minlength=p_ids.size)
    return inter, t_area, p_area, t_ids, p_ids


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU between every true object (rows) and predicted object (columns), and their ids."""
    inter, t_area, p_area, t_ids, p_ids = overlap_counts(true, pred)
    union = t_area[:, None] + p_area[None, :] - inter
    return inter / np.maximum(union, 1), t_ids, p_ids


def match_counts(true: np.ndarray, pred: np.ndarray, thresholds=THRESHOLDS) -> dict[float, dict]:
    """TP, FP, FN and the summed IoU of matched pairs, per threshold, for one image."""
    iou, t_ids, p_ids = iou_matrix(true, pred)
    out = {}
    for t in thresholds:
        tp, iou_sum = 0, 0.0
        if iou.size:
            cost = np.where(iou >= t, -iou, 0.0)
            rows, cols = linear_sum_assignment(cost)
            ok = iou[rows, cols] >= t
            tp, iou_sum = int(ok.sum()), float(iou[rows, cols][ok].sum())
        out[t] = {"tp": tp, "fp": int(p_ids.size - tp), "fn": int(t_ids.size - tp), "iou_sum": iou_sum}
    return out


def summarize_matches(counts: list[dict[float, dict]]) -> dict:
    """Dataset-level instance metrics from per-image counts (summed before dividing)."""
    out: dict = {}
    for t in counts[0]:
        tp = sum(c[t]["tp"] for c in counts)
        fp = sum(c[t]["fp"] for c in counts)
        fn = sum(c[t]["fn"] for c in counts)
        iou_sum = sum(c[t]["iou_sum"] for c in counts)
        key = f"{t:g}"
        out[f"ap@{key}"] = _ratio(tp, tp + fp + fn) if tp + fp + fn else 1.0
        out[f"precision@{key}"] = _ratio(tp, tp + fp)
        out[f"recall@{key}"] = _ratio(tp, tp + fn)
        out[f"f1@{key}"] = _ratio(2 * tp, 2 * tp + fp + fn)
        out[f"mean_matched_iou@{key}"] = _ratio(iou_sum, tp)
        out[f"tp@{key}"], out[f"fp@{key}"], out[f"fn@{key}"] = tp, fp, fn
        out["true_objects"] = tp + fn
    return out


def instance_metrics(true: np.ndarray, pred: np.ndarray, thresholds=THRESHOLDS) -> dict:
    return summarize_matches([match_counts(true, pred, thresholds)])


def regions_from_membranes(membrane: np.ndarray) -> np.ndarray:
    """Connected cell regions (ids) enclosed by membrane pixels (membrane = 0)."""
    regions, _ = ndi.label(~np.asarray(membrane, bool))
    return regions


def adapted_rand_error(true_membrane: np.ndarray, pred_membrane: np.ndarray) -> float:
    """Adapted Rand error (1 - F-score of the Rand index) of the cell regions of two
    membrane masks, as in the ISBI 2012 challenge (scikit-image's implementation)."""
    from skimage.metrics import adapted_rand_error as are

    error, _, _ = are(regions_from_membranes(true_membrane), regions_from_membranes(pred_membrane))
    return float(error)
