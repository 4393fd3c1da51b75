"""Data augmentation on batches of patches, on the training device.

The same geometric transform is applied to the image, the targets (nearest neighbour) and the
weights of a patch: flips, 90 degree rotations, a random zoom (objects of other sizes than
the painted ones), and the elastic deformation of the U-Net paper (random displacements on a
coarse 3x3 grid drawn from a Gaussian with 10 px standard deviation, interpolated bicubically
to a smooth per-pixel field). Intensities are scaled and shifted, and Gaussian noise is added
(other microscopes, other exposure).

Why not torchvision.transforms.v2: its ElasticTransform draws an independent displacement per
pixel and smooths it with a Gaussian, which is a different deformation model than the paper's
coarse grid, and it transforms one sample at a time; the few lines below run the paper's
version on a whole batch with ``grid_sample`` on the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Augmentation settings.

    Parameters
    ----------
    flips : bool
        Random horizontal/vertical flips and 90 degree rotations.
    elastic_sigma : float
        Standard deviation in pixels of the coarse-grid displacements (0 = off; paper: 10).
    elastic_grid : int
        Number of control points per axis (paper: 3).
    intensity : float
        Random intensity scale in [1 - a, 1 + a] and shift in [-a, a] (0 = off).
    scale : float
        Random zoom by a factor in [1 / (1 + s), 1 + s], log-uniform (0 = off).
    noise : float
        Gaussian noise with a standard deviation drawn in [0, noise] per patch (0 = off).
    invert : float
        Probability of inverting a patch's intensities (x -> 1 - x on the normalised image):
        dark objects on a bright background (brightfield, H&E) look like fluorescence.
    """

    flips: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    intensity: float = 0.1
    scale: float = 0.0
    noise: float = 0.0
    invert: float = 0.0


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1))


def elastic_field(
    batch: int, height: int, width: int, sigma: float, grid: int, generator: torch.Generator, device,
    zoom: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampling grid (batch, height, width, 2) in grid_sample's normalised coordinates.

    ``zoom`` (batch,) magnifies the content about the patch centre (2 = objects twice as large).
    """
    coarse = (torch.randn(batch, 2, grid, grid, generator=generator) * sigma).to(device)
    dense = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    ys = torch.linspace(-1, 1, height, device=device)
    xs = torch.linspace(-1, 1, width, device=device)
    base_y, base_x = torch.meshgrid(ys, xs, indexing="ij")
    if zoom is None:
        zoom = torch.ones(batch)
    shrink = (1 / zoom.to(device))[:, None, None]
    gx = base_x * shrink + dense[:, 1] * 2 / max(width - 1, 1)
    gy = base_y * shrink + dense[:, 0] * 2 / max(height - 1, 1)
    return torch.stack([gx, gy], dim=-1)


def augment(
    image: torch.Tensor,
    targets: torch.Tensor,
    maps: torch.Tensor,
    settings: Augmentation,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a batch: image (B, C, H, W) float, targets (B, H, W) long, maps (B, K, H, W)
    float (loss weights, distance targets) that move with the targets.

    Random numbers come from ``generator`` (CPU), so runs are reproducible with a seed.
    """
    b, _, h, w = image.shape
    if settings.flips and h == w:
        ks = torch.randint(0, 4, (b,), generator=generator).tolist()
        fs = torch.randint(0, 2, (b,), generator=generator).tolist()
        image = torch.stack([_dihedral(image[i], ks[i], bool(fs[i])) for i in range(b)])
        targets = torch.stack([_dihedral(targets[i], ks[i], bool(fs[i])) for i in range(b)])
        maps = torch.stack([_dihedral(maps[i], ks[i], bool(fs[i])) for i in range(b)])
    elif settings.flips:
        fy = torch.randint(0, 2, (b,), generator=generator).bool().to(image.device)
        fx = torch.randint(0, 2, (b,), generator=generator).bool().to(image.device)
        image = torch.where(fy[:, None, None, None], image.flip(-2), image)
        image = torch.where(fx[:, None, None, None], image.flip(-1), image)
        targets = torch.where(fy[:, None, None], targets.flip(-2), targets)
        targets = torch.where(fx[:, None, None], targets.flip(-1), targets)
        maps = torch.where(fy[:, None, None, None], maps.flip(-2), maps)
        maps = torch.where(fx[:, None, None, None], maps.flip(-1), maps)
    zoom = None
    if settings.scale > 0:
        top = math.log1p(settings.scale)
        zoom = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * top)
    if settings.elastic_sigma > 0 or zoom is not None:
        grid = elastic_field(b, h, w, settings.elastic_sigma, settings.elastic_grid, generator, image.device, zoom)
        image = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        stacked = torch.cat([targets[:, None].float(), maps], dim=1)
        stacked = F.grid_sample(stacked, grid, mode="nearest", padding_mode="reflection", align_corners=True)
        targets, maps = stacked[:, 0].round().long(), stacked[:, 1:]
    if settings.invert > 0:
        flip = (torch.rand(b, 1, 1, 1, generator=generator) < settings.invert).to(image.device)
        image = torch.where(flip, 1 - image, image)
    if settings.intensity > 0:
        a = settings.intensity
        scale = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * a
        shift = (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * a
        image = image * scale.to(image.device) + shift.to(image.device)
    if settings.noise > 0:
        std = torch.rand(b, 1, 1, 1, generator=generator) * settings.noise
        noise = torch.randn(image.shape, generator=generator) * std
        image = image + noise.to(image.device)
    return image, targets, maps
