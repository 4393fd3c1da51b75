"""bioimage.io model packages: export a model file, import a package, never run its code unasked.

Export builds the description with ``bioimageio.spec``'s own model classes (format 0.5) and saves
it with ``bioimageio.spec.save_bioimageio_package``: nothing here writes YAML by hand. A package
carries

* the weights twice: ``pytorch_state_dict`` (the architecture is :func:`network` of this module,
  with the model's settings as keyword arguments) and ``torchscript`` (for runtimes without
  napari-unet: deepImageJ, ilastik, BiaPy ...);
* input sizes that follow the network's geometry (``min + n*step``) and the output halo:
  the receptive-field reach of padded networks (``halo``, to be cropped), or the valid margin
  that ``unet-paper`` crops itself (``size.offset = -2*margin``);
* the percentile normalisation as the spec's ``scale_range``, the softmax/sigmoid as its
  postprocessing, test tensors made from a real image, a cover, documentation, citations;
* this project's own header (``config.napari_unet``: tiling, post-processing of instances,
  history), so that importing our own package gives back the same model, ids included.

Import loads ``pytorch_state_dict`` weights with ``torch.load(weights_only=True)`` into
:func:`network` only; any other architecture source and any TorchScript archive (which is code)
is refused unless the caller passes ``trust_code=True``.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .config import ModelConfig, Normalization, from_dict, to_dict
from .io import check_writable
from .modelfile import FORMAT, ModelFileError, UNetModel, atomic_write_bytes
from .models import Geometry, axes_geometry, build_network
from .tiling import activate

#: where a package's architecture must come from for it to be loaded without ``trust_code``
KNOWN_ARCHITECTURE = ("napari_unet.zoo", "network")
#: what a package file may be called
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
CITATIONS = (
    ("Ronneberger, O., Fischer, P. & Brox, T. U-Net: Convolutional Networks for Biomedical Image "
     "Segmentation. MICCAI 2015", "10.1007/978-3-319-24574-4_28"),
)
CITATION_3D = ("Cicek, O., Abdulkadir, A., Lienkamp, S. S., Brox, T. & Ronneberger, O. 3D U-Net: "
               "Learning Dense Volumetric Segmentation from Sparse Annotation. MICCAI 2016",
               "10.1007/978-3-319-46723-8_49")


class PackageError(ModelFileError):
    """A bioimage.io package cannot be exported or used; the message says why and what to do."""


def network(**kwargs: Any) -> nn.Module:
    """The architecture named in exported packages: the network of a model with these settings
    (:class:`~napari_unet.config.ModelConfig` fields; pretrained encoder weights never fetched)."""
    config = replace(from_dict(ModelConfig, kwargs), encoder_weights=None)
    return build_network(config)


def is_package(path: str | Path) -> bool:
    """Whether ``path`` names a bioimage.io package (a .zip or an rdf.yaml/bioimageio.yaml)."""
    path = Path(path)
    return path.suffix.lower() == ".zip" or path.name.lower() in RDF_NAMES or path.name.lower().endswith(".bioimageio.yaml")


# --------------------------------------------------------------------------------------------
# export


def _spatial_ids(dims: int) -> list[str]:
    return ["z", "y", "x"] if dims == 3 else ["y", "x"]


def input_sizes(model: UNetModel) -> list[tuple[int, int]]:
    """(min, step) of each spatial input axis: the network's valid sizes; for padded networks
    the smallest size leaves at least one pooling step of output once the halo is cropped."""
    halo = model.halo if isinstance(model.halo, tuple) else (model.halo,) * len(axes_geometry(model.geometry))
    out = []
    for g, h in zip(axes_geometry(model.geometry), halo):
        if g.padded:
            n = g.step * int(np.ceil((2 * h + g.step) / g.step))
            out.append((max(n, g.min_input), g.step))
        else:
            out.append((g.min_input, g.step))
    return out


def _test_input(model: UNetModel, image: np.ndarray) -> np.ndarray:
    """A (1, C, *spatial) float32 crop of ``image`` (channels first) with a valid size: the
    centre of the image, at least the smallest valid size, at most about 256 pixels per axis
    (mirrored when the image is smaller)."""
    spatial = image.shape[1:]
    crop = []
    for n, (lo, step) in zip(spatial, input_sizes(model)):
        want = max(lo, min(n, 256))
        crop.append(lo + step * int(np.ceil((want - lo) / step)))
    pads = [(0, 0)] + [(max(0, (c - n + 1) // 2), max(0, c - n - (c - n + 1) // 2)) for c, n in zip(crop, spatial)]
    if any(p != (0, 0) for p in pads):
        image = np.pad(image, pads, mode="symmetric")
    index = tuple(slice((n - c) // 2, (n - c) // 2 + c) for n, c in zip(image.shape[1:], crop))
    return np.ascontiguousarray(image[(slice(None),) + index], dtype=np.float32)[None]


SCALE_RANGE_EPS = 1e-6  # the spec's default ``eps`` of ``scale_range``


def scale_range(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """The spec's ``scale_range`` on a (1, C, ...) tensor, per sample and channel."""
    axes = tuple(range(2, x.ndim))
    lo = np.percentile(x, low, axis=axes, keepdims=True)
    hi = np.percentile(x, high, axis=axes, keepdims=True)
    return ((x - lo) / (hi - lo + SCALE_RANGE_EPS)).astype(np.float32)


def _forward(model: UNetModel, x: np.ndarray) -> np.ndarray:
    """Probabilities of one pass over a normalised (1, C, ...) tensor, float32 on the CPU."""
    net = model.network.to("cpu").eval()
    with torch.inference_mode():
        return activate(net(torch.from_numpy(x)), model.config.activation).numpy().astype(np.float32)


def _torchscript(model: UNetModel, example: torch.Tensor, path: Path) -> str:
    """Trace the network to TorchScript and check it at a second valid size; returns a comment."""
    net = model.network.to("cpu").eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the spec still uses it
        traced = torch.jit.trace(net, example, check_trace=False)
        bigger = [n + step for n, (_, step) in zip(example.shape[2:], input_sizes(model))]
        other = torch.rand((1, example.shape[1], *bigger))
        diff = float((traced(other) - net(other)).abs().max())
    if not diff < 1e-4:
        raise PackageError(f"the TorchScript trace of this network differs from it by {diff:g} at another size")
    traced.save(str(path))
    return f"traced with torch {torch.__version__}; checked at a second input size (max. difference {diff:.1e})"


def _cover(image: np.ndarray, probs: np.ndarray, model: UNetModel, path: Path) -> None:
    """A 2:1 PNG: the test input (first channel) beside the prediction."""
    from skimage import io as skio
    from skimage.transform import resize

    def plane(a: np.ndarray) -> np.ndarray:
        while a.ndim > 2:
            a = a[a.shape[0] // 2]
        lo, hi = np.percentile(a, (1, 99.8))
        return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)

    left = plane(image[0, 0])
    if model.config.mode == "instance":
        right = plane(probs[0, 0] if model.config.activation == "sigmoid" else probs[0, 1])
    else:
        right = plane(probs[0, 1:].sum(0) if probs.shape[1] > 1 else probs[0, 0])
    size = 256
    left = resize(left, (size, size), order=1)
    right = resize(right, (size, size), order=1)
    rgb = np.zeros((size, 2 * size, 3), np.float32)
    rgb[:, :size] = left[..., None]
    rgb[:, size:, 1] = right
    rgb[:, size:, 0] = right * 0.3
    skio.imsave(path, (rgb * 255).astype(np.uint8), check_contrast=False)


def _documentation(model: UNetModel, extra: str) -> str:
    cfg, train = model.config, model.training
    lines = [
        f"# {cfg.arch} {cfg.mode} model, made with napari-unet {__version__}",
        "",
        "## Network",
        f"- architecture `{cfg.arch}`, depth {cfg.depth}, base width {cfg.base_width}, "
        f"batch norm {cfg.batch_norm}" + (f", encoder `{cfg.encoder}`" if cfg.arch == "smp" else ""),
        f"- input: {cfg.in_channels} channel(s), normalised per image and channel with the "
        f"{model.normalization.low:g} and {model.normalization.high:g} percentiles (`scale_range`)"
        + ("; **images with a bright background (median above the middle of that range) must be inverted "
           "first** (1 - x after scaling): the network was trained on dark backgrounds only, and the "
           "bioimage.io preprocessing cannot decide this per image (napari-unet does)"
           if model.normalization.polarity == "auto" else ""),
        f"- output: {', '.join(cfg.names())} ({cfg.activation})",
        f"- tiling: napari-unet predicts tiles of {model.tile} with a halo of {model.halo} pixels "
        "(overlap-tile, mirrored at the image borders). The package declares the same halo, so "
        "blockwise runtimes crop what the network cannot see.",
    ]
    if cfg.mode == "instance":
        post = model.postprocessing
        if cfg.instance_targets == "distance":
            how = ("objects are the foreground (channel 0 above a threshold) split by a seeded watershed on "
                   "the predicted distance to the boundary (channel 1): seeds are h-maxima of the smoothed distance")
        else:
            how = ("objects are the connected interiors (class 1), grown into the boundary class by a "
                   "watershed on the background probability")
        lines += [
            "",
            "## Instances",
            "The bioimage.io format cannot express this post-processing, so the package outputs the "
            f"probabilities; {how}. napari-unet applies it when it opens this package "
            f"(`napari-unet predict PACKAGE.zip ...`), with the settings tuned at the end of training: "
            f"`{json.dumps(post)}`.",
        ]
    elif cfg.classes == 2 and model.postprocessing.get("membrane_seeds") is not None:
        lines += [
            "",
            "## Membranes",
            "The package outputs the probabilities. napari-unet closes the membranes with a watershed (chosen at the "
            "end of training by the validation adapted Rand error): seeds are the regions where P(class 1) is below "
            f"{model.postprocessing['membrane_seeds']:g}, and the membranes are the one-pixel lines where the grown "
            f"seeds meet; without it, class 1 is P(class 1) > {model.postprocessing.get('threshold', 0.5):g}.",
        ]
    size = train.get("object_size") if isinstance(train.get("object_size"), dict) else {}
    if size.get("rescaled_to"):
        lines += [
            "",
            "## Object size",
            f"This model was trained on images rescaled so that objects are {size['rescaled_to']:.0f} pixels across "
            "(median equivalent diameter). Rescale your images the same way before running it in another tool; "
            "napari-unet estimates each image's object size and rescales it by itself.",
        ]
    settings = train.get("config", {}) if isinstance(train.get("config"), dict) else {}
    if settings:
        keep = {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))}
        lines += ["", "## Training settings (napari-unet train)", "```json", json.dumps(keep, indent=1), "```"]
    best = train.get("validation") if isinstance(train.get("validation"), dict) else (model.history[-1] if model.history else {})
    if best:
        shown = {k: v for k, v in best.items() if isinstance(v, (int, float)) and ("@" not in k or k.endswith("@0.5"))}
        lines += ["", "## Validation metrics (held-out images of the training set, best epoch)", "```json",
                  json.dumps(shown, indent=1), "```"]
    if extra:
        lines += ["", extra]
    lines += ["", "## Citation", "Ronneberger, Fischer & Brox, U-Net, MICCAI 2015; napari-unet " + __version__]
    return "\n".join(lines) + "\n"


def export_package(
    model: UNetModel,
    out: str | Path,
    image: np.ndarray,
    authors: list[str],
    name: str | None = None,
    description: str | None = None,
    license: str = "CC-BY-4.0",
    documentation: str = "",
    torchscript: bool = True,
) -> Path:
    """Write a bioimage.io model package (format 0.5) of ``model`` to ``out`` (a .zip).

    ``image`` is a real image, channels first ((C, Y, X) or (C, Z, Y, X)); its centre becomes
    the test input, and the test output is this model's one-pass prediction of it after the
    declared preprocessing. The zip appears only once complete.
    """
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise PackageError(f"{out}: a bioimage.io package is a .zip file; name the output *.zip")
    if not authors:
        raise PackageError("a bioimage.io package needs at least one author: give --author 'Your Name'")
    check_writable(out)
    cfg = model.config
    dims = model.dims
    image = np.asarray(image)
    if image.ndim != dims + 1 or image.shape[0] != cfg.in_channels:
        raise PackageError(
            f"the test image must have {cfg.in_channels} channel(s) and {dims} spatial axes "
            f"(channels first), got shape {image.shape}"
        )
    ids = _spatial_ids(dims)
    sizes = input_sizes(model)
    halo = model.halo if isinstance(model.halo, tuple) else (model.halo,) * dims
    geometry = axes_geometry(model.geometry)

    test_in = _test_input(model, image)
    low, high = model.normalization.low, model.normalization.high
    normalised = scale_range(test_in, low, high)
    test_out = _forward(model, normalised)

    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "test_input.npy", test_in)
        np.save(tmp / "test_output.npy", test_out)
        torch.save({k: v.detach().cpu().clone() for k, v in model.network.state_dict().items()}, tmp / "weights.pt")
        _cover(test_in, test_out, model, tmp / "cover.png")
        (tmp / "README.md").write_text(_documentation(model, documentation), encoding="utf-8")

        in_axes: list = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier(f"channel{c}") for c in range(cfg.in_channels)])]
        out_axes: list = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier(_identifier(n)) for n in cfg.names()])]
        for axis, (lo, step), g, h in zip(ids, sizes, geometry, halo):
            in_axes.append(spec.SpaceInputAxis(id=spec.AxisId(axis), size=spec.ParameterizedSize(min=lo, step=step)))
            ref = dict(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(axis))
            if g.padded and h > 0:
                out_axes.append(spec.SpaceOutputAxisWithHalo(id=spec.AxisId(axis), halo=h, size=spec.SizeReference(**ref)))
            else:
                out_axes.append(spec.SpaceOutputAxis(id=spec.AxisId(axis), size=spec.SizeReference(**ref, offset=-2 * g.valid_margin)))
        inputs = spec.InputTensorDescr(
            id=spec.TensorId("raw"),
            description="image, channels first; any intensity range (normalised by scale_range)",
            axes=in_axes,
            test_tensor=spec.FileDescr(source=tmp / "test_input.npy"),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[
                spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
                    axes=[spec.AxisId(a) for a in ids], min_percentile=low, max_percentile=high,
                    eps=SCALE_RANGE_EPS,
                )),
            ],
        )
        post = spec.SigmoidDescr() if cfg.activation == "sigmoid" else spec.SoftmaxDescr(
            kwargs=spec.SoftmaxKwargs(axis=spec.AxisId("channel")))
        outputs = spec.OutputTensorDescr(
            id=spec.TensorId("probabilities"),
            description=f"{', '.join(cfg.names())} ({cfg.activation})",
            axes=out_axes,
            test_tensor=spec.FileDescr(source=tmp / "test_output.npy"),
            data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            postprocessing=[post],
        )
        kwargs = {k: v for k, v in to_dict(cfg).items() if k != "encoder_weights"}
        weights = spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                architecture=spec.ArchitectureFromLibraryDescr(
                    import_from=KNOWN_ARCHITECTURE[0], callable=spec.Identifier(KNOWN_ARCHITECTURE[1]), kwargs=kwargs,
                ),
                pytorch_version=spec.Version(torch.__version__.split("+")[0]),
                comment=f"the network of napari-unet {__version__} (pip install napari-unet)",
            ),
        )
        if torchscript:
            comment = _torchscript(model, torch.from_numpy(normalised), tmp / "weights.torchscript.pt")
            weights = weights.model_copy(update={"torchscript": spec.TorchscriptWeightsDescr(
                source=tmp / "weights.torchscript.pt",
                pytorch_version=spec.Version(torch.__version__.split("+")[0]),
                parent="pytorch_state_dict",
                comment=comment,
            )})
        cite = [spec.CiteEntry(text=text, doi=spec.Doi(doi)) for text, doi in CITATIONS]
        if dims == 3:
            cite.append(spec.CiteEntry(text=CITATION_3D[0], doi=spec.Doi(CITATION_3D[1])))
        header = model.metadata()
        descr = _build(spec.ModelDescr,
            name=name or f"napari-unet {cfg.arch} {cfg.mode} {dims}D",
            description=description or (
                f"{cfg.arch} U-Net ({cfg.mode} segmentation, {dims}D) trained with napari-unet {__version__}; "
                "overlap-tile prediction with the declared halo"),
            authors=[spec.Author(name=a) for a in authors],
            cite=cite,
            license=spec.LicenseId(license),
            documentation=spec.FileDescr(source=tmp / "README.md"),
            covers=[spec.FileDescr(source=tmp / "cover.png")],
            inputs=[inputs],
            outputs=[outputs],
            weights=weights,
            tags=["napari-unet", "unet", f"{dims}d", cfg.mode, "pytorch"]
            + (["instance-segmentation"] if cfg.mode == "instance" else ["semantic-segmentation"]),
            config=spec.Config(napari_unet=header),
        )
        zipped = tmp / "package.zip"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_bioimageio_package(descr, output_path=zipped)
        atomic_write_bytes(out, zipped.read_bytes())
    return out


def export_job(model: UNetModel, out: str | Path, image: np.ndarray, **kwargs: Any):
    """:func:`export_package` as a generator, for a worker thread (one step, then the path)."""
    yield "writing the bioimage.io package"
    return export_package(model, out, image, **kwargs)


def _build(cls, **fields):
    """``cls(**fields)``; the spec's validation errors become one PackageError line."""
    from pydantic import ValidationError

    try:
        return cls(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "description"
        raise PackageError(f"the package description is invalid: {where}: {first['msg']}") from None


def _identifier(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)
    return cleaned if cleaned and cleaned[0].isalpha() else f"c_{cleaned}"


# --------------------------------------------------------------------------------------------
# import


def _describe(path: Path):
    """The package's model description, or a one-line PackageError."""
    from bioimageio.spec import InvalidDescr, load_description

    if not path.exists():
        raise PackageError(f"bioimage.io package {path} does not exist")
    if path.suffix.lower() == ".zip" and not zipfile.is_zipfile(path):
        raise PackageError(f"{path} is not a zip file, so not a bioimage.io package")
    raw = _peek(path)
    if raw.get("type") != "model":
        raise PackageError(f"{path} describes a bioimage.io {raw.get('type', 'resource of no type')}, not a model")
    version = str(raw.get("format_version", ""))
    if not version.startswith(SUPPORTED_VERSIONS):
        raise PackageError(f"{path}: format_version {version or '(none)'} is not supported: napari-unet reads "
                           f"model descriptions of format {' and '.join(v.rstrip('.') for v in SUPPORTED_VERSIONS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            descr = load_description(path, format_version="latest")
        except Exception as err:  # noqa: BLE001 - the spec library raises many kinds
            raise PackageError(f"{path}: cannot read this bioimage.io description ({type(err).__name__}: {_first_line(err)})") from None
    if isinstance(descr, InvalidDescr):
        raise PackageError(f"{path}: not a valid bioimage.io description: {_summary(descr)}")
    return descr


SUPPORTED_VERSIONS = ("0.4.", "0.5.")


def _peek(path: Path) -> dict:
    """The raw YAML of a package's description (type and version are checked before the spec
    library reads it, so that a dataset or a future format gets a plain answer)."""
    import yaml

    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if Path(n).name in RDF_NAMES or n.endswith(".bioimageio.yaml")), None)
                if name is None:
                    raise PackageError(f"{path} is a zip file without rdf.yaml or bioimageio.yaml: not a bioimage.io package")
                text = zf.read(name).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, zipfile.BadZipFile) as err:
        raise PackageError(f"{path}: cannot read the package's description ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(raw, dict):
        raise PackageError(f"{path}: the package's description is not a YAML mapping")
    return raw


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else ""


def _summary(descr) -> str:
    summary = descr.validation_summary
    for detail in summary.details:
        for e in detail.errors:
            loc = ".".join(map(str, e.loc))
            return f"{loc}: {e.msg}" if loc else e.msg
    return summary.status


def _is_ours(descr) -> bool:
    sd = descr.weights.pytorch_state_dict
    arch = getattr(sd, "architecture", None) if sd is not None else None
    return (
        arch is not None
        and getattr(arch, "import_from", None) == KNOWN_ARCHITECTURE[0]
        and str(arch.callable) == KNOWN_ARCHITECTURE[1]
        and isinstance(getattr(descr.config, "napari_unet", None), dict)
    )


def _code_in(descr) -> str:
    """What in the package is code that loading it would run."""
    w = descr.weights
    parts = []
    sd = w.pytorch_state_dict
    if sd is not None:
        arch = sd.architecture
        if hasattr(arch, "import_from"):
            parts.append(f"an architecture imported from the library {arch.import_from!r}")
        else:
            parts.append(f"an architecture from the file {Path(str(arch.source)).name} in the package")
    if w.torchscript is not None:
        parts.append("TorchScript weights (a TorchScript archive is a program)")
    others = [f for f in ("onnx", "keras_hdf5", "tensorflow_saved_model_bundle", "tensorflow_js") if getattr(w, f, None) is not None]
    if others:
        parts.append(f"{', '.join(others)} weights, which napari-unet cannot run")
    return "; ".join(parts) or "no weights napari-unet can run"


def import_package(path: str | Path, trust_code: bool = False) -> UNetModel:
    """A model from a bioimage.io package (``.zip`` or ``rdf.yaml``) of a 2D or 3D model.

    Packages exported by napari-unet load without running any of their code: the weights are
    read with ``torch.load(weights_only=True)`` into this module's :func:`network`, and the
    package's own napari-unet header gives back tiling and instance post-processing. Any other
    package needs ``trust_code=True`` (its TorchScript weights are loaded, with a warning).
    """
    path = Path(path)
    descr = _describe(path)
    if _is_ours(descr):
        return _import_ours(path, descr)
    if not trust_code:
        raise PackageError(
            f"{path} was not made by napari-unet: using it would run code from the package ({_code_in(descr)}). "
            "napari-unet runs no code from a package unless you allow it: pass --trust-code if you trust its authors"
        )
    return _import_foreign(path, descr)


def _import_ours(path: Path, descr) -> UNetModel:
    meta = dict(descr.config.napari_unet)
    kwargs = dict(descr.weights.pytorch_state_dict.architecture.kwargs)
    meta["model"] = kwargs  # the architecture the package declares is what gets built
    meta.setdefault("format", FORMAT)
    reader = descr.weights.pytorch_state_dict.get_reader()
    try:
        tensors = torch.load(io.BytesIO(reader.read()), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unpickler refusal or a damaged file
        raise PackageError(f"{path}: the pytorch_state_dict weights cannot be read safely ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise PackageError(f"{path}: the pytorch_state_dict weights are not a dictionary of tensors")
    try:
        return UNetModel.from_metadata(path, meta, tensors)
    except ModelFileError as err:
        raise PackageError(str(err)) from None


class ForeignNetwork(nn.Module):
    """A network from a package not made by napari-unet, behind the interface of ours: outputs
    whose softmax over channels is the package's probabilities, and a :class:`Geometry`."""

    foreign = True

    def __init__(self, net: nn.Module, geometry: Geometry, output: str) -> None:
        super().__init__()
        self.net = net
        self.geometry = geometry
        self.output = output  # "softmax": K logits; "sigmoid": one foreground logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        if self.output == "sigmoid":  # [1 - p, p] as log-probabilities: their softmax is [1 - p, p]
            return torch.cat([nn.functional.logsigmoid(-z), nn.functional.logsigmoid(z)], dim=1)
        return z


def _refuse(path: Path, what: str) -> PackageError:
    return PackageError(f"{path}: {what}; napari-unet can use bioimage.io models with one 2D input (batch, "
                        "channel, y, x), scale_range preprocessing and softmax or one-channel sigmoid outputs")


def _import_foreign(path: Path, descr) -> UNetModel:
    """A package from elsewhere, trusted by the caller: its network runs inside our overlap-tile
    predictor, with the package's percentiles, input sizes and halo."""
    from bioimageio.spec.model import v0_5 as spec

    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise _refuse(path, f"it has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs")
    inp, out = descr.inputs[0], descr.outputs[0]
    kinds = [a.type for a in inp.axes]
    if kinds != ["batch", "channel", "space", "space"] or [a.type for a in out.axes] != kinds:
        raise _refuse(path, f"its axes are {[str(a.id) for a in inp.axes]} -> {[str(a.id) for a in out.axes]}")
    spatial_in, spatial_out = inp.axes[2:], out.axes[2:]
    if not all(isinstance(a.size, spec.ParameterizedSize) for a in spatial_in):
        raise _refuse(path, "its input has a fixed size")
    step = max(a.size.step for a in spatial_in)
    low = max(a.size.min for a in spatial_in)
    margins, halos = set(), []
    for a in spatial_out:
        if not isinstance(a.size, spec.SizeReference):
            raise _refuse(path, "its output size does not follow its input")
        margins.add(-a.size.offset // 2)
        halos.append(getattr(a, "halo", 0))
    if len(margins) != 1 or min(margins) < 0:
        raise _refuse(path, "its output is not cropped alike on both spatial axes")
    margin = margins.pop()
    pre = [p for p in inp.preprocessing if p.id != "ensure_dtype"]
    if len(pre) != 1 or pre[0].id != "scale_range" or pre[0].kwargs.reference_tensor is not None:
        raise _refuse(path, f"its preprocessing is {[p.id for p in pre] or 'none'}")
    post = [p for p in out.postprocessing if p.id != "ensure_dtype"]
    channels = len(out.axes[1].channel_names)
    if [p.id for p in post] == ["softmax"]:
        output, classes = "softmax", channels
    elif [p.id for p in post] == ["sigmoid"] and channels == 1:
        output, classes = "sigmoid", 2
    else:
        raise _refuse(path, f"its postprocessing is {[p.id for p in post] or 'none'} on {channels} channel(s)")
    if margin == 0 and low % step:
        raise _refuse(path, f"its padded input sizes {low} + n*{step} do not start on the pooling grid")
    geometry = Geometry(step=step, valid_margin=margin, min_input=low)

    warnings.warn(f"{path}: running code from this package (--trust-code: {_code_in(descr)})", UserWarning, stacklevel=3)
    network = _foreign_network(path, descr)
    halo = max(halos) if margin == 0 else margin
    if margin == 0 and halo == 0:
        halo = 32
        warnings.warn(f"{path}: the package declares no halo; tiles get {halo} pixels of context, which may "
                      "not be enough (seams): pass --halo N with the network's receptive-field radius", UserWarning, stacklevel=3)
    names = tuple(_identifier(str(n)) for n in out.axes[1].channel_names)
    config = ModelConfig(arch="unet", in_channels=len(inp.axes[1].channel_names), classes=classes,
                         class_names=names if output == "softmax" else ("background", names[0]))
    kw = pre[0].kwargs
    model = UNetModel(
        config=config,
        network=ForeignNetwork(network, geometry, output).eval(),
        normalization=Normalization(low=float(kw.min_percentile), high=float(kw.max_percentile)),
        tile=256, halo=geometry.round_halo(halo),
        training={"bioimageio_package": str(path), "name": descr.name},
    )
    return model


def _foreign_network(path: Path, descr) -> nn.Module:
    w = descr.weights
    try:
        if w.pytorch_state_dict is not None:
            from bioimageio.core.backends.pytorch_backend import load_torch_model

            return load_torch_model(w.pytorch_state_dict, devices=["cpu"])
        if w.torchscript is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(io.BytesIO(w.torchscript.get_reader().read()), map_location="cpu")
    except Exception as err:  # noqa: BLE001 - the package's own code failed
        raise PackageError(f"{path}: the package's network could not be loaded ({type(err).__name__}: {_first_line(err)})") from None
    raise PackageError(f"{path}: the package has no pytorch_state_dict or torchscript weights ({_code_in(descr)})")
