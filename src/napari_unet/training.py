"""Training and fine-tuning, as a generator of progress records.

>>> trainer = Trainer(pairs, TrainConfig(mode="instance", epochs=20), out="nuclei.safetensors")
>>> for progress in trainer.run():      # the CLI shows a bar, napari a plot, tests just loop
...     print(progress.epoch, progress.loss)
>>> trainer.model                         # the best model, also when the loop was cancelled

The best model (by the validation metric) is written atomically to ``out`` every time it
improves, so stopping the loop at any yield (Cancel, a time limit, a crash) leaves the best
model so far on disk and in ``trainer.model``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import Augmentation, augment
from .config import ConfigError, ModelConfig, Normalization, from_dict, to_dict
from .data import SAMPLE_BY, Pair, PatchSampler, Sample, kfold, prepare, split_holdout
from .devices import (DeviceError, autocast, autocast_dtype, avoid_llvm_clash, is_out_of_memory, memory_format,
                      release_memory, resolve_device)
from .evaluation import (
    MIN_TUNING_OBJECTS,
    headline,
    predict_normalized,
    score_probabilities,
    tune_membranes_steps,
)
from .instances import MEMBRANE_SEEDS, NEAR_TIE, grid_for, object_size, tune_steps
from .modelfile import DEFAULT_TILE, DEFAULT_TILE_3D, UNetModel, round_tiling
from .models import axes_geometry, encoder_modules, encoder_parameters, network_halo, replace_head
from .predict import rescaled_to
from .targets import LabelsError, check_labels, semantic_classes


clock = time.perf_counter  # seconds; one name, so tests can drive the time-limit logic


class TrainingError(ValueError):
    """Training cannot start or go on; the message says why."""


def default_base_width(device: str = "auto", arch: str = "unet", dims: int = 2,
                       mixed_precision: bool = True) -> int:
    """First-level channels of a network trained from scratch when none is asked for.

    16, except for the padded 2D ``unet`` on a CPU that trains in float32 (no native
    bfloat16: most laptops, AMD before Zen 4; or ``--fp32``): 8 there. Measured in
    docs/benchmarks.md ("Round 5"): on a 2-core Zen 3 a float32 step of width 16 costs 0.55 s,
    width 8 about a third of that, and 20 minutes of default training gave DSB2018 test
    AP@0.5 0.724 at width 8 against 0.675 at width 16 (with bf16, width 16: 0.769)."""
    if arch != "unet" or dims != 2:
        return 16
    try:
        kind = resolve_device(device).type
    except DeviceError:
        return 16  # the device error itself comes when training starts
    if kind == "cpu" and autocast_dtype(torch.device("cpu"), cpu=mixed_precision) is None:
        return 8
    return 16


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved in the model file and replayable from JSON.

    Parameters
    ----------
    mode : str
        ``instance`` (labels are object ids) or ``semantic`` (labels are classes).
    unlabelled_zero : bool
        Semantic mode: 0 means "not annotated" (scribbles), ignored by the loss; classes are
        then 1..K in the labels.
    instance_targets : str
        Instance mode: ``distance`` (foreground + scaled distance to the boundary; default) or
        ``3-class`` (background / interior / boundary, the U-Net paper's targets).
    arch, encoder, depth, base_width, batch_norm : see ModelConfig. ``base_width`` None (the
        default) is chosen for the device by :func:`default_base_width` (8 or 16).
    classes : int or None
        Semantic classes; None = inferred from the labels.
    class_names : tuple of str
        Optional class names.
    epochs : int
        Maximum number of epochs.
    steps_per_epoch : int or None
        Optimiser steps between validations; None = about two passes over the labelled area
        (8 to 200), lengthened when validation would take more than ``val_budget`` of the time.
    patch : int
        Size of the training target patch (output pixels; the input adds the halo).
    dims : int
        2: a 2D network (stacks are trained plane by plane); 3: a 3D network (``unet`` and
        ``unet-paper`` become ``unet3d`` and ``unet3d-paper``) trained on volumes.
    patch_z : int
        3D: depth of a training patch in planes (``patch`` is its height and width).
    z_pooling : int or None
        3D: levels (the deepest) that also pool along z; None = all (see ModelConfig).
    batch : int
        Patches per step.
    lr : float
        Learning rate: a short warm-up, then cosine decay to 1% over the run; with a time
        limit, the decay follows the time, so a 20-minute run anneals by its end.
    optimizer : str
        ``adam`` or ``sgd`` (momentum 0.99, as in the paper).
    weight_average : float
        Validate and keep an exponential moving average of the weights (and batch-norm
        statistics) with this decay per step (0 = the raw weights): the raw weights of a
        small network trained at a high learning rate jump from step to step, their average
        does not.
    val_fraction : float
        Fraction of images held out for validation (a region when there is one image).
    val_images : int
        Validation images (planes) scored at each validation, a fixed subset; all are used
        when there are fewer.
    val_crop : int
        Larger validation planes are scored on their ``val_crop`` x ``val_crop`` window with
        the most labels (0 = whole planes), so that many images fit the validation budget.
    val_budget : float
        Largest share of the training time spent validating (the steps between validations
        grow to keep it); with a time limit, the post-processing tuning at the end counts in it.
    folds : int
        K-fold cross-validation when >= 2 (overrides ``val_fraction``).
    patience : int
        Stop when the validation metric has not improved for this many epochs (0 = never).
    freeze_encoder : bool
        Fine-tuning: keep the contracting path fixed.
    encoder_weights : str or None
        ``smp`` only: start the encoder from pretrained weights (``imagenet``), fetched by
        segmentation-models-pytorch through the Hugging Face hub cache (see
        :func:`napari_unet.models.pretrained_source`); None = random.
    time_limit : float or None
        Minutes for the whole run, final validation and post-processing tuning included:
        training stops early enough for both to finish in time (they are estimated from
        their last measured duration, plus 2 % margin).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    mixed_precision : bool
        Train in bfloat16 mixed precision where the hardware computes it natively (GPUs of
        compute capability >= 8, CPUs with AVX512-BF16 or AMX: 2-3x faster steps on the
        CPU), float16 with loss scaling on older GPUs; off = float32 everywhere.
    seed : int
        Seed for sampling, augmentation and initialisation.
    boundary_width, w0, sigma : instance targets and the paper's border weights.
    elastic_sigma, intensity, flips, zoom, noise, invert, blur, gamma : augmentation (see
        Augmentation; ``zoom`` is its ``scale``).
    min_size : int or None
        Instance mode: smallest object kept when validating during training; None = 15 % of
        the median object area of the training labels (the final choice is tuned).
    tile : int or None
        Largest tile core of validation predictions, stored as the model's default; None =
        512 for 2D models, 128 in y and x for 3D ones (a 3D tile is (2 * patch_z, tile / 2,
        tile / 2)).
    compile : bool
        Run the training steps through ``torch.compile`` (inductor; up to about a minute of
        compilation first, and a C++ compiler: without one the run goes on uncompiled and says
        so). Off by default: on a 2-core AMD Zen 3 the network alone steps 1.2x faster
        compiled (width 8, float32, 2 threads), but 20 minutes of default training made 4,177
        steps compiled against 4,213 uncompiled (one core each, side by side): augmentation,
        patch sampling and the weight average are not compiled (docs/benchmarks.md, "Round
        10"). Not measured on GPUs.
    polarity : str
        ``auto``: every image (channel) with a bright background, its median in the upper half
        of its percentile range, is inverted before the network sees it, in training and in
        prediction (stored in the model's normalisation); ``as-is`` (default): never. Opt-in:
        on DSB2018 it gained +0.003 AP@0.5 on validation over four seeds, below the +0.01 that
        adoption required (docs/benchmarks.md "Round 13" and "Round 14").
    rescale_objects : float or None
        2D instance mode: resize every training plane so that the median diameter of its
        objects is this many pixels (as Cellpose trains at one diameter); the model then
        records it, and prediction estimates each image's object size and rescales to it
        (``--object-size auto`` by default). None = train at the images' own scale.
    sample_by : str
        How often each training image (plane, volume) gives a patch: ``area`` (in proportion
        to its pixels) or, instance mode only, ``objects`` (in proportion to its number of
        objects, so that images of many small nuclei are seen as often as their share of
        the objects) or ``both`` (the geometric mean of the two). ``area`` stays the default:
        on DSB2018 the others did not raise the validation AP and lost the few large
        bright-background images (docs/benchmarks.md, "Round 16").
    """

    mode: str = "instance"
    unlabelled_zero: bool = False
    instance_targets: str = "distance"
    arch: str = "unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    depth: int = 4
    base_width: int | None = None  # None: default_base_width(device, ...)
    batch_norm: bool = True
    classes: int | None = None
    class_names: tuple[str, ...] = ()
    epochs: int = 50
    steps_per_epoch: int | None = None
    patch: int = 128
    batch: int = 8
    dims: int = 2
    patch_z: int = 16
    z_pooling: int | None = None
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_average: float = 0.999
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    val_images: int = 48
    val_crop: int = 256
    val_budget: float = 0.1
    folds: int = 0
    patience: int = 15
    freeze_encoder: bool = False
    time_limit: float | None = None
    device: str = "auto"
    mixed_precision: bool = True
    seed: int = 0
    boundary_width: int = 2
    w0: float = 10.0
    sigma: float = 5.0
    elastic_sigma: float = 10.0
    intensity: float = 0.4
    flips: bool = True
    zoom: float = 0.5
    noise: float = 0.1
    invert: float = 0.0
    blur: float = 1.0
    gamma: float = 0.5
    min_size: int | None = None
    tile: int | None = None
    compile: bool = False
    norm_low: float = 1.0
    norm_high: float = 99.8
    polarity: str = "as-is"
    rescale_objects: float | None = None
    sample_by: str = "area"

    def __post_init__(self) -> None:
        if self.base_width is None:
            object.__setattr__(self, "base_width", default_base_width(
                self.device, self.arch, self.dims, self.mixed_precision))
        if self.mode not in ("instance", "semantic"):
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: instance, semantic")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: adam, sgd")
        for name in ("epochs", "patch", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tile is not None and self.tile < 1:
            raise ConfigError(f"tile must be >= 1 (or None: the default), got {self.tile}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}")
        if self.folds == 1 or self.folds < 0:
            raise ConfigError(f"folds must be 0 (hold-out validation) or >= 2, got {self.folds}")
        if not 0 <= self.weight_average < 1:
            raise ConfigError(f"weight_average must be in [0, 1) (0 = off), got {self.weight_average}")
        if not 0 < self.val_budget < 1:
            raise ConfigError(f"val_budget must be between 0 and 1, got {self.val_budget}")
        if self.val_images < 1:
            raise ConfigError(f"val_images must be >= 1, got {self.val_images}")
        for name in ("elastic_sigma", "intensity", "zoom", "noise", "blur", "gamma"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"augmentation {name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if not 0 <= self.invert <= 1:
            raise ConfigError(f"augmentation invert is a probability in [0, 1], got {self.invert}")
        if self.val_crop != 0 and self.val_crop < 32:
            raise ConfigError(f"val_crop must be 0 (whole planes) or >= 32 pixels, got {self.val_crop}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.encoder_weights in ("", "none", "random"):
            object.__setattr__(self, "encoder_weights", None)
        if self.dims not in (2, 3):
            raise ConfigError(f"dims must be 2 (2D network, plane by plane) or 3 (3D network), got {self.dims}")
        if self.dims == 3 and self.arch == "smp":
            raise ConfigError("smp encoders are 2D; for 3D training use --arch unet or unet-paper")
        if self.patch_z < 1:
            raise ConfigError(f"patch_z must be >= 1, got {self.patch_z}")
        if self.encoder_weights is not None and self.arch != "smp":
            raise ConfigError(
                f"pretrained encoder weights ({self.encoder_weights!r}) exist only for --arch smp "
                f"encoders; {self.arch!r} starts from random weights (leave --encoder-weights out)"
            )
        if self.sample_by not in SAMPLE_BY:
            raise ConfigError(f"unknown sample_by {self.sample_by!r}; choose one of: {', '.join(SAMPLE_BY)}")
        if self.sample_by != "area" and self.mode != "instance":
            raise ConfigError(f"sample_by {self.sample_by!r} needs instance labels (object ids); semantic labels "
                              "are sampled by area")
        if self.rescale_objects is not None and not self.rescale_objects >= 4:
            raise ConfigError(f"rescale_objects is an object diameter in pixels (>= 4), got {self.rescale_objects}")
        if self.rescale_objects is not None and (self.mode != "instance" or self.dims != 2):
            raise ConfigError("rescale_objects needs instance mode and a 2D network: it brings objects to one size")
        Normalization(self.norm_low, self.norm_high, self.polarity)  # percentiles and polarity valid
        self.model_config(self.classes or 2, 1)  # the model settings are valid too

    @property
    def network_arch(self) -> str:
        """The architecture built: ``arch``, in its 3D form when ``dims`` is 3."""
        if self.dims == 3:
            return {"unet": "unet3d", "unet-paper": "unet3d-paper"}.get(self.arch, self.arch)
        return self.arch

    def model_tile(self, dims: int) -> int | tuple[int, int, int]:
        """The model's default tile (before rounding): see ``tile``."""
        if dims == 2:
            return self.tile or DEFAULT_TILE
        yx = self.tile // 2 if self.tile else DEFAULT_TILE_3D[1]
        return (self.patch_z * 2, yx, yx)

    def model_config(self, classes: int | None, in_channels: int) -> ModelConfig:
        if self.mode == "instance":
            classes = 2 if self.instance_targets == "distance" else 3
        return ModelConfig(
            arch=self.network_arch, z_pooling=self.z_pooling if self.dims == 3 else None, in_channels=in_channels, classes=classes,
            class_names=self.class_names, mode=self.mode, depth=self.depth,
            base_width=self.base_width, batch_norm=self.batch_norm, encoder=self.encoder,
            encoder_weights=self.encoder_weights, instance_targets=self.instance_targets,
        )

    @property
    def normalization(self) -> Normalization:
        return Normalization(self.norm_low, self.norm_high, self.polarity)

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(flips=self.flips, elastic_sigma=self.elastic_sigma, intensity=self.intensity,
                            scale=self.zoom, noise=self.noise, invert=self.invert, blur=self.blur,
                            gamma=self.gamma)

    def to_json(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        return from_dict(cls, data)


@dataclass
class TrainProgress:
    """One step or one finished epoch of training."""

    kind: str  # "preparing", "prepared", "step", "validating", "epoch", "tuning", "fold" or "note"
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    elapsed: float
    val_loss: float | None = None
    val_metric: float | None = None
    metric_name: str = ""
    best_metric: float | None = None
    best_epoch: int | None = None  # counted as ``epoch`` is: in this run, 0 = the starting model
    fold: int = 0
    folds: int = 0
    message: str = ""


@dataclass
class TrainResult:
    model: UNetModel
    history: list[dict]
    best_epoch: int | None  # as in the model's history: a fine-tuned model's epochs go on counting
    stopped: str
    metrics: dict = field(default_factory=dict)
    folds: list[dict] = field(default_factory=list)
    first_epoch: int = 0  # epochs in the history before this run (fine-tuning, resuming)

    @property
    def run_best_epoch(self) -> int | None:
        """The best epoch counted within this run, as the progress reports count them
        (0: the starting model was kept)."""
        return None if self.best_epoch is None else self.best_epoch - self.first_epoch


def _in_channels(pairs: list[Pair], init: UNetModel | None) -> int:
    if init is not None:
        return init.config.in_channels
    from .axes import Planes, guess_axes

    first = pairs[0]
    return Planes(np.asarray(first.image), first.axes or guess_axes(np.shape(first.image), 1)).channels


def build_model(config: TrainConfig, classes: int, in_channels: int, init: UNetModel | None) -> UNetModel:
    """A fresh model, or a copy of ``init`` prepared for fine-tuning."""
    if init is None:
        torch.manual_seed(config.seed)
        model = UNetModel.create(
            config.model_config(classes, in_channels), config.normalization, tile=config.model_tile(config.dims)
        )
        return model
    if init.config.mode != config.mode:
        raise TrainingError(
            f"the starting model was trained in {init.config.mode} mode; train in that mode or "
            "start from scratch"
        )
    model = copy.deepcopy(init)
    model.history = list(init.history)
    if init.config.classes != classes:
        replace_head(model.network, classes)
        model.config = replace(init.config, classes=classes, class_names=config.class_names)
    return model


class Trainer:
    """Train (or fine-tune) a model on (image, labels) pairs; see the module docstring."""

    def __init__(
        self,
        pairs: list[Pair],
        config: TrainConfig,
        out: str | Path | None = None,
        init: UNetModel | None = None,
        prepare: bool = True,
        init_path: str | Path | None = None,
    ) -> None:
        """``init_path``: the file ``init`` was loaded from, if any. A fine-tune whose starting
        model is never beaten writes that model (with post-processing tuned on these data) to
        ``out``, unless ``out`` is that very file."""
        if not pairs:
            raise TrainingError("no training images given")
        self.started = clock()  # the time limit counts the preparation too
        if init is not None and getattr(init.network, "foreign", False):
            raise TrainingError(
                "this model comes from a bioimage.io package not made by napari-unet: napari-unet can "
                "fine-tune its own architectures only (unet, unet-paper, smp, and their 3D forms)"
            )
        if init is not None and init.config.dims != config.dims:
            config = replace(config, dims=init.config.dims, z_pooling=init.config.z_pooling)  # the network decides
        if init is not None and init.config.mode == "instance" == config.mode:
            # a fine-tuned model keeps what its network learned to predict
            config = replace(config, instance_targets=init.config.instance_targets)
        self.config = config
        self.out = Path(out) if out else None
        self.init = init
        self.init_path = Path(init_path) if init_path else None
        self.pairs = pairs
        self.prepared = False
        self.samples: list[Sample] = []
        self.model: UNetModel | None = None
        self.device: torch.device | None = None
        self.saved = False  # whether ``out`` now holds a model of this run
        if prepare:
            self.prepare()

    def prepare(self) -> None:
        """Check the labels, normalise the images, compute the targets and build the network.

        Costly on large images (percentiles, per-object distance transforms, a copy of the
        starting model): a front end with a GUI passes ``prepare=False`` and lets :meth:`run`
        do it in its worker thread.
        """
        if self.prepared:
            return
        config, init, pairs = self.config, self.init, self.pairs
        in_channels = _in_channels(pairs, init)
        if config.mode == "instance":
            classes = config.model_config(None, in_channels).classes
        else:
            classes = self._semantic_classes(pairs, init)
        self.classes = classes
        norm_settings = init.normalization if init is not None else config.normalization
        # a fine-tune sees its images at the scale its starting model learned
        rescale = config.rescale_objects if init is None else rescaled_to(init)
        if rescale is not None and (config.mode != "instance" or config.dims != 2):
            rescale = None  # a starting model of another kind: refused below with its own message
        self.rescale_objects = rescale
        try:
            self.samples = prepare(
                pairs, config.mode, classes, in_channels, norm_settings,
                unlabelled_zero=config.unlabelled_zero, boundary_width=config.boundary_width,
                w0=config.w0, sigma=config.sigma, instance_targets=config.instance_targets,
                dims=config.dims, rescale_objects=rescale,
            )
        except LabelsError as err:
            raise TrainingError(str(err)) from None
        if config.mode == "semantic":
            self._check_classes_present()
        self.in_channels = in_channels
        self.object_size = object_size([s.labels for s in self.samples]) if config.mode == "instance" else {}
        if rescale is not None and self.object_size:
            # every plane was brought to this size: prediction estimates each image's size
            self.object_size["rescaled_to"] = float(rescale)
        self.model = build_model(config, classes, in_channels, init)
        self.device = resolve_device(config.device)
        self.prepared = True

    def describe(self) -> str:
        """What is trained on what, in a line (after :meth:`prepare`)."""
        dtype = autocast_dtype(self.device, cpu=True, spatial_dims=self.model.dims) if self.config.mixed_precision else None
        precision = {None: "float32", torch.bfloat16: "bfloat16 mixed precision",
                     torch.float16: "float16 mixed precision"}[dtype]
        return (f"training {self.model.config.arch} ({self.config.mode}) on {len(self.samples)} plane(s) "
                f"from {len(self.pairs)} image(s), device {self.device}, {precision}{self._width_note()}")

    def _width_note(self) -> str:
        width = self.model.config.base_width
        if self.model.config.arch not in ("unet", "unet-paper", "unet3d", "unet3d-paper"):
            return ""
        return f", base width {width}"


    def _semantic_classes(self, pairs: list[Pair], init: UNetModel | None) -> int:
        """Classes to train: as configured, else what the labels (and a starting model) hold."""
        config = self.config
        try:
            labels = [check_labels(p.labels, f"{p.name}: labels") for p in pairs]
        except LabelsError as err:
            raise TrainingError(str(err)) from None
        found = semantic_classes(labels, config.unlabelled_zero)
        classes = config.classes or (max(found, init.config.classes) if init is not None else found)
        if found > classes:
            raise TrainingError(f"the labels hold {found} classes but {classes} were configured")
        if config.class_names and len(config.class_names) != classes:
            raise TrainingError(f"{len(config.class_names)} class names for {classes} classes")
        return classes

    def _check_classes_present(self) -> None:
        present = set()
        for s in self.samples:
            present.update(np.unique(s.targets[s.targets >= 0]).tolist())
        if len(present) < 2:
            only = ", ".join(str(int(c) + (1 if self.config.unlabelled_zero else 0)) for c in sorted(present))
            raise TrainingError(
                f"semantic labels hold only one class (value {only}): a network cannot learn to tell "
                "classes apart from one; paint at least two classes (background counts as one; with "
                "'0 = unlabelled', paint the background as a class too)"
            )
        names = self.config.class_names
        missing = [names[i] if i < len(names) else str(i) for i in range(self.classes) if i not in present]
        if missing and self.config.class_names:
            raise TrainingError(
                f"class(es) {', '.join(missing)} named in the config never occur in the labels; "
                "paint some pixels of each class or remove the name"
            )

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> Generator[TrainProgress, None, TrainResult]:
        config = self.config
        if not self.prepared:
            yield TrainProgress("preparing", 0, config.epochs, 0, 0, float("nan"), clock() - self.started,
                                message="preparing the training data")
            self.prepare()
            yield TrainProgress("prepared", 0, config.epochs, 0, 0, float("nan"), clock() - self.started,
                                message=self.describe())
        rng = np.random.default_rng(config.seed)
        if config.folds >= 2:
            return (yield from self._cross_validate(rng))
        train, val = split_holdout(self.samples, config.val_fraction, rng)
        out_is_init = (self.out is not None and self.init_path is not None
                       and self.out.resolve() == self.init_path.resolve())
        fit = _Fit(self.model, train, val, config, self.device, self.out, rng,
                   score_start=self.init is not None, object_size=self.object_size, started=self.started,
                   write_kept_start=not out_is_init)
        try:
            result = yield from fit.run()
        finally:
            self.model = fit.model
            self.saved = fit.saved
        return result

    def _cross_validate(self, rng: np.random.Generator) -> Generator[TrainProgress, None, TrainResult]:
        splits = kfold(self.samples, self.config.folds, rng)
        results: list[TrainResult] = []
        best: TrainResult | None = None
        start_state = copy.deepcopy(self.model)
        for k, (train, val) in enumerate(splits):
            model = copy.deepcopy(start_state)
            fit = _Fit(model, train, val, self.config, self.device, None, rng, fold=(k + 1, len(splits)),
                       score_start=self.init is not None, object_size=self.object_size)
            result = yield from fit.run()
            results.append(result)
            if best is None or _better(result.metrics, best.metrics):
                best = result
                self.model = result.model
                if self.out:
                    self.model.save(self.out)
                    self.saved = True
        summary = _mean_std([r.metrics for r in results])
        best.model.training["cross_validation"] = summary
        if self.out:
            best.model.save(self.out)
        yield TrainProgress("fold", 0, 0, 0, 0, 0.0, 0.0, fold=len(splits), folds=len(splits), message="done")
        return TrainResult(best.model, best.history, best.best_epoch, "cross-validation finished",
                           metrics=summary, folds=[r.metrics for r in results], first_epoch=best.first_epoch)


def _better(a: dict, b: dict) -> bool:
    """Is validation result ``a`` better than ``b``? By the metric, then the loss; by the loss
    alone when the metric is undefined (no object or class to find in the validation part)."""
    sa, sb = a.get("score"), b.get("score")
    la, lb = -a.get("val_loss", math.inf), -b.get("val_loss", math.inf)
    if sa is None or sb is None or not (math.isfinite(sa) and math.isfinite(sb)):
        return la > lb
    return (sa, la) > (sb, lb)


def _flatten(metrics: dict, prefix: str = "") -> dict:
    """{"per_class": {"membrane": {"f1": x}}} -> {"per_class/membrane/f1": x} (numbers only)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _mean_std(runs: list[dict]) -> dict:
    """Mean and standard deviation over the folds of every numeric metric, nested ones too."""
    flat = [_flatten(r) for r in runs]
    out = {}
    for key in flat[0]:
        values = [f[key] for f in flat if key in f]
        if len(values) == len(flat):
            out[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "folds": values}
    return out


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Pixel-weighted cross-entropy; pixels with target -1 (unlabelled) count for nothing."""
    ce = F.cross_entropy(logits.float(), targets, reduction="none", ignore_index=-1)
    return (ce * weights).sum() / (targets >= 0).sum().clamp(min=1)


def distance_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Distance targets: weighted binary cross-entropy of the foreground channel plus binary
    cross-entropy of the scaled boundary distance (soft targets in [0, 1])."""
    logits = logits.float()
    labelled = (targets >= 0).float()
    n = labelled.sum().clamp(min=1)
    fg = F.binary_cross_entropy_with_logits(logits[:, 0], targets.clamp(min=0).float(), reduction="none")
    dist = F.binary_cross_entropy_with_logits(logits[:, 1], distance, reduction="none")
    return ((fg * weights).sum() + (dist * labelled).sum()) / n


def densest_window(sample: Sample, size: int) -> tuple[slice, ...]:
    """The ``size`` x ``size`` window (clipped to the plane) holding the most labelled pixels,
    searched on a grid of ``size // 8`` pixels (an integral image: cheap on large planes).
    Volumes: the window spans at most ``size // 4`` planes in z, where the most labels are."""
    labelled = sample.labelled_pixels()
    if labelled.ndim == 3:
        depth = min(labelled.shape[0], max(1, size // 4))
        per_plane = np.convolve(labelled.sum(axis=(1, 2)), np.ones(depth), mode="valid")
        z0 = int(np.argmax(per_plane))
        inner = Sample(sample.name, sample.image[:, 0], labelled[z0 : z0 + depth].any(0).astype(np.int16),
                       labelled[z0 : z0 + depth].any(0).astype(np.int16), sample.weights[0], np.zeros(0, np.int64))
        return (slice(z0, z0 + depth),) + densest_window(inner, size)
    h, w = sample.shape
    wh, ww = min(size, h), min(size, w)
    if (wh, ww) == (h, w):
        return slice(0, h), slice(0, w)
    total = np.zeros((h + 1, w + 1), np.int64)
    total[1:, 1:] = labelled.cumsum(0).cumsum(1)
    stride = max(1, size // 8)
    ys = np.unique(np.r_[np.arange(0, h - wh + 1, stride), h - wh])
    xs = np.unique(np.r_[np.arange(0, w - ww + 1, stride), w - ww])
    y0, x0 = ys[:, None], xs[None, :]
    counts = total[y0 + wh, x0 + ww] - total[y0, x0 + ww] - total[y0 + wh, x0] + total[y0, x0]
    i, j = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return slice(int(ys[i]), int(ys[i]) + wh), slice(int(xs[j]), int(xs[j]) + ww)


def validation_subset(samples: list[Sample], n: int, crop: int | None = 256,
                      max_pixels: int | None = None) -> list[Sample]:
    """A fixed validation set that is cheap to score and still represents every kind of image.

    When all validation planes together are small (at most ``max_pixels``, by default
    ``n`` crops' worth), all of them, whole. Otherwise up to ``n`` planes spread evenly over
    the list, each cut to its ``crop`` x ``crop`` window with the most labelled pixels (many
    small windows from many images rank epochs and tune post-processing better than a few
    whole images, which favour the small ones), skipping any that would take the total past
    ``max_pixels``; at least one.
    """
    if max_pixels is None:
        max_pixels = n * crop**2 if crop else 1_500_000
    def pixels_of(s) -> int:
        return int(np.prod(s.shape))

    if len(samples) <= n and sum(pixels_of(s) for s in samples) <= max_pixels:
        return list(samples)
    order = np.linspace(0, len(samples) - 1, len(samples)).round().astype(int)
    # spread: every k-th first, then the ones in between
    step = max(1, len(samples) // n)
    order = [i for offset in range(step) for i in order[offset::step]]
    chosen, pixels = {}, 0
    for i in order:
        s = samples[i]
        if crop and (max(s.shape[-2:]) > crop or (len(s.shape) == 3 and s.shape[0] > crop // 4)):
            s = s.crop(densest_window(s, crop), f"{s.name} (crop)")
        size = pixels_of(s)
        if pixels + size > max_pixels:
            continue
        chosen[i] = s
        pixels += size
        if len(chosen) == n:
            break
    if not chosen:  # every plane is larger than the budget: the smallest one
        i = int(np.argmin([pixels_of(s) for s in samples]))
        chosen[i] = samples[i]
    return [chosen[i] for i in sorted(chosen)]


class WeightAverage:
    """Exponential moving average of a network's floating-point parameters and buffers
    (Polyak averaging, as in ``torch.optim.swa_utils.AveragedModel(use_buffers=True)``), kept
    beside the network and swapped into it for validation and saving.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that a
    short run is not dominated by its random start.
    """

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.live = [t for t in (*network.parameters(), *network.buffers()) if t.is_floating_point()]
        self.shadow = [t.detach().clone() for t in self.live]
        self.updates = 0

    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, [t.detach() for t in self.live], 1 - d)

    def swap(self) -> None:
        """Exchange the averaged and the live values (call again to undo)."""
        with torch.no_grad():
            for live, shadow in zip(self.live, self.shadow):
                tmp = live.detach().clone()
                live.copy_(shadow)
                shadow.copy_(tmp)


class _Schedule:
    """Learning-rate factor: linear warm-up over the first 2 % of the run, then cosine decay
    to 1 %. Progress is the larger of steps done / planned steps and time used / time budget,
    so a run with a time limit anneals by its end."""

    def __init__(self, total_steps: int, seconds: float | None) -> None:
        self.total_steps, self.seconds = total_steps, seconds
        self.progress = 0.0

    def update(self, step: int, elapsed: float) -> None:
        p = step / self.total_steps
        if self.seconds:
            p = max(p, elapsed / self.seconds)
        self.progress = min(1.0, p)

    def __call__(self, _: int) -> float:
        p = self.progress
        if p < 0.02:
            return 0.1 + 0.9 * p / 0.02
        q = (p - 0.02) / 0.98
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * q))


class _Fit:
    """One training run on one split (hold-out or one fold)."""

    def __init__(self, model, train, val, config: TrainConfig, device, out, rng, fold=(0, 0),
                 score_start: bool = False, object_size: dict | None = None, started: float | None = None,
                 write_kept_start: bool = True):
        self.model: UNetModel = model
        self.train, self.val = train, val
        self.val_subset = validation_subset(val, config.val_images, config.val_crop)
        self.config, self.device, self.out, self.rng = config, device, out, rng
        self.fold = fold
        self.score_start = score_start
        self.write_kept_start = write_kept_start
        self.object_size = object_size or {}
        self.started = started
        self.saved = False  # whether ``out`` holds a model of this run
        self._can_tune: bool | None = None  # see _tunable
        self.distance = model.config.activation == "sigmoid"
        geometries = axes_geometry(model.geometry)
        patch = (config.patch_z, config.patch, config.patch) if len(geometries) == 3 else (config.patch,) * 2
        self.out_patch = tuple(g.round_core(min(n, 4096)) for g, n in zip(geometries, patch))
        self.in_patch = tuple(g.tile_input(c, g.valid_margin) for g, c in zip(geometries, self.out_patch))
        self.crop = tuple(g.valid_margin for g in geometries)
        self._val_probs: list[np.ndarray] = []
        self._best_probs: list[np.ndarray] = []
        self.batch = config.batch  # halved on GPU out-of-memory, down to 1
        # for progress records (their ``elapsed`` is the last one measured: reading the clock
        # in every record would charge its cost to the time limit's fake clock in tests)
        self._epoch, self._last_loss, self._elapsed = 0, float("nan"), 0.0

    def steps_per_epoch(self) -> int:
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        area = sum(s.size for s in self.train)
        return int(np.clip(round(2 * area / (self.batch * math.prod(self.out_patch))), 8, 200))

    def _to_device(self, image, targets, maps):
        d = self.device
        return (torch.from_numpy(image).to(d), torch.from_numpy(targets.astype(np.int64)).to(d),
                torch.from_numpy(maps).to(d))

    def _loss(self, network, image, targets, maps):
        logits = network(image)
        if any(self.crop):
            inner = tuple(slice(c, n - c) for c, n in zip(self.crop, targets.shape[1:]))
            targets, maps = targets[(slice(None),) + inner], maps[(slice(None), slice(None)) + inner]
        if self.distance:
            return distance_loss(logits, targets, maps[:, 0], maps[:, 1])
        return weighted_loss(logits, targets, maps[:, 0])

    def _progress(self, kind: str, done: int = 0, total: int = 0, message: str = "", **kw) -> TrainProgress:
        return TrainProgress(kind, self._epoch, self.config.epochs, done, total, kw.pop("loss", self._last_loss),
                             self._elapsed, metric_name=self._metric_name(),
                             fold=self.fold[0], folds=self.fold[1], message=message, **kw)

    def _metric_name(self) -> str:
        return "ap@0.5" if self.config.mode == "instance" else "f1"

    def _train_step(self, network, opt, scaler, batch, generator) -> Generator[TrainProgress, None, float]:
        """One optimiser step on ``batch``; on GPU out-of-memory, halve the batch (a message is
        yielded) and retry, down to one patch, then stop with a clear error."""
        while True:
            if len(batch[0]) > self.batch:
                batch = tuple(a[: self.batch] for a in batch)
            opt.zero_grad(set_to_none=True)
            try:
                image, targets, maps = self._to_device(*batch)
                image, targets, maps = augment(image, targets, maps, self.config.augmentation, generator)
                image = image.contiguous(memory_format=memory_format(self.device, image.ndim - 2))
                with self._autocast():
                    loss = self._loss(network, image, targets, maps)
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(
                        "the loss became NaN or infinite; lower the learning rate (--lr) or "
                        "check the images for extreme values (the weights were not updated)"
                    )
                scaler.scale(loss).backward()
            except Exception as err:  # noqa: BLE001 - anything but out-of-memory is re-raised
                if not is_out_of_memory(err):
                    raise
                image = targets = maps = loss = None  # drop the references before freeing
                opt.zero_grad(set_to_none=True)
                release_memory(self.device)
                if self.batch == 1:
                    raise TrainingError(
                        f"the GPU ({self.device}) ran out of memory even with a batch of one "
                        f"{'x'.join(map(str, self.in_patch))} patch; use a smaller --patch or --base-width, "
                        "or --device cpu"
                    ) from err
                self.batch = max(1, self.batch // 2)
                yield self._progress("note", message=f"out of memory: the batch is reduced to {self.batch} patches")
                continue
            scaler.step(opt)
            scaler.update()
            return value

    def _first_compiled_step(self, compiled, network, opt, scaler, batch, generator):
        """The first step through ``torch.compile``, which compiles. Where compiling fails (no
        C++ compiler, an unsupported platform) the step is taken uncompiled, and so are the
        later ones. Returns the loss and the network to step with from now on."""
        try:
            return (yield from self._train_step(compiled, opt, scaler, batch, generator)), compiled
        except TrainingError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure to compile
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            yield self._progress("note", message=f"torch.compile is not available here ({reason}); "
                                                 "training goes on without it")
            return (yield from self._train_step(network, opt, scaler, batch, generator)), network

    def _validation_batches(self) -> list:
        sampler = PatchSampler(self.val, self.in_patch, np.random.default_rng(12345))
        n = max(2, min(16, len(self.val) * 2))
        return [sampler.batch(self.config.batch) for _ in range(max(1, n // self.config.batch))]

    def _autocast(self):
        return autocast(self.device, self.config.mixed_precision, cpu=True, spatial_dims=self.model.dims)

    def _train_mode(self, network) -> None:
        network.to(memory_format=memory_format(self.device, self.model.dims))  # prediction may have changed it
        network.train()
        if self.config.freeze_encoder:
            for module in encoder_modules(network):
                module.eval()  # frozen: batch-norm statistics must not drift either

    def run(self) -> Generator[TrainProgress, None, TrainResult]:
        config, model, device = self.config, self.model, self.device
        network = model.network.to(device)
        if config.freeze_encoder:
            for p in encoder_parameters(network):
                p.requires_grad_(False)
        params = [p for p in network.parameters() if p.requires_grad]
        avoid_llvm_clash()  # before torch.optim's first use imports triton (see there)
        if config.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=config.lr, momentum=0.99, weight_decay=config.weight_decay)
        steps = self.steps_per_epoch()
        limit = config.time_limit * 60 if config.time_limit else None
        step_network = network  # what the training steps call: torch.compile'd or not
        if config.compile:
            yield self._progress("note", message=(
                "compiling the network (torch.compile): the first step takes up to about a minute"))
            # inductor looks for CUDA while it builds its C++ kernels and warns when there is none
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            step_network = torch.compile(network)
        schedule = _Schedule(steps * config.epochs, limit)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        scaler = torch.amp.GradScaler(
            "cuda", enabled=config.mixed_precision and autocast_dtype(device) == torch.float16)
        generator = torch.Generator().manual_seed(config.seed)
        sampler = PatchSampler(self.train, self.in_patch, self.rng, by=config.sample_by)
        val_batches = self._validation_batches()
        start = self.started or clock()
        history = list(model.history)
        first_epoch = (history[-1]["epoch"] if history else 0)
        start_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        best_state, best_metrics, best_epoch = None, None, None
        stopped, since_best = "finished", 0
        metric_name = self._metric_name()
        val_seconds, step_seconds = None, None
        if self.score_start:
            # fine-tuning: the starting model is the one to beat, and is kept unless beaten
            t0 = clock()
            best_metrics = yield from self._validate(network, val_batches)
            val_seconds = clock() - t0
            best_state, best_epoch = start_state, first_epoch
            self._best_probs = self._val_probs
            history.append({"epoch": first_epoch, "loss": float("nan"), "lr": 0.0, "seconds": val_seconds,
                            "start": True, **best_metrics})
            yield TrainProgress("epoch", 0, config.epochs, 0, steps, float("nan"), val_seconds,
                                val_loss=best_metrics["val_loss"], val_metric=best_metrics.get("score"),
                                metric_name=metric_name, best_metric=best_metrics.get("score"),
                                best_epoch=0, fold=self.fold[0], folds=self.fold[1],
                                message="starting model scored")
        # one background thread cuts patches (numpy) while the device trains on the previous
        # batch; a single worker keeps the random sequence, and so the run, reproducible
        prefetch = ThreadPoolExecutor(max_workers=1)
        pending = prefetch.submit(sampler.batch, self.batch)
        epoch, record, steps_done = 0, {"loss": float("nan")}, 0
        average = WeightAverage(network, config.weight_average) if config.weight_average else None
        swapped = False  # whether the network holds the averaged weights now
        try:
            for epoch in range(1, config.epochs + 1):
                self._epoch = epoch
                if swapped:
                    average.swap()  # back to the live weights to train on
                    swapped = False
                self._train_mode(network)
                losses = []
                epoch_start, timed_from = clock(), 0
                for step in range(1, steps + 1):
                    batch = pending.result()
                    pending = prefetch.submit(sampler.batch, self.batch)  # cut the next batch meanwhile
                    compiling = epoch == 1 and step == 1 and step_network is not network
                    if compiling:
                        loss, step_network = yield from self._first_compiled_step(
                            step_network, network, opt, scaler, batch, generator)
                    else:
                        loss = yield from self._train_step(step_network, opt, scaler, batch, generator)
                    losses.append(loss)
                    steps_done += 1
                    if average is not None:
                        average.update()
                    elapsed = self._elapsed = clock() - start
                    if compiling:
                        # the first compiled step spent its time compiling: time the steps after it
                        epoch_start, timed_from, step_seconds = clock(), 1, None
                    else:
                        step_seconds = (clock() - epoch_start) / (step - timed_from)
                    schedule.update((epoch - 1) * steps + step, elapsed)
                    sched.step()
                    yield TrainProgress("step", epoch, config.epochs, step, steps, float(np.mean(losses)), elapsed,
                                        metric_name=metric_name, fold=self.fold[0], folds=self.fold[1])
                    if limit and elapsed + self._tail_seconds(val_seconds, step_seconds) > limit:
                        stopped = f"time limit of {config.time_limit:g} min reached"
                        break
                    if limit and not config.steps_per_epoch and epoch == 1 and step == 5:
                        # a time-limited run validates about 8 times, so that its best model
                        # is chosen among several (and the curve says something)
                        steps = max(step + 1, min(steps, int(limit / 8 / step_seconds)))
                if average is not None:
                    average.swap()  # validate, keep and show the averaged weights
                    swapped = True
                t0 = clock()
                metrics = yield from self._validate(network, val_batches)
                val_seconds = clock() - t0
                record = {"epoch": first_epoch + epoch, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0],
                          "batch": self.batch, "steps": steps_done,
                          "seconds": clock() - start, "validation_seconds": val_seconds, **metrics}
                history.append(record)
                self._last_loss = record["loss"]
                improved = best_metrics is None or _better(metrics, best_metrics)
                if improved:
                    best_metrics, best_epoch, since_best = metrics, first_epoch + epoch, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
                    self._best_probs = self._val_probs
                    self._save(history, best_epoch, metrics)
                else:
                    since_best += 1
                yield TrainProgress("epoch", epoch, config.epochs, steps, steps, record["loss"],
                                    clock() - start, val_loss=metrics["val_loss"],
                                    val_metric=metrics.get("score"), metric_name=metric_name,
                                    best_metric=best_metrics.get("score"), best_epoch=best_epoch - first_epoch,
                                    fold=self.fold[0], folds=self.fold[1])
                if stopped != "finished":
                    break
                if config.patience and since_best >= config.patience:
                    stopped = f"no improvement for {config.patience} epochs (early stopping)"
                    break
                if not config.steps_per_epoch and step_seconds:
                    # keep validation within its share of the time, the tuning at the end included
                    budget = config.val_budget
                    if limit:
                        budget = max(budget / 2, budget - self._tuning_seconds() / limit)
                    steps = max(steps, math.ceil(val_seconds * (1 - budget) / budget / step_seconds))
            if best_state is not None and self._best_probs and self._tunable():
                network.load_state_dict(best_state)
                yield from self._tune_postprocessing(history, best_epoch, best_metrics)
            if (self.score_start and best_epoch == first_epoch and best_state is not None
                    and not self.saved and self.write_kept_start):
                # a finished fine-tune that never beat its start: ``out`` gets the start (its
                # weights, and its post-processing as tuned on these data), so that it exists
                network.load_state_dict(best_state)
                self._save(history, best_epoch, best_metrics)
        finally:
            prefetch.shutdown(wait=True, cancel_futures=True)
            for p in network.parameters():
                p.requires_grad_(True)
            # cancelled before any validation: the starting weights, never half-trained ones
            network.load_state_dict(best_state if best_state is not None else start_state)
            model.history = history
            network.cpu().eval().to(memory_format=torch.contiguous_format)
            release_memory(device)
        if best_epoch == first_epoch and self.score_start:
            stopped += "; the starting model was not beaten and is kept"
        return TrainResult(model, history, best_epoch, stopped, metrics=best_metrics or {}, first_epoch=first_epoch)

    def _tail_seconds(self, val_seconds: float | None, step_seconds: float | None) -> float:
        """Time still needed after the current step: one more step, the final validation and
        the post-processing tuning, plus a 2 % margin of the limit."""
        step_seconds = step_seconds or 0.0
        if val_seconds is None:
            # not measured yet: prediction costs about a third of a training step per pixel
            pixels = sum(s.size for s in self.val_subset)
            val_seconds = pixels / (self.batch * math.prod(self.out_patch)) * step_seconds / 3
            val_seconds += 0.05 * len(self.val_subset)
        return step_seconds + val_seconds + self._tuning_seconds() + 0.02 * self.config.time_limit * 60

    def _tuning_seconds(self) -> float:
        """What the post-processing tuning at the end will take, from measured costs (2-core
        Zen 3, ``benchmarks/results/tuning_cost.txt``) with a margin."""
        pixels = sum(s.size for s in self.val_subset)
        if self.config.mode == "instance":
            grid = grid_for(self.model.config.classes, self.object_size.get("area"))
            settings = math.prod(len(grid[k]) for k in ("interior_threshold", "foreground_threshold", "seed_dynamic"))
            dynamics = sum(1 for d in grid["seed_dynamic"] if d)
            return pixels * (settings * 2.5e-7 + dynamics * 5e-7)  # 0.21 s/Mpx a setting, h-maxima 0.3 s/Mpx
        if self._tunable():  # thresholds (Rand error ~0.2 s/Mpx each), closed membranes (~0.75 s/Mpx each)
            return pixels * (13 * 2e-7 + len(MEMBRANE_SEEDS) * 1e-6)
        return 0.0

    def _save(self, history, best_epoch, metrics) -> None:
        model = self.model
        model.history = list(history)
        model.training = {"config": self.config.to_json(), "best_epoch": best_epoch,
                          "validation": metrics, "train_images": [s.name for s in self.train],
                          "validation_images": [s.name for s in self.val]}
        if self.object_size:
            model.training["object_size"] = self.object_size
        model.tile = round_tiling(model.geometry, self.config.model_tile(model.dims), 0)[0]
        if self.out is not None:
            saved = copy.copy(model)
            saved.network = copy.deepcopy(model.network).cpu()
            if all(g.padded for g in axes_geometry(model.geometry)):
                saved.halo = network_halo(saved.network, model.config.in_channels)
                model.halo = saved.halo
            saved.save(self.out)
            self.saved = True

    def _tunable(self) -> bool:
        """Instance models, and two-class models with dense validation labels (membranes)."""
        if self._can_tune is None:  # asked before every step (the time left): looked at once
            c = self.model.config
            self._can_tune = c.mode == "instance" or (c.classes == 2 and all((s.targets >= 0).all() for s in self.val_subset))
        return self._can_tune

    def _tuning(self, steps: Generator[tuple[int, int], None, tuple]) -> Generator[TrainProgress, None, tuple]:
        """Drive a tuning generator, yielding a progress record after each of its settings."""
        message = "tuning post-processing on the validation images"
        yield self._progress("tuning", 0, 0, message)
        while True:
            try:
                done, total = next(steps)
            except StopIteration as stop:
                return stop.value
            yield self._progress("tuning", done, total, message)

    def _tune_postprocessing(self, history, best_epoch, metrics) -> Generator[TrainProgress, None, None]:
        if self.model.config.mode == "semantic":
            # two classes, dense labels (membranes): the threshold, then membranes closed by a
            # watershed when their Rand error is lower
            self.model.postprocessing = yield from self._tuning(tune_membranes_steps(self.val_subset, self._best_probs))
            if self.saved:
                self._save(history, best_epoch, metrics)
            return
        yield from self._tune_instances(history, best_epoch, metrics)

    def _tune_instances(self, history, best_epoch, metrics) -> Generator[TrainProgress, None, None]:
        """Choose the watershed thresholds and minimum size with the best validation AP@0.5 on
        the validation subset (the probabilities of the best epoch, nothing predicted again)
        and store them in the model (and its file)."""
        objects = metrics.get("true_objects", 0)  # in the validation subset, as scored
        if self.score_start and self.model.postprocessing and objects < MIN_TUNING_OBJECTS:
            # a fine-tune on a few images: settings chosen on a handful of objects are noise
            # (docs/benchmarks.md, round 8); the start's, tuned on many, are the better guess
            yield self._progress("note", message=(
                f"post-processing kept from the starting model: the validation part holds {objects} "
                f"object(s), fewer than the {MIN_TUNING_OBJECTS} that tuning needs"))
        else:
            labels = [s.labels for s in self.val_subset]
            post, ap = yield from self._tuning(
                tune_steps(self._best_probs, labels, object_area=self.object_size.get("area"),
                           tolerance=NEAR_TIE))
            self.model.postprocessing = {**post.to_json(), "validation_ap@0.5": ap}
        if self.saved:
            self._save(history, best_epoch, metrics)

    def _validate(self, network, val_batches) -> Generator[TrainProgress, None, dict]:
        """Validation loss and metric; yields after each validation image (Cancel, quitting)."""
        network.eval()
        n = len(self.val_subset)
        message = "validating"
        losses = []
        with torch.no_grad():
            for batch in val_batches:
                for i in range(0, len(batch[0]), self.batch):  # the batch may have been reduced
                    image, targets, maps = self._to_device(*(a[i : i + self.batch] for a in batch))
                    with self._autocast():
                        losses.append(self._loss(network, image, targets, maps).item())
        out = {"val_loss": float(np.mean(losses))}
        yield self._progress("validating", 0, n, message)
        self._val_probs = []
        for k, s in enumerate(self.val_subset, start=1):
            self._val_probs.append(predict_normalized(self.model, s.image, self.device))
            yield self._progress("validating", k, n, message)
        min_size = self.config.min_size
        if min_size is None:
            min_size = max(3, int(round(0.15 * self.object_size.get("area", 100))))
        out.update(score_probabilities(self.model, self.val_subset, self._val_probs, min_size))
        out["score"] = headline(out, self.model.config.mode)
        return out
