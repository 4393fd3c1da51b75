"""Scoring a model on labelled images with the overlap-tile predictor.

Used for validation during training (on already normalised samples) and by
``napari-unet evaluate`` (on the user's raw images).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import metrics as M
from ._generators import run
from .axes import Planes
from .instances import MEMBRANE_SEEDS, PostProcessing, close_membranes
from .modelfile import UNetModel
from .targets import check_labels, semantic_targets
from .tiling import TileProgress, decide, plan_tiles, predict_tiles

# fewer labelled objects than this: settings chosen on them are noise (docs/benchmarks.md,
# round 8); a fine-tune then keeps its starting model's post-processing
MIN_TUNING_OBJECTS = 30


class TuningError(ValueError):
    """Post-processing cannot be tuned on these images or for this model; the message says why."""


def headline(metrics: dict, mode: str) -> float:
    """The one number training optimises: AP@0.5 (instance) or mean foreground F1 (semantic)."""
    if mode == "instance":
        if not metrics.get("true_objects", 1):
            return float("nan")  # nothing to find: undefined, the loss decides
        return float(metrics.get("ap@0.5", 0.0))
    f1 = [v["f1"] for k, v in metrics.get("per_class", {}).items() if k != metrics.get("_background")]
    f1 = [x for x in f1 if np.isfinite(x)]
    return float(np.mean(f1)) if f1 else float("nan")


def predict_normalized(model: UNetModel, image: np.ndarray, device: torch.device, tta: bool = False) -> np.ndarray:
    """Class probabilities (K, [D,] H, W) of an already normalised (C, [D,] H, W) image."""
    planes = Planes(image, "CZYX", "ZYX") if model.dims == 3 else Planes(image, "CYX")
    plan = plan_tiles(planes.spatial_shape, model.geometry, model.tile, model.halo)
    probs = np.zeros((model.config.classes,) + planes.spatial_shape, np.float32)
    zeros = np.zeros(planes.channels, np.float32)
    ones = np.ones(planes.channels, np.float32)
    gen = predict_tiles(model.network.to(device), planes, zeros, ones, plan, device=device,
                        probabilities_out=probs, activation=model.config.activation, tta=tta)
    for _ in gen:
        pass
    return probs


class Scorer:
    """Accumulates metrics over images: instance matching counts or a confusion matrix."""

    def __init__(self, model: UNetModel, unlabelled_zero: bool = False) -> None:
        self.mode = model.config.mode
        self.names = model.config.names()
        self.classes = model.config.classes
        self.unlabelled_zero = unlabelled_zero
        self.counts: list[dict] = []
        self.cm = np.zeros((self.classes, self.classes), np.int64)
        self.rand_errors: list[float] = []

    def add(self, labels: np.ndarray, prediction: np.ndarray) -> dict:
        """Score one image: ``labels`` as the user gave them, ``prediction`` as predicted
        (instance ids or classes). Returns that image's own metrics."""
        if self.mode == "instance":
            counts = M.match_counts(labels, prediction)
            self.counts.append(counts)
            return M.summarize_matches([counts])
        targets = semantic_targets(labels, self.unlabelled_zero)
        cm = M.confusion(targets, prediction, self.classes)
        self.cm += cm
        out = M.pixel_metrics(cm, self.names)
        if self.classes == 2 and not self.unlabelled_zero:
            err = M.adapted_rand_error(targets == 1, prediction == 1)
            self.rand_errors.append(err)
            out["adapted_rand_error"] = err
        return out

    def summary(self) -> dict:
        if self.mode == "instance":
            return M.summarize_matches(self.counts) if self.counts else {}
        out = M.pixel_metrics(self.cm, self.names)
        out["_background"] = None if self.unlabelled_zero else self.names[0]
        out["f1"] = {k: v["f1"] for k, v in out["per_class"].items()}
        if self.rand_errors:
            out["adapted_rand_error"] = float(np.mean(self.rand_errors))
        return out


def score_probabilities(model: UNetModel, samples: Iterable, probabilities: list, min_size: int = 15) -> dict:
    """Validation metrics of predicted probabilities on prepared samples (integer labels,
    targets with -1 = unlabelled)."""
    scorer = Scorer(model, unlabelled_zero=False)
    post = replace(PostProcessing.from_json(model.postprocessing, model.config.classes), min_size=min_size)
    for s, probs in zip(samples, probabilities):
        if model.config.mode == "instance":
            scorer.add(s.labels, post.apply(probs))
        else:
            # compare on targets directly (handles 0 = unlabelled via -1 targets)
            pred = decide(probs, model.postprocessing.get("threshold"))
            keep = s.targets >= 0
            scorer.cm += M.confusion(np.where(keep, s.targets, -1), pred, scorer.classes)
    return scorer.summary()


def evaluate_pairs(model, pairs, predict_fn, unlabelled_zero: bool = False) -> Generator[tuple[str, int, int], None, tuple[dict, list]]:
    """Predict each pair with ``predict_fn(image, axes) -> labels`` and score it.

    Yields (name, done, total); returns (summary, per-image list of (name, metrics, prediction)).
    """
    scorer = Scorer(model, unlabelled_zero)
    per_image = []
    for k, pair in enumerate(pairs):
        pred = predict_fn(pair.image, pair.axes)
        labels = np.asarray(pair.labels)
        if labels.shape != pred.shape:
            raise ValueError(f"{pair.name}: labels have shape {labels.shape}, prediction {pred.shape}")
        per_image.append((pair.name, scorer.add(labels, pred), pred))
        yield pair.name, k + 1, len(pairs)
    return scorer.summary(), per_image


def tune_threshold(samples: list, probabilities: list, rand: bool) -> tuple[float, dict]:
    """Two-class semantic models: the class-1 probability threshold with the best validation
    score: the lowest adapted Rand error of the regions between class-1 pixels (membranes;
    ``rand``), ties broken by the class-1 F1; or the best class-1 F1 alone.
    Returns (threshold, {"f1": ..., "adapted_rand_error": ...})."""
    return run(tune_threshold_steps(samples, probabilities, rand))


def tune_threshold_steps(
    samples: list, probabilities: list, rand: bool
) -> Generator[tuple[int, int], None, tuple[float, dict]]:
    """:func:`tune_threshold` as a generator: yields (done, total) after each threshold."""
    best_t, best_key, best_scores = 0.5, None, {}
    thresholds = np.round(np.arange(0.2, 0.85, 0.05), 2)
    for done, t in enumerate(thresholds, start=1):
        preds = [decide(p, t) for p in probabilities]
        cm = sum(M.confusion(s.targets, pred, 2) for s, pred in zip(samples, preds))
        f1 = list(M.pixel_metrics(cm)["per_class"].values())[1]["f1"]
        scores = {"f1": float(f1)}
        key: tuple = (f1,)
        if rand:
            err = float(np.mean([M.adapted_rand_error(s.targets == 1, pred == 1) for s, pred in zip(samples, preds)]))
            scores["adapted_rand_error"] = err
            key = (-round(err, 3), f1)
        if best_key is None or key > best_key:
            best_t, best_key, best_scores = float(t), key, scores
        yield done, len(thresholds)
    return best_t, best_scores


def tune_membrane_seeds_steps(
    samples: list, probabilities: list, seeds: tuple = MEMBRANE_SEEDS
) -> Generator[tuple[int, int], None, tuple[float, float]]:
    """Two-class membrane models: the seed threshold of
    :func:`~napari_unet.instances.close_membranes` with the lowest mean adapted Rand error on
    the (validation) samples. Yields (done, total) after each setting; returns
    (seed threshold, its adapted Rand error)."""
    best_seed, best_err = float(seeds[0]), float("inf")
    for done, seed in enumerate(seeds, start=1):
        err = float(np.mean([M.adapted_rand_error(s.targets == 1, close_membranes(p[1], seed) == 1)
                             for s, p in zip(samples, probabilities)]))
        if round(err, 4) < round(best_err, 4):
            best_seed, best_err = float(seed), err
        yield done, len(seeds)
    return best_seed, best_err


def tune_membranes_steps(samples: list, probabilities: list) -> Generator[tuple[int, int], None, dict]:
    """Two-class models with dense labels (membranes): the post-processing with the lowest
    validation adapted Rand error, as stored in the model file: the threshold
    (:func:`tune_threshold_steps`), then closed membranes (:func:`tune_membrane_seeds_steps`),
    whose ``membrane_seeds`` are kept only when they beat the threshold alone."""
    t, scores = yield from tune_threshold_steps(samples, probabilities, rand=True)
    post = {"threshold": t, **{f"validation_{k}": v for k, v in scores.items()}}
    seeds, err = yield from tune_membrane_seeds_steps(samples, probabilities)
    post["validation_closed_adapted_rand_error"] = err
    if round(err, 4) < round(scores["adapted_rand_error"], 4):
        post["membrane_seeds"] = seeds
    return post


# ---------------------------------------------------------------------------------------------
# the post-processing of an instance model tuned on the user's own labelled images


@dataclass
class Tuned:
    """What :func:`tune_on_pairs` found: the settings with the best AP@0.5 on the images (chosen
    on them: their AP is optimistic; score other images to know), and the model's own there."""

    postprocessing: PostProcessing
    ap: float
    own: PostProcessing
    own_ap: float
    images: int
    objects: int

    def settings(self) -> dict:
        """The chosen settings as PredictConfig fields (a seed dynamic of None is 0: off)."""
        from .config import POSTPROCESSING_FIELDS

        chosen = {name: getattr(self.postprocessing, field) for name, field in POSTPROCESSING_FIELDS.items()}
        return {**chosen, "seed_dynamic": chosen["seed_dynamic"] or 0.0}

    def flags(self) -> str:
        """The ``predict`` / ``evaluate`` flags that apply these settings."""
        return " ".join(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else f"--min-size {value}"
                        for name, value in self.settings().items())

    def to_json(self) -> dict:
        return {"images": self.images, "objects": self.objects,
                "own": {**self.own.to_json(), "ap@0.5": self.own_ap},
                "tuned": {**self.postprocessing.to_json(), "ap@0.5": self.ap}, "flags": self.flags()}


def tune_on_pairs(model: UNetModel, pairs: list, settings=None) -> Generator[TileProgress, None, Tuned]:
    """Choose an instance model's post-processing (seed threshold and dynamic, foreground
    threshold, minimum size) on labelled images of the user's own, as training chooses it on
    its validation images (minimum sizes relative to these labels' objects, the same near-tie
    rule), over a wider grid (:func:`~napari_unet.instances.tuning_grid`); like StarDist's
    ``optimize_thresholds``. The network is not changed.

    Each image is predicted once, whole, with the overlap-tile predictor and ``settings``
    (tile, batch, device, test-time augmentation); yields the prediction's progress records,
    their message naming the image, then one after each setting tried. Refuses a model or labels that
    cannot be tuned (:class:`TuningError`, saying why).
    """
    from .config import PredictConfig
    from .instances import NEAR_TIE, object_size, tune_steps, tuning_grid
    from .predict import predict, rescaled_to

    settings = settings or PredictConfig()
    if model.config.mode != "instance":
        raise TuningError(f"tuning separates objects: this model is {model.config.mode}; it applies to instance models")
    if rescaled_to(model):
        raise TuningError("this model was trained at one object size (--rescale-objects) and segments each image "
                         "at that size: tuning its settings on images at their own size is not supported yet")
    if settings.object_size is not None or settings.postprocessing_overrides():
        raise TuningError("tuning takes no object size or post-processing settings: it chooses the latter")
    truths = [check_labels(pair.labels, f"{pair.name}: labels") for pair in pairs]  # before any prediction
    probabilities, labels, own_labels = [], [], []
    for k, (pair, truth) in enumerate(zip(pairs, truths), start=1):
        name = f"predicting {pair.name}" + (f" ({k}/{len(pairs)})" if len(pairs) > 1 else "")
        result = yield from _named(predict(model, pair.image, pair.axes, settings, probabilities=True), name)
        if truth.shape != result.labels.shape:
            raise TuningError(f"{pair.name}: labels have shape {truth.shape}, the image's prediction {result.labels.shape}")
        spatial = result.probabilities.shape[-model.dims:]  # planes (2D models) or volumes, one by one
        probabilities += list(np.moveaxis(result.probabilities.reshape((model.config.classes, -1) + spatial), 1, 0))
        labels += list(truth.reshape((-1,) + spatial))
        own_labels += list(result.labels.reshape((-1,) + spatial))  # separated with the model's own settings
    size = object_size(labels)
    objects = size.get("objects", 0)
    if objects < MIN_TUNING_OBJECTS:
        raise TuningError(f"the labels hold {objects} object(s); settings chosen on fewer than {MIN_TUNING_OBJECTS} "
                         "are noise (docs/benchmarks.md, round 8): label more objects, or more images")
    own = PostProcessing.from_json(model.postprocessing, model.config.classes)
    own_ap = M.summarize_matches([M.match_counts(t, o, (0.5,)) for o, t in zip(own_labels, labels)])["ap@0.5"]
    steps = tune_steps(probabilities, labels, tuning_grid(model.config.classes, size["area"]), tolerance=NEAR_TIE)
    post, ap = yield from _as_progress(steps, "tuning the settings")
    if own_ap >= ap:  # the model's own settings (not always in the grid) are the best: keep them
        post, ap = own, own_ap
    return Tuned(post, float(ap), own, float(own_ap), len(pairs), int(objects))


def _as_progress(steps: Generator[tuple[int, int], None, object], message: str) -> Generator[TileProgress, None, object]:
    """A generator of (done, total) pairs as progress records with ``message``."""
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return stop.value
        yield TileProgress(done=done, total=total, batch=0, message=message)


def _named(gen: Generator[TileProgress, None, object], name: str) -> Generator[TileProgress, None, object]:
    """A progress generator whose records' messages start with ``name``."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        yield replace(p, message=f"{name}: {p.message}" if p.message else name)
