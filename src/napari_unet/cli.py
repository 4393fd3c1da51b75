"""The ``napari-unet`` console script: the same core as the napari widgets, headless.

Every command returns 0 on success; on a problem it prints one line ``napari-unet: error: ...``
to stderr and returns a non-zero code, having written nothing partial.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .cli_train import add_commands

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem with what the user asked for; printed as one line."""


def _progress(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="tile", disable=quiet, file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------------------------
# init


def cmd_init(args: argparse.Namespace) -> int:
    from .config import ModelConfig
    from .modelfile import UNetModel

    config = ModelConfig(
        arch=args.arch,
        in_channels=args.in_channels,
        classes=3 if args.mode == "instance" else args.classes,
        mode=args.mode,
        depth=args.depth,
        base_width=args.base_width,
        batch_norm=args.batch_norm,
        encoder=args.encoder,
        z_pooling=args.z_pooling,
    )
    model = UNetModel.create(config, tile=None if args.tile is None else _int_arg("--tile", args.tile))
    out = model.save(args.out)
    print(
        f"wrote untrained {config.arch} model to {out} "
        f"(default tile {model.tile}, halo {model.halo})",
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------------------------------------
# predict


def _output_paths(inputs: list[Path], out_dir: Path, probabilities: bool) -> list[tuple[Path, Path, Path]]:
    seen: dict[Path, Path] = {}
    resolved_inputs = {p.resolve() for p in inputs}
    jobs = []
    for src in inputs:
        labels = out_dir / f"{src.stem}.tif"
        prob = out_dir / f"{src.stem}_prob.tif"
        for target in (labels, prob) if probabilities else (labels,):
            if target.resolve() in resolved_inputs:
                raise CliError(
                    f"output {target} would overwrite the input image {target}; choose another --out"
                )
            if target in seen:
                raise CliError(f"inputs {seen[target]} and {src} would both write {target}; rename one")
            seen[target] = src
        jobs.append((src, labels, prob))
    return jobs


def cmd_predict(args: argparse.Namespace) -> int:
    from .config import PredictConfig
    from .io import expand_inputs, open_image, read_pixel_size, tiff_memmap
    from .modelfile import load_model
    from .predict import image_planes, instance_postprocessing, labels_dtype, predict

    halo = None if args.halo in (None, "auto") else _int_arg("--halo", args.halo)
    tile = None if args.tile is None else _int_arg("--tile", args.tile)
    settings = PredictConfig(
        tile=tile, halo=halo, batch=args.batch, device=args.device, mixed_precision=not args.fp32,
        tta=args.tta, object_size=object_size_arg(args.object_size), link_z=args.link_z,
        **postprocessing_args(args),
    )
    model = load_model(args.model, trust_code=args.trust_code)
    instance_postprocessing(model, settings)  # instance settings for a semantic model: refused before any output
    if str(args.out).rstrip("/").lower().endswith(".zarr"):
        return _predict_zarr(args, model, settings)
    if args.workers or args.scheduler or args.level is not None:
        raise CliError("--workers, --scheduler and --level work with a zarr output: give --out NAME.zarr")
    from .io import is_zarr

    zarr_inputs = [p for p in args.inputs if is_zarr(p)]
    if zarr_inputs:
        raise CliError(f"{zarr_inputs[0]} is a zarr store: predict it into a zarr store, --out NAME.zarr")
    inputs = expand_inputs(args.inputs)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out {out_dir} is a file; give a folder")
    jobs = _output_paths(inputs, out_dir, args.probabilities)
    out_dir.mkdir(parents=True, exist_ok=True)
    for src, labels_path, prob_path in jobs:
        image = open_image(src)  # lazy: memory map, or chunk by chunk for compressed TIFFs
        planes = image_planes(image, args.axes, model.config.in_channels, model.dims)
        gen_kwargs = {}
        size = read_pixel_size(src)  # the input's calibration goes to the outputs
        with tiff_memmap(labels_path, planes.label_shape, labels_dtype(model), planes.label_axes, size) as labels_out:
            prob_ctx = (
                tiff_memmap(prob_path, (model.config.classes,) + planes.label_shape, "float32",
                            "C" + planes.label_axes, size)
                if args.probabilities
                else contextlib.nullcontext()
            )
            with prob_ctx as prob_out:
                if prob_out is not None:
                    gen_kwargs = {"probabilities": True, "probabilities_out": prob_out}
                gen = predict(
                    model, image, planes.axes, settings, labels_out=labels_out, **gen_kwargs
                )
                result = _drive(gen, f"{src.name}", args.quiet)
        for note in result.notes:
            print(f"{src.name}: {note}", file=sys.stderr)
        print(
            f"{src.name}: {planes.describe()}; {result.plan.describe()}; device {result.device}; "
            f"{result.seconds:.1f} s -> {labels_path}",
            file=sys.stderr,
        )
    return 0


def _predict_zarr(args: argparse.Namespace, model, settings) -> int:
    """One image (TIFF, zarr, OME-Zarr) into a zarr store, block by block (resumable)."""
    from .blockwise import BlockwiseError, predict_blockwise, start_client

    if len(args.inputs) != 1:
        raise CliError(f"a zarr output holds one image; got {len(args.inputs)} inputs")
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    block = _int_arg("--block", args.block) if args.block else None  # None: the default for 2D or 3D
    context = _int_arg("--context", args.context) if args.context else None
    client = None
    try:
        if args.workers or args.scheduler:
            client = start_client(args.workers, args.scheduler)
        gen = predict_blockwise(model, args.inputs[0], args.out, args.axes, settings, block=block, context=context,
                                level=args.level, client=client,
                                labels_name=args.labels_name, probabilities=args.probabilities)
        result = _drive(gen, Path(args.inputs[0]).name, args.quiet)
    except BlockwiseError as err:
        raise CliError(str(err)) from None
    finally:
        if client is not None:
            client.close()
            cluster = getattr(client, "cluster", None)
            if cluster is not None:
                cluster.close()
    for note in result.notes:
        print(f"{Path(args.inputs[0]).name}: {note}", file=sys.stderr)
    resumed = f", {result.skipped} found finished (resumed)" if result.skipped else ""
    objects = f", {result.objects} objects" if result.objects is not None else ""
    probs = f" and {result.store}/probabilities" if result.probabilities is not None else ""
    print(f"{Path(args.inputs[0]).name}: {result.blocks} blocks{resumed}{objects}; {result.seconds:.1f} s -> "
          f"{result.store}/labels{probs}", file=sys.stderr)
    return 0


def _drive(gen, desc: str, quiet: bool):
    """Run a progress generator with a progress bar (a new bar for each phase)."""
    bar, phase = None, None
    try:
        while True:
            try:
                step = next(gen)
            except StopIteration as stop:
                return stop.value
            if (step.total, step.message) != phase:
                if bar is not None:
                    bar.close()
                phase = (step.total, step.message)
                bar = _progress(step.total, f"{desc} {step.message}".strip(), quiet)
            bar.n = step.done
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()


def add_postprocessing_flags(p: argparse.ArgumentParser) -> None:
    """The instance post-processing flags of ``predict`` and ``evaluate``: each one left out
    keeps the model's own setting (PredictConfig has their meaning)."""
    g = p.add_argument_group("instance models: how probabilities become objects (default: the model's own "
                             "settings, tuned on its validation images; nuclei from another lab may want others)")
    g.add_argument("--seed-threshold", type=float, metavar="X",
                   help="0 < X < 1: height a seed must exceed (P(interior), or the scaled distance): higher = fewer, "
                        "surer objects")
    g.add_argument("--seed-dynamic", type=float, metavar="X",
                   help="0 <= X < 1: depth of the valley needed between two maxima to make two objects: higher = "
                        "fewer splits; 0 = one object per connected region above --seed-threshold")
    g.add_argument("--foreground-threshold", type=float, metavar="X",
                   help="0 < X < 1: probability of foreground an object grows into: higher = tighter outlines")
    g.add_argument("--min-size", type=int, metavar="PX", help="smallest object kept, in pixels (voxels for 3D models)")


def postprocessing_args(args: argparse.Namespace) -> dict:
    """PredictConfig keywords of the flags of :func:`add_postprocessing_flags`."""
    from .config import POSTPROCESSING_FIELDS

    return {name: getattr(args, name) for name in POSTPROCESSING_FIELDS}


def object_size_arg(value: str | None) -> float | str | None:
    """--object-size: a diameter in pixels, or 'auto'."""
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise CliError(f"--object-size must be a diameter in pixels or 'auto', got {value!r}") from None


def _int_arg(name: str, value: str) -> int | tuple[int, ...]:
    """An integer, or one per axis separated by commas (3D models: Z,Y,X)."""
    try:
        parts = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise CliError(f"{name} must be an integer or 'auto', got {value!r} (three as Z,Y,X for 3D models)") from None
    if len(parts) not in (1, 3):
        raise CliError(f"{name} takes one integer, or three (Z,Y,X) for 3D models; got {value!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


# ---------------------------------------------------------------------------------------------
# demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Segment the bundled nuclei image with the bundled model (or an untrained one)."""
    from .sample import SAMPLE_IMAGE, SAMPLE_MODEL

    out = Path(args.out)
    model = SAMPLE_MODEL
    if not model.exists():
        model = out / "untrained.safetensors"
        cmd_init(build_parser().parse_args(["init", "--mode", "instance", "--out", str(model)]))
    argv = ["predict", str(model), str(SAMPLE_IMAGE), "--out", str(out), "--probabilities"]
    rc = cmd_predict(build_parser().parse_args(argv + (["--quiet"] if args.quiet else [])))
    import numpy as np
    import tifffile

    labels = tifffile.imread(out / f"{SAMPLE_IMAGE.stem}.tif")
    print(
        f"found {len(np.unique(labels[labels > 0]))} nuclei in {SAMPLE_IMAGE.name}; labels: "
        f"{out / SAMPLE_IMAGE.name}, probabilities: {out / (SAMPLE_IMAGE.stem + '_prob.tif')}"
    )
    return rc


# ---------------------------------------------------------------------------------------------
# export


def cmd_export(args: argparse.Namespace) -> int:
    from .io import read_image
    from .modelfile import load_model
    from .predict import image_planes
    from .sample import SAMPLE_IMAGE
    from .zoo import export_package

    model = load_model(args.model)
    if args.image is None:
        if model.config.in_channels != 1 or model.dims != 2:
            raise CliError("give --image: a real image of this model's kind for the package's test tensors "
                           f"({model.config.in_channels} channel(s), {model.dims}D)")
        source = SAMPLE_IMAGE
        print(f"test tensors from the bundled sample image {source.name} (give --image to use one of yours)", file=sys.stderr)
    else:
        source = Path(args.image)
    planes = image_planes(read_image(source), args.axes, model.config.in_channels, model.dims)
    full = (slice(None),) * len(planes.spatial)
    image = planes.read(0, *full)
    extra = Path(args.documentation).read_text(encoding="utf-8") if args.documentation else ""
    out = export_package(
        model, args.bioimageio, image, authors=args.author, name=args.name, description=args.description,
        license=args.license, documentation=extra,
    )
    print(f"wrote bioimage.io package {out} (format 0.5: pytorch_state_dict and torchscript weights, "
          "test tensors, halo); check it with: bioimageio test " + str(out), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-unet",
        description="Train and apply U-Nets with the overlap-tile strategy (Ronneberger et al. 2015).",
    )
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write an untrained model file")
    p.add_argument("--arch", default="unet-paper",
                   help="unet (padded), unet-paper (valid convolutions, exact tiling), smp, or the 3D "
                        "unet3d-paper (Cicek et al. 2016, valid) and unet3d (padded) (default unet-paper)")
    p.add_argument("--z-pooling", type=int, default=None,
                   help="3D networks: levels (the deepest) that also pool along z (default: all)")
    p.add_argument("--encoder", default="resnet34", help="smp encoder name (default resnet34)")
    p.add_argument("--in-channels", type=int, default=1, help="image channels (default 1)")
    p.add_argument("--classes", type=int, default=2, help="output classes (default 2)")
    p.add_argument("--mode", default="semantic", choices=["semantic", "instance"])
    p.add_argument("--depth", type=int, default=4, help="unet-paper poolings (default 4)")
    p.add_argument("--base-width", type=int, default=64, help="unet-paper first-level channels (default 64)")
    p.add_argument("--batch-norm", action="store_true", help="unet-paper: batch normalisation")
    p.add_argument("--tile", default=None, help="default tile core stored in the model: N, or Z,Y,X for 3D "
                                                "(default 256; 64,128,128 for 3D)")
    p.add_argument("--out", required=True, help="model file to write")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("predict", help="predict labels for TIFF images with the overlap-tile strategy")
    p.add_argument("model", help="model file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF files or folders of TIFFs")
    p.add_argument("--out", required=True, help="output folder (labels as <name>.tif), or a zarr store NAME.zarr "
                                                "(one image, predicted block by block: any size, resumable)")
    p.add_argument("--tile", help="output core of a tile in pixels, or Z,Y,X for 3D models (default: the model's)")
    p.add_argument("--halo", help="context on each side of a tile, or 'auto' (default: the model's)")
    p.add_argument("--batch", type=int, help="tiles per forward pass (default: 1 on the CPU, 4 on a GPU)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--probabilities", action="store_true", help="also write <name>_prob.tif (float32, one channel per class; stacks as ZCYX); "
                        "with a zarr output, the store's 'probabilities' array (classes first)")
    p.add_argument("--axes", help="axes of the input, e.g. YX, ZYX, TYX, CYX, YXC (default: guessed)")
    p.add_argument("--fp32", action="store_true", help="GPU: no mixed precision (float32 throughout)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the probabilities of the 8 flips and rotations (8x slower)")
    p.add_argument("--link-z", type=float, metavar="IOU",
                   help="2D instance models on Z stacks: give objects of consecutive planes that overlap "
                        "by more than this IoU one id (e.g. 0.25)")
    p.add_argument("--object-size", metavar="PX|auto",
                   help="instance models: typical object diameter in this image (pixels), or 'auto' to estimate "
                        "it; the image is rescaled to the object size the model learned")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_postprocessing_flags(p)
    p.set_defaults(func=cmd_predict)

    p.add_argument("--block", help="zarr output: block size in pixels, or Z,Y,X (rounded to whole tiles; default 1024, "
                                   "64,256,256 for 3D models)")
    p.add_argument("--context", help="zarr output, instance models: pixels around a block used to separate its "
                                     "objects; objects smaller than this match the in-memory result (default 64; 32 for 3D models)")
    p.add_argument("--level", type=int, help="OME-Zarr input: resolution level to predict (default 0, full resolution)")
    p.add_argument("--labels-name", default="napari-unet",
                   help="OME-Zarr input: name of the NGFF labels written into its container (default napari-unet)")
    p.add_argument("--workers", type=int, help="zarr output: run blocks on a local dask cluster of N processes")
    p.add_argument("--scheduler", metavar="ADDRESS", help="zarr output: run blocks on the dask cluster at ADDRESS "
                                                          "(e.g. tcp://10.0.0.5:8786, started with dask-jobqueue)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow a bioimage.io package not made by napari-unet to run its code (TorchScript, "
                        "architecture files): only for packages whose authors you trust")

    p = sub.add_parser("export", help="write a model as a bioimage.io package (.zip), for Fiji, ilastik, QuPath, BiaPy")
    p.add_argument("model", help="model file (.safetensors) or package")
    p.add_argument("--bioimageio", required=True, metavar="OUT.zip", help="package to write")
    p.add_argument("--author", action="append", required=True, metavar="NAME",
                   help="author of the model (repeat for several)")
    p.add_argument("--image", help="a real image for the package's test input and output "
                                   "(default: the bundled nuclei image, for 1-channel 2D models)")
    p.add_argument("--axes", help="axes of --image, e.g. YX, CYX, ZYX (default: guessed)")
    p.add_argument("--name", help="model name (default: architecture, mode and dimensions)")
    p.add_argument("--description", help="one-sentence description")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id (default CC-BY-4.0)")
    p.add_argument("--documentation", metavar="FILE.md", help="Markdown appended to the package's documentation "
                                                               "(training data, intended use)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="segment the bundled nuclei image with the bundled model")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    add_commands(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from .axes import AxesError
    from .config import ConfigError
    from .devices import DeviceError
    from .evaluation import TuningError
    from .io import ImageFileError, OutputError
    from .modelfile import ModelFileError
    from .normalization import NonFiniteError

    from .targets import LabelsError
    from .training import TrainingError

    return (
        CliError, AxesError, ConfigError, DeviceError, ImageFileError, ModelFileError,
        NonFiniteError, LabelsError, TrainingError, OutputError, TuningError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _known_errors() as err:
        print(f"napari-unet: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("napari-unet: interrupted; no partial outputs were left", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
