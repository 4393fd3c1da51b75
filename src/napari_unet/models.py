"""Network architectures and their geometry.

``unet-paper`` is the network of Ronneberger, Fischer & Brox (2015) in plain torch: valid
(unpadded) 3x3 convolutions, so every output pixel sees a fixed context (the halo) and tiles
can be stitched exactly. ``unet`` is the same layout with padded convolutions: the output has
the size of the input, so a training patch costs no discarded border (the paper network
computes 316x316 inputs for 132x132 outputs), which makes it 2-3x more efficient per labelled
pixel on a CPU; its halo is measured. ``smp`` wraps a segmentation-models-pytorch U-Net (padded
convolutions) with any of its encoders.

Each network carries a :class:`Geometry` that says which input sizes it takes, how large its
output is, and how much halo a tile needs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import ConfigError, ModelConfig

# --------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class Geometry:
    """Size rules of a network, per spatial axis.

    Parameters
    ----------
    step : int
        Tile starts and tile cores must be multiples of this (2**number of poolings): 2x2
        max-pooling makes the output depend on where a tile starts modulo ``step``.
    valid_margin : int
        Pixels lost on each side by unpadded convolutions (0 for padded networks): the output
        of an input of size n has size n - 2 * valid_margin, and output pixel j sits over input
        pixel j + valid_margin.
    min_input : int
        Smallest input size the network takes.
    """

    step: int
    valid_margin: int
    min_input: int

    @property
    def padded(self) -> bool:
        return self.valid_margin == 0

    def is_valid_input(self, n: int) -> bool:
        return n >= self.min_input and (n - self.min_input) % self.step == 0

    def output_size(self, n: int) -> int:
        if not self.is_valid_input(n):
            raise ValueError(f"input size {n} is not valid: use {self.min_input} + {self.step}*k")
        return n - 2 * self.valid_margin

    def round_core(self, tile: int) -> int:
        """Nearest tile core size (a multiple of ``step``, halves rounded up)."""
        if tile < self.step:
            raise ConfigError(
                f"tile {tile} is smaller than this model's minimum tile of {self.step} pixels"
            )
        return int(math.floor(tile / self.step + 0.5)) * self.step

    def round_halo(self, halo: int) -> int:
        """Halo a tile can use: fixed for valid networks; for padded ones a multiple of step/2
        so that core + 2*halo stays a valid input size."""
        if not self.padded:
            return self.valid_margin
        half = max(1, self.step // 2)
        return int(math.ceil(halo / half)) * half

    def tile_input(self, core: int, halo: int) -> int:
        """Input size of a tile whose output core is ``core`` pixels, with ``halo`` context."""
        n = core + 2 * halo
        if self.padded:
            return n
        # valid network: smallest valid input whose output covers the core
        k = max(0, math.ceil((n - self.min_input) / self.step))
        return self.min_input + k * self.step


def paper_geometry(depth: int, factors: tuple[int, ...] | None = None) -> Geometry:
    """Exact geometry along one axis of the paper U-Net with ``depth`` poolings (depth 4:
    188 + 16k -> -184). ``factors``: the pooling factor of each level along this axis (2, or
    1 for a level that does not pool it: anisotropic volumes); all 2 by default."""
    factors = tuple(factors) if factors is not None else (2,) * depth

    # Walk back from the smallest positive bottleneck output; every size along the way is
    # divisible by the level's factor before each pooling, which is what makes the input valid.
    def out_size(n: int) -> int | None:
        for f in factors:
            n -= 4
            if n <= 0 or n % f:
                return None
            n //= f
        n -= 4
        if n <= 0:
            return None
        for f in reversed(factors):
            n = f * n - 4
        return n if n > 0 else None

    n = 1
    while out_size(n) is None:
        n += 1
    return Geometry(step=math.prod(factors), valid_margin=(n - out_size(n)) // 2, min_input=n)


def padded_geometry(depth: int, factors: tuple[int, ...] | None = None) -> Geometry:
    """Padded U-Net with ``depth`` poolings: any multiple of the total pooling factor, output
    = input."""
    step = math.prod(factors) if factors is not None else 2**depth
    return Geometry(step=step, valid_margin=0, min_input=step)


def pooling_factors(depth: int, dims: int, z_pooling: int | None) -> list[tuple[int, ...]]:
    """Pooling kernel of each level, per spatial axis: 2 everywhere in 2D; in 3D the z factor
    is 1 on the first ``depth - z_pooling`` levels (coarse z: pool it only deeper down)."""
    if dims == 2:
        return [(2, 2)] * depth
    zp = depth if z_pooling is None else z_pooling
    return [(1 if level < depth - zp else 2, 2, 2) for level in range(depth)]


def axes_geometry(geometry: Geometry | tuple[Geometry, ...]) -> tuple[Geometry, ...]:
    """A network's geometry per spatial axis: (y, x) for 2D networks, (z, y, x) for 3D ones."""
    return tuple(geometry) if isinstance(geometry, tuple) else (geometry, geometry)


def smp_geometry() -> Geometry:
    """smp U-Nets pool five times and pad their convolutions: inputs divisible by 32."""
    return Geometry(step=32, valid_margin=0, min_input=32)


# --------------------------------------------------------------------------------------------
# The paper's U-Net


_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_UP = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, batch_norm: bool, padding: int = 0, dims: int = 2) -> None:
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(_CONV[dims](c, cout, 3, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(_NORM[dims](cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _center_crop(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The centre of ``x`` with the spatial ``shape`` (the last len(shape) axes)."""
    index = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(x.shape[-len(shape):], shape))
    return x[(Ellipsis,) + index]


class PaperUNet(nn.Module):
    """U-Net of Ronneberger et al. (2015), and its 3D form of Cicek et al. (2016).

    Per level two unpadded 3x3 (3x3x3) convolutions with ReLU, 2x2 (2x2x2) max-pooling; on the
    way up a 2x2 up-convolution halving the channels, the skip connection cropped and
    concatenated, two unpadded convolutions; a final 1x1 convolution to ``classes`` channels.
    With ``padded=True`` the convolutions are zero-padded (``unet``, ``unet3d``): nothing is
    cropped. ``dims=3`` builds the volumetric network; ``z_pooling`` levels (the deepest ones)
    also pool along z, the others pool in-plane only (anisotropic voxels).

    ``geometry`` is one :class:`Geometry` for 2D networks and a (z, y, x) tuple for 3D ones.
    """

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 2,
        depth: int = 4,
        base_width: int = 64,
        batch_norm: bool = False,
        padded: bool = False,
        dims: int = 2,
        z_pooling: int | None = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        self.dims = dims
        self.z_pooling = z_pooling
        widths = [base_width * 2**i for i in range(depth + 1)]
        pad = int(padded)
        factors = pooling_factors(depth, dims, z_pooling)
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(_DoubleConv(cin, w, batch_norm, pad, dims))
            cin = w
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        self.pools = nn.ModuleList([pool(f) for f in factors])  # no weights: file keys unchanged
        self.bottom = _DoubleConv(widths[-2], widths[-1], batch_norm, pad, dims)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for f, w_low, w in zip(reversed(factors), widths[:0:-1], widths[-2::-1]):
            self.up.append(_UP[dims](w_low, w, f, stride=f))
            self.up_conv.append(_DoubleConv(2 * w, w, batch_norm, pad, dims))
        self.head = _CONV[dims](widths[0], classes, 1)
        make = padded_geometry if padded else paper_geometry
        per_axis = tuple(make(depth, tuple(f[a] for f in factors)) for a in range(dims))
        self.geometry = per_axis[0] if dims == 2 else per_axis
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: Gaussian with std sqrt(2/N), N = incoming connections."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                fan_in = m.in_channels * math.prod(m.kernel_size)
            elif isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
                # stride == kernel: each output pixel receives one input pixel per channel
                fan_in = m.in_channels
            else:
                continue
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block, pool in zip(self.down, self.pools):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = up(x)
            x = conv(torch.cat([_center_crop(skip, tuple(x.shape[2:])), x], dim=1))
        return self.head(x)


# --------------------------------------------------------------------------------------------
# segmentation-models-pytorch


def smp_encoders() -> list[str]:
    """Names of the encoders segmentation-models-pytorch offers."""
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


def check_encoder(name: str) -> None:
    names = smp_encoders()
    if name not in names:
        close = [n for n in names if name.lower().split("_")[0] in n.lower()][:10]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ConfigError(
            f"unknown encoder {name!r}{hint}; valid encoders: {', '.join(names)}"
        )


def pretrained_source(encoder: str, weights: str) -> dict:
    """Where segmentation-models-pytorch fetches ``weights`` of ``encoder`` from: its Hugging
    Face repository and revision, and the folder of the local hub cache that holds them."""
    import segmentation_models_pytorch as smp
    from huggingface_hub import constants

    options = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    if weights not in options:
        raise ConfigError(
            f"encoder {encoder!r} has no pretrained weights {weights!r}; "
            f"available: {', '.join(options) or 'none'}"
        )
    repo, revision = options[weights]["repo_id"], options[weights]["revision"]
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    return {"repo": repo, "revision": revision, "folder": folder, "files": ("config.json", "model.safetensors")}


class SmpUNet(nn.Module):
    """A segmentation-models-pytorch U-Net; inputs must be divisible by 32."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        source = None
        if config.encoder_weights is not None:
            source = pretrained_source(config.encoder, config.encoder_weights)
        try:
            self.net = smp.Unet(
                encoder_name=config.encoder,
                encoder_weights=config.encoder_weights,
                in_channels=config.in_channels,
                classes=config.classes,
            )
        except Exception as err:  # noqa: BLE001 - any failure to fetch the weights is explained
            if source is None:
                raise
            repo, rev, folder = source["repo"], source["revision"], source["folder"]
            raise ConfigError(
                f"could not get the pretrained {config.encoder_weights!r} weights of encoder "
                f"{config.encoder!r} from the Hugging Face repository {repo} (revision {rev[:12]}): "
                f"{type(err).__name__}: {str(err).splitlines()[0].rstrip('.') if str(err) else ''}. Without internet, "
                f"download them on a machine that has it (python -c \"from huggingface_hub import "
                f"snapshot_download; snapshot_download('{repo}', revision='{rev}')\") and copy the folder "
                f"{folder.parent.parent.name} of its Hugging Face cache into {folder.parent.parent.parent} "
                f"here (the files {' and '.join(source['files'])} must end up in {folder}); set HF_HOME "
                "to use another cache folder. Or train without --encoder-weights."
            ) from err
        self.geometry = smp_geometry()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_network(config: ModelConfig) -> nn.Module:
    """The one factory: a fresh network for ``config``."""
    if config.arch in ("unet-paper", "unet", "unet3d-paper", "unet3d"):
        return PaperUNet(
            config.in_channels, config.classes, config.depth, config.base_width, config.batch_norm,
            padded=config.arch in ("unet", "unet3d"), dims=config.dims, z_pooling=config.z_pooling,
        )
    return SmpUNet(config)


def replace_head(network: nn.Module, classes: int) -> None:
    """Give ``network`` a new, freshly initialised output layer with ``classes`` channels."""
    if isinstance(network, PaperUNet):
        old = network.head
        network.head = _CONV[network.dims](old.in_channels, classes, 1)
        nn.init.normal_(network.head.weight, 0.0, math.sqrt(2.0 / old.in_channels))
        nn.init.zeros_(network.head.bias)
    else:
        old = network.net.segmentation_head[0]
        network.net.segmentation_head[0] = nn.Conv2d(
            old.in_channels, classes, old.kernel_size, padding=old.padding
        )


def encoder_modules(network: nn.Module) -> list[nn.Module]:
    """The contracting path (what ``--freeze-encoder`` freezes)."""
    if isinstance(network, PaperUNet):
        return [*network.down, network.bottom]
    return [network.net.encoder]


def encoder_parameters(network: nn.Module):
    """Parameters of the contracting path."""
    return [p for module in encoder_modules(network) for p in module.parameters()]


# --------------------------------------------------------------------------------------------
# Halo of padded networks


def network_halo(network: nn.Module, in_channels: int) -> int | tuple[int, ...]:
    """The halo a padded network's tiles need.

    ``unet``/``unet3d``: the exact receptive-field reach (:func:`receptive_field`). With that
    much context on every side and tile origins on the pooling grid, no zero padding inside a
    tile reaches its core, so a tiled prediction equals one pass over the mirror-extended
    image (tested), like ``unet-paper``'s. smp encoders reach much farther: their halo is
    measured (:func:`measure_halo`), and tiling them is close to, not equal to, one pass.
    """
    if isinstance(network, PaperUNet):
        geometries = network.geometry if network.dims == 3 else (network.geometry,)
        reach = receptive_field(len(network.down), network.dims, network.z_pooling)
        radii = tuple(g.round_halo(r) for g, r in zip(geometries, reach))
        return radii if network.dims == 3 else radii[0]
    return measure_halo(network, in_channels)


@functools.lru_cache(maxsize=None)
def receptive_field(depth: int, dims: int = 2, z_pooling: int | None = None) -> tuple[int, ...]:
    """How far, per axis, an output pixel of the padded U-Net layout reaches into its input,
    at the worst position relative to the pooling grid.

    Computed, not estimated: a copy of the layout with one channel per level, made linear
    (ReLU -> identity, max -> average pooling: every structural path then carries a non-zero
    weight), in float64; the support of the gradient of output pixels at every phase of the
    pooling grid is the receptive field. Along each axis separately (the layers act per axis).
    """
    torch.manual_seed(0)
    net = PaperUNet(1, 1, depth, 1, False, padded=True, dims=dims, z_pooling=z_pooling).double()
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.Identity())
    pool = nn.AvgPool2d if dims == 2 else nn.AvgPool3d
    net.pools = nn.ModuleList([pool(p.kernel_size) for p in net.pools])
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.uniform_(m.weight, 0.5, 1.5)  # positive: no path cancels another
    geometries = net.geometry if dims == 3 else (net.geometry,) * 2
    steps = [g.step for g in geometries]
    reach = []
    for axis in range(dims):
        bound = 8 * 2**depth + 4 * steps[axis]
        shape = [4 * s for s in steps]
        shape[axis] = 2 * bound
        x = torch.zeros(1, 1, *shape, dtype=torch.float64, requires_grad=True)
        out = net(x)
        centre = [n // 2 for n in shape]
        total = 0
        for phase in range(steps[axis]):
            index = list(centre)
            index[axis] = bound - bound % steps[axis] + phase
            total = total + out[(0, 0) + tuple(index)]
        total.backward()
        support = x.grad[0, 0].abs().sum(dim=tuple(a for a in range(dims) if a != axis)).numpy()
        nz = support.nonzero()[0]
        first = bound - bound % steps[axis]
        reach.append(int(max(first - nz.min(), nz.max() - (first + steps[axis] - 1))))
    return tuple(reach)


def measure_halo(
    network: nn.Module, in_channels: int, size: int = 256, mass: float = 0.99, seed: int = 0
) -> int | tuple[int, ...]:
    """Effective receptive field radius of a padded network, rounded to a valid halo.

    The gradient of the centre output pixel (summed over classes) with respect to a random
    input is taken; the halo is the smallest radius r such that the square of half-width r
    around the centre holds ``mass`` of the absolute gradient. Pixels farther away still have
    some influence, which is why prediction differences are measured in the benchmarks.
    3D networks (a cube of at most 96 voxels a side): one radius per axis, each holding
    ``mass`` of the gradient along that axis.
    """
    dims = getattr(network, "dims", 2)
    geometries = network.geometry if dims == 3 else (network.geometry,) * 2
    if dims == 3:
        size = min(size, 96)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, in_channels, *(size,) * dims, generator=gen, requires_grad=True)
    was_training = network.training
    network.eval()
    c = size // 2
    try:
        with torch.enable_grad():
            out = network(x)
            out[(0, slice(None)) + (c,) * dims].sum().backward()
    finally:
        network.train(was_training)
    grad = x.grad.abs().sum(dim=(0, 1))
    total = float(grad.sum())
    if dims == 3:
        radii = []
        for axis, g in enumerate(geometries):
            profile = grad.sum(dim=tuple(a for a in range(3) if a != axis))
            r = next((r for r in range(c) if total == 0 or float(profile[c - r : c + r + 1].sum()) >= mass * total), c)
            radii.append(g.round_halo(r if total else g.step))
        return tuple(radii)
    geometry = geometries[0]
    if total == 0:
        return geometry.round_halo(geometry.step)
    for r in range(c):
        if float(grad[c - r : c + r + 1, c - r : c + r + 1].sum()) >= mass * total:
            return geometry.round_halo(r)
    return geometry.round_halo(c)
