"""Choosing the compute device, mixed precision, and recovering from GPU out-of-memory."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

import torch


class DeviceError(RuntimeError):
    """The requested device cannot be used; the message says what torch sees."""


def describe_torch() -> str:
    """One line on what this torch build can use (shown in the GUI and in errors)."""
    parts = [f"torch {torch.__version__}"]
    if torch.version.cuda is None:
        parts.append("built without CUDA")
    elif torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        parts.append(f"CUDA {torch.version.cuda}: {', '.join(names)}")
    else:
        parts.append(f"CUDA {torch.version.cuda} build, but no usable NVIDIA GPU/driver found")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        parts.append("Apple MPS available")
    parts.append("CPU computes bfloat16 (CPU training in mixed precision)" if cpu_computes_bf16()
                 else "CPU without native bfloat16 (CPU training in float32)")
    return "; ".join(parts)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit GPU that is not usable is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} was requested but CUDA is not usable ({describe_torch()}). "
                "Install a CUDA build of torch and an NVIDIA driver, or use --device cpu."
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s)"
            )
        return device
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(
                f"device 'mps' was requested but Apple MPS is not available ({describe_torch()})"
            )
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps")


def cpu_computes_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX: AMD Zen 4 and newer,
    Intel Cooper Lake / Sapphire Rapids and newer). Elsewhere oneDNN emulates bf16, slower than
    float32, so mixed precision stays off."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001 - older torch or another platform: no native bf16
        return False


def autocast_dtype(device: torch.device, cpu: bool = False, spatial_dims: int = 2) -> torch.dtype | None:
    """Mixed precision type for ``device``: bf16 on GPUs that compute it natively (compute
    capability 8.0 and newer: A100, RTX 30xx, H100), fp16 on older GPUs (V100, T4, RTX 20xx
    report bf16 "supported" but emulate it, slower than fp32). On the CPU only when ``cpu``
    is asked for (training: 2-3x faster steps, measured in docs/benchmarks.md) and the CPU
    computes bf16 natively; prediction stays float32 there (exact overlap-tile results).
    3D networks stay float32 on the CPU: oneDNN's bf16 3D convolutions (torch 2.14) returned
    non-finite values in 62 of 120 short training runs of a small 3D U-Net here, float32 in
    none (``benchmarks/bf16_conv3d.py``)."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu" and cpu and spatial_dims == 2 and cpu_computes_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True, cpu: bool = False,
             spatial_dims: int = 2) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(device, cpu, spatial_dims) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def default_tile_batch(device: torch.device) -> int:
    """Tiles per forward pass when the user sets none: 1 on the CPU, where a batch of tiles
    is no faster and its activations multiply the memory (bundled model, tile 512: 38 s and
    1.5 GB for a 2048x2048 image with one tile per pass, 42-49 s and 2.8 GB with four;
    docs/benchmarks.md, "Round 9"), 4 on a GPU, where batches keep it busy."""
    return 1 if device.type == "cpu" else 4


def memory_format(device: torch.device, spatial_dims: int = 2) -> torch.memory_format:
    """channels_last (channels_last_3d for 3D networks) where convolutions run faster with
    it: CUDA (tensor cores) and the CPU (oneDNN; 2-3x for the default 2D network, float32 or
    bf16, docs/benchmarks.md)."""
    if device.type not in ("cuda", "cpu"):
        return torch.contiguous_format
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


@contextlib.contextmanager
def full_float32(enabled: bool = True) -> Iterator[None]:
    """Turn off TF32 in CUDA convolutions and matrix products (on by default in cuDNN)."""
    if not enabled:
        yield
        return
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def release_memory(device: torch.device | None = None) -> None:
    """Give cached GPU memory back to the driver (after training, prediction or cancel).
    Nothing to do for the CPU (a garbage collection per validation image costs time)."""
    if device is not None and device.type == "cpu":
        return
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()
    if device is not None and device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def run_in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    state: dict,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Apply ``fn`` to ``batch`` in chunks of ``state['batch']``, halving the chunk on
    out-of-memory down to one item, then raising a clear error.

    Yields (start, stop, result) per chunk. ``state['batch']`` keeps the reduced size so later
    batches do not hit the same wall again.
    """
    start = 0
    n = batch.shape[0]
    while start < n:
        size = min(state["batch"], n - start)
        try:
            result = fn(batch[start : start + size])
        except Exception as err:  # noqa: BLE001 - we re-raise anything that is not OOM
            if not is_out_of_memory(err):
                raise
            release_memory()
            if size == 1:
                raise DeviceError(
                    "the GPU ran out of memory even with one tile per batch; "
                    "use a smaller --tile, or --device cpu"
                ) from err
            state["batch"] = max(1, size // 2)
            state["reduced"] = True
            continue
        yield start, start + size, result
        start += size


def avoid_llvm_clash() -> None:
    """Keep torch from loading triton when Mesa's LLVM is already in the process.

    torch.optim imports torch._dynamo on first use, which imports triton; triton bundles its
    own LLVM, and loading it next to Mesa's libLLVM (software OpenGL: napari in VMs, remote
    desktops, Xvfb) crashes the process with a segmentation fault. napari-unet never compiles
    kernels, so triton is not needed: it is marked unavailable in that case only (a process
    without Mesa's LLVM, e.g. the command line, keeps triton and torch.compile). Called before
    training builds its optimiser and by the napari widgets before they start a job.
    """
    import sys

    if "triton" in sys.modules:
        return
    try:
        with open("/proc/self/maps") as fh:
            mesa_llvm = any("libLLVM" in line for line in fh)
    except OSError:
        return
    if mesa_llvm:
        sys.modules["triton"] = None  # "import triton" now raises ImportError
