"""The overlap-tile strategy of the U-Net paper.

The image is cut into a grid of output tiles (cores). Each core is predicted from a larger
input tile: the core plus a halo of context on every side. The halo comes from the
neighbouring image, and beyond the image border from its mirror image (reflection, repeated
when the halo is larger than the image). Each output pixel is written by exactly one tile
centre, so there are no seams and nothing is averaged. Tile origins are multiples of the
network's pooling step, so with valid convolutions (``unet-paper``) the tiled result equals a
single pass over the whole mirror-extended image.

Test-time augmentation (``tta``) averages the probabilities of the 8 flips and 90 degree
rotations of each tile, as the U-Net paper did for ISBI 2012. It keeps the guarantee: a tile
of valid size has even feature maps before every pooling, so the flipped or rotated tile is
pooled on the flipped grid, and each of the 8 terms equals the one-pass prediction of the
correspondingly transformed network.
"""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import normalization as norm
from .axes import Planes
from .devices import autocast, default_tile_batch, full_float32, memory_format, run_in_batches
from .models import Geometry


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``0..n-1`` by mirroring at the borders
    (numpy's ``reflect`` mode: the border pixel is not repeated), for any extension length."""
    idx = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def per_axis(value, ndim: int) -> tuple:
    """A setting given once for all axes, or once per axis, as a tuple of ``ndim`` values."""
    if isinstance(value, (tuple, list)):
        if len(value) != ndim:
            raise ValueError(f"{len(value)} values given for {ndim} axes: {tuple(value)}")
        return tuple(value)
    return (value,) * ndim


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one plane (2D) or volume (3D) go, per spatial axis.

    ``core`` is the output size of a tile, ``halo`` the context on each side, ``input`` the
    size of the tile the network sees, ``offset`` where the core starts in the network output.
    """

    shape: tuple[int, ...]
    core: tuple[int, ...]
    halo: tuple[int, ...]
    input: tuple[int, ...]
    offset: tuple[int, ...]
    requested_tile: int | tuple[int, ...]
    largest: tuple[int, ...]  # the requested tile rounded to the pooling step (the largest core)

    @property
    def rounded(self) -> bool:
        """Whether the requested tile was not a multiple of the pooling step."""
        return self.largest != per_axis(self.requested_tile, self.ndim)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def origins(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(0, n, c) for n, c in zip(self.shape, self.core))))

    def describe(self) -> str:
        halo = self.halo[0] if len(set(self.halo)) == 1 else "x".join(map(str, self.halo))
        return (
            f"tiles of {'x'.join(map(str, self.core))} output pixels with a halo of {halo} px "
            f"(network input {'x'.join(map(str, self.input))}), {len(self.origins)} per "
            f"{'plane' if self.ndim == 2 else 'volume'}"
        )


def plan_tiles(
    shape: tuple[int, ...], geometry: Geometry | tuple[Geometry, ...], tile: int | tuple[int, ...],
    halo: int | tuple[int, ...],
) -> TilePlan:
    """Tile grid for an image of ``shape`` (height, width) or (depth, height, width).

    ``geometry``, ``tile`` and ``halo`` are given once or per axis (anisotropic volumes).
    ``tile`` is rounded to the nearest multiple of the pooling step and is the largest core:
    along each axis the image is split into as few tiles as that allows, of equal size (a
    multiple of the step), so no tile computes much beyond the image (a 520-pixel axis with
    tile 512 gets two cores of 272, not two of 512); small images cost one small tile.
    """
    ndim = len(shape)
    geometries = per_axis(geometry, ndim)
    tiles, halos = per_axis(tile, ndim), per_axis(halo, ndim)
    largest = tuple(g.round_core(t) for g, t in zip(geometries, tiles))
    cores = tuple(_balanced_core(n, t, g.step) for n, t, g in zip(shape, largest, geometries))
    halos = tuple(g.round_halo(h) for g, h in zip(geometries, halos))
    return TilePlan(
        shape=tuple(shape),
        core=cores,
        halo=halos,
        input=tuple(g.tile_input(c, h) for g, c, h in zip(geometries, cores, halos)),
        offset=tuple(h - g.valid_margin for g, h in zip(geometries, halos)),
        requested_tile=tile,
        largest=largest,
    )


def _balanced_core(n: int, largest: int, step: int) -> int:
    """Core size along an axis of ``n`` pixels: the fewest tiles of at most ``largest`` pixels
    (a multiple of ``step``), made equal, rounded up to the step."""
    count = math.ceil(n / largest)
    return min(largest, math.ceil(math.ceil(n / count) / step) * step)


def read_tile(planes: Planes, i: int, origin: tuple[int, ...], plan: TilePlan) -> np.ndarray:
    """The network input for the tile at ``origin``: (channels, *plan.input), mirror-extended."""
    index = [reflect_indices(o - h, o - h + n, size)
             for o, h, n, size in zip(origin, plan.halo, plan.input, planes.spatial_shape)]
    low = [int(ix.min()) for ix in index]
    block = planes.read(i, *(slice(lo, int(ix.max()) + 1) for lo, ix in zip(low, index)))
    return block[(slice(None),) + np.ix_(*(ix - lo for ix, lo in zip(index, low)))]


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Network outputs (B, K, ...) to probabilities: softmax over K, or sigmoid per channel."""
    logits = logits.float()
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def decide(probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Classes from (K, ...) probabilities: the argmax, or for two classes with a
    ``threshold``, class 1 where P(class 1) > threshold."""
    if threshold is not None and probabilities.shape[0] == 2:
        return (probabilities[1] > threshold).astype(np.uint8)
    return probabilities.argmax(axis=0)


def decide_tensor(probabilities: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """:func:`decide` on the device for a batch (B, K, ...): (B, 1, ...) uint8 classes (int16
    for more than 255), the same values as :func:`decide` on the host."""
    if threshold is not None and probabilities.shape[1] == 2:
        classes = probabilities[:, 1:2] > threshold
    else:
        classes = probabilities.argmax(dim=1, keepdim=True)  # the first maximum, as numpy's
    return classes.to(torch.uint8 if probabilities.shape[1] <= 256 else torch.int16)


def _in_format(network: nn.Module, fmt: torch.memory_format) -> bool:
    """Whether all the network's convolution weights are in ``fmt`` already (every one: a weight
    with one input channel, or a 1x1 kernel, is in both formats at once, so the first one does
    not tell)."""
    return all(m.weight.is_contiguous(memory_format=fmt) for m in network.modules()
               if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.weight is not None)


def dihedral_average(fn, x: torch.Tensor) -> torch.Tensor:
    """Mean of ``fn`` over the 8 flips and rotations of ``x`` (B, C, H, W), each mapped back."""
    total = None
    for flip in (False, True):
        xf = torch.flip(x, dims=(-1,)) if flip else x
        for k in range(4):
            y = torch.rot90(fn(torch.rot90(xf, k, dims=(-2, -1))), -k, dims=(-2, -1))
            if flip:
                y = torch.flip(y, dims=(-1,))
            total = y if total is None else total + y
    return total / 8


@dataclass
class TileProgress:
    """One step of a tiled prediction."""

    done: int
    total: int
    batch: int
    message: str = ""


@dataclass
class TiledResult:
    labels: np.ndarray | None
    probabilities: np.ndarray | None
    plan: TilePlan
    seconds: float
    batch: int
    batch_reduced: bool


def predict_tiles(
    network: nn.Module,
    planes: Planes,
    lo: np.ndarray,
    hi: np.ndarray,
    plan: TilePlan,
    *,
    device: torch.device,
    batch: int | None = None,
    labels_out: np.ndarray | None = None,
    probabilities_out: np.ndarray | None = None,
    mixed_precision: bool = True,
    activation: str = "softmax",
    tta: bool = False,
    threshold: float | None = None,
    region: tuple[slice, ...] | None = None,
    plane: int = 0,
) -> Generator[TileProgress, None, TiledResult]:
    """Predict every plane tile by tile; yield progress after each batch of tiles.

    ``activation`` turns the network outputs into probabilities (``softmax`` or ``sigmoid``);
    ``tta`` averages them over the 8 flips and rotations of each tile (8 times the work).
    ``threshold`` (two-class models): class 1 where its probability exceeds it, instead of
    the argmax (a threshold tuned on validation images, e.g. for thin membranes).

    Writes argmax classes into ``labels_out`` (shape ``planes.label_shape``) and/or per-class
    probabilities into ``probabilities_out`` (classes first, then ``planes.label_shape``).
    Either may be a memory map or zarr array; only one batch of tiles is held in memory.

    ``batch``: tiles per forward pass, halved on out-of-memory; None = the device's default
    (:func:`~napari_unet.devices.default_tile_batch`).

    ``region`` (one slice per spatial axis, starts on the tile grid): predict only the tiles
    of plane ``plane`` whose cores start inside it, and write outputs of the region's shape
    (spatial axes only; see :mod:`napari_unet.blockwise`). The tiles, and so the result, are
    those of the whole-image prediction.
    """
    start = time.perf_counter()
    if region is None:
        jobs = [(i, o) for i in range(planes.n) for o in plan.origins]
    else:
        region = tuple(slice(r.start, min(r.stop, n)) for r, n in zip(region, plan.shape))
        if any(r.start % c for r, c in zip(region, plan.core)):
            raise ValueError(f"region {region} does not start on the tile grid (cores of {plan.core})")
        jobs = [(plane, o) for o in itertools.product(*(range(r.start, r.stop, c) for r, c in zip(region, plan.core)))]
    total = len(jobs)
    state = {"batch": default_tile_batch(device) if batch is None else max(1, int(batch)), "reduced": False}
    fmt = memory_format(device, plan.ndim)
    channels_last = fmt != torch.contiguous_format
    network.eval()
    # convert the weights once, and only when they are not in that format already (a caller
    # that predicts many regions, or training between validations, keeps them converted)
    convert = channels_last and not _in_format(network, fmt)
    if convert:
        network.to(memory_format=fmt)
    # the cores of the outputs: cropped on the device, before the activation (softmax on the
    # core only), and the classes decided there too when only labels are asked for: the host
    # gets uint8 classes, or probabilities in the output's type (float16 for the post-processing)
    inner = (slice(None), slice(None)) + tuple(slice(o, o + c) for o, c in zip(plan.offset, plan.core))
    device_labels = labels_out is not None and probabilities_out is None
    half = probabilities_out is not None and np.dtype(probabilities_out.dtype) == np.float16

    # oneDNN's 3D convolutions give results that depend on the batch size (up to 1e-4 in the
    # logits; 2D ones do not): 3D tiles go through the network one at a time on the CPU, so a
    # tile's result never depends on the tiles batched with it, and blocks, clusters and the
    # in-memory path agree bit for bit (batching gains under 10 % there: docs/benchmarks.md)
    one_by_one = plan.ndim == 3 and device.type == "cpu"

    def net(t: torch.Tensor) -> torch.Tensor:
        if one_by_one and t.shape[0] > 1:
            return torch.cat([network(t[k : k + 1]) for k in range(t.shape[0])])
        return network(t)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, mixed_precision), full_float32(not mixed_precision):
            if tta:  # probabilities of the whole tiles, averaged, then the core
                p = dihedral_average(lambda t: activate(net(t), activation), x)[inner]
            else:
                p = activate(net(x)[inner], activation)
            if device_labels:
                return decide_tensor(p, threshold)
            return p.half() if half else p

    def prepare(chunk: list) -> np.ndarray:
        """Read, check and normalise a chunk of tiles (in the read-ahead thread)."""
        tiles = []
        for i, origin in chunk:
            block = read_tile(planes, i, origin, plan)
            norm.check_finite(block)
            tiles.append(norm.apply(block, lo, hi))
        return np.stack(tiles)

    def chunk_at(pos: int) -> list:
        return jobs[pos : pos + max(state["batch"], 1) * 4]

    done = 0
    yield TileProgress(done=0, total=total, batch=state["batch"])
    # read ahead: the next chunk of tiles is read and normalised (a compressed TIFF or zarr
    # store decompressed) while the network computes this one; the tiles are the same
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-read")
    try:
        ahead = reader.submit(prepare, chunk_at(0)) if total else None
        while done < total:
            chunk = chunk_at(done)
            tiles = ahead.result()
            if len(tiles) != len(chunk):  # the batch shrank (GPU memory) after it was read: read again
                tiles = prepare(chunk)
            following = done + len(chunk)
            ahead = reader.submit(prepare, chunk_at(following)) if following < total else None
            x = torch.from_numpy(tiles).to(device)
            if channels_last:
                x = x.contiguous(memory_format=fmt)
            for a, b, out in run_in_batches(forward, x, state):
                core = out.cpu().numpy()  # (B, K, ...) probabilities, or (B, 1, ...) classes
                for k, (i, origin) in enumerate(chunk[a:b]):
                    sizes = [min(c, n - o) for c, n, o in zip(plan.core, plan.shape, origin)]
                    p = core[(k, slice(None)) + tuple(slice(0, n) for n in sizes)]
                    if region is None:
                        where = planes.label_index(i, *(slice(o, o + n) for o, n in zip(origin, sizes)))
                    else:  # local to the region; a tile may reach past the region's end: cut it
                        sizes = [min(n, r.stop - o) for n, r, o in zip(sizes, region, origin)]
                        p = p[(slice(None),) + tuple(slice(0, n) for n in sizes)]
                        where = tuple(slice(o - r.start, o - r.start + n) for o, r, n in zip(origin, region, sizes))
                    if device_labels:
                        labels_out[where] = p[0]
                        continue
                    if labels_out is not None:
                        labels_out[where] = decide(p, threshold)
                    if probabilities_out is not None:
                        probabilities_out[(slice(None),) + where] = p
                done += b - a
                yield TileProgress(done=done, total=total, batch=state["batch"])
            del x
    finally:  # the caller gives GPU memory back, once per prediction (predict(), blockwise)
        reader.shutdown(wait=True, cancel_futures=True)
        if convert:
            network.to(memory_format=torch.contiguous_format)
    return TiledResult(
        labels=labels_out,
        probabilities=probabilities_out,
        plan=plan,
        seconds=time.perf_counter() - start,
        batch=state["batch"],
        batch_reduced=state["reduced"],
    )
