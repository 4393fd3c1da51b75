"""What one training step costs on this machine, per network and patch size.

    python benchmarks/step_cost.py            # networks: forward + backward + Adam, random input
    python benchmarks/step_cost.py --data bench_data/dsb_train   # + patch sampling, augmentation

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    args = parser.parse_args()
    pipeline(args.data) if args.data else networks()
