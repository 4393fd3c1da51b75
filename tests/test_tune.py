"""``napari-unet tune``: an instance model's post-processing chosen on the user's own labelled
images, reproduced exactly by ``evaluate`` with the flags it prints and by the copy it writes."""

import json

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.config import PredictConfig
from napari_unet.data import Pair
from napari_unet.evaluation import TuningError, tune_on_pairs
from napari_unet.instances import PostProcessing
from napari_unet.modelfile import UNetModel
from napari_unet.sample import SAMPLE_IMAGE, SAMPLE_LABELS, SAMPLE_MODEL
from napari_unet._generators import run

CPU = PredictConfig(device="cpu")


@pytest.fixture(scope="module")
def sample():
    return tifffile.imread(SAMPLE_IMAGE), tifffile.imread(SAMPLE_LABELS)


def _folders(tmp_path, image, labels):
    for folder, data in (("img", image), ("lab", labels)):
        (tmp_path / folder).mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / folder / "n.tif", data)
    return ["--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab")]


def test_tuned_settings_are_reproduced_by_evaluate_and_by_the_copy(tmp_path, sample, capsys):
    image, labels = sample
    folders = _folders(tmp_path, image[:256, :448], labels[:256, :448])
    out = tmp_path / "tuned.safetensors"
    before = SAMPLE_MODEL.read_bytes()
    assert main(["tune", str(SAMPLE_MODEL), *folders, "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    tuned = json.loads(captured.out)
    assert tuned["objects"] >= 30 and tuned["images"] == 1
    assert tuned["flags"] in captured.err and f"{tuned['tuned']['ap@0.5']:.3f}" in captured.err
    assert SAMPLE_MODEL.read_bytes() == before  # the user's model is never changed

    ev = ["evaluate", *folders, "--device", "cpu", "--quiet"]
    assert main([ev[0], str(SAMPLE_MODEL)] + ev[1:] + tuned["flags"].split()) == 0
    with_flags = json.loads(capsys.readouterr().out)
    assert with_flags["ap@0.5"] == pytest.approx(tuned["tuned"]["ap@0.5"], abs=1e-12)
    assert main([ev[0], str(SAMPLE_MODEL)] + ev[1:]) == 0
    assert json.loads(capsys.readouterr().out)["ap@0.5"] == pytest.approx(tuned["own"]["ap@0.5"], abs=1e-12)

    copy = UNetModel.load(out)  # the same network, the tuned settings by default, their provenance
    assert copy.postprocessing["tuned_on"]["objects"] == tuned["objects"]
    chosen = {k: v for k, v in tuned["tuned"].items() if k != "ap@0.5"}
    assert PostProcessing.from_json(copy.postprocessing, 2) == PostProcessing(**chosen)
    assert main([ev[0], str(out)] + ev[1:]) == 0
    assert json.loads(capsys.readouterr().out)["ap@0.5"] == pytest.approx(tuned["tuned"]["ap@0.5"], abs=1e-12)


def test_a_stack_is_tuned_plane_by_plane(sample):
    """A 2D model tuned on a two-plane stack: the same choice as on its two planes apart."""
    image, labels = sample
    model = UNetModel.load(SAMPLE_MODEL)
    top, bottom = (slice(0, 160), slice(0, 320)), (slice(200, 360), slice(0, 320))
    stack = Pair("stack", np.stack([image[top], image[bottom]]), np.stack([labels[top], labels[bottom]]), "ZYX")
    apart = [Pair("a", image[top], labels[top]), Pair("b", image[bottom], labels[bottom])]
    as_stack, as_planes = run(tune_on_pairs(model, [stack], CPU)), run(tune_on_pairs(model, apart, CPU))
    assert as_stack.objects == as_planes.objects >= 30
    assert as_stack.postprocessing == as_planes.postprocessing
    assert as_stack.ap == pytest.approx(as_planes.ap) and as_stack.own_ap == pytest.approx(as_planes.own_ap)


def test_what_cannot_be_tuned_is_refused_with_the_reason(tmp_path, sample, capsys):
    image, labels = sample
    few = _folders(tmp_path, image[:64, :64], labels[:64, :64])
    assert main(["tune", str(SAMPLE_MODEL), *few, "--device", "cpu", "--quiet"]) == 1
    assert "fewer than 30" in capsys.readouterr().err
    assert main(["tune", str(SAMPLE_MODEL), *few, "--out", str(SAMPLE_MODEL), "--quiet"]) == 1
    assert "is the model itself" in capsys.readouterr().err
    semantic = tmp_path / "sem.safetensors"
    assert main(["init", "--arch", "unet", "--depth", "2", "--base-width", "4", "--out", str(semantic)]) == 0
    assert main(["tune", str(semantic), *few, "--device", "cpu", "--quiet"]) == 1
    assert "applies to instance models" in capsys.readouterr().err
    with pytest.raises(TuningError, match="chooses the latter"):
        run(tune_on_pairs(UNetModel.load(SAMPLE_MODEL), [], PredictConfig(seed_threshold=0.5)))
    from napari_unet.targets import LabelsError

    image, labels = sample
    with pytest.raises(LabelsError, match="fractional"):  # e.g. a probability map given as labels
        run(tune_on_pairs(UNetModel.load(SAMPLE_MODEL), [Pair("p", image[:64, :64], labels[:64, :64] / 3.0)], CPU))
    from napari_unet.config import ModelConfig

    one_size = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4, classes=2, mode="instance",
                                            instance_targets="distance"), halo=16, tile=64)
    one_size.training["object_size"] = {"diameter": 24.0, "area": 452.0, "rescaled_to": 24.0}
    with pytest.raises(TuningError, match="one object size"):
        run(tune_on_pairs(one_size, [], CPU))


def test_distance_models_are_tuned_over_the_wide_grid(sample, monkeypatch):
    """tune searches WIDE_GRID's thresholds and dynamics (measured better than training's grid
    on other labs' nuclei, round 17) with training's minimum sizes; 3-class models keep
    training's grid."""
    from napari_unet import instances

    assert instances.tuning_grid(3, 300.0) == instances.grid_for(3, 300.0)
    wide = instances.tuning_grid(2, 300.0)
    assert wide["min_size"] == instances.grid_for(2, 300.0)["min_size"]
    assert {k: wide[k] for k in instances.WIDE_GRID} == instances.WIDE_GRID
    seen = []
    real = instances.tune_steps

    def spy(probabilities, labels, grid=None, *args, **kwargs):
        seen.append(grid)
        return (yield from real(probabilities, labels, grid, *args, **kwargs))

    monkeypatch.setattr(instances, "tune_steps", spy)
    image, labels = sample
    tuned = run(tune_on_pairs(UNetModel.load(SAMPLE_MODEL), [Pair("n", image[:256, :448], labels[:256, :448])], CPU))
    assert seen[0]["seed_dynamic"] == instances.WIDE_GRID["seed_dynamic"]
    assert seen[0]["min_size"] == instances.grid_for(2, instances.object_size([labels[:256, :448]])["area"])["min_size"]
    assert tuned.postprocessing.seed_dynamic in instances.WIDE_GRID["seed_dynamic"]


def test_the_models_own_settings_stay_when_no_choice_of_the_grid_beats_them(sample, monkeypatch):
    from napari_unet import instances

    def worse(probabilities, labels, grid=None, *args, **kwargs):  # a grid whose best is poor
        yield 1, 1
        return PostProcessing(interior_threshold=0.9, foreground_threshold=0.9, min_size=1000), 0.0

    monkeypatch.setattr(instances, "tune_steps", worse)
    image, labels = sample
    model = UNetModel.load(SAMPLE_MODEL)
    tuned = run(tune_on_pairs(model, [Pair("n", image[:256, :448], labels[:256, :448])], CPU))
    assert tuned.postprocessing == tuned.own == PostProcessing.from_json(model.postprocessing, 2)
    assert tuned.ap == tuned.own_ap > 0.5


def _settings_of(post, **kwargs):
    return PredictConfig(seed_threshold=post.interior_threshold, seed_dynamic=post.seed_dynamic or 0.0,
                         foreground_threshold=post.foreground_threshold, min_size=post.min_size, **kwargs)


def _ap(truth, pred):
    from napari_unet.metrics import match_counts, summarize_matches

    return summarize_matches([match_counts(truth, pred, (0.5,))])["ap@0.5"]


def test_a_3d_model_is_tuned_on_whole_volumes(data_dir, monkeypatch):
    """A 3D model's volume is tuned as one volume (objects counted in 3D), and predicting with
    the chosen settings gives the AP the tuning reported (tests/data: a real embryo crop of 15
    nuclei, so the minimum is lowered for the test)."""
    from napari_unet import evaluation
    from napari_unet.predict import predict

    monkeypatch.setattr(evaluation, "MIN_TUNING_OBJECTS", 10)
    volume = tifffile.imread(data_dir / "bbbc050_16cell_crop.tif")
    truth = tifffile.imread(data_dir / "bbbc050_16cell_crop_labels.tif")
    model = UNetModel.load(data_dir / "nuclei3d_tiny.safetensors")
    tiles = {"device": "cpu", "tile": (8, 32, 32)}
    tuned = run(tune_on_pairs(model, [Pair("v", volume, truth, "ZYX")], PredictConfig(**tiles)))
    assert tuned.objects == len(np.unique(truth)) - 1  # nuclei, not their cross-sections
    pred = run(predict(model, volume, "ZYX", _settings_of(tuned.postprocessing, **tiles))).labels
    assert _ap(truth, pred) == pytest.approx(tuned.ap, abs=1e-12)


def test_a_3class_model_is_tuned_over_thresholded_seeds(sample):
    """3-class instance models keep training's grid (seeds: regions above a threshold); the
    printed flags say so (--seed-dynamic 0) and predicting with them gives the reported AP."""
    import torch

    from napari_unet.config import ModelConfig
    from napari_unet.predict import predict

    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4, classes=3, mode="instance",
                                         instance_targets="3-class"), halo=16, tile=64)
    image, labels = sample
    crop, truth = image[:256, :448], labels[:256, :448]
    tuned = run(tune_on_pairs(model, [Pair("n", crop, truth)], CPU))
    assert tuned.postprocessing.seed_dynamic is None and "--seed-dynamic 0 " in tuned.flags()
    pred = run(predict(model, crop, settings=_settings_of(tuned.postprocessing, device="cpu"))).labels
    assert _ap(truth, pred) == pytest.approx(tuned.ap, abs=1e-12)
