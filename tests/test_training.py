import json
import shutil

import numpy as np
import pytest
import tifffile
import torch

from napari_unet._generators import run
from napari_unet.cli import main
from napari_unet.data import Pair, kfold, prepare, split_holdout
from napari_unet.config import ConfigError, ModelConfig, Normalization
from napari_unet.modelfile import UNetModel
from napari_unet.models import encoder_parameters
from napari_unet.training import TrainConfig, Trainer, TrainingError

TINY = dict(depth=2, base_width=8, patch=48, batch=4, steps_per_epoch=6, tile=64, lr=3e-3)


def nuclei_pairs(data_dir):
    return [
        Pair(n, tifffile.imread(data_dir / f"dsb_{n}.tif"), tifffile.imread(data_dir / f"dsb_{n}_labels.tif"))
        for n in ("243443ae303c", "0c6507d493bf")
    ]


def drive(gen):
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            return records, stop.value


def test_real_training_improves_validation_loss(data_dir, tmp_path):
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=5, **TINY), out=tmp_path / "m.safetensors")
    records, result = drive(trainer.run())
    epochs = [r for r in records if r.kind == "epoch"]
    assert len(epochs) == 5
    assert min(r.val_loss for r in epochs[1:]) < epochs[0].val_loss
    assert epochs[-1].loss < epochs[0].loss
    saved = UNetModel.load(tmp_path / "m.safetensors")
    assert saved.config.mode == "instance" and saved.training["best_epoch"] == result.best_epoch
    assert len(saved.history) >= result.best_epoch and "ap@0.5" in saved.history[0]
    assert [h["steps"] for h in saved.history] == [6, 12, 18, 24, 30]  # optimiser steps so far
    # post-processing was tuned on the validation images and travels with the model
    assert {"interior_threshold", "foreground_threshold", "min_size"} <= set(saved.postprocessing)
    assert records[-1].kind == "tuning"


def test_training_is_deterministic_with_a_seed(data_dir):
    def losses():
        t = Trainer(nuclei_pairs(data_dir)[:1], TrainConfig(mode="instance", epochs=1, device="cpu", **TINY))
        return [r.loss for r in drive(t.run())[0] if r.kind == "step"]

    assert losses() == losses()


def test_cancel_keeps_best_model(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=10, **TINY), out=out)
    gen = trainer.run()
    for rec in gen:
        if rec.kind == "step" and rec.epoch == 3:
            break
    gen.close()  # what Cancel does
    saved = UNetModel.load(out)
    best = saved.training["best_epoch"]
    assert best in (1, 2)
    x = torch.randn(1, 1, 60, 60)
    with torch.no_grad():
        np.testing.assert_allclose(trainer.model.network.eval()(x), saved.network(x), atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_single_image_holds_out_a_region(data_dir):
    pairs = nuclei_pairs(data_dir)[:1]
    samples = prepare(pairs, "instance", 3, 1, Normalization())
    train, val = split_holdout(samples, 0.25, np.random.default_rng(0))
    assert train[0].shape[1] == val[0].shape[1] == 256  # cut across the longer axis
    assert train[0].shape[0] + val[0].shape[0] == 256
    objects = (samples[0].labels > 0).sum()
    held = (val[0].labels > 0).sum()
    assert 0.15 < held / objects <= 0.3  # about a quarter of the labelled pixels, not of the rows


def test_validation_region_follows_the_labels():
    """Scribbles painted only in the top half: the validation strip must still hold some."""
    image = np.random.default_rng(0).random((200, 100)).astype(np.float32)
    labels = np.zeros((200, 100), np.uint8)
    labels[10:30, 10:40] = 1
    labels[60:80, 50:90] = 2
    samples = prepare([Pair("s", image, labels)], "semantic", 2, 1, Normalization(), unlabelled_zero=True)
    train, val = split_holdout(samples, 0.2, np.random.default_rng(0))
    assert (val[0].targets >= 0).any() and (train[0].targets >= 0).any()
    assert set(np.unique(val[0].targets[val[0].targets >= 0])) == {1}


def test_validation_refused_when_it_would_hold_no_labels():
    image = np.zeros((64, 64), np.float32)
    labels = np.zeros((64, 64), np.uint16)
    labels[30, 30] = 1  # one single labelled row
    samples = prepare([Pair("s", image, labels)], "instance", 3, 1, Normalization())
    with pytest.raises(ValueError, match="too concentrated"):
        split_holdout(samples, 0.2, np.random.default_rng(0))


def test_planes_of_one_stack_are_not_split_on_both_sides(membranes):
    img, lab = membranes
    stacks = [Pair(f"stack{k}", np.stack([img[:64, :64]] * 3), np.stack([lab[:64, :64]] * 3), axes="ZYX")
              for k in range(4)]
    samples = prepare(stacks, "semantic", 2, 1, Normalization())
    train, val = split_holdout(samples, 0.25, np.random.default_rng(0))
    assert {s.source for s in train}.isdisjoint({s.source for s in val})
    assert len(val) == 3  # one whole stack


def test_kfold_bookkeeping(data_dir):
    pairs = [Pair(f"p{i}", np.random.default_rng(i).random((32, 32)), np.eye(32, dtype=np.uint8) + 0) for i in range(5)]
    samples = prepare(pairs, "semantic", 2, 1, Normalization())
    splits = kfold(samples, 3, np.random.default_rng(0))
    assert len(splits) == 3
    validated = sorted(s.name for _, val in splits for s in val)
    assert validated == [f"p{i}" for i in range(5)]
    for train, val in splits:
        assert not {s.name for s in train} & {s.name for s in val}
        assert len(train) + len(val) == 5
    with pytest.raises(ValueError, match="at least 6 images"):
        kfold(samples, 6, np.random.default_rng(0))


def test_kfold_training_reports_mean_and_std(membranes, tmp_path):
    img, lab = membranes
    pairs = [Pair(f"q{i}", img[i * 64 : (i + 1) * 64], lab[i * 64 : (i + 1) * 64]) for i in range(3)]
    cfg = TrainConfig(mode="semantic", epochs=1, folds=3, **TINY)
    records, result = drive(Trainer(pairs, cfg, out=tmp_path / "k.safetensors").run())
    assert len(result.folds) == 3
    assert set(result.metrics["score"]) == {"mean", "std", "folds"}
    assert len(result.metrics["score"]["folds"]) == 3
    assert "per_class/class 1/f1" in result.metrics  # nested per-class metrics are summarised too
    assert UNetModel.load(tmp_path / "k.safetensors").training["cross_validation"]["score"]["mean"] == pytest.approx(
        result.metrics["score"]["mean"])


def test_fine_tuning_with_new_classes_and_frozen_encoder(membranes, tmp_path):
    torch.manual_seed(0)
    start = UNetModel.create(ModelConfig(depth=2, base_width=8, classes=2))
    img, lab = membranes
    lab3 = lab.copy()
    lab3[:20, :20] = 2
    before = [p.detach().clone() for p in encoder_parameters(start.network)]
    cfg = TrainConfig(mode="semantic", epochs=1, freeze_encoder=True, **TINY)
    trainer = Trainer([Pair("m", img, lab3)], cfg, init=start)
    drive(trainer.run())
    assert trainer.model.config.classes == 3 and trainer.model.network.head.out_channels == 3
    after = list(encoder_parameters(trainer.model.network))
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert start.network.head.out_channels == 2  # the starting model is untouched


@pytest.mark.parametrize(
    "labels,match",
    [
        (lambda lab: lab[:-1], "shape"),
        (lambda lab: np.zeros_like(lab), "all zero"),
        (lambda lab: lab.astype(np.float32) + 0.5, "fractional"),
        (lambda lab: lab.astype(np.int32) - 1, "negative"),
    ],
)
def test_bad_training_labels(membranes, labels, match):
    img, lab = membranes
    with pytest.raises((TrainingError, ValueError), match=match):
        Trainer([Pair("x", img, labels(lab))], TrainConfig(mode="semantic", **TINY))


def test_class_named_but_absent(membranes):
    img, lab = membranes
    cfg = TrainConfig(mode="semantic", classes=3, class_names=("bg", "membrane", "mito"), **TINY)
    with pytest.raises(TrainingError, match="mito.*never occur"):
        Trainer([Pair("x", img, lab)], cfg)


def test_fine_tuning_incompatible_channels(membranes):
    start = UNetModel.create(ModelConfig(depth=2, base_width=4, in_channels=3))
    img, lab = membranes
    with pytest.raises(ValueError, match="channel"):
        Trainer([Pair("x", img, lab)], TrainConfig(mode="semantic", **TINY), init=start)


def test_image_smaller_than_patch_is_mirrored(membranes):
    img, lab = membranes
    trainer = Trainer([Pair("s", img[:30, :30], lab[:30, :30]), Pair("t", img[30:60, :30], lab[30:60, :30])],
                      TrainConfig(mode="semantic", epochs=1, **TINY))
    records, result = drive(trainer.run())
    assert np.isfinite(records[-1].loss)


def test_time_limit_stops_training(data_dir):
    cfg = TrainConfig(mode="instance", epochs=50, time_limit=1e-6, **TINY)
    _, result = drive(Trainer(nuclei_pairs(data_dir), cfg).run())
    assert "time limit" in result.stopped and len(result.history) == 1


# --- command line ------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path, data_dir):
    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
    for n in ("243443ae303c", "0c6507d493bf"):
        shutil.copy(data_dir / f"dsb_{n}.tif", tmp_path / "images" / f"{n}.tif")
        shutil.copy(data_dir / f"dsb_{n}_labels.tif", tmp_path / "labels" / f"{n}.tif")
    return tmp_path


def test_cli_train_evaluate_predict(folders, capsys):
    cfg = folders / "config.json"
    cfg.write_text(json.dumps({"mode": "instance", "depth": 2, "base_width": 8, "patch": 48, "batch": 4,
                               "steps_per_epoch": 4, "tile": 64, "epochs": 2}))
    model = folders / "m.safetensors"
    rc = main(["train", "--images", str(folders / "images"), "--labels", str(folders / "labels"),
               "--out", str(model), "--config", str(cfg), "--epochs", "3", "--report", str(folders / "rep"), "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "ap@0.5" in out["validation"]
    saved = UNetModel.load(model)
    assert saved.training["config"]["epochs"] == 3  # the flag overrides the config file
    assert len(saved.history) <= 3
    assert {p.name for p in (folders / "rep").iterdir()} >= {"curves.png", "examples.png", "metrics.json"}

    rc = main(["evaluate", str(model), "--images", str(folders / "images"), "--labels", str(folders / "labels"),
               "--device", "cpu", "--quiet", "--report", str(folders / "ev")])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["ap@0.5"] <= 1 and metrics["images"] == 2 and "ap@0.9" in metrics

    rc = main(["predict", str(model), str(folders / "images"), "--out", str(folders / "pred"), "--quiet"])
    assert rc == 0
    labels = tifffile.imread(folders / "pred" / "243443ae303c.tif")
    assert labels.dtype == np.int32 and labels.shape == (256, 256)


def test_cli_semantic_evaluate_reports_f1_and_rand_error(tmp_path, data_dir, capsys):
    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
    shutil.copy(data_dir / "isbi_00.tif", tmp_path / "images" / "00.tif")
    shutil.copy(data_dir / "isbi_00_labels.tif", tmp_path / "labels" / "00.tif")
    model = tmp_path / "m.safetensors"
    assert main(["init", "--depth", "2", "--base-width", "4", "--out", str(model)]) == 0
    assert main(["evaluate", str(model), "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"), "--quiet"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert set(m["f1"]) == {"background", "class 1"} and "adapted_rand_error" in m


def test_cli_train_errors(folders, capsys):
    (folders / "labels" / "0c6507d493bf.tif").unlink()
    rc = main(["train", "--images", str(folders / "images"), "--labels", str(folders / "labels"), "--out", str(folders / "m")])
    assert rc == 1 and "have no labels" in capsys.readouterr().err
    rc = main(["train", "--images", str(folders / "images"), "--labels", str(folders / "labels"), "--out", str(folders / "m"),
               "--optimizer", "lbfgs"])
    assert rc == 1 and "adam, sgd" in capsys.readouterr().err
    rc = main(["train", "--images", str(folders / "images"), "--labels", str(folders / "labels"), "--out", str(folders / "m"),
               "--polarity", "inverted"])
    assert rc == 1 and "unknown polarity 'inverted'; choose one of: as-is, auto" in capsys.readouterr().err
    assert not (folders / "m").exists()


def test_polarity_is_opt_in():
    assert TrainConfig().normalization.polarity == "as-is"  # the A/B did not clear its bar (docs/benchmarks.md)
    assert TrainConfig(mode="semantic", polarity="auto").normalization.polarity == "auto"
    with pytest.raises(ConfigError, match="unknown polarity"):
        TrainConfig(polarity="bright")


def test_auto_polarity_travels_with_the_model(data_dir, tmp_path):
    """A model trained with ``polarity="auto"`` stores it; files written before it existed
    load as ``as-is`` (their networks never saw an inverted image)."""
    from napari_unet.sample import SAMPLE_MODEL

    out = tmp_path / "m.safetensors"
    drive(Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=1, polarity="auto", **TINY), out=out).run())
    assert UNetModel.load(out).normalization.polarity == "auto"
    assert UNetModel.load(SAMPLE_MODEL).normalization.polarity == "as-is"


# -- time limit, fine-tuning, cancel, frozen encoder: the run's promises ---------------------


def test_time_limit_covers_the_whole_run_including_tuning(data_dir, monkeypatch):
    """A fake clock that advances 1 s per reading: training must stop early enough that the
    final validation and the tuning end within the limit."""
    from napari_unet import training

    now = [0.0]

    def fake_clock():
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(training, "clock", fake_clock)
    cfg = TrainConfig(mode="instance", epochs=100, time_limit=1.0, **{**TINY, "steps_per_epoch": 50})
    trainer = Trainer(nuclei_pairs(data_dir), cfg)
    records, result = drive(trainer.run())
    assert "time limit" in result.stopped
    assert records[-1].kind == "tuning"
    assert now[0] <= 60  # the whole run, tuning included, within the minute
    assert trainer.model.postprocessing  # tuned, not skipped


def test_tuning_at_the_end_of_training_prefers_fewer_seeds_on_near_ties(data_dir, tmp_path, monkeypatch):
    """The settings stored in the model are the fewest-seeds choice among the near-ties
    (``instances.NEAR_TIE``), not the first best (docs/benchmarks.md, round 15)."""
    from napari_unet import instances

    calls = []
    real = instances.fewest_seeds
    monkeypatch.setattr(instances, "fewest_seeds", lambda scored, tol: calls.append((scored, tol)) or real(scored, tol))
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=1, **TINY), out=tmp_path / "m.safetensors")
    drive(trainer.run())
    assert len(calls) == 1 and calls[0][1] == instances.NEAR_TIE > 0
    chosen, ap = real(*calls[0])
    saved = UNetModel.load(tmp_path / "m.safetensors").postprocessing
    assert {k: saved[k] for k in chosen.to_json()} == chosen.to_json() and saved["validation_ap@0.5"] == ap


def test_validation_budget_of_a_time_limited_run_leaves_room_for_the_tuning(data_dir, monkeypatch):
    """With a time limit, the steps between validations grow so that validating and the
    tuning at the end stay within --val-budget: the more the tuning costs, the longer the
    epochs between validations (fake clock, 1 s per reading)."""
    from napari_unet import training

    def validations(tuning_share):
        now = [0.0]

        def fake_clock():
            now[0] += 1.0
            return now[0]

        monkeypatch.setattr(training, "clock", fake_clock)
        monkeypatch.setattr(training._Fit, "_tuning_seconds", lambda self: tuning_share * 600)
        cfg = TrainConfig(mode="instance", epochs=100, time_limit=10.0, val_budget=0.02,
                          **{**TINY, "steps_per_epoch": 0})
        _, result = drive(Trainer(nuclei_pairs(data_dir), cfg).run())
        seconds = [r["seconds"] for r in result.history]
        assert len(seconds) >= 3
        return np.diff(seconds[1:]).mean()  # time between validations, after the first epoch

    free, costly = validations(0.0), validations(0.015)
    assert costly > 1.5 * free  # the share left for validating halves (0.02 -> 0.01): epochs twice as long


def test_fine_tuning_keeps_the_starting_model_unless_beaten(data_dir, tmp_path, monkeypatch):
    from napari_unet import training

    pairs = nuclei_pairs(data_dir)
    start_trainer = Trainer(pairs, TrainConfig(mode="instance", epochs=1, **TINY))
    drive(start_trainer.run())
    start = start_trainer.model
    out = tmp_path / "tuned.safetensors"
    real = training._Fit._validate
    calls = []

    def worse_after_start(self, *args):
        metrics = yield from real(self, *args)
        calls.append(metrics)
        if len(calls) > 1:  # every fine-tuned epoch scores worse than the start
            metrics = {**metrics, "score": -1.0, "val_loss": float("inf")}
        return metrics

    monkeypatch.setattr(training._Fit, "_validate", worse_after_start)
    cfg = TrainConfig(mode="instance", epochs=2, **TINY)
    trainer = Trainer(pairs, cfg, out=out, init=start)
    records, result = drive(trainer.run())
    first = next(r for r in records if r.kind in ("epoch", "step"))
    assert first.kind == "epoch" and first.epoch == 0  # the start model is scored first
    assert "starting model was not beaten" in result.stopped
    # counted in this run: never beaten, so the best stays the start (0); the file counts on
    assert all(r.best_epoch == 0 for r in records if r.kind == "epoch") and result.run_best_epoch == 0
    assert result.best_epoch == result.first_epoch == 1
    # --out holds the kept start (a script's next step finds its model), with this run's history
    assert out.exists() and trainer.saved
    written = UNetModel.load(out)
    assert written.training["best_epoch"] == result.first_epoch
    assert any(r.get("start") for r in written.history)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(trainer.model.network.eval()(x), start.network.eval()(x), atol=1e-5)
        np.testing.assert_allclose(written.network.eval()(x), start.network.eval()(x), atol=1e-5)


def test_a_kept_start_never_overwrites_its_own_file(data_dir, tmp_path, monkeypatch):
    """The widget may fine-tune with 'save model to' set to the file the model came from: a
    fine-tune that never beats its start leaves that file as it was."""
    from napari_unet import training

    pairs = nuclei_pairs(data_dir)
    path = tmp_path / "start.safetensors"
    drive(Trainer(pairs, TrainConfig(mode="instance", epochs=1, **TINY), out=path).run())
    before = path.read_bytes()
    real = training._Fit._validate
    calls = []

    def worse_after_start(self, *args):
        metrics = yield from real(self, *args)
        calls.append(metrics)
        return metrics if len(calls) == 1 else {**metrics, "score": -1.0, "val_loss": float("inf")}

    monkeypatch.setattr(training._Fit, "_validate", worse_after_start)
    trainer = Trainer(pairs, TrainConfig(mode="instance", epochs=2, **TINY), out=path,
                      init=UNetModel.load(path), init_path=path)
    _, result = drive(trainer.run())
    assert "starting model was not beaten" in result.stopped
    assert not trainer.saved and path.read_bytes() == before


def test_cancel_before_the_first_validation_restores_the_start(data_dir, tmp_path):
    torch.manual_seed(0)
    start = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance",
                                         instance_targets="distance", batch_norm=True))
    before = {k: v.clone() for k, v in start.network.state_dict().items()}
    out = tmp_path / "m.safetensors"
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=3, **TINY), out=out, init=start)
    gen = trainer.run()
    for rec in gen:
        if rec.kind == "step" and rec.step == 3:
            break
    gen.close()
    assert not trainer.saved and not out.exists()
    after = trainer.model.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no half-trained weights


def test_frozen_encoder_keeps_batch_norm_statistics_and_trains_the_decoder(membranes):
    from napari_unet.models import encoder_modules

    torch.manual_seed(0)
    start = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, batch_norm=True))
    img, lab = membranes
    enc_before = {k: v.clone() for m in encoder_modules(start.network) for k, v in m.state_dict().items()}
    head_before = start.network.head.weight.detach().clone()
    trainer = Trainer([Pair("m", img, lab)], TrainConfig(mode="semantic", epochs=1, freeze_encoder=True,
                                                         weight_average=0, **TINY), init=start)
    seen = {}
    for p in trainer.run():  # the weights as trained, at the end of the epoch (before the
        if p.kind == "epoch" and p.epoch == 1:  # better of start and fine-tune is chosen)
            net = trainer.model.network
            seen["enc"] = {k: v.clone() for m in encoder_modules(net) for k, v in m.state_dict().items()}
            seen["head"] = net.head.weight.detach().clone()
    assert any("running_mean" in k for k in seen["enc"])
    assert all(torch.equal(enc_before[k], seen["enc"][k]) for k in enc_before)  # BN statistics too
    assert not torch.equal(seen["head"], head_before)  # the decoder learned


def test_nan_loss_stops_before_the_update(data_dir, monkeypatch):
    from napari_unet import training

    trainer = Trainer(nuclei_pairs(data_dir)[:1], TrainConfig(mode="instance", epochs=1, **TINY))
    before = {k: v.clone() for k, v in trainer.model.network.state_dict().items()}
    real = training._Fit._loss

    def nan_loss(self, *args):
        return real(self, *args) * float("nan")

    monkeypatch.setattr(training._Fit, "_loss", nan_loss)
    with pytest.raises(TrainingError, match="NaN"):
        drive(trainer.run())
    after = trainer.model.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_scribble_patches_are_centred_on_every_painted_class():
    from napari_unet.data import _foreground

    targets = np.full((10, 10), -1, np.int16)
    targets[2, 2] = 0  # background scribble
    targets[7, 7] = 1
    assert set(_foreground(targets).tolist()) == {22, 77}
    dense = np.zeros((4, 4), np.int16)
    dense[1, 1] = 2
    assert _foreground(dense).tolist() == [5]  # dense labels: objects/classes only


def _sample_with_objects(n_objects, side):
    from napari_unet.data import Sample, _foreground

    labels = np.zeros((side, side), np.int32)
    for i in range(n_objects):
        labels[2 + 4 * i: 4 + 4 * i, 2:4] = i + 1
    targets = (labels > 0).astype(np.int16)
    return Sample(f"{n_objects}@{side}", np.zeros((1, side, side), np.float32), labels, targets,
                  np.ones((side, side), np.float32), _foreground(targets))


def test_patches_are_drawn_by_area_or_by_objects():
    from napari_unet.data import PatchSampler, sampling_weights

    few_big, many_small, empty = _sample_with_objects(1, 64), _sample_with_objects(6, 32), _sample_with_objects(0, 32)
    samples = [few_big, many_small, empty]
    np.testing.assert_allclose(sampling_weights(samples, "area"), [4 / 6, 1 / 6, 1 / 6])
    # by objects: every object equally likely; a sample without objects still counts as one
    np.testing.assert_allclose(sampling_weights(samples, "objects"), [1 / 8, 6 / 8, 1 / 8])
    both = np.sqrt([1 * 64 * 64, 6 * 32 * 32, 1 * 32 * 32])  # geometric mean of objects and area
    np.testing.assert_allclose(sampling_weights(samples, "both"), both / both.sum())
    with pytest.raises(ValueError, match="unknown sampling 'pixels'"):
        sampling_weights(samples, "pixels")
    # the sampler draws as the weights say (seeded: the same draws on every run)
    for by, expected in (("area", 4 / 6), ("objects", 1 / 8)):
        sampler = PatchSampler(samples, 16, np.random.default_rng(0), by=by)
        drawn = [sampler.samples[sampler.rng.choice(3, p=sampler.p)] is few_big for _ in range(600)]
        assert abs(np.mean(drawn) - expected) < 0.06


def test_sampling_by_objects_is_opt_in_and_needs_instance_labels(folders, capsys):
    assert TrainConfig().sample_by == "area"
    assert TrainConfig(sample_by="objects").sample_by == "objects"
    for by in ("objects", "both"):
        with pytest.raises(ConfigError, match="needs instance labels"):
            TrainConfig(mode="semantic", sample_by=by)
    rc = main(["train", "--images", str(folders / "images"), "--labels", str(folders / "labels"),
               "--out", str(folders / "m"), "--sample-by", "nuclei"])
    assert rc == 1 and "unknown sample_by 'nuclei'; choose one of: area, objects, both" in capsys.readouterr().err


def test_training_draws_its_patches_as_sample_by_says(data_dir, monkeypatch):
    from napari_unet import data

    seen = []
    original = data.PatchSampler.__init__

    def spy(self, samples, *args, **kwargs):
        original(self, samples, *args, **kwargs)
        seen.append((samples, self.p))

    monkeypatch.setattr(data.PatchSampler, "__init__", spy)
    pairs = nuclei_pairs(data_dir)
    pairs = pairs + [Pair("crop", pairs[0].image[:96, :96], pairs[0].labels[:96, :96])]
    config = TrainConfig(mode="instance", epochs=1, device="cpu", sample_by="objects", val_fraction=0.34, **TINY)
    drive(Trainer(pairs, config).run())
    (train, p), = [(samples, p) for samples, p in seen if len(samples) == 2]  # the training sampler
    objects = np.array([np.unique(s.labels[s.labels > 0]).size for s in train], float)
    areas = np.array([s.size for s in train], float)
    np.testing.assert_allclose(p, objects / objects.sum())
    assert not np.allclose(p, areas / areas.sum())  # not what drawing by area gives


def test_validation_subset_is_fixed_and_spread():
    from napari_unet.training import validation_subset

    class S:  # a sample of a given size
        def __init__(self, i, side=10):
            self.i, self.shape = i, (side, side)

    items = [S(i) for i in range(100)]
    subset = [s.i for s in validation_subset(items, 5)]
    assert subset == [0, 20, 40, 60, 80]
    assert [s.i for s in validation_subset(items[:3], 5)] == [0, 1, 2]
    big = [S(0, 2000)] + [S(i) for i in range(1, 10)]  # one huge image is skipped, not all
    subset = validation_subset(big, 4, crop=None, max_pixels=1000)
    assert len(subset) == 4 and all(s.shape == (10, 10) for s in subset)


def test_validation_crops_large_planes_where_the_labels_are():
    """Large validation planes are scored on their crop with the most labelled pixels, so
    that many images fit the budget; small planes stay whole; the user's arrays are untouched."""
    from napari_unet.data import Sample, _foreground
    from napari_unet.training import densest_window, validation_subset

    def sample(name, h, w, objects):
        labels = np.zeros((h, w), np.int32)
        for k, (y, x) in enumerate(objects, start=1):
            labels[y : y + 6, x : x + 6] = k
        targets = (labels > 0).astype(np.int16)
        return Sample(name, np.zeros((1, h, w), np.float32), labels, targets, np.ones((h, w), np.float32),
                      _foreground(targets), source=name)

    # a 400x1200 plane (more than six crops' worth) whose objects sit in its right part
    wide = sample("wide", 400, 1200, [(y, x) for y in (40, 120, 200) for x in (1000, 1060, 1120)])
    small = [sample(f"s{i}", 60, 60, [(10, 10)]) for i in range(5)]
    window = densest_window(wide, 256)
    assert window[0].stop - window[0].start == 256 and window[1].stop - window[1].start == 256
    assert wide.labels[window].astype(bool).sum() == wide.labels.astype(bool).sum()  # all 9 objects
    subset = validation_subset([wide] + small, 6, crop=256)
    assert [s.shape for s in subset] == [(256, 256)] + [(60, 60)] * 5
    assert subset[0].labels.max() == 9 and subset[0].name == "wide (crop)"
    assert wide.shape == (400, 1200)  # the plane itself is not changed
    # everything small enough: all planes, whole
    assert [s.shape for s in validation_subset(small, 6)] == [(60, 60)] * 5


def test_instance_model_stores_the_object_size(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    drive(Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=1, **TINY), out=out).run())
    size = UNetModel.load(out).training["object_size"]
    assert 20 < size["area"] < 2000 and size["objects"] > 10


@pytest.mark.parametrize("capability,expected", [((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_bf16_only_on_gpus_that_compute_it(monkeypatch, capability, expected):
    from napari_unet.devices import autocast_dtype

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what V100/T4 report
    assert autocast_dtype(torch.device("cuda")) == expected


def test_cli_refuses_to_overwrite_the_init_model(tmp_path, data_dir):
    model = tmp_path / "m.safetensors"
    UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance",
                                 instance_targets="distance")).save(model)
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(data_dir / "dsb_243443ae303c.tif", images / "a.tif")
    shutil.copy(data_dir / "dsb_243443ae303c_labels.tif", labels / "a.tif")
    before = model.read_bytes()
    rc = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(model),
               "--init", str(model), "--epochs", "1", "--quiet"])
    assert rc != 0 and model.read_bytes() == before


def test_membrane_threshold_is_tuned_and_used(membranes, tmp_path):
    """Two-class dense semantic training ends by choosing the class-1 threshold on the
    validation part; prediction then thresholds instead of taking the argmax."""
    from napari_unet.config import PredictConfig
    from napari_unet.evaluation import tune_threshold
    from napari_unet.predict import predict, run

    img, lab = membranes
    out = tmp_path / "isbi.safetensors"
    trainer = Trainer([Pair("m", img, lab)], TrainConfig(mode="semantic", epochs=2, **TINY), out=out)
    records, _ = drive(trainer.run())
    assert records[-1].kind == "tuning"
    saved = UNetModel.load(out)
    t = saved.postprocessing["threshold"]
    post = saved.postprocessing
    assert 0.2 <= t <= 0.8 and "validation_adapted_rand_error" in post
    # closed membranes were compared, and kept only where they beat the threshold
    closed_better = round(post["validation_closed_adapted_rand_error"], 4) < round(post["validation_adapted_rand_error"], 4)
    assert ("membrane_seeds" in post) == closed_better
    saved.postprocessing.pop("membrane_seeds", None)
    saved.postprocessing["threshold"] = 0.999  # almost nothing is membrane at this threshold
    high = run(predict(saved, img, "YX", PredictConfig(device="cpu"))).labels
    saved.postprocessing["threshold"] = 0.001  # almost everything is
    low = run(predict(saved, img, "YX", PredictConfig(device="cpu"))).labels
    assert high.mean() < low.mean()

    class S:
        targets = (np.arange(100).reshape(10, 10) % 10 < 3).astype(np.int16)

    p = np.stack([1 - S.targets * 0.7, S.targets * 0.7]).astype(np.float32)  # class 1 at 0.7
    t, scores = tune_threshold([S], [p], rand=False)
    assert t < 0.7 and scores["f1"] == 1.0


def test_closing_membranes_is_chosen_when_faint_membranes_merge_cells(membranes):
    """Real ISBI labels made into a probability map whose membranes fade in places (as a
    network's do): no threshold keeps those cells apart, the watershed does, and the tuning
    finds it by the Rand error."""
    from scipy import ndimage as ndi

    from napari_unet.evaluation import tune_membrane_seeds_steps, tune_threshold
    from napari_unet.predict import semantic_classes

    _, lab = membranes

    class S:
        targets = (lab == 1).astype(np.int16)

    p1 = ndi.gaussian_filter(S.targets.astype(np.float32), 1.0) * 0.9 + 0.02
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(S.targets)
    for k in rng.choice(len(ys), 40, replace=False):  # 40 faint stretches of 7x7 pixels
        p1[max(0, ys[k] - 3): ys[k] + 4, max(0, xs[k] - 3): xs[k] + 4] = 0.15
    p = np.stack([1 - p1, p1])
    t, scores = tune_threshold([S], [p], rand=True)
    seeds, closed_error = run(tune_membrane_seeds_steps([S], [p]))
    assert seeds == 0.1  # seeds must stay out of the faint stretches (0.15)
    assert closed_error < scores["adapted_rand_error"] - 0.05
    model = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4, classes=2))
    model.postprocessing = {"threshold": t, "membrane_seeds": seeds}
    closed = semantic_classes(model, p)
    assert ndi.label(closed == 0)[1] > ndi.label(p1 <= t)[1]  # more cells kept apart


def test_train_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--arch", "--patch", "--lr", "--instance-targets", "--zoom", "--freeze-encoder"):
        assert flag in text
    assert "(default: unet)" in text and "(default: 128)" in text and "(default: distance)" in text
    assert text.count("(default:") >= 25


# -- out of memory, cancellable validation and tuning, preparation on demand ---------------


def _oom_above(network, largest_batch):
    """Make ``network`` raise the GPU's out-of-memory error for batches above ``largest_batch``."""
    forward = network.forward
    seen = []

    def limited(x):
        seen.append(x.shape[0])
        if x.shape[0] > largest_batch and torch.is_grad_enabled():
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return forward(x)

    network.forward = limited
    return seen


def test_training_out_of_memory_halves_the_batch_and_goes_on(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=2, **{**TINY, "batch": 8}), out=out)
    seen = _oom_above(trainer.model.network, 2)
    records, result = drive(trainer.run())
    notes = [r.message for r in records if r.kind == "note"]
    assert notes == ["out of memory: the batch is reduced to 4 patches", "out of memory: the batch is reduced to 2 patches"]
    assert [h["batch"] for h in result.history] == [2, 2]
    assert max(seen[seen.index(2):]) <= 4  # no full batch was tried again (validation chunks follow)
    assert result.best_epoch is not None and UNetModel.load(out).training["best_epoch"] == result.best_epoch


def test_training_out_of_memory_at_batch_one_is_explained(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=2, **{**TINY, "batch": 2}), out=out)
    before = {k: v.clone() for k, v in trainer.model.network.state_dict().items()}
    _oom_above(trainer.model.network, 0)
    with pytest.raises(TrainingError, match=r"ran out of memory even with a batch of one .*--patch"):
        drive(trainer.run())
    assert not out.exists()  # nothing half-written
    for k, v in trainer.model.network.state_dict().items():
        assert torch.equal(v, before[k])  # the starting weights, untouched


def test_other_errors_in_a_step_are_not_taken_for_out_of_memory(data_dir):
    trainer = Trainer(nuclei_pairs(data_dir)[:1], TrainConfig(mode="instance", epochs=1, **TINY))

    def broken(x):
        raise RuntimeError("Expected all tensors to be on the same device")

    trainer.model.network.forward = broken
    with pytest.raises(RuntimeError, match="same device"):
        drive(trainer.run())


def test_validation_and_tuning_yield_so_cancel_is_prompt(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    cfg = TrainConfig(mode="instance", epochs=2, **TINY)
    records, _ = drive(Trainer(nuclei_pairs(data_dir), cfg).run())
    validating = [r for r in records if r.kind == "validating"]
    tuning = [r for r in records if r.kind == "tuning" and r.steps]
    assert validating and validating[-1].step == validating[-1].steps >= 1
    assert len(tuning) == tuning[-1].steps > 1 and tuning[-1].step == tuning[-1].steps
    # cancel in the middle of the first validation: nothing saved, the start weights back
    trainer = Trainer(nuclei_pairs(data_dir), cfg, out=out)
    before = {k: v.clone() for k, v in trainer.model.network.state_dict().items()}
    gen = trainer.run()
    while True:
        p = next(gen)
        if p.kind == "validating" and p.step == 1:
            break
    gen.close()
    assert not out.exists() and not trainer.saved
    for k, v in trainer.model.network.state_dict().items():
        assert torch.equal(v, before[k])


def test_preparation_can_wait_for_run(data_dir, monkeypatch):
    calls = []
    real = Trainer.prepare

    def counting(self):
        calls.append(1)
        real(self)

    monkeypatch.setattr(Trainer, "prepare", counting)
    trainer = Trainer(nuclei_pairs(data_dir), TrainConfig(mode="instance", epochs=1, **TINY), prepare=False)
    assert calls == [] and trainer.model is None and not trainer.prepared
    gen = trainer.run()
    first = next(gen)
    assert first.kind == "preparing" and calls == []  # nothing costly before the first yield
    second = next(gen)
    assert second.kind == "prepared" and calls == [1] and "plane(s)" in second.message
    drive(gen)
    assert calls == [1] and trainer.model.history


def test_bad_labels_found_while_preparing_raise_the_same_error(data_dir):
    img = tifffile.imread(data_dir / "dsb_243443ae303c.tif")
    trainer = Trainer([Pair("z", img, np.zeros(img.shape[:2], np.int32))], TrainConfig(mode="instance", **TINY),
                      prepare=False)
    with pytest.raises(TrainingError, match="all zero"):
        drive(trainer.run())


def test_weight_average_follows_the_weights_and_swaps_in_and_out():
    from napari_unet.training import WeightAverage

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    start = [t.detach().clone() for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
    avg = WeightAverage(net, decay=0.9)
    expected = [t.clone() for t in start]
    for n in range(1, 31):
        with torch.no_grad():
            for t in net.parameters():
                t.add_(1.0)
        net.train()(torch.randn(4, 1, 8, 8))  # batch-norm statistics move too
        avg.update()
        d = min(0.9, (1 + n) / (10 + n))
        live = [t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
        expected = [e * d + t.detach() * (1 - d) for e, t in zip(expected, live)]
    live = [t.detach().clone() for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
    avg.swap()
    now = [t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
    for e, t in zip(expected, now):
        torch.testing.assert_close(t, e)
    assert not torch.allclose(now[0], live[0])  # the average lags behind the weights
    avg.swap()
    for a, b in zip(live, (t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point())):
        torch.testing.assert_close(a, b)


def test_training_keeps_the_averaged_weights(data_dir, tmp_path):
    """The saved model is the weight average at its best epoch, not the raw weights; with
    weight_average=0 it is the raw weights (the two runs differ)."""
    out_avg, out_raw = tmp_path / "avg.safetensors", tmp_path / "raw.safetensors"
    cfg = dict(mode="instance", epochs=2, **TINY)
    _, a = drive(Trainer(nuclei_pairs(data_dir), TrainConfig(**cfg), out=out_avg).run())
    drive(Trainer(nuclei_pairs(data_dir), TrainConfig(weight_average=0, **cfg), out=out_raw).run())
    wa = UNetModel.load(out_avg).network.state_dict()
    wb = UNetModel.load(out_raw).network.state_dict()
    assert any(not torch.allclose(wa[k].float(), wb[k].float()) for k in wa)
    for k, v in a.model.network.state_dict().items():  # the returned model is the saved one
        torch.testing.assert_close(v.float(), wa[k].float())
    with pytest.raises(ConfigError, match="weight_average"):
        TrainConfig(weight_average=1.0)


def test_base_width_default_follows_the_device(monkeypatch, tmp_path):
    """Width 8 for the padded 2D unet where the CPU trains in float32, else 16 (measured in
    docs/benchmarks.md, round 5); an explicit width and saved settings are kept."""
    from napari_unet import devices
    from napari_unet.training import default_base_width

    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: False)
    assert TrainConfig(device="cpu").base_width == 8
    assert TrainConfig(device="cpu", arch="unet-paper").base_width == 16
    assert TrainConfig(device="cpu", dims=3).base_width == 16
    assert TrainConfig(device="cpu", base_width=24).base_width == 24
    saved = TrainConfig(device="cpu").to_json()
    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: True)
    assert TrainConfig(device="cpu").base_width == 16
    assert TrainConfig(device="cpu", mixed_precision=False).base_width == 8  # --fp32
    assert TrainConfig.from_json(saved).base_width == 8  # a replay trains what was trained
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_base_width("cuda") == 16  # not usable: training then says so itself
    # the command line trains what it says, and the run's line names the width
    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: False)
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    rng = np.random.default_rng(0)
    lab = np.zeros((64, 64), np.uint16)
    lab[10:25, 10:25], lab[35:55, 30:50] = 1, 2
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(images / name, (lab > 0) * 200 + rng.integers(0, 40, lab.shape, dtype=np.uint8))
        tifffile.imwrite(labels / name, lab)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out), "--mode", "instance",
                 "--device", "cpu", "--depth", "2", "--patch", "32", "--batch", "2", "--steps", "2", "--epochs", "1",
                 "--tile", "64", "--quiet"]) == 0
    assert UNetModel.load(out).config.base_width == 8


def test_cli_fine_tuning_counts_epochs_of_this_run(tmp_path, data_dir, capsys):
    """A fine-tuning run reports its starting model as such (not as an epoch with a NaN loss),
    and its best epoch in the count its epoch lines use (the starting model had epochs of its own)."""
    import re

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(data_dir / "dsb_243443ae303c.tif", images / "a.tif")
    shutil.copy(data_dir / "dsb_243443ae303c_labels.tif", labels / "a.tif")
    tiny = ["--mode", "instance", "--arch", "unet", "--depth", "2", "--base-width", "8", "--patch", "48",
            "--batch", "4", "--steps", "6", "--tile", "64", "--device", "cpu", "--quiet"]
    start, tuned = tmp_path / "start.safetensors", tmp_path / "tuned.safetensors"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(start),
                 "--epochs", "3", *tiny]) == 0
    capsys.readouterr()
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tuned),
                 "--init", str(start), "--epochs", "2", "--lr", "1e-2", *tiny]) == 0
    err = capsys.readouterr().err
    assert "starting model: val loss" in err and "nan" not in err
    lines = re.findall(r"^epoch (\d+)/2: .*\(best [\d.]+ (?:at epoch (\d+)|the starting model)\)", err, re.M)
    assert [int(e) for e, _ in lines] == [1, 2]
    assert all(int(best) <= int(e) for e, best in lines if best)  # never an epoch of the earlier run
    final = re.search(r"; best: (at epoch (\d)|the starting model); ", err)
    assert final is not None and (final.group(2) is None or int(final.group(2)) <= 2)


@pytest.mark.parametrize("minimum, kept", [(10**6, True), (0, False)])
def test_fine_tuning_on_few_objects_keeps_the_start_post_processing(data_dir, monkeypatch, minimum, kept):
    """Settings tuned on a handful of validation objects are noise: below the minimum a fine-tune
    keeps its starting model's post-processing (tuned on many objects); above it, it tunes."""
    from napari_unet import training

    pairs = nuclei_pairs(data_dir)
    start_trainer = Trainer(pairs, TrainConfig(mode="instance", epochs=1, **TINY))
    drive(start_trainer.run())
    start = start_trainer.model
    # a setting outside the tuning grid: only kept settings can still hold it
    start.postprocessing = {**start.postprocessing, "interior_threshold": 0.77, "validation_ap@0.5": 0.123}
    monkeypatch.setattr(training, "MIN_TUNING_OBJECTS", minimum)
    records, result = drive(Trainer(pairs, TrainConfig(mode="instance", epochs=1, **TINY), init=start).run())
    notes = [r.message for r in records if r.kind == "note"]
    post = result.model.postprocessing
    if kept:
        assert post["interior_threshold"] == 0.77 and post["validation_ap@0.5"] == 0.123
        assert any("post-processing kept from the starting model" in m for m in notes)
    else:
        assert post["interior_threshold"] != 0.77 and post["validation_ap@0.5"] != 0.123
        assert not any("post-processing kept" in m for m in notes)


def test_compiled_training_steps_match_the_plain_ones_and_compile_once(data_dir):
    """``compile=True``: the training steps run through torch.compile; the losses follow the
    uncompiled run (same seed) and the graph is compiled once, not again at every epoch
    (validation, the weight-average swap and train/eval switches in between)."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    def steps(mode):
        dynamo.reset()
        counters.clear()
        cfg = TrainConfig(mode="instance", epochs=3, device="cpu", compile=mode, **TINY)
        records, _ = drive(Trainer(nuclei_pairs(data_dir)[:1], cfg).run())
        notes = [r.message for r in records if r.kind == "note"]
        return [r.loss for r in records if r.kind == "step"], notes, dict(counters["stats"])

    plain, plain_notes, _ = steps(False)
    compiled, notes, stats = steps(True)
    assert not plain_notes and any("compiling the network" in n for n in notes)
    assert len(compiled) == len(plain) == 18
    np.testing.assert_allclose(compiled, plain, rtol=0.05)
    assert stats.get("unique_graphs", 0) >= 1  # it did compile
    assert stats["unique_graphs"] <= 2  # forward graph (+ one for a train/eval switch), not one per epoch


def test_training_goes_on_uncompiled_when_compiling_fails(data_dir, monkeypatch):
    """No C++ compiler (a laptop without build tools): the first compiled step fails, the run
    says so and trains on without compiling; the weights still learn."""

    def broken_compile(network, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore lines")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    cfg = TrainConfig(mode="instance", epochs=2, device="cpu", compile=True, **TINY)
    records, result = drive(Trainer(nuclei_pairs(data_dir)[:1], cfg).run())
    notes = [r.message for r in records if r.kind == "note"]
    assert any("torch.compile is not available here (InvalidCxxCompiler: No working C++ compiler found)" in n
               for n in notes)
    assert len([r for r in records if r.kind == "step"]) == 12 and result.best_epoch in (1, 2)


def test_the_compiling_step_does_not_set_the_pace_of_a_time_limited_run(data_dir, monkeypatch):
    """The first compiled step takes a minute of compilation. A time-limited run sizes its
    epochs from the step time (about 8 validations) and estimates the time it still needs
    from it: the compiling step must count for neither, or a 10-minute run would validate
    after every few steps, or stop at once (fake clock, 1 s per reading; compilation 100 s)."""
    from napari_unet import training

    def first_epoch_steps(compile_seconds):
        now = [0.0]

        def fake_clock():
            now[0] += 1.0
            return now[0]

        def fake_compile(network, **kwargs):
            calls = [0]

            def call(*args, **kw):
                calls[0] += 1
                if calls[0] == 1:
                    now[0] += compile_seconds
                return network(*args, **kw)
            return call

        monkeypatch.setattr(training, "clock", fake_clock)
        monkeypatch.setattr(torch, "compile", fake_compile)
        cfg = TrainConfig(mode="instance", epochs=100, time_limit=10.0, compile=True,
                          **{**TINY, "steps_per_epoch": 0})
        run = Trainer(nuclei_pairs(data_dir)[:1], cfg).run()
        steps = []
        for record in run:  # the first epoch is enough
            if record.kind == "epoch":
                break
            steps += [record] if record.kind == "step" else []
        run.close()
        return steps[-1].steps, len(steps)

    planned, done = first_epoch_steps(0.0)
    assert done == planned > 5
    assert first_epoch_steps(100.0) == (planned, done)
