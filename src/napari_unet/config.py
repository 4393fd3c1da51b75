"""Small frozen settings objects, validated on construction.

The same objects are written into model files and config files, so a run started in the
napari widget can be replayed by the command line (``napari-unet train --config FILE``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHITECTURES = ("unet", "unet-paper", "smp", "unet3d", "unet3d-paper")
INSTANCE_TARGETS = ("distance", "3-class")
MODES = ("semantic", "instance")
DEVICES = ("auto", "cpu", "cuda", "mps")
POLARITIES = ("as-is", "auto")


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message says which values are valid."""


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, choices))}")


def _positive(name: str, value: Any, minimum: float = 1) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """What network to build.

    Parameters
    ----------
    arch : str
        ``unet`` (the paper's layout with padded convolutions: fast to train, halo measured),
        ``unet-paper`` (Ronneberger et al. 2015, valid convolutions, exact tiling), ``smp``
        (a segmentation-models-pytorch U-Net with a chosen encoder, padded convolutions), or
        the volumetric ``unet3d-paper`` (Cicek et al. 2016: 3x3x3 valid convolutions, exact
        tiling per axis) and ``unet3d`` (the same, padded).
    in_channels : int
        Number of image channels the network takes.
    classes : int
        Number of output channels: semantic classes; instance mode 3 (background, interior,
        boundary) with ``3-class`` targets, 2 (foreground, distance) with ``distance`` targets.
    class_names : tuple of str
        Optional names, one per class.
    mode : str
        ``semantic`` (labels are classes) or ``instance`` (labels are object ids).
    instance_targets : str
        Instance mode: what the network learns. ``distance``: foreground probability and the
        distance to the object's boundary, scaled to 0..1 per object (seeded watershed on it);
        ``3-class``: background / interior / boundary classes (the U-Net paper's recipe).
    depth : int
        Number of 2x2 poolings of ``unet-paper`` (the paper uses 4).
    base_width : int
        Channels of the first level of ``unet-paper`` (the paper uses 64).
    batch_norm : bool
        Add batch normalisation after each convolution of ``unet-paper``.
    encoder : str
        smp encoder name, e.g. ``resnet34`` or ``mobilenet_v2``.
    encoder_weights : str or None
        smp pretrained encoder weights (``imagenet``); None by default, never downloaded in tests.
    z_pooling : int or None
        3D networks: how many levels (the deepest) also pool along z; the others pool in-plane
        only, for volumes whose z spacing is coarser than their pixels. None = every level.
    """

    arch: str = "unet-paper"
    in_channels: int = 1
    classes: int = 2
    class_names: tuple[str, ...] = ()
    mode: str = "semantic"
    instance_targets: str = "3-class"
    depth: int = 4
    base_width: int = 64
    batch_norm: bool = False
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    z_pooling: int | None = None

    def __post_init__(self) -> None:
        _choice("architecture", self.arch, ARCHITECTURES)
        if self.z_pooling is not None:
            if self.dims != 3:
                raise ConfigError(f"z_pooling is a setting of 3D networks (unet3d, unet3d-paper), not of {self.arch!r}")
            if isinstance(self.z_pooling, bool) or not isinstance(self.z_pooling, int) \
                    or not 0 <= self.z_pooling <= self.depth:
                raise ConfigError(f"z_pooling must be an integer from 0 to depth ({self.depth}), got {self.z_pooling!r}")
        _choice("mode", self.mode, MODES)
        _positive("in_channels", self.in_channels)
        _positive("classes", self.classes, 2)
        _positive("depth", self.depth)
        _positive("base_width", self.base_width)
        if self.depth > 6:
            raise ConfigError(f"depth {self.depth} is too deep for microscopy tiles; use 1 to 6")
        _choice("instance targets", self.instance_targets, INSTANCE_TARGETS)
        if self.mode == "instance" and self.classes != self.instance_outputs():
            raise ConfigError(
                f"instance mode with {self.instance_targets} targets predicts "
                f"{self.instance_outputs()} channels ({', '.join(self.names())}); got classes={self.classes}"
            )
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.class_names and len(self.class_names) != self.classes:
            raise ConfigError(
                f"{len(self.class_names)} class names given for {self.classes} classes"
            )
        if self.arch == "smp":
            from .models import check_encoder  # local: keeps config importable without torch

            check_encoder(self.encoder)

    @property
    def dims(self) -> int:
        """Spatial dimensions the network sees: 3 for the volumetric architectures, else 2."""
        return 3 if self.arch.startswith("unet3d") else 2

    def instance_outputs(self) -> int:
        return 2 if self.instance_targets == "distance" else 3

    @property
    def activation(self) -> str:
        """How network outputs become probabilities: ``softmax`` over classes, or ``sigmoid``
        per channel (distance targets: foreground probability, scaled distance)."""
        return "sigmoid" if self.mode == "instance" and self.instance_targets == "distance" else "softmax"

    def names(self) -> tuple[str, ...]:
        """Class names, with defaults when none were given."""
        if self.class_names:
            return self.class_names
        if self.mode == "instance":
            if self.instance_targets == "distance":
                return ("foreground", "distance")
            return ("background", "interior", "boundary")
        return ("background",) + tuple(f"class {i}" for i in range(1, self.classes))


@dataclass(frozen=True)
class Normalization:
    """Per-image percentile normalisation, computed once over the whole image (never per tile).

    Parameters
    ----------
    low, high : float
        Percentiles mapped to 0 and 1 (default 1 and 99.8).
    polarity : str
        ``as-is``: intensities keep their direction. ``auto``: a channel whose median lies in
        the upper half of its percentile range (a bright background: brightfield, EM, stained
        tissue) is inverted (``low`` maps to 1 and ``high`` to 0), so that the network sees a
        dark background in every image. Decided once per image and channel, never per tile.
    """

    low: float = 1.0
    high: float = 99.8
    polarity: str = "as-is"

    def __post_init__(self) -> None:
        if not (0 <= self.low < self.high <= 100):
            raise ConfigError(
                f"normalisation percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low}, high={self.high}"
            )
        _choice("polarity", self.polarity, POLARITIES)


# PredictConfig's instance post-processing settings and their names in instances.PostProcessing
POSTPROCESSING_FIELDS = {"seed_threshold": "interior_threshold", "seed_dynamic": "seed_dynamic",
                         "foreground_threshold": "foreground_threshold", "min_size": "min_size"}


@dataclass(frozen=True)
class PredictConfig:
    """How to tile an image for prediction.

    Parameters
    ----------
    tile : int, tuple or None
        Size of the output core of a tile in pixels (the halo is added around it); None = the
        model's default. Rounded to the nearest size the model can take. 3D models: one
        size for all axes, or (z, y, x).
    halo : int, tuple or None
        Context added on each side of a tile; None = the model's default. Fixed by the
        architecture for ``unet-paper``.
    batch : int or None
        Tiles per forward pass (halved automatically on GPU out-of-memory); None = 1 on the
        CPU (as fast, far less memory), 4 on a GPU.
    device : str
        ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    mixed_precision : bool
        On GPU, run the network in bfloat16 (float16 where bf16 is not supported): faster and
        lighter, at the cost of small probability differences. Off = float32 everywhere.
    tta : bool
        Test-time augmentation: average the probabilities over the 8 flips and 90 degree
        rotations of every tile (8 times slower; smoother, usually more accurate results).
    object_size : float, "auto" or None
        Instance models: the typical object diameter in this image, in pixels. The image is
        rescaled so that objects have the size the model learned (stored in the model file),
        predicted, and the result mapped back. ``auto`` estimates it from a first prediction;
        None = no rescaling.
    link_z : float or None
        Instance models predicting a Z stack plane by plane (2D models): objects of
        consecutive planes whose overlap (IoU) exceeds this get one id through z, like
        Cellpose's stitch threshold (e.g. 0.25); None = every plane has its own ids.
    seed_threshold, seed_dynamic, foreground_threshold, min_size : optional
        Instance models: how probabilities become objects; None = the model's own, tuned on
        its validation images when it was trained. ``seed_threshold`` (0 < x < 1): the height
        (P(interior), or the scaled boundary distance) a seed must exceed; higher = fewer,
        surer objects. ``seed_dynamic`` (0 <= x < 1): how deep the valley between two maxima must be
        for them to seed two objects; higher = fewer splits, 0 = a seed per connected region
        above the threshold. ``foreground_threshold`` (0 < x < 1): how far objects grow; higher =
        tighter outlines. ``min_size``: smallest object kept, in pixels (voxels for 3D models).
        Nuclei from another lab than the model's training images may want other values, as
        with Cellpose's and StarDist's thresholds (docs/benchmarks.md, round 17).
    """

    tile: int | tuple[int, ...] | None = None
    halo: int | tuple[int, ...] | None = None
    batch: int | None = None
    device: str = "auto"
    mixed_precision: bool = True
    tta: bool = False
    object_size: float | str | None = None
    link_z: float | None = None
    seed_threshold: float | None = None
    seed_dynamic: float | None = None
    foreground_threshold: float | None = None
    min_size: int | None = None

    def postprocessing_overrides(self) -> dict:
        """The instance post-processing settings given here (the rest stay the model's), named
        as in :class:`~napari_unet.instances.PostProcessing`."""
        return {field: getattr(self, name) for name, field in POSTPROCESSING_FIELDS.items()
                if getattr(self, name) is not None}

    def __post_init__(self) -> None:
        for name, low_open in (("seed_threshold", True), ("seed_dynamic", False), ("foreground_threshold", True)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not (0 < v < 1 if low_open else 0 <= v < 1)):
                interval = "(0, 1)" if low_open else "[0, 1) (0 = a seed per region above the threshold)"
                raise ConfigError(f"{name.replace('_', ' ')} must be a number in {interval}, got {v!r}")
        if self.min_size is not None and (isinstance(self.min_size, bool) or not isinstance(self.min_size, int)
                                          or self.min_size < 0):
            raise ConfigError(f"min size must be a whole number of pixels >= 0, got {self.min_size!r}")
        if self.link_z is not None and (isinstance(self.link_z, bool) or not isinstance(self.link_z, (int, float))
                                        or not 0 <= self.link_z < 1):
            raise ConfigError(f"link_z must be an IoU threshold in [0, 1), got {self.link_z!r}")
        if self.object_size is not None and self.object_size != "auto":
            if isinstance(self.object_size, bool) or not isinstance(self.object_size, (int, float)) \
                    or not 2 <= self.object_size <= 10_000:
                raise ConfigError(
                    f"object size must be a diameter in pixels between 2 and 10000, or 'auto'; "
                    f"got {self.object_size!r}"
                )
        if isinstance(self.tile, list):
            object.__setattr__(self, "tile", tuple(self.tile))
        if isinstance(self.halo, list):
            object.__setattr__(self, "halo", tuple(self.halo))
        for t in (self.tile if isinstance(self.tile, tuple) else (self.tile,)):
            if t is not None:
                _positive("tile", t)
        for h in (self.halo if isinstance(self.halo, tuple) else (self.halo,)):
            if h is not None and (isinstance(h, bool) or not isinstance(h, int) or h < 0):
                raise ConfigError(f"halo must be an integer >= 0, got {self.halo!r}")
        if self.batch is not None:
            _positive("batch", self.batch)
        if self.device.split(":")[0] not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of: {', '.join(DEVICES)}")


def to_dict(obj: Any) -> dict:
    """Plain-JSON form of a settings dataclass."""
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def from_dict(cls: type, data: dict) -> Any:
    """Build a settings dataclass from a dict, rejecting unknown keys with the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} setting(s) {sorted(unknown)}; valid: {sorted(names)}"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def read_json(path: str | Path) -> dict:
    """Read a JSON settings file with a clear error."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None

