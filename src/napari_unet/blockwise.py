"""Blockwise prediction into a zarr store: images larger than memory, on one machine or a dask
cluster, resumable.

The image is cut into blocks on the overlap-tile grid (a block is a whole number of tile cores).
Each block is predicted by the tiles of the whole-image prediction that fall into it, with their
halo read from the neighbouring image and mirrored at the image borders, so a blockwise result
equals the in-memory one, whichever process computes which block.

Semantic models write their classes block by block. Instance models take three passes, each
over blocks and each bounded in memory by a few blocks:

A. probabilities of each block (float16, into the store's scratch group);
B. objects of each block, from the probabilities of the block plus ``context`` pixels on every
   side (seeded watershed, as in memory). An object belongs to the block that holds its first
   pixel in raster order; the block keeps its own objects, whole, also where they reach into
   the neighbours;
C. each block's labels: its own objects, then the neighbours' objects that reach into it, with
   ids made global (a block's first id follows all objects of the blocks before it).

Objects smaller than the context are computed from the same probabilities as in memory, and so
get the same pixels; every object has one id. Finished blocks are marked in the store after
their data; running the same command again skips them. The store says ``complete`` only at the
very end.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Generator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import normalization as norm
from .config import PredictConfig
from .io import is_zarr, open_image
from .modelfile import UNetModel
from .tiling import TileProgress, predict_tiles

STORE_FORMAT = "napari-unet blockwise prediction"
STORE_VERSION = 1
DEFAULT_BLOCK = 1024  # 2D: about a megapixel per block
DEFAULT_CONTEXT = 64
# 3D: 4 megavoxels per block (Z, Y, X: whole default tiles of 64 x 128 x 128), and a context
# that keeps the extended block (128 x 320 x 320) of pass B near half a gigabyte
DEFAULT_BLOCK_3D = (64, 256, 256)
DEFAULT_CONTEXT_3D = 32


class BlockwiseError(ValueError):
    """A blockwise prediction cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to compute blocks: small, picklable, identical everywhere."""

    image: str  # path of the input
    level: int | None
    axes: str | None
    out: str  # the zarr store
    settings: PredictConfig
    block: tuple[int, ...]
    context: tuple[int, ...]
    model_key: str  # sha256 of the model file's bytes
    probabilities: bool = False  # keep the class probabilities (float32) in the store


@dataclass
class BlockResult:
    store: Path
    labels: Any  # the zarr array of labels
    blocks: int
    skipped: int  # blocks found finished in the store (resumed)
    seconds: float
    objects: int | None = None
    probabilities: Any = None  # the zarr array of probabilities (classes first), when asked for
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# the grid


def _grid(shape: tuple[int, ...], block: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(0, n, b) for n, b in zip(shape, block))))


def _core(start: tuple[int, ...], block: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(s, min(s + b, n)) for s, b, n in zip(start, block, shape))


def round_block(block: int | tuple[int, ...], core: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Blocks are whole numbers of tile cores (the tiles of a block are the whole image's)."""
    blocks = block if isinstance(block, tuple) else (block,) * len(core)
    return tuple(min(max(c, round(b / c) * c), math.ceil(n / c) * c) for b, c, n in zip(blocks, core, shape))


# --------------------------------------------------------------------------------------------
# per worker: the model and the image, opened once


_CACHE: dict[str, Any] = {}


@dataclass
class _Worker:
    """What a process needs for a job's blocks, opened once (see :func:`_setup`)."""

    model: UNetModel
    planes: Any
    plan: Any
    lo: np.ndarray
    hi: np.ndarray
    blocks: list[tuple[int, tuple[int, ...]]]  # (plane, block start) of every block id
    index: dict  # (plane, block start) -> block id


def _setup(job: Job, model_bytes: bytes | None = None) -> _Worker:
    """The model, image, tile plan, percentiles and block grid of ``job`` in this process (cached)."""
    from .predict import image_planes, tile_plan

    bound_heap()  # in dask workers too
    key = (job.model_key, job.image, job.level, job.axes, job.out)
    if _CACHE.get("key") == key:
        return _CACHE["value"]
    source = _CACHE.get("arrays", {}).get(job.image) if job.image.startswith("<array") else None
    model = _CACHE.get("models", {}).get(job.model_key)
    if model is None:
        if model_bytes is None:
            raise BlockwiseError("the model was not sent to this worker")
        model = UNetModel.from_bytes(model_bytes)
        _CACHE["models"] = {job.model_key: model}
    import zarr

    array = source if source is not None else open_image(job.image, job.level)
    planes = image_planes(array, job.axes, model.config.in_channels, model.dims)
    plan = tile_plan(model, planes, job.settings)
    attrs = zarr.open_group(job.out, mode="r").attrs["napari_unet"]
    blocks = _blocks(job, planes.n, plan.shape)
    _CACHE["key"] = key
    _CACHE["value"] = _Worker(
        model=model, planes=planes, plan=plan,
        lo=np.asarray(attrs["normalization_low"], np.float32), hi=np.asarray(attrs["normalization_high"], np.float32),
        blocks=blocks, index={b: k for k, b in enumerate(blocks)},
    )
    return _CACHE["value"]


def bound_heap() -> None:
    """Keep glibc from holding freed block-sized arrays: with its default, the threshold above
    which allocations get their own memory map grows with every large array freed (up to 32 MB),
    after which block-sized arrays come from the heap, which fragments and keeps growing with the
    number of blocks (3D instance run here: 1,733 MB peak vs 1,494 MB with a fixed 1 MB threshold,
    docs/benchmarks.md). A fixed threshold gives them back when freed. No-op elsewhere."""
    if _CACHE.get("heap_bounded"):
        return
    _CACHE["heap_bounded"] = True
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MB (fixed: no dynamic growth)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        pass


def _threads(workers: int) -> None:
    if workers <= 0:
        return
    import torch

    want = max(1, (os.cpu_count() or 1) // max(1, workers))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def _blocks(job: Job, planes_n: int, shape: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    return [(i, s) for i in range(planes_n) for s in _grid(shape, job.block)]


# --------------------------------------------------------------------------------------------
# the three passes (top-level functions: a dask worker runs them)


class WriteBehind:
    """Writes one block while the next is computed (a thread; at most one write pending).
    A block's done flag is set by its write, after its data, so a run stopped with a write
    pending leaves that block to be redone, never marked done without its data."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="napari-unet-write")
        self._pending = None

    def submit(self, fn) -> None:
        self.flush()  # its error, if any, stops the run here
        self._pending = self._pool.submit(fn)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)


def pass_a(job: Job, ids: list[int], model_bytes: bytes | None = None, workers: int = 1,
           writer: WriteBehind | None = None) -> list[int]:
    """Network pass: classes (semantic) or float16 probabilities (instance) of blocks ``ids``.
    With ``writer`` (in-process runs), a block is written while the next one is computed, and
    the network stays on the device: the caller flushes the writer and calls
    :func:`_release` at the end of the pass. Without it (a cluster task), the device memory is
    given back before the task returns."""
    import zarr

    from ._generators import run
    from .devices import resolve_device
    from .predict import labels_dtype, semantic_threshold

    _threads(workers)
    w = _setup(job, model_bytes)
    model, planes, plan = w.model, w.planes, w.plan
    root = zarr.open_group(job.out, mode="r+")
    instance = model.config.mode == "instance"
    keep = root["probabilities"] if job.probabilities else None
    scratch = root["scratch/probabilities"] if instance and keep is None else None
    labels_store = root["labels"]
    done = root["scratch/done_a"]
    device = resolve_device(job.settings.device)
    network = model.network.to(device)
    try:
        for b in ids:
            i, start = w.blocks[b]
            core = _core(start, job.block, plan.shape)
            size = tuple(s.stop - s.start for s in core)
            labels = None if instance else np.zeros(size, labels_dtype(model))
            probs = np.zeros((model.config.classes,) + size, np.float32) if instance or keep is not None else None
            run(predict_tiles(
                network, planes, w.lo, w.hi, plan, device=device, batch=job.settings.batch, labels_out=labels,
                probabilities_out=probs, mixed_precision=job.settings.mixed_precision,
                activation=model.config.activation, tta=job.settings.tta, threshold=semantic_threshold(model),
                region=core, plane=i,
            ))

            def write(b=b, where=planes.label_index(i, *core), at=(i, slice(None)) + core, labels=labels, probs=probs):
                if keep is not None:  # float32, as predict(probabilities=True) keeps them
                    keep[(slice(None),) + where] = probs
                elif scratch is not None:  # float16, as predict() keeps them for its post-processing
                    scratch[at] = probs.astype(np.float16)
                if not instance:
                    labels_store[where] = labels
                done[b] = True

            if writer is None:
                write()
            else:
                writer.submit(write)
    finally:
        if writer is None:
            _release(job)
    return ids


def _release(job: Job) -> None:
    """Give the GPU memory of the weights back (as predict() does), once per pass."""
    from .devices import release_memory, resolve_device

    device = resolve_device(job.settings.device)
    model = _CACHE.get("models", {}).get(job.model_key)
    if device.type != "cpu" and model is not None:
        model.network.to("cpu")
        release_memory(device)


def _owned(labels: np.ndarray, ext: tuple[slice, ...], core: tuple[slice, ...]) -> np.ndarray:
    """The objects of ``labels`` (computed on region ``ext``) whose first pixel in raster order
    lies in ``core``, numbered 1..k in that order; the rest 0."""
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    ids, first = np.unique(flat[nz], return_index=True)
    if ids.size == 0:
        return np.zeros_like(labels, np.int32)
    where = np.unravel_index(nz[first], labels.shape)
    inside = np.ones(ids.size, bool)
    for axis, (e, c) in enumerate(zip(ext, core)):
        g = where[axis] + e.start
        inside &= (g >= c.start) & (g < c.stop)
    keep = ids[inside][np.argsort(nz[first][inside])]  # raster order of their first pixels
    lut = np.zeros(int(flat.max()) + 1, np.int32)
    lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    return lut[labels]


def pass_b(job: Job, ids: list[int], model_bytes: bytes | None = None, workers: int = 1) -> list[int]:
    """Objects of blocks ``ids`` from their probabilities plus the context around them."""
    import zarr

    w = _setup(job, model_bytes)
    model, plan = w.model, w.plan
    root = zarr.open_group(job.out, mode="r+")
    slots = root["scratch/objects"]
    # float32 in the labels' layout (--probabilities), else the float16 scratch copy
    source = root["probabilities"] if job.probabilities else root["scratch/probabilities"]
    counts, done = root["scratch/counts"], root["scratch/done_b"]
    from .predict import instance_postprocessing

    post = instance_postprocessing(model, job.settings)
    for b in ids:
        i, start = w.blocks[b]
        core = _core(start, job.block, plan.shape)
        ext = tuple(slice(max(0, c.start - x), min(n, c.stop + x)) for c, x, n in zip(core, job.context, plan.shape))
        index = (slice(None),) + w.planes.label_index(i, *ext) if job.probabilities else (i, slice(None)) + ext
        p = np.asarray(source[index], np.float32)
        own = _owned(post.apply(p, first_id=1), ext, core)
        slot = tuple(slice(e.start - (s - x), e.stop - (s - x)) for e, s, x in zip(ext, start, job.context))
        slots[(b,) + slot] = own
        counts[b] = int(own.max())
        done[b] = True
    return ids


def pass_c(job: Job, ids: list[int], model_bytes: bytes | None = None, workers: int = 1) -> list[int]:
    """Labels of blocks ``ids``: own objects first, then the neighbours' that reach in."""
    import zarr

    w = _setup(job, model_bytes)
    planes, plan = w.planes, w.plan
    root = zarr.open_group(job.out, mode="r+")
    slots, labels, done = root["scratch/objects"], root["labels"], root["scratch/done_c"]
    offsets = root["scratch/offsets"][:]  # one chunk, written by the driver before this pass
    for b in ids:
        i, start = w.blocks[b]
        core = _core(start, job.block, plan.shape)
        out = np.zeros(tuple(c.stop - c.start for c in core), np.int64)
        # every block whose slot (block + context) reaches into this one: the neighbours, and
        # further ones where the context is larger than a block (e.g. thin z blocks of a volume)
        reach = [range(-math.ceil(x / bl), math.ceil(x / bl) + 1) for x, bl in zip(job.context, job.block)]
        steps = [(0,) * len(start)] + [d for d in itertools.product(*reach) if any(d)]
        for d in steps:
            nstart = tuple(s + k * bl for s, k, bl in zip(start, d, job.block))
            nb = w.index.get((i, nstart))
            if nb is None:
                continue
            # the neighbour's slot covers [nstart - context, nstart + block + context)
            lo = [max(c.start, ns - x) for c, ns, x in zip(core, nstart, job.context)]
            hi = [min(c.stop, ns + bl + x) for c, ns, bl, x in zip(core, nstart, job.block, job.context)]
            if any(a >= z for a, z in zip(lo, hi)):
                continue
            src = np.asarray(slots[(nb,) + tuple(slice(a - (ns - x), z - (ns - x))
                                                  for a, z, ns, x in zip(lo, hi, nstart, job.context))])
            dst = tuple(slice(a - c.start, z - c.start) for a, z, c in zip(lo, hi, core))
            view = out[dst]
            free = (view == 0) & (src > 0)
            view[free] = src[free] + offsets[nb]
        labels[planes.label_index(i, *core)] = out.astype(labels.dtype)
        done[b] = True
    return ids


# --------------------------------------------------------------------------------------------
# driver


# settings that change how fast a prediction runs, never what it gives: a store started with
# one value resumes with another (tiles are predicted independently of how they are batched)
_SPEED_ONLY = ("batch",)


# instance post-processing settings: part of the job only when given (a store started without
# them, also by a version that did not have them, resumes without them); min_size is kept at
# the signature's top level, where stores written before it moved into the settings have it
_POSTPROCESSING = ("seed_threshold", "seed_dynamic", "foreground_threshold")


def _settings_signature(settings: dict) -> dict:
    return {k: v for k, v in settings.items()
            if k not in _SPEED_ONLY and k != "min_size" and not (k in _POSTPROCESSING and v is None)}


def _signature(job: Job, shape: tuple, dtype: str) -> dict:
    return {
        "format": STORE_FORMAT, "version": STORE_VERSION, "model_sha256": job.model_key,
        "image": job.image if job.image.startswith("<array") else str(Path(job.image).resolve()), "level": job.level, "axes": job.axes, "shape": list(shape),
        "dtype": dtype, "settings": _settings_signature(json.loads(json.dumps(asdict(job.settings)))),
        "block": list(job.block), "context": list(job.context), "min_size": job.settings.min_size,
        "probabilities": job.probabilities,
    }


def _open_store(job: Job, model: UNetModel, planes, plan, lo, hi, n_blocks: int):
    """Create the output store, or reopen one this same job started (resume)."""
    import zarr

    from .predict import labels_dtype

    out = Path(job.out)
    dtype = np.dtype(np.int32 if model.config.mode == "instance" else labels_dtype(model))
    signature = _signature(job, planes.label_shape, dtype.name)
    if out.exists():
        if not is_zarr(out) or not out.is_dir():
            raise BlockwiseError(f"--out {out} exists and is not a zarr store; choose another name")
        try:
            root = zarr.open_group(str(out), mode="r+")
            found = dict(root.attrs.get("napari_unet", {}))
            if isinstance(found.get("settings"), dict):  # stores written before batch was left out
                found["settings"] = _settings_signature(found["settings"])
        except Exception:  # noqa: BLE001 - not a group we can read
            raise BlockwiseError(f"--out {out} exists and is not a napari-unet zarr store; choose another name") from None
        mine = {k: v for k, v in found.items() if k in signature}
        if mine != signature:
            differ = sorted(k for k in signature if found.get(k) != signature[k])
            raise BlockwiseError(f"--out {out} already holds a different prediction (differs in: "
                                 f"{', '.join(differ) or 'everything'}); choose another --out or delete it")
        return root, found.get("status") == "complete"
    root = zarr.open_group(str(out), mode="w")
    chunks = tuple(job.block)
    label_chunks = tuple(1 for _ in planes.label_shape[: len(planes.label_shape) - len(chunks)]) + chunks
    root.create_array("labels", shape=planes.label_shape, chunks=label_chunks, dtype=dtype, fill_value=0)
    scratch = root.create_group("scratch")
    for name in ("done_a", "done_b", "done_c"):
        # one chunk per block: workers never write the same chunk
        scratch.create_array(name, shape=(n_blocks,), chunks=(1,), dtype=bool, fill_value=False)
    if job.probabilities:
        root.create_array("probabilities", shape=(model.config.classes,) + planes.label_shape,
                          chunks=(model.config.classes,) + label_chunks, dtype=np.float32, fill_value=0)
    if model.config.mode == "instance" and not job.probabilities:
        scratch.create_array("probabilities", shape=(planes.n, model.config.classes) + plan.shape,
                             chunks=(1, model.config.classes) + chunks, dtype=np.float16, fill_value=0)
    if model.config.mode == "instance":
        slot = tuple(b + 2 * x for b, x in zip(job.block, job.context))
        scratch.create_array("objects", shape=(n_blocks,) + slot, chunks=(1,) + slot, dtype=np.int32, fill_value=0)
        scratch.create_array("counts", shape=(n_blocks,), chunks=(1,), dtype=np.int64, fill_value=0)
    root.attrs["napari_unet"] = {**signature, "status": "partial", "label_axes": planes.label_axes,
                                 "normalization_low": lo.tolist(), "normalization_high": hi.tolist()}
    return root, False


def predict_blockwise(
    model: UNetModel,
    image: str | Path,
    out: str | Path,
    axes: str | None = None,
    settings: PredictConfig | None = None,
    block: int | tuple[int, ...] | None = None,
    context: int | tuple[int, ...] | None = None,
    level: int | None = None,
    client: Any = None,
    labels_name: str = "napari-unet",
    probabilities: bool = False,
) -> Generator[TileProgress, None, BlockResult]:
    """Predict the image at ``image`` (TIFF, zarr, OME-Zarr) into the zarr store ``out``.

    ``block`` and ``context`` (pixels, one or one per axis) default to 1024 and 64 for 2D
    models, 64 x 256 x 256 and 32 for 3D ones. ``probabilities``: also keep the class
    probabilities (float32, classes first) in the store, as ``probabilities``.
    ``client``: a ``dask.distributed.Client`` to run blocks on its workers (the model is sent
    once to each); None computes them here. Memory: a few blocks (plus ``context``), whatever
    the image size. Run again after an interruption: finished blocks are skipped. With an
    OME-Zarr input the finished labels are also written into its container as NGFF labels
    (``labels/<labels_name>``, with a pyramid and the image's scale), via ome-zarr-py.
    """
    from .predict import image_planes, instance_postprocessing, rescaled_to, tile_plan

    settings = settings or PredictConfig()
    instance_postprocessing(model, settings)  # instance settings for a semantic model: refused first
    if settings.object_size is not None or settings.link_z is not None:
        raise BlockwiseError("--object-size and --link-z are not available for zarr outputs yet; predict to TIFF")
    if (one_size := rescaled_to(model)):
        raise BlockwiseError(
            f"this model was trained on objects rescaled to {one_size:.0f} px (--rescale-objects) and "
            f"estimates each image's object size, which zarr outputs do not do yet; predict to TIFF")
    start_time = time.perf_counter()
    if isinstance(image, (str, Path)):
        image = str(image)
        array = open_image(image, level)
    else:  # an array (a napari layer's dask or zarr data): computed in this process
        if client is not None:
            raise BlockwiseError("a cluster needs an image file or store its workers can open, not an in-memory array")
        array, image = image, f"<array {id(image)}>"
        _CACHE["arrays"] = {image: array}  # the latest only: the cache never grows
    planes = image_planes(array, axes, model.config.in_channels, model.dims)
    plan = tile_plan(model, planes, settings)
    if block is None:
        block = DEFAULT_BLOCK_3D if model.dims == 3 else DEFAULT_BLOCK
    if context is None:
        context = DEFAULT_CONTEXT_3D if model.dims == 3 else DEFAULT_CONTEXT
    blocks_px = round_block(block, plan.core, plan.shape)
    ctx = context if isinstance(context, tuple) else (context,) * plan.ndim
    if model.config.mode == "instance" and any(x < 0 for x in ctx):
        raise BlockwiseError(f"context must be >= 0 pixels, got {context}")
    ngff = None if image.startswith("<array") else ngff_image(image)
    if ngff is not None:
        _check_labels_free(ngff, labels_name, out)
    data = model.to_bytes()
    job = Job(image=image, level=level, axes=planes.axes, out=str(out), settings=settings, block=blocks_px,
              context=tuple(int(x) for x in ctx) if model.config.mode == "instance" else (0,) * plan.ndim,
              model_key=hashlib.sha256(data).hexdigest(), probabilities=bool(probabilities))
    n_blocks = planes.n * len(_grid(plan.shape, blocks_px))
    yield TileProgress(done=0, total=n_blocks, batch=settings.batch, message="normalising")
    lo, hi = norm.percentiles(planes, model.normalization)
    root, complete = _open_store(job, model, planes, plan, lo, hi, n_blocks)
    if complete:
        return BlockResult(store=Path(out), labels=root["labels"], blocks=n_blocks, skipped=n_blocks,
                           seconds=time.perf_counter() - start_time, probabilities=_kept(root, job),
                           notes=_notes(model))
    _CACHE.pop("key", None)
    _CACHE["models"] = {job.model_key: model}  # this process uses the caller's model (the latest only)
    passes = [("predicting blocks", pass_a, "done_a")]
    if model.config.mode == "instance":
        passes += [("separating objects", pass_b, "done_b"), ("joining blocks", pass_c, "done_c")]
    skipped = 0
    # the model travels once to each worker, and stays there for all passes
    weights = client.scatter(data, broadcast=True, hash=False) if client is not None else None
    for message, fn, flag in passes:
        if fn is pass_c:  # a block's first id follows all objects of the blocks before it
            counts = root["scratch/counts"][:]
            root["scratch"].create_array("offsets", shape=(n_blocks + 1,), chunks=(n_blocks + 1,), dtype=np.int64,
                                         overwrite=True)[:] = np.concatenate([[0], np.cumsum(counts)])
        todo = [b for b, d in enumerate(root[f"scratch/{flag}"][:]) if not d]
        skipped += n_blocks - len(todo) if fn is pass_a else 0
        yield TileProgress(done=n_blocks - len(todo), total=n_blocks, batch=settings.batch, message=message)
        for done in _run(fn, job, todo, client, n_blocks, weights):
            yield TileProgress(done=done, total=n_blocks, batch=settings.batch, message=message)
    objects = int(root["scratch/offsets"][-1]) if model.config.mode == "instance" else None
    notes = _notes(model)
    _finish(root)
    if ngff is not None:
        yield TileProgress(done=0, total=1, batch=settings.batch, message="writing OME-Zarr labels")
        write_ngff_labels(ngff, level, root["labels"], labels_name, planes.label_axes)
    return BlockResult(store=Path(out), labels=root["labels"], blocks=n_blocks, skipped=skipped,
                       seconds=time.perf_counter() - start_time, objects=objects, probabilities=_kept(root, job),
                       notes=notes)


def _notes(model: UNetModel) -> list[str]:
    from .predict import membrane_seeds

    if membrane_seeds(model) is None:
        return []
    return [f"membranes are the class-1 probability above {model.postprocessing.get('threshold', 0.5):g}: "
            "closing their gaps by a watershed needs the whole image (TIFF output), not blocks"]


def _kept(root, job: Job):
    """The store's probabilities array when the job keeps them, else None."""
    return root["probabilities"] if job.probabilities else None


def _run(fn, job: Job, todo: list[int], client: Any, n_blocks: int, weights: Any = None) -> Iterable[int]:
    """Run ``fn`` on the blocks ``todo``, here or on the cluster; yields how many are done."""
    done = n_blocks - len(todo)
    if client is None:
        writer = WriteBehind() if fn is pass_a else None
        step = functools.partial(fn, writer=writer) if writer is not None else fn
        try:
            for b in todo:
                step(job, [b])
                done += 1
                yield done
        finally:  # every block computed is written (or fails here) before the next pass
            if writer is not None:
                try:
                    writer.close()
                finally:
                    _release(job)
        return
    from dask.distributed import as_completed

    from dask.distributed import LocalCluster

    # a LocalCluster shares this machine's cores: torch gets cores / workers threads in each;
    # on other clusters each worker keeps torch's own choice
    local = isinstance(getattr(client, "cluster", None), LocalCluster)
    workers = max(1, len(client.scheduler_info().get("workers", {}))) if local else 0
    futures = [client.submit(fn, job, [b], weights, workers, pure=False, retries=2) for b in todo]
    try:
        for future in as_completed(futures):
            future.result()  # a block that failed after its retries stops the run (the store stays resumable)
            done += 1
            yield done
    finally:
        for f in futures:
            f.cancel()


def _finish(root) -> None:
    """Drop the scratch data, then (last) mark the store complete."""
    del root["scratch"]
    attrs = dict(root.attrs["napari_unet"])
    attrs["status"] = "complete"
    root.attrs["napari_unet"] = attrs


# --------------------------------------------------------------------------------------------
# OME-Zarr (NGFF) labels


def ngff_image(path: str | Path) -> Path | None:
    """``path`` if it is an OME-Zarr multiscale image, else None."""
    import zarr

    path = Path(path)
    if not is_zarr(path):
        return None
    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001
        return None
    attrs = dict(getattr(node, "attrs", {}))
    return path if ("multiscales" in attrs or "multiscales" in attrs.get("ome", {})) else None


def _multiscales(root) -> dict:
    attrs = dict(root.attrs)
    return (attrs.get("multiscales") or attrs["ome"]["multiscales"])[0]


def _check_labels_free(image: Path, name: str, out: str | Path) -> None:
    import zarr

    root = zarr.open_group(str(image), mode="r")
    if f"labels/{name}" in root and not Path(out).exists():
        raise BlockwiseError(f"{image} already has labels named {name!r}; give another --labels-name, or remove "
                             f"{image / 'labels' / name}")


def write_ngff_labels(image: Path, level: int | None, labels, name: str, label_axes: str) -> None:
    """Write ``labels`` (a zarr array) into the OME-Zarr ``image`` as ``labels/<name>``, with a
    nearest-neighbour pyramid and the scale of the predicted level (ome-zarr-py writes the
    metadata; dask computes the pyramid chunk by chunk)."""
    import dask.array as da
    import zarr
    from ome_zarr.writer import write_labels

    root = zarr.open_group(str(image), mode="r+")
    ms = _multiscales(root)
    names = [a["name"] if isinstance(a, dict) else a for a in ms["axes"]]
    dataset = ms["datasets"][level or 0]
    scale = next((t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"),
                 [1.0] * len(names))
    keep = [k for k, n in enumerate(names) if n.lower() != "c"]
    axes = [ms["axes"][k] for k in keep]
    if len(axes) != len(label_axes):
        raise BlockwiseError(f"{image}: the image's axes {names} do not match the labels' {label_axes}")
    levels, n = [], min(labels.shape[-2:])
    while n // 2 >= 256 and len(levels) < 4:
        n //= 2
        levels.append(2 ** (len(levels) + 1))
    write_labels(da.from_zarr(labels), group=root, name=name, axes=axes, scale_factors=tuple(levels),
                 scale={names[k]: float(scale[k]) for k in keep},
                 label_metadata={"source": {"image": "../../"}}, napari_unet={"predicted_level": level or 0})


def start_client(workers: int | None = None, scheduler: str | None = None):
    """A dask.distributed client: a LocalCluster of ``workers`` processes (one thread each), or
    the cluster at ``scheduler`` (e.g. started with dask-jobqueue on SLURM)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise BlockwiseError(f"cannot reach the dask scheduler at {scheduler} ({type(err).__name__}: {err}); "
                                 "check the address (tcp://host:8786) and that the scheduler runs") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)

