"""Model files: weights plus JSON metadata in one safetensors file.

Loading never executes code from the file (safetensors holds raw tensors and a JSON header,
unlike pickled ``torch.save`` checkpoints). Writes are atomic: a temporary file in the same
folder is written, flushed to disk, then renamed over the target.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .config import ModelConfig, Normalization, from_dict, to_dict
from .io import open_temporary, output_error
from .models import Geometry, axes_geometry, build_network, network_halo

FORMAT = "napari-unet"
FORMAT_VERSION = 1
DEFAULT_TILE = 512  # the largest core; cores are balanced over the image (tiling.plan_tiles)
DEFAULT_TILE_3D = (64, 128, 128)  # z, y, x: about 1 M voxels per tile


class ModelFileError(ValueError):
    """A model file is missing, damaged or not ours; the message says which."""


@dataclass
class UNetModel:
    """A network with everything needed to use it again: settings, tiling, history."""

    config: ModelConfig
    network: nn.Module
    normalization: Normalization = field(default_factory=Normalization)
    tile: int | tuple[int, ...] = DEFAULT_TILE  # per axis (z, y, x) for 3D models
    halo: int | tuple[int, ...] = 0
    history: list[dict] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    postprocessing: dict = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: ModelConfig,
        normalization: Normalization | None = None,
        tile: int | tuple[int, ...] | None = None,
        halo: int | tuple[int, ...] | None = None,
    ) -> UNetModel:
        """A new, untrained model; the halo of padded networks is their receptive field (smp:
        measured; see :func:`napari_unet.models.network_halo`).
        ``tile`` defaults to 256 (2D) or 64x128x128 (3D)."""
        if tile is None:
            tile = DEFAULT_TILE_3D if config.dims == 3 else DEFAULT_TILE
        network = build_network(config)
        geometry = network.geometry
        if halo is None:
            padded = all(g.padded for g in axes_geometry(geometry))
            halo = network_halo(network, config.in_channels) if padded else valid_margin(geometry)
        tile, halo = round_tiling(geometry, tile, halo)
        return cls(
            config=config,
            network=network,
            normalization=normalization or Normalization(),
            tile=tile,
            halo=halo,
        )

    @property
    def geometry(self) -> Geometry | tuple[Geometry, ...]:
        """One Geometry (2D networks) or one per axis, (z, y, x) (3D networks)."""
        return self.network.geometry

    @property
    def dims(self) -> int:
        return self.config.dims

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "model": to_dict(self.config),
            "normalization": to_dict(self.normalization),
            "tile": list(self.tile) if isinstance(self.tile, tuple) else self.tile,
            "halo": list(self.halo) if isinstance(self.halo, tuple) else self.halo,
            "history": self.history,
            "training": self.training,
            "postprocessing": self.postprocessing,
        }

    def save(self, path: str | Path, float16: bool = False) -> Path:
        """Write atomically; an existing file at ``path`` is replaced only once all is written.
        ``float16``: see :meth:`to_bytes`."""
        path = Path(path)
        if getattr(self.network, "foreign", False):
            raise ModelFileError(
                f"cannot write {path}: this network comes from a bioimage.io package not made by napari-unet "
                "and cannot be stored in a napari-unet model file; use the package itself"
            )
        atomic_write_bytes(path, self.to_bytes(float16))
        return path

    @classmethod
    def load(cls, path: str | Path) -> UNetModel:
        """Read a model file; nothing in it is executed, downloaded or sized blindly.

        The settings are checked before the network is built (absurd sizes are refused), and
        ``encoder_weights`` is ignored: the weights come from the file, and naming pretrained
        weights would make segmentation-models-pytorch download them.
        """
        path = Path(path)
        meta, tensors = _read(path)
        return cls.from_metadata(path, meta, tensors)

    def to_bytes(self, float16: bool = False) -> bytes:
        """The model file's bytes (what :meth:`save` writes).

        ``float16``: floating-point weights are stored as float16, which halves the file (for
        sharing; the bundled model is stored so). Loading casts them back into the float32
        network. A weight beyond float16's range is refused rather than stored as infinity.
        """
        from safetensors.torch import save

        tensors = {}
        for name, value in self.network.state_dict().items():
            value = value.detach().cpu()
            if float16 and value.is_floating_point():
                half = value.to(torch.float16)
                if bool(torch.isfinite(value).all()) and not bool(torch.isfinite(half).all()):
                    raise ModelFileError(
                        f"weight {name} holds values beyond float16's range (+-65504); "
                        "save this model in float32"
                    )
                value = half
            tensors[name] = value.clone().contiguous()
        return save(tensors, metadata={FORMAT: json.dumps(self.metadata())})

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "model") -> UNetModel:
        """A model from the bytes of a model file (e.g. sent to a cluster worker)."""
        meta, tensors = _read_bytes(data, Path(name))
        return cls.from_metadata(name, meta, tensors)

    @classmethod
    def from_metadata(cls, path: str | Path, meta: dict, tensors: dict) -> UNetModel:
        """A model from its header ``meta`` and ``tensors``, checked as :meth:`load` checks a
        file (``path`` names the source in errors). Also used for bioimage.io packages."""
        if not isinstance(meta.get("model"), dict):
            raise ModelFileError(f"{path}: this file has no model settings (no 'model' object in its header)")
        try:
            config = from_dict(ModelConfig, meta["model"])
            normalization = from_dict(Normalization, meta.get("normalization", {}))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{path}: the model settings in this file are invalid: {err}") from None
        config = replace(config, encoder_weights=None)
        _check_size(path, config)
        tile, halo = _tiling(path, meta, config.dims)
        extras = _extras(path, meta)
        network = build_network(config)
        missing, unexpected = [], []
        try:
            result = network.load_state_dict(tensors, strict=False)
            missing, unexpected = result.missing_keys, result.unexpected_keys
        except RuntimeError as err:  # torch lists every mismatch, one per line: name the first
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            first = next((line for line in lines if "mismatch" in line), lines[0] if lines else "")
            raise ModelFileError(f"{path}: weights do not fit the described network ({first})") from None
        if missing or unexpected:
            raise ModelFileError(
                f"{path}: weights do not fit the described network "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        network.eval()
        return cls(
            config=config,
            network=network,
            normalization=normalization,
            tile=tile,
            halo=valid_margin(network.geometry) if halo is None else halo,
            **extras,
        )


def load_model(path: str | Path, trust_code: bool = False) -> UNetModel:
    """A napari-unet model file (.safetensors) or a bioimage.io package (.zip, rdf.yaml): see
    :func:`napari_unet.zoo.import_package` for what ``trust_code`` allows."""
    from .zoo import import_package, is_package

    if is_package(path):
        return import_package(path, trust_code=trust_code)
    return UNetModel.load(path)


#: limits on what a model file may ask for: far above any real U-Net (the paper's has 31
#: million parameters), far below what would exhaust the memory of the machine reading it
LIMITS = {"in_channels": 1024, "classes": 65536, "base_width": 4096, "tile": 65536, "halo": 65536}
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights


def paper_parameters(config: ModelConfig) -> int:
    """Number of weights of a ``unet``/``unet-paper`` network (2D or 3D), computed without
    building it (an upper bound for 3D up-convolutions that do not pool z)."""
    widths = [config.base_width * 2**i for i in range(config.depth + 1)]
    k, up = (27, 8) if config.dims == 3 else (9, 4)
    total, cin = 0, config.in_channels
    for w in widths:  # contracting path and bottom: two 3x3 convolutions per level
        total += k * cin * w + k * w * w
        cin = w
    for low, w in zip(widths[:0:-1], widths[-2::-1]):  # up-convolution, two 3x3 convolutions
        total += up * low * w + k * 2 * w * w + k * w * w
    return total + widths[0] * config.classes


def _check_size(path: Path, config: ModelConfig) -> None:
    for name in ("in_channels", "classes", "base_width"):
        value = getattr(config, name)
        if value > LIMITS[name]:
            raise ModelFileError(f"{path}: {name} {value} is beyond any usable network (at most {LIMITS[name]}); "
                                 "the file is damaged or not made by napari-unet")
    if config.arch in ("unet", "unet-paper", "unet3d", "unet3d-paper") and paper_parameters(config) > MAX_PARAMETERS:
        raise ModelFileError(
            f"{path}: depth {config.depth} with base width {config.base_width} means "
            f"{paper_parameters(config):,} weights (at most {MAX_PARAMETERS:,}); the file is damaged"
        )


def _integer(path: Path, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= LIMITS[name]:
        raise ModelFileError(f"{path}: {name} must be an integer from {minimum} to {LIMITS[name]}, got {value!r}")
    return value


def _tiling(path: Path, meta: dict, dims: int = 2) -> tuple:
    """Default tile (>= 1) and halo (>= 0; None = the network's valid margin) of a file: one
    integer each (2D), or one per axis (z, y, x) for 3D models."""
    def read(name: str, value: Any, minimum: int):
        if dims == 3:
            if not isinstance(value, list) or len(value) != 3:
                raise ModelFileError(f"{path}: {name} of a 3D model must be a list of 3 integers (z, y, x), got {value!r}")
            return tuple(_integer(path, name, v, minimum) for v in value)
        return _integer(path, name, value, minimum)

    tile = meta.get("tile", DEFAULT_TILE if dims == 2 else list(DEFAULT_TILE_3D))
    halo = meta.get("halo")
    return read("tile", tile, 1), None if halo is None else read("halo", halo, 0)


def valid_margin(geometry: Geometry | tuple[Geometry, ...]) -> int | tuple[int, ...]:
    """The halo a network's valid convolutions fix (0 for padded ones), in its tiling's form."""
    if isinstance(geometry, tuple):
        return tuple(g.valid_margin for g in geometry)
    return geometry.valid_margin


def round_tiling(geometry, tile, halo) -> tuple:
    """Tile and halo rounded to what the network takes, per axis for 3D networks."""
    if isinstance(geometry, tuple):
        n = len(geometry)
        tiles = tile if isinstance(tile, (tuple, list)) else (tile,) * n
        halos = halo if isinstance(halo, (tuple, list)) else (halo,) * n
        return (tuple(g.round_core(t) for g, t in zip(geometry, tiles)),
                tuple(g.round_halo(h) for g, h in zip(geometry, halos)))
    return geometry.round_core(tile), geometry.round_halo(halo)


def _extras(path: Path, meta: dict) -> dict:
    """History, training record and post-processing settings, checked for their types."""
    out = {}
    for name, kind in (("history", list), ("training", dict), ("postprocessing", dict)):
        value = meta.get(name, kind())
        if not isinstance(value, kind):
            raise ModelFileError(f"{path}: '{name}' must be a JSON {'list' if kind is list else 'object'}, "
                                 f"got {type(value).__name__}")
        out[name] = value
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, with the mode any new file of the user gets."""
    path = Path(path)
    fd, tmp = open_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(path, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> tuple[dict, dict]:
    """Metadata and tensors, with a clear error for anything that is not our file."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    return _read_bytes(path.read_bytes(), path)


def _read_bytes(data: bytes, path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    # a safetensors file starts with its header's length (8 bytes, little-endian) and then the
    # JSON header: its first byte may be anything (0x80 for a header of 128 + 256k bytes), so
    # only a file that is not safetensors-shaped is taken for a pickle (zip "PK" or protocol 0x80)
    safetensors_shaped = len(data) > 8 and data[8:9] == b"{"
    if not safetensors_shaped and (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise ModelFileError(
            f"{path} looks like a pickled PyTorch checkpoint (torch.save). napari-unet does not "
            "load pickles because they can run arbitrary code; save the weights as a napari-unet "
            "model file instead (UNetModel(...).save)"
        )
    if len(data) < 8:
        raise ModelFileError(f"{path} is empty or truncated ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ModelFileError(
            f"{path} is truncated or not a model file (header of {header_len} bytes announced, "
            f"{len(data)} bytes in the file)"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
        tensors = load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is damaged or not a model file: {err}") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    raw = metadata.get(FORMAT) if isinstance(metadata, dict) else None
    if raw is None:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-unet model (no '{FORMAT}' metadata)"
        )
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise ModelFileError(f"{path}: the napari-unet settings in this file are not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the napari-unet settings in this file are not a JSON object")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer napari-unet ({meta.get('package_version')}); upgrade"
        )
    return meta, tensors
