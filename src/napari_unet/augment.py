"""Data augmentation on batches of patches, on the training device.

The same geometric transform is applied to the image, the targets (nearest neighbour) and the
weights of a patch: flips, 90 degree rotations, a random zoom (objects of other sizes than
the painted ones), and the elastic deformation of the U-Net paper (random displacements on a
coarse 3x3 grid drawn from a Gaussian with 10 px standard deviation, interpolated bicubically
to a smooth per-pixel field). Intensities are blurred (another focus or optical resolution),
gamma-corrected (another contrast curve), scaled and shifted, and Gaussian noise is added
(other microscopes, other exposure); blur and gamma follow nnU-Net's intensity transforms.

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
    blur : float
        Gaussian blur in y and x with a standard deviation drawn in [0, blur] pixels per patch
        (0 = off). Volumes are blurred in-plane only (z spacing is the microscope's).
    gamma : float
        Gamma correction x -> x ** g with g log-uniform in [1 / (1 + gamma), 1 + gamma], on the
        patch rescaled to [0, 1] by its own range and scaled back (0 = off).
    """

    flips: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    intensity: float = 0.1
    scale: float = 0.0
    noise: float = 0.0
    invert: float = 0.0
    blur: float = 0.0
    gamma: float = 0.0


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
    return deformation_grid(batch, (height, width), sigma, grid, generator, device, zoom)


def deformation_grid(
    batch: int, shape: tuple[int, ...], sigma: float, grid: int, generator: torch.Generator, device,
    zoom: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`elastic_field` for 2D (H, W) or 3D (D, H, W) patches: random displacements of
    ``sigma`` pixels on a coarse ``grid`` per axis (the 3D U-Net paper's 3D grid),
    interpolated smoothly; grid (batch, *shape, ndim), last axis in grid_sample's (x, y[, z])
    order. A 3D volume is zoomed in-plane only (z spacing is the microscope's)."""
    ndim = len(shape)
    coarse = (torch.randn(batch, ndim, *(grid,) * ndim, generator=generator) * sigma).to(device)
    mode = "bicubic" if ndim == 2 else "trilinear"
    dense = F.interpolate(coarse, size=tuple(shape), mode=mode, align_corners=True)
    axes = [torch.linspace(-1, 1, n, device=device) for n in shape]
    base = torch.meshgrid(*axes, indexing="ij")  # (z,) y, x
    if zoom is None:
        zoom = torch.ones(batch)
    shrink = (1 / zoom.to(device)).view(batch, *(1,) * ndim)
    coords = []
    for a, n in enumerate(shape):  # grid_sample wants x first
        scaled = base[a] * shrink if (ndim == 2 or a > 0) else base[a].expand(batch, *shape)
        coords.append(scaled + dense[:, a] * 2 / max(n - 1, 1))
    return torch.stack(coords[::-1], dim=-1)


def gaussian_blur(image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each patch of ``image`` (B, C, [D,] H, W) in y and x with its own standard deviation
    ``sigma`` (B,) in pixels (0 = unchanged); borders are mirrored."""
    b, c = image.shape[:2]
    spatial = image.shape[2:]
    radius = min(max(1, math.ceil(3 * float(sigma.max()))), min(spatial[-2:]) - 1)  # mirroring needs < size
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    s = sigma.to(image.device, image.dtype).clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (x[None] / s) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1)
    planes = image.reshape(b * c, -1, *spatial[-2:]).transpose(0, 1)  # (z planes, B*C, H, W)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernel[:, None, :, None], groups=b * c)
    planes = F.conv2d(planes, kernel[:, None, None, :], groups=b * c)
    return planes.transpose(0, 1).reshape(image.shape)


def random_gamma(image: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """``x ** g`` per patch (``gammas`` (B,)) on each patch rescaled to [0, 1] by its own
    minimum and maximum, then scaled back: the patch keeps its range, its contrast curve bends."""
    dims = tuple(range(1, image.ndim))
    low = image.amin(dim=dims, keepdim=True)
    span = (image.amax(dim=dims, keepdim=True) - low).clamp_min(1e-6)
    view = (image.shape[0],) + (1,) * (image.ndim - 1)
    return ((image - low) / span).clamp(0, 1) ** gammas.to(image.device, image.dtype).view(view) * span + low


def augment(
    image: torch.Tensor,
    targets: torch.Tensor,
    maps: torch.Tensor,
    settings: Augmentation,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a batch: image (B, C, [D,] H, W) float, targets (B, [D,] H, W) long, maps
    (B, K, [D,] H, W) float (loss weights, distance targets) that move with the targets.

    Volumes (3D patches) are flipped along every axis and rotated in the YX plane only.
    Random numbers come from ``generator`` (CPU), so runs are reproducible with a seed.
    """
    b = image.shape[0]
    shape = tuple(image.shape[2:])
    ndim = len(shape)
    h, w = shape[-2:]
    if settings.flips and ndim == 3:
        fz = torch.randint(0, 2, (b,), generator=generator).tolist()
        image = torch.stack([image[i].flip(-3) if fz[i] else image[i] for i in range(b)])
        targets = torch.stack([targets[i].flip(-3) if fz[i] else targets[i] for i in range(b)])
        maps = torch.stack([maps[i].flip(-3) if fz[i] else maps[i] for i in range(b)])
    if settings.flips and h == w:
        ks = torch.randint(0, 4, (b,), generator=generator).tolist()
        fs = torch.randint(0, 2, (b,), generator=generator).tolist()
        image = torch.stack([_dihedral(image[i], ks[i], bool(fs[i])) for i in range(b)])
        targets = torch.stack([_dihedral(targets[i], ks[i], bool(fs[i])) for i in range(b)])
        maps = torch.stack([_dihedral(maps[i], ks[i], bool(fs[i])) for i in range(b)])
    elif settings.flips:
        view = (b,) + (1,) * (ndim + 1)
        fy = torch.randint(0, 2, (b,), generator=generator).bool().to(image.device)
        fx = torch.randint(0, 2, (b,), generator=generator).bool().to(image.device)
        image = torch.where(fy.view(view), image.flip(-2), image)
        image = torch.where(fx.view(view), image.flip(-1), image)
        targets = torch.where(fy.view(view[:-1]), targets.flip(-2), targets)
        targets = torch.where(fx.view(view[:-1]), targets.flip(-1), targets)
        maps = torch.where(fy.view(view), maps.flip(-2), maps)
        maps = torch.where(fx.view(view), maps.flip(-1), maps)
    zoom = None
    if settings.scale > 0:
        top = math.log1p(settings.scale)
        zoom = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * top)
    if settings.elastic_sigma > 0 or zoom is not None:
        grid = deformation_grid(b, shape, settings.elastic_sigma, settings.elastic_grid, generator, image.device, zoom)
        image = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        stacked = torch.cat([targets[:, None].float(), maps], dim=1)
        stacked = F.grid_sample(stacked, grid, mode="nearest", padding_mode="reflection", align_corners=True)
        targets, maps = stacked[:, 0].round().long(), stacked[:, 1:]
    view = (b,) + (1,) * (ndim + 1)
    if settings.invert > 0:
        flip = (torch.rand(view, generator=generator) < settings.invert).to(image.device)
        image = torch.where(flip, 1 - image, image)
    if settings.blur > 0:
        image = gaussian_blur(image, torch.rand(b, generator=generator) * settings.blur)
    if settings.gamma > 0:
        top = math.log1p(settings.gamma)
        image = random_gamma(image, torch.exp((torch.rand(b, generator=generator) * 2 - 1) * top))
    if settings.intensity > 0:
        a = settings.intensity
        scale = 1 + (torch.rand(view, generator=generator) * 2 - 1) * a
        shift = (torch.rand(view, generator=generator) * 2 - 1) * a
        image = image * scale.to(image.device) + shift.to(image.device)
    if settings.noise > 0:
        std = torch.rand(view, generator=generator) * settings.noise
        noise = torch.randn(image.shape, generator=generator) * std
        image = image + noise.to(image.device)
    return image, targets, maps
