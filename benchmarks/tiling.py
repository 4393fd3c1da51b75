"""Tiled prediction, side by side: napari-unet's overlap-tile predictor, MONAI's
sliding_window_inference, and a naive loop (one tile per forward pass, no overlap, each tile
zero-padded on its own: what 0%-overlap tools do).

Every method runs in its own process so that peak memory (CPU: max resident set size above
the baseline after loading; GPU: torch.cuda.max_memory_allocated) is its own. The reference
is a single pass over the whole mirror-extended image.

    python benchmarks/tiling.py --size 2048 --device cpu          # CPU figures in docs/benchmarks.md
    python benchmarks/tiling.py --size 4096 --device cuda         # GPU figures

The model is an smp U-Net (resnet34 encoder, random weights, seed 0): MONAI's sliding window
needs a network whose output has the input's size. The image is a real ISBI 2012 slice
mirrored to the requested size (or a DSB2018 image with --image).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGE = HERE.parent / "tests" / "data" / "isbi_00.tif"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args):
    import tifffile
    import torch

    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch=args.arch, encoder=args.encoder, classes=2,
                                         depth=4, base_width=args.width), tile=args.tile)
    if args.halo is not None:
        model.halo = model.geometry.round_halo(args.halo)
    img = tifffile.imread(args.image)
    img = np.pad(img, [(0, max(0, args.size - n)) for n in img.shape], mode="symmetric")[: args.size, : args.size]
    return model, img


def normalised(model, img):
    from napari_unet import normalization as norm
    from napari_unet.axes import Planes

    lo, hi = norm.percentiles(Planes(img, "YX"), model.normalization)
    return norm.apply(img[None], lo, hi)[0]


def method_reference(model, img, device):
    import torch

    g, halo = model.geometry, model.halo
    m = halo if g.padded else g.valid_margin
    n = img.shape[0]
    size = g.tile_input(int(np.ceil(n / g.step)) * g.step, m)
    ext = np.pad(normalised(model, img), ((m, size - n - m), (m, size - n - m)), mode="reflect")
    from napari_unet.devices import full_float32

    net = model.network.to(device).eval()
    with torch.inference_mode(), full_float32():
        p = torch.softmax(net(torch.from_numpy(ext)[None, None].to(device)).float(), 1)[0, 1]
    off = m - g.valid_margin
    return p[off : off + n, off : off + n].cpu().numpy()


def method_ours(model, img, device, args):
    from napari_unet.config import PredictConfig
    from napari_unet.predict import predict, run

    settings = PredictConfig(tile=args.tile, batch=args.batch, device=str(device), mixed_precision=not args.fp32)
    res = run(predict(model, img, "YX", settings, probabilities=True))
    return res.probabilities[1]


def method_naive(model, img, device, args):
    """No overlap, each tile alone, zero padding around it (padded networks only)."""
    import torch

    net = model.network.to(device).eval()
    x = normalised(model, img)
    t = args.tile
    out = np.zeros(img.shape, np.float32)
    with torch.inference_mode():
        for y in range(0, img.shape[0], t):
            for x0 in range(0, img.shape[1], t):
                tile = np.zeros((t, t), np.float32)
                block = x[y : y + t, x0 : x0 + t]
                tile[: block.shape[0], : block.shape[1]] = block
                p = torch.softmax(net(torch.from_numpy(tile)[None, None].to(device)).float(), 1)[0, 1].cpu().numpy()
                out[y : y + t, x0 : x0 + t] = p[: block.shape[0], : block.shape[1]]
    return out


def method_monai(model, img, device, args):
    import torch
    from monai.inferers import sliding_window_inference

    net = model.network.to(device).eval()
    x = torch.from_numpy(normalised(model, img))[None, None]
    roi = args.tile + 2 * model.halo
    overlap = 2 * model.halo / roi
    with torch.inference_mode():
        p = sliding_window_inference(x, roi, args.batch, lambda t: torch.softmax(net(t.to(device)).float(), 1),
                                     overlap=overlap, mode="gaussian", sw_device=device, device="cpu")
    return p[0, 1].numpy()


def run_one(args) -> None:
    import torch

    model, img = build(args)
    device = torch.device(args.device)
    fn = {"reference": method_reference, "ours": method_ours, "naive": method_naive, "monai": method_monai}[args.method]
    base = rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    extra = () if args.method == "reference" else (args,)
    if args.warmup and device.type == "cuda":
        small = img[:512, :512]
        fn(model, small, device, *extra)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    prob = fn(model, img, device, *extra)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else rss_mb() - base
    np.save(args.save, prob.astype(np.float32))
    print(json.dumps({"method": args.method, "seconds": seconds, "peak_mb": peak}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--halo", type=int, default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--arch", default="smp")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--methods", default="reference,ours,naive,monai")
    p.add_argument("--fp32", action="store_true", help="ours: no mixed precision on GPU")
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--warmup", action="store_true", default=True, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.method:
        return run_one(args)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            save = os.path.join(tmp, f"{method}.npy")
            cmd = [sys.executable, __file__, *sys.argv[1:], "--method", method, "--save", save]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                rows[method] = {"error": out.stderr.strip().splitlines()[-1]}
                continue
            rows[method] = json.loads(out.stdout.strip().splitlines()[-1])
        ref = np.load(os.path.join(tmp, "reference.npy"))
        for method, row in rows.items():
            path = os.path.join(tmp, f"{method}.npy")
            if method != "reference" and os.path.exists(path):
                prob = np.load(path)
                row["max_abs_diff"] = float(np.abs(prob - ref).max())
                row["argmax_pixels_differing"] = int(((prob > 0.5) != (ref > 0.5)).sum())
    print(f"image {args.size}x{args.size}, {args.arch} {args.encoder if args.arch == 'smp' else args.width}, "
          f"tile {args.tile}, device {args.device}")
    print("| method | seconds | peak memory (MiB) | max abs. difference to one pass | pixels whose class differs |")
    print("|---|---|---|---|---|")
    for method, row in rows.items():
        if "error" in row:
            print(f"| {method} | error: {row['error']} | | | |")
            continue
        print(f"| {method} | {row['seconds']:.2f} | {row['peak_mb']:.0f} | {row.get('max_abs_diff', 0):.2e} | {row.get('argmax_pixels_differing', 0)} |")


if __name__ == "__main__":
    main()
