"""``napari-unet train`` and ``napari-unet evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TRAIN_FLAGS = {
    # flag: (TrainConfig field, type, help)
    "--mode": ("mode", str, "instance (labels are object ids) or semantic (labels are classes)"),
    "--arch": ("arch", str, "unet (padded, fast), unet-paper (valid convolutions, exact tiling) or smp"),
    "--instance-targets": ("instance_targets", str, "instance mode: distance (foreground + boundary distance) or 3-class"),
    "--encoder": ("encoder", str, "smp encoder, e.g. resnet34, mobilenet_v2"),
    "--encoder-weights": ("encoder_weights", str, "smp: start the encoder from pretrained weights, e.g. imagenet "
                          "(fetched through the Hugging Face cache; see docs/cli.md for offline use)"),
    "--depth": ("depth", int, "unet/unet-paper poolings"),
    "--base-width": ("base_width", int, "unet/unet-paper first-level channels"),
    "--classes": ("classes", int, "semantic classes (default: from the labels)"),
    "--epochs": ("epochs", int, "maximum epochs"),
    "--steps": ("steps_per_epoch", int, "optimiser steps per epoch (default: automatic)"),
    "--patch": ("patch", int, "training patch (output pixels)"),
    "--dims": ("dims", int, "2: a 2D network, stacks plane by plane; 3: a 3D network on volumes (ZYX images; see --axes)"),
    "--patch-z": ("patch_z", int, "3D: training patch depth in planes"),
    "--z-pooling": ("z_pooling", int, "3D: levels (the deepest) that also pool along z (default: all)"),
    "--batch": ("batch", int, "patches per step"),
    "--lr": ("lr", float, "learning rate"),
    "--weight-average": ("weight_average", float, "decay of the moving average of the weights that is validated and kept (0 = off)"),
    "--optimizer": ("optimizer", str, "adam or sgd (momentum 0.99)"),
    "--val-fraction": ("val_fraction", float, "fraction of images held out for validation"),
    "--val-images": ("val_images", int, "validation images scored at each validation (a fixed subset)"),
    "--val-crop": ("val_crop", int, "larger validation planes are scored on their densest crop of this size (0 = whole)"),
    "--val-budget": ("val_budget", float, "largest share of the time spent validating"),
    "--folds": ("folds", int, "K-fold cross-validation with K folds"),
    "--patience": ("patience", int, "early stopping after this many epochs without improvement"),
    "--time-limit": ("time_limit", float, "minutes for the whole run, final tuning included; the best model is kept"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:N or mps"),
    "--seed": ("seed", int, "random seed"),
    "--boundary-width": ("boundary_width", int, "instance mode: boundary class width in pixels"),
    "--min-size": ("min_size", int, "instance mode: smallest object kept during validation (pixels)"),
    "--zoom": ("zoom", float, "augmentation: random zoom in [1/(1+z), 1+z]"),
    "--noise": ("noise", float, "augmentation: Gaussian noise of standard deviation up to this"),
    "--intensity": ("intensity", float, "augmentation: random intensity scale and shift"),
    "--invert": ("invert", float, "augmentation: probability of inverting the intensities (brightfield-like)"),
    "--blur": ("blur", float, "augmentation: Gaussian blur of standard deviation up to this (pixels)"),
    "--gamma": ("gamma", float, "augmentation: gamma correction in [1/(1+g), 1+g]"),
    "--polarity": ("polarity", str, "auto: invert images with a bright background (brightfield, EM) so that the "
                   "network sees a dark background in every image; as-is: never"),
    "--tile": ("tile", int, "largest tile core of validation and the model's default"),
    "--rescale-objects": ("rescale_objects", float, "instance mode, 2D: train on every image resized so that its "
                          "objects are this many pixels across; prediction then estimates each image's object size"),
    "--sample-by": ("sample_by", str, "how often each training image gives a patch: area (its pixels), objects "
                    "(instance mode: its number of objects) or both (their geometric mean)"),
}
TRAIN_SWITCHES = {
    "--unlabelled-zero": ("unlabelled_zero", "semantic: 0 = not annotated (scribbles), ignored"),
    "--freeze-encoder": ("freeze_encoder", "fine-tuning: keep the encoder fixed"),
    "--compile": ("compile", "run the training steps through torch.compile (measured: no gain on a 2-core CPU)"),
}


def _defaults() -> dict:
    """TrainConfig's defaults, shown in the help (the napari widget starts from the same)."""
    import dataclasses

    from .training import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


AUTOMATIC = {"base_width": "8 for the padded 2D unet on a CPU that trains in float32 (no native bfloat16), "
                            "else 16: chosen by measurement, see docs/benchmarks.md",
             "tile": "512; 3D models: 128 in y and x"}


def _shown(value, name: str = "") -> str:
    if value is None:
        return AUTOMATIC.get(name, "none (automatic)")
    return str(value)


def add_commands(sub) -> None:
    defaults = _defaults()
    p = sub.add_parser("train", help="train or fine-tune a U-Net on folders of TIFFs")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--labels", required=True, help="folder of labels with the same file names")
    p.add_argument("--out", required=True, help="model file to write (the best model is kept)")
    for flag, (name, typ, help_) in TRAIN_FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=f"{help_} (default: {_shown(defaults[name], name)})")
    for flag, (name, help_) in TRAIN_SWITCHES.items():
        p.add_argument(flag, action="store_true", default=None, help=f"{help_} (default: {'on' if defaults[name] else 'off'})")
    p.add_argument("--fp32", action="store_true", default=None,
                   help="train in float32 (default: bfloat16 mixed precision where the GPU or CPU computes it natively)")
    p.add_argument("--axes", help="axes of every image, e.g. YX, ZYX, TZYX, CYX (default: guessed per image)")
    p.add_argument("--init", help="model file or bioimage.io package (.zip) to fine-tune from")
    p.add_argument("--trust-code", action="store_true", help="allow a --init package not made by napari-unet to run its code")
    p.add_argument("--config", help="JSON settings (e.g. saved by the napari Train widget); flags override it")
    p.add_argument("--report", help="folder for curves, examples and metrics (PNG + JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="predict labelled images and print metrics as JSON")
    p.add_argument("model", help="model file or bioimage.io package (.zip)")
    p.add_argument("--trust-code", action="store_true", help="allow a package not made by napari-unet to run its code")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--labels", required=True, help="folder of labels with the same file names")
    p.add_argument("--report", help="folder for example images and metrics (PNG + JSON)")
    p.add_argument("--tile", help="tile core, or Z,Y,X for 3D models (default: the model's)")
    p.add_argument("--link-z", type=float, metavar="IOU", help="2D instance models on Z stacks: link objects through z")
    p.add_argument("--batch", type=int, help="tiles per forward pass (default: 1 on the CPU, 4 on a GPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average the 8 flips/rotations (8x slower)")
    p.add_argument("--object-size", metavar="PX|auto", help="instance models: object diameter in these images, or 'auto'")
    p.add_argument("--unlabelled-zero", action="store_true", help="semantic: 0 in the labels = not annotated")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .cli import add_postprocessing_flags

    add_postprocessing_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune", help="choose an instance model's seed and size settings on your own labelled images "
                                    "(the network is not changed)")
    p.add_argument("model", help="model file or bioimage.io package (.zip)")
    p.add_argument("--trust-code", action="store_true", help="allow a package not made by napari-unet to run its code")
    p.add_argument("--images", required=True, help="folder of images like the ones you will predict")
    p.add_argument("--labels", required=True, help="folder of their instance labels (same file names; 30 objects or more)")
    p.add_argument("--out", help="write a copy of the model that uses the tuned settings by default (.safetensors)")
    p.add_argument("--tile", help="tile core, or Z,Y,X for 3D models (default: the model's)")
    p.add_argument("--batch", type=int, help="tiles per forward pass (default: 1 on the CPU, 4 on a GPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--tta", action="store_true", help="test-time augmentation, as you will predict (8x slower)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tune)


def train_config_from_args(args: argparse.Namespace):
    from .config import read_json
    from .training import TrainConfig

    values = read_json(args.config) if args.config else {}
    values = dict(values)
    for flag, (name, _, _) in TRAIN_FLAGS.items():
        v = getattr(args, flag[2:].replace("-", "_"))
        if v is not None:
            values[name] = v
    for flag, (name, _) in TRAIN_SWITCHES.items():
        if getattr(args, flag[2:].replace("-", "_")):
            values[name] = True
    if getattr(args, "fp32", None):
        values["mixed_precision"] = False
    return TrainConfig.from_json(values)


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data import pairs_from_folders
    from .modelfile import load_model
    from .training import Trainer

    config = train_config_from_args(args)
    if args.init and Path(args.init).resolve() == Path(args.out).resolve():
        from .training import TrainingError

        raise TrainingError(
            f"--out {args.out} is the --init model: fine-tuning never overwrites its starting "
            "model (a fine-tune that makes things worse would destroy it); give another --out"
        )
    from .io import check_writable

    check_writable(args.out)  # before any work, not at the first save
    pairs = pairs_from_folders(args.images, args.labels)
    if args.axes:
        for pair in pairs:
            pair.axes = args.axes
    init = load_model(args.init, trust_code=args.trust_code) if args.init else None
    trainer = Trainer(pairs, config, out=args.out, init=init, init_path=args.init)
    print(trainer.describe(), file=sys.stderr)
    bar = None
    gen = trainer.run()
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if p.kind == "step":
                if bar is None or bar.total != p.steps:
                    bar = tqdm(total=p.steps, file=sys.stderr, disable=args.quiet, leave=False)
                bar.set_description(f"{'fold %d/%d ' % (p.fold, p.folds) if p.folds else ''}epoch {p.epoch}/{p.epochs}")
                bar.n = p.step
                bar.set_postfix(loss=f"{p.loss:.4f}")
                bar.refresh()
            elif p.kind == "epoch":
                if bar is not None:
                    bar.close()
                    bar = None
                fold = f"fold {p.fold}/{p.folds} " if p.folds else ""
                if p.epoch == 0:  # fine-tuning: the starting model, scored before any step
                    print(f"{fold}starting model: val loss {p.val_loss:.4f}, {p.metric_name} {p.val_metric:.4f} "
                          f"(kept unless an epoch beats it), {p.elapsed:.0f} s", file=sys.stderr)
                    continue
                print(
                    f"{fold}epoch {p.epoch}/{p.epochs}: loss {p.loss:.4f}, val loss {p.val_loss:.4f}, "
                    f"{p.metric_name} {p.val_metric:.4f} (best {p.best_metric:.4f} {_at_epoch(p.best_epoch)}), "
                    f"{p.elapsed:.0f} s",
                    file=sys.stderr,
                )
            elif p.message and p.step == 0 and p.kind != "validating":
                print(p.message, file=sys.stderr)  # once per phase, not per validation image
    except KeyboardInterrupt:
        gen.close()
        if trainer.saved:
            print(f"interrupted: the best model so far is in {args.out}", file=sys.stderr)
        else:
            print(f"interrupted before any model of this run was saved: nothing written to {args.out}"
                  + (f" ({args.init} is unchanged)" if args.init else ""), file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    saved = f"model saved to {args.out}" if trainer.saved else f"nothing written to {args.out}"
    print(f"{result.stopped}; best: {_at_epoch(result.run_best_epoch)}; {saved}", file=sys.stderr)
    summary = {"stopped": result.stopped, "best_epoch": result.best_epoch, "validation": result.metrics}
    if result.folds:
        summary["folds"] = result.folds
    if args.report:
        from . import report

        folder = Path(args.report)
        report.write_curves(result.history, folder / "curves.png")
        report.write_json(summary, folder / "metrics.json")
        _write_examples(result.model, trainer.samples[:3], folder / "examples.png")
    print(json.dumps(_clean(summary)))
    return 0


def _at_epoch(epoch: int | None) -> str:
    """'at epoch N' in this run's count; epoch 0 is the starting model of a fine-tuning run."""
    return "the starting model" if epoch == 0 else f"at epoch {epoch}"


def _write_examples(model, samples, path) -> None:
    import numpy as np

    from . import report
    from .devices import resolve_device
    from .evaluation import predict_normalized
    from .instances import PostProcessing

    device = resolve_device("auto")
    examples = []
    for s in samples:
        probs = predict_normalized(model, s.image, device)
        if model.config.mode == "instance":
            pred = PostProcessing.from_json(model.postprocessing, model.config.classes).apply(probs)
        else:
            pred = probs.argmax(0)
        truth = s.labels if model.config.mode == "instance" else np.clip(s.targets, 0, None)
        examples.append((s.name, s.image[0], truth, pred))
    report.write_examples(examples, path)


def _clean(obj):
    """JSON-safe: NaN -> None, numpy scalars -> Python numbers, private keys dropped."""
    import math

    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) or hasattr(obj, "item"):
        v = float(obj) if not isinstance(obj, int) else obj
        return None if isinstance(v, float) and math.isnan(v) else v
    return obj


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data import pairs_from_folders
    from .modelfile import load_model
    from .predict import instance_postprocessing, predict, run
    from .evaluation import evaluate_pairs

    model = load_model(args.model, trust_code=args.trust_code)
    pairs = pairs_from_folders(args.images, args.labels)
    from .cli import object_size_arg, postprocessing_args

    settings = _labelled_predict_config(args, object_size=object_size_arg(args.object_size), link_z=args.link_z,
                                        **postprocessing_args(args))

    instance_postprocessing(model, settings)  # instance settings for a semantic model: refused before any work

    def predict_fn(image, axes):
        return run(predict(model, image, axes, settings)).labels

    gen = evaluate_pairs(model, pairs, predict_fn, unlabelled_zero=args.unlabelled_zero)
    bar = tqdm(total=len(pairs), file=sys.stderr, disable=args.quiet, leave=False, unit="image")
    try:
        while True:
            try:
                name, done, _ = next(gen)
            except StopIteration as stop:
                summary, per_image = stop.value
                break
            bar.n = done
            bar.set_description(name)
            bar.refresh()
    finally:
        bar.close()
    summary = _clean(summary)
    summary["images"] = len(pairs)
    summary["mode"] = model.config.mode
    if model.config.mode == "instance":  # the settings these figures hold for, the model's or the flags'
        summary["postprocessing"] = instance_postprocessing(model, settings).to_json()
    if args.report:
        from . import report

        folder = Path(args.report)
        report.write_json({"summary": summary, "per_image": {n: _clean(m) for n, m, _ in per_image}}, folder / "metrics.json")
        report.write_examples([(n, p.image, p.labels, pred) for p, (n, _, pred) in zip(pairs[:3], per_image[:3])], folder / "examples.png")
        if model.history:
            report.write_curves(model.history, folder / "curves.png")
    print(json.dumps(summary))
    return 0


def _labelled_predict_config(args: argparse.Namespace, **extra):
    """The PredictConfig of ``evaluate`` and ``tune``: their --tile, --batch, --device, --tta."""
    from .cli import _int_arg
    from .config import PredictConfig

    return PredictConfig(tile=None if args.tile is None else _int_arg("--tile", args.tile), batch=args.batch,
                         device=args.device, tta=args.tta, **extra)


def cmd_tune(args: argparse.Namespace) -> int:
    from .cli import CliError, _drive
    from .data import pairs_from_folders
    from .evaluation import tune_on_pairs
    from .modelfile import load_model

    model_path = Path(args.model)
    if args.out and Path(args.out).resolve() == model_path.resolve():
        raise CliError(f"--out {args.out} is the model itself; write the tuned copy to another file")
    model = load_model(model_path, trust_code=args.trust_code)
    if args.out and getattr(model.network, "foreign", False):
        raise CliError(f"--out: this package was not made by napari-unet and cannot be written as a model file; "
                       f"leave out --out and predict with the flags that tune prints")
    pairs = pairs_from_folders(args.images, args.labels)
    tuned = _drive(tune_on_pairs(model, pairs, _labelled_predict_config(args)), "", args.quiet)
    out = tuned.to_json()
    if args.out:
        model.postprocessing = {**tuned.postprocessing.to_json(), "tuned_ap@0.5": tuned.ap,
                                "tuned_on": {"images": str(Path(args.images).resolve()), "count": tuned.images,
                                             "objects": tuned.objects}}
        out["model"] = str(model.save(args.out))
    print(json.dumps(_clean(out)))
    print(f"AP@0.5 on these {tuned.images} image(s), {tuned.objects} objects: the model's settings "
          f"{tuned.own_ap:.3f}, tuned {tuned.ap:.3f} (chosen on them: score other images to know). "
          + (f"Predict with {out['model']}, or" if args.out else "Predict") + f" with {tuned.flags()}", file=sys.stderr)
    return 0
