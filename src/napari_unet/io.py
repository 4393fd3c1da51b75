"""Reading and writing TIFF files, safely.

Images are read with tifffile (memory-mapped when the file allows it, so huge uncompressed
images are not loaded whole). Outputs are written to a temporary file in the target folder and
renamed into place only when complete: a crash or cancel never leaves a half-written file, and
an existing file is replaced only by a complete one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

TIFF_SUFFIXES = (".tif", ".tiff")


class ImageFileError(ValueError):
    """An image file is missing, empty or unreadable; the message says which."""


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES and not path.name.startswith(".")


def list_tiffs(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFileError(f"folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_tiff(p))
    if not files:
        raise ImageFileError(f"folder {folder} holds no .tif/.tiff files")
    return files


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, folders replaced by their TIFF files."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(list_tiffs(p))
        elif p.exists():
            out.append(p)
        else:
            raise ImageFileError(f"input {p} does not exist")
    return out


def read_image(path: str | Path, memmap: bool = True) -> np.ndarray:
    """The image in ``path`` as an array (a read-only memory map when possible)."""
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"image {path} does not exist")
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder; give an image file")
    if path.stat().st_size == 0:
        raise ImageFileError(f"image {path} is empty (0 bytes)")
    if memmap:
        with contextlib.suppress(Exception):
            return tifffile.memmap(path, mode="r")
    try:
        array = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types for damaged files
        raise ImageFileError(f"cannot read {path} as a TIFF image ({type(err).__name__}: {err})") from None
    if array.size == 0:
        raise ImageFileError(f"cannot read {path}: it holds no image data (damaged or empty TIFF)")
    return array


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.tif", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_tiff(path: str | Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` to ``path`` atomically (zlib-compressed by default)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        tifffile.imwrite(tmp, np.asarray(array), compression="zlib" if compress else None)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def tiff_memmap(path: str | Path, shape: tuple[int, ...], dtype: np.dtype) -> Iterator[np.memmap]:
    """A writable TIFF memory map that appears at ``path`` only if the block ends normally."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        array = tifffile.memmap(tmp, shape=shape, dtype=dtype)
        yield array
        array.flush()
        del array
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
