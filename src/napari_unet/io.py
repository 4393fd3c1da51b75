"""Reading and writing TIFF files, safely.

Images are read with tifffile (memory-mapped when the file allows it, so huge uncompressed
images are not loaded whole). Outputs are written to a temporary file in the target folder and
renamed into place only when complete: a crash or cancel never leaves a half-written file, and
an existing file is replaced only by a complete one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
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


def is_zarr(path: str | Path) -> bool:
    """A zarr store (v2 or v3 folder): ``*.zarr``, or a folder with zarr metadata."""
    path = Path(path)
    return path.suffix.lower() == ".zarr" or (
        path.is_dir() and any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup")))


def open_image(path: str | Path, level: int | None = None) -> Any:
    """The image in ``path`` without reading it whole: an uncompressed TIFF as a memory map, a
    compressed or tiled TIFF through tifffile's zarr interface (``aszarr``: read chunk by chunk),
    a zarr array, or the ``level`` of an OME-Zarr (NGFF) multiscale image (default: the full
    resolution). Slicing the result reads only what is asked for."""
    path = Path(path)
    if is_zarr(path):
        return _open_zarr(path, level)
    if level not in (None, 0):
        raise ImageFileError(f"--level {level}: {path} is a TIFF; levels are for OME-Zarr images")
    if not path.exists():
        raise ImageFileError(f"image {path} does not exist")
    with contextlib.suppress(Exception):
        return tifffile.memmap(path, mode="r")
    import zarr

    try:
        store = tifffile.imread(path, aszarr=True)
        array = zarr.open(store, mode="r")
    except Exception:  # noqa: BLE001 - damaged or not a TIFF: the whole read explains it
        return read_image(path, memmap=False)
    if not hasattr(array, "shape"):  # a pyramidal TIFF: its full-resolution level
        array = array["0"]
    return array


def _open_zarr(path: Path, level: int | None) -> Any:
    import zarr

    if not path.exists():
        raise ImageFileError(f"zarr store {path} does not exist")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # noqa: BLE001 - zarr raises many kinds
        raise ImageFileError(f"{path} is not a zarr store ({type(err).__name__}: {err})") from None
    if hasattr(node, "shape"):
        if level not in (None, 0):
            raise ImageFileError(f"--level {level}: {path} is a single zarr array, not a multiscale image")
        return node
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        arrays = sorted(k for k, _ in node.arrays())
        raise ImageFileError(f"{path} is a zarr group without OME-Zarr multiscales metadata; open one of its "
                             f"arrays instead ({', '.join(str(path / a) for a in arrays[:5]) or 'it has none'})")
    datasets = multiscales[0]["datasets"]
    k = 0 if level is None else level
    if not 0 <= k < len(datasets):
        raise ImageFileError(f"--level {level}: {path} has levels 0 to {len(datasets) - 1}")
    return node[datasets[k]["path"]]


# ---------------------------------------------------------------------------------------------
# pixel size: read from an input, written to its outputs

_UNITS = {"um": "micron", "µm": "micron", "\\u00B5m": "micron", "microns": "micron", "micrometer": "micron"}
_RESUNIT_NAMES = {tifffile.RESUNIT.INCH: "inch", tifffile.RESUNIT.CENTIMETER: "cm"}


@dataclass(frozen=True)
class PixelSize:
    """The physical size of a pixel, read from an input TIFF and copied to its outputs.

    Parameters
    ----------
    x, y : float
        Width and height of a pixel in ``unit``.
    unit : str
        ImageJ's spelling: ``micron``, ``nm``, ``mm``, ``cm``, ``inch``...
    z : float or None
        Distance between the planes of a Z stack in ``unit``, when known.
    """

    x: float
    y: float
    unit: str
    z: float | None = None


def _ratio(value) -> float | None:
    try:
        num, den = value
        return num / den if num and den else None
    except (TypeError, ValueError):
        return float(value) or None


def read_pixel_size(path: str | Path) -> PixelSize | None:
    """Pixel size and unit of a TIFF: ImageJ metadata (unit, spacing) or the resolution tags
    (inch, cm); None when the file says nothing usable (no unit, or not readable)."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            tags = page.tags
            imagej = tif.imagej_metadata or {}
            xres = _ratio(tags["XResolution"].value) if "XResolution" in tags else None
            yres = _ratio(tags["YResolution"].value) if "YResolution" in tags else None
            resunit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else tifffile.RESUNIT.INCH
    except Exception:  # noqa: BLE001 - metadata is optional: never fail a prediction over it
        return None
    unit = imagej.get("unit") or _RESUNIT_NAMES.get(resunit)
    if not xres or not unit or unit == "pixel":
        return None
    unit = _UNITS.get(str(unit), str(unit))
    spacing = imagej.get("spacing")
    return PixelSize(
        x=1 / xres, y=1 / (yres or xres), unit=unit,
        z=float(spacing) if isinstance(spacing, (int, float)) and spacing > 0 else None,
    )


# ---------------------------------------------------------------------------------------------
# writing

IMAGEJ_ORDER = "TZCYX"


#: centimetres per unit, to write a unit TIFF tags know when ImageJ's description cannot be used
_CENTIMETERS = {"micron": 1e-4, "nm": 1e-7, "mm": 0.1, "cm": 1.0, "m": 100.0}


def _resolve_axes(axes: str | None, ndim: int) -> str | None:
    if axes is None and ndim == 2:
        return "YX"
    if axes is not None and len(axes) != ndim:
        raise ValueError(f"axes {axes!r} do not match an array of {ndim} dimensions")
    return axes


def _imagej_layout(axes: str | None) -> str | None:
    """``axes`` in ImageJ's hyperstack order (TZCYX), or None if ImageJ cannot describe them."""
    if axes is None or len(set(axes)) != len(axes) or not set(axes) <= set(IMAGEJ_ORDER) or not axes.endswith("YX"):
        return None
    return "".join(a for a in IMAGEJ_ORDER if a in axes)


def _tiff_options(
    shape: tuple[int, ...], axes: str | None, imagej_axes: str | None, pixel_size: PixelSize | None
) -> dict:
    """tifffile.imwrite arguments: grayscale pages (never RGB), an ImageJ hyperstack
    description when the axes allow it (else tifffile's own, with the axes), the pixel size."""
    options: dict = {"photometric": "minisblack"}
    extra: dict = {}
    if pixel_size is not None:
        unit, x, y = pixel_size.unit, pixel_size.x, pixel_size.y
        if imagej_axes is None and unit in _CENTIMETERS:
            unit, x, y = "cm", x * _CENTIMETERS[unit], y * _CENTIMETERS[unit]
        options["resolution"] = (1 / x, 1 / y)
        # ImageJ's convention: the unit is in the description and the tag says "no unit" (but
        # for the two units TIFF knows); the resolution is then pixels per that unit
        options["resolutionunit"] = {"inch": "INCH", "cm": "CENTIMETER"}.get(unit, "NONE")
        extra["unit"] = "".join(c if c.isascii() else f"\\u{ord(c):04X}" for c in unit)  # ImageJ's escape
        if pixel_size.z is not None and imagej_axes and "Z" in imagej_axes:
            extra["spacing"] = pixel_size.z
    if imagej_axes is not None:
        # written by hand rather than with imagej=True, which refuses int32 labels; ImageJ
        # opens those as 32-bit images and reads the hyperstack layout from this description
        options["description"] = tifffile.imagej_description(shape, imagej_axes, rgb=False, **extra)
        options["metadata"] = None
    elif axes is not None:
        options["metadata"] = {"axes": axes}
    return options


class OutputError(ValueError):
    """A result could not be written (full disk, no permission, a file where a folder should
    be); the message says which file and why, and that nothing was written there."""


def output_error(path: Path, err: OSError) -> OutputError:
    """The clear error for a failed write of ``path``."""
    import errno

    reasons = {
        errno.ENOSPC: "the disk is full (no space left on the device); free some space or write elsewhere",
        errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EPERM: "permission denied; choose a folder you can write to",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a part of the path is a file, not a folder",
    }
    reason = reasons.get(err.errno, err.strerror or str(err))
    kept = "; the file already there is unchanged" if path.is_file() else ""
    return OutputError(f"cannot write {path}: {reason}. Nothing was written there{kept}.")


def check_writable(path: str | Path) -> None:
    """Fail now, not after an hour of work, when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    fd, tmp = open_temporary(path)
    os.close(fd)
    tmp.unlink(missing_ok=True)


def open_temporary(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, empty file beside ``path`` (opened for writing), to be renamed over it.

    Created with mode 0666 less the umask, as any file the user makes: ``tempfile.mkstemp``
    would give 0600, which the rename keeps, and the result would be unreadable to the user's
    group (a shared folder, a web server, a cluster job running as another user).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(path, err) from err
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as err:
            raise output_error(path, err) from err
    raise FileExistsError(f"cannot create a temporary file beside {path}")


def _temporary(path: Path) -> Path:
    fd, tmp = open_temporary(path, ".tmp.tif")
    os.close(fd)
    return tmp


def write_tiff(
    path: str | Path,
    array: np.ndarray,
    compress: bool = True,
    axes: str | None = None,
    pixel_size: PixelSize | None = None,
) -> Path:
    """Write ``array`` to ``path`` atomically (zlib-compressed by default).

    ``axes`` (e.g. ``YX``, ``ZYX``, ``CYX``) makes the file an ImageJ hyperstack, stored in
    ImageJ's axis order (TZCYX); ``pixel_size`` (see :func:`read_pixel_size`) is written to
    the resolution tags and the ImageJ description. Pages are always grayscale, never RGB.
    """
    path = Path(path)
    array = np.asarray(array)
    axes = _resolve_axes(axes, array.ndim)
    imagej_axes = _imagej_layout(axes)
    if imagej_axes is not None:
        array = np.transpose(array, [axes.index(a) for a in imagej_axes])
    tmp = _temporary(path)
    try:
        tifffile.imwrite(tmp, array, compression="zlib" if compress else None,
                         **_tiff_options(array.shape, axes, imagej_axes, pixel_size))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise output_error(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def tiff_memmap(
    path: str | Path,
    shape: tuple[int, ...],
    dtype: np.dtype,
    axes: str | None = None,
    pixel_size: PixelSize | None = None,
) -> Iterator[np.memmap]:
    """A writable TIFF memory map that appears at ``path`` only if the block ends normally.

    ``axes`` and ``pixel_size`` as in :func:`write_tiff`. The array handed out always has
    ``shape`` in the order of ``axes``; the file may hold it in ImageJ's order (a probability
    map with axes ``CZYX`` is stored as ``ZCYX``), the array is then a transposed view of it.
    """
    path = Path(path)
    shape = tuple(int(n) for n in shape)
    axes = _resolve_axes(axes, len(shape))
    imagej_axes = _imagej_layout(axes)
    order = list(range(len(shape))) if imagej_axes is None else [axes.index(a) for a in imagej_axes]
    file_shape = tuple(shape[i] for i in order)
    tmp = _temporary(path)
    try:
        array = tifffile.memmap(tmp, shape=file_shape, dtype=dtype,
                                **_tiff_options(file_shape, axes, imagej_axes, pixel_size))
        yield np.transpose(array, np.argsort(order))
        array.flush()
        del array
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise output_error(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
