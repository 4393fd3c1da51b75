"""Model files: weights plus JSON metadata in one safetensors file.

Loading never executes code from the file (safetensors holds raw tensors and a JSON header,
unlike pickled ``torch.save`` checkpoints). Writes are atomic: a temporary file in the same
folder is written, flushed to disk, then renamed over the target.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from . import __version__
from .config import ModelConfig, Normalization, from_dict, to_dict
from .models import Geometry, build_network, measure_halo

FORMAT = "napari-unet"
FORMAT_VERSION = 1
DEFAULT_TILE = 256


class ModelFileError(ValueError):
    """A model file is missing, damaged or not ours; the message says which."""


@dataclass
class UNetModel:
    """A network with everything needed to use it again: settings, tiling, history."""

    config: ModelConfig
    network: nn.Module
    normalization: Normalization = field(default_factory=Normalization)
    tile: int = DEFAULT_TILE
    halo: int = 0
    history: list[dict] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    postprocessing: dict = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: ModelConfig,
        normalization: Normalization | None = None,
        tile: int = DEFAULT_TILE,
        halo: int | None = None,
    ) -> UNetModel:
        """A new, untrained model; the halo of padded networks is measured (see measure_halo)."""
        network = build_network(config)
        geometry: Geometry = network.geometry
        if halo is None:
            halo = geometry.valid_margin if not geometry.padded else measure_halo(network, config.in_channels)
        return cls(
            config=config,
            network=network,
            normalization=normalization or Normalization(),
            tile=geometry.round_core(tile),
            halo=geometry.round_halo(halo),
        )

    @property
    def geometry(self) -> Geometry:
        return self.network.geometry

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "model": to_dict(self.config),
            "normalization": to_dict(self.normalization),
            "tile": self.tile,
            "halo": self.halo,
            "history": self.history,
            "training": self.training,
            "postprocessing": self.postprocessing,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically; an existing file at ``path`` is replaced only once all is written."""
        from safetensors.torch import save

        path = Path(path)
        tensors = {k: v.detach().cpu().clone().contiguous() for k, v in self.network.state_dict().items()}
        payload = save(tensors, metadata={FORMAT: json.dumps(self.metadata())})
        atomic_write_bytes(path, payload)
        return path

    @classmethod
    def load(cls, path: str | Path) -> UNetModel:
        path = Path(path)
        meta, tensors = _read(path)
        try:
            config = from_dict(ModelConfig, meta["model"])
            normalization = from_dict(Normalization, meta.get("normalization", {}))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{path}: the model settings in this file are invalid: {err}") from None
        network = build_network(config)
        missing, unexpected = [], []
        try:
            result = network.load_state_dict(tensors, strict=False)
            missing, unexpected = result.missing_keys, result.unexpected_keys
        except RuntimeError as err:
            raise ModelFileError(f"{path}: weights do not fit the described network: {err}") from None
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
            tile=int(meta.get("tile", DEFAULT_TILE)),
            halo=int(meta.get("halo", network.geometry.valid_margin)),
            history=list(meta.get("history", [])),
            training=dict(meta.get("training", {})),
            postprocessing=dict(meta.get("postprocessing", {})),
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> tuple[dict, dict]:
    """Metadata and tensors, with a clear error for anything that is not our file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    data = path.read_bytes()
    if data[:2] == b"PK" or data[:1] == b"\x80":
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
    raw = (header.get("__metadata__") or {}).get(FORMAT)
    if raw is None:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-unet model (no '{FORMAT}' metadata)"
        )
    meta = json.loads(raw)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer napari-unet ({meta.get('package_version')}); upgrade"
        )
    return meta, tensors
