"""What one training step costs on this machine, per network and patch size.

    python benchmarks/step_cost.py            # networks: forward + backward + Adam, random input
    python benchmarks/step_cost.py --data bench_data/dsb_train   # + patch sampling, augmentation
    python benchmarks/step_cost.py --formats     # default network: float32/bf16 x contiguous/channels_last
    python benchmarks/step_cost.py --inference   # prediction of 4 tiles in the same formats
    python benchmarks/step_cost.py --volumes     # 3D networks vs the 2D default, per output voxel
    python benchmarks/step_cost.py --widths      # the padded unet at widths 8-32, as training runs it here
    python benchmarks/step_cost.py --widths --float32 --threads 1   # float32 and bf16, 128^2, one thread
    python benchmarks/step_cost.py --compile     # the same steps eager vs torch.compile (inductor), widths 8 and 16

Prints seconds per step (mean of 4 after one warm-up) and output kilopixels per second.
"""

import argparse
import time

import numpy as np
import torch


def bench(name, net, size, batch, n=4):
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(batch, 1, size, size)
    net.train()
    for i in range(n + 1):
        if i == 1:
            t = time.perf_counter()
        out = net(x)
        loss = out.float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = (time.perf_counter() - t) / n
    px = out.shape[-1] ** 2 * batch
    print(f"{name:28s} in {size} out {out.shape[-1]} batch {batch}: {dt:.2f} s/step, {px / dt / 1e3:.0f} kpx/s", flush=True)


def networks() -> None:
    import segmentation_models_pytorch as smp

    from napari_unet.models import PaperUNet

    torch.manual_seed(0)
    bench("unet-paper w32 bn (old)", PaperUNet(1, 3, 4, 32, True), 316, 8)
    bench("unet-paper w16 bn", PaperUNet(1, 3, 4, 16, True), 316, 8)
    for size in (256, 128):
        bench("unet (padded) w16 bn", PaperUNet(1, 2, 4, 16, True, padded=True), size, 8)
    bench("smp resnet34", smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=3), 256, 8)
    bench("smp resnet18", smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=3), 256, 8)


def pipeline(folder: str) -> None:
    from napari_unet.augment import augment
    from napari_unet.data import PatchSampler, pairs_from_folders
    from napari_unet.training import TrainConfig, Trainer, _Fit

    pairs = pairs_from_folders(f"{folder}/images", f"{folder}/labels")[:40]
    for kw in [dict(patch=256, batch=8), dict(patch=128, batch=8), dict(patch=128, batch=4)]:
        cfg = TrainConfig(device="cpu", **kw)
        t = Trainer(pairs, cfg)
        fit = _Fit(t.model, t.samples, t.samples[:2], cfg, t.device, None, np.random.default_rng(0))
        net = t.model.network.train()
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        sampler = PatchSampler(t.samples, fit.in_patch, np.random.default_rng(0))
        g = torch.Generator().manual_seed(0)
        times = {"sample": 0.0, "augment": 0.0, "network": 0.0}
        n = 6
        for i in range(n + 1):
            a = time.perf_counter()
            batch = sampler.batch(cfg.batch)
            b = time.perf_counter()
            x = augment(*fit._to_device(*batch), cfg.augmentation, g)
            c = time.perf_counter()
            loss = fit._loss(net, *x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            d = time.perf_counter()
            if i:
                times["sample"] += b - a
                times["augment"] += c - b
                times["network"] += d - c
        print(kw, {k: round(v / n, 3) for k, v in times.items()}, "s per step", flush=True)


def _formats():
    for bf16 in (False, True):
        for channels_last in (False, True):
            yield bf16, channels_last


def _timed_steps(net, x, bf16: bool, n: int) -> float:
    """Seconds per training step (forward, backward, Adam) of ``net`` on ``x``, after 2 warm-ups."""
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net.train()
    for i in range(n + 2):
        if i == 2:
            t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = out.float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / n


def formats(n: int = 10) -> None:
    """Training steps of the default network in each precision and memory format."""
    from napari_unet.models import PaperUNet

    for size, batch in ((128, 8), (256, 4)):
        for bf16, channels_last in _formats():
            torch.manual_seed(0)
            net = PaperUNet(1, 2, 4, 16, True, padded=True)
            x = torch.randn(batch, 1, size, size)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            dt = _timed_steps(net.to(memory_format=fmt), x.contiguous(memory_format=fmt), bf16, n)
            print(f"patch {size} batch {batch} bf16={bf16} channels_last={channels_last}: {dt:.3f} s/step", flush=True)


def widths(n: int = 8, float32_too: bool = False) -> None:
    """Training steps of the padded 2D unet at several base widths, in the precision and
    memory format that training uses on this CPU (bf16 autocast where it is native); with
    ``float32_too`` also in float32 (``--fp32``), 128-pixel patches only."""
    from napari_unet.devices import cpu_computes_bf16
    from napari_unet.models import PaperUNet

    native = cpu_computes_bf16()
    runs = [(native, 128), (native, 256)] if not float32_too else [(False, 128)] + [(True, 128)] * native
    print(f"torch threads {torch.get_num_threads()}", flush=True)
    for width in (8, 12, 16, 24, 32):
        for bf16, size in runs:
            batch = 8
            torch.manual_seed(0)
            net = PaperUNet(1, 2, 4, width, True, padded=True).to(memory_format=torch.channels_last)
            x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
            dt = _timed_steps(net, x, bf16, n)
            print(f"width {width} patch {size} batch {batch} bf16={bf16}: {dt:.3f} s/step, "
                  f"{size * size * batch / dt / 1e3:.0f} kpx/s", flush=True)


def compiled(rounds: int = 12, n: int = 5) -> None:
    """Training steps of the padded 2D unet (widths 8 and 16, 8 x 128^2, as training runs it
    here) eager and under ``torch.compile``, interleaved: ``rounds`` times ``n`` eager steps
    then ``n`` compiled ones, so that both see the same machine load; medians per step and
    the ratio of each round's pair (the machine's load drifts; a paired ratio does not)."""
    import copy

    import torch._dynamo as dynamo

    from napari_unet.devices import cpu_computes_bf16
    from napari_unet.models import PaperUNet

    bf16 = cpu_computes_bf16()
    for width in (8, 16):
        torch.manual_seed(0)
        eager = PaperUNet(1, 2, 4, width, True, padded=True).to(memory_format=torch.channels_last)
        plain = copy.deepcopy(eager)
        x = torch.randn(8, 1, 128, 128).contiguous(memory_format=torch.channels_last)
        dynamo.reset()
        first = time.perf_counter()
        fast = torch.compile(plain)
        _timed_steps(fast, x, bf16, 1)
        first = time.perf_counter() - first
        _timed_steps(eager, x, bf16, 1)
        times = {"eager": [], "compiled": []}
        for _ in range(rounds):
            times["eager"].append(_timed_steps(eager, x, bf16, n))
            times["compiled"].append(_timed_steps(fast, x, bf16, n))
        ratios = np.array(times["eager"]) / np.array(times["compiled"])
        print(f"width {width} bf16={bf16}: eager {np.median(times['eager']):.3f} s/step, compiled "
              f"{np.median(times['compiled']):.3f} s/step, eager/compiled per round: median "
              f"{np.median(ratios):.2f} (range {ratios.min():.2f}-{ratios.max():.2f}); first compiled steps "
              f"incl. compilation {first:.0f} s", flush=True)


def volumes(n: int = 6) -> None:
    """Training steps of 3D networks (padded, width 16) against the 2D default, in bf16 with
    channels_last(_3d) as training runs them, per output voxel."""
    from napari_unet.models import PaperUNet

    cases = [("2D unet w16 d4, 8 x 128^2", PaperUNet(1, 2, 4, 16, True, padded=True), (8, 1, 128, 128)),
             ("3D unet3d w16 d4 z_pooling 3, 2 x 16x64x64", PaperUNet(1, 2, 4, 16, True, padded=True, dims=3, z_pooling=3),
              (2, 1, 16, 64, 64)),
             ("3D unet3d w8 d3 z_pooling 2, 2 x 16x64x64", PaperUNet(1, 2, 3, 8, True, padded=True, dims=3, z_pooling=2),
              (2, 1, 16, 64, 64))]
    for name, net, shape in cases:
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        net = net.to(memory_format=fmt)
        x = torch.randn(*shape).contiguous(memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        for i in range(n + 2):
            if i == 2:
                t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(x)
            loss = out.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = (time.perf_counter() - t) / n
        voxels = int(np.prod(shape[2:])) * shape[0]
        print(f"{name}: {dt:.3f} s/step, {voxels / dt / 1e3:.0f} k output voxels/s", flush=True)


def inference() -> None:
    """Four 704x704 tiles (512 core + 96 halo) through the default network, inference mode."""
    from napari_unet.models import PaperUNet

    torch.manual_seed(0)
    net = PaperUNet(1, 2, 4, 16, True, padded=True).eval()
    x = torch.randn(4, 1, 704, 704)
    for bf16, channels_last in _formats():
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        net, xx = net.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(xx[:1])
            t = time.perf_counter()
            net(xx)
        print(f"4 tiles of 704x704, bf16={bf16} channels_last={channels_last}: {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    parser.add_argument("--formats", action="store_true")
    parser.add_argument("--inference", action="store_true")
    parser.add_argument("--volumes", action="store_true")
    parser.add_argument("--widths", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--float32", action="store_true", help="with --widths: float32 beside bf16")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:
        compiled()
    elif args.widths:
        widths(float32_too=args.float32)
    elif args.formats:
        formats()
    elif args.inference:
        inference()
    elif args.volumes:
        volumes()
    elif args.data:
        pipeline(args.data)
    else:
        networks()
