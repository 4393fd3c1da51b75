"""Object size: images whose objects are larger or smaller than the training objects are
rescaled to the learned size before prediction, and the labels come back at image size."""

import numpy as np
import pytest
import torch

from napari_unet.config import ConfigError, ModelConfig, PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import median_diameter, predict, run


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance",
                                     instance_targets="distance"), halo=16, tile=64)
    m.training["object_size"] = {"diameter": 20.0, "area": 314.0}
    return m


def test_rescaled_prediction_comes_back_at_image_size(model, nuclei, monkeypatch):
    from napari_unet import predict as P

    seen = []
    real = P.image_planes

    def spy(image, axes, channels, dims=2):
        planes = real(image, axes, channels, dims)
        seen.append((planes.height, planes.width))
        return planes

    monkeypatch.setattr(P, "image_planes", spy)
    image = nuclei[0][:100, :120]
    out = run(predict(model, image, "YX", PredictConfig(object_size=40), probabilities=True))
    assert out.labels.shape == (100, 120) and out.probabilities.shape == (2, 100, 120)
    assert (50, 60) in seen  # the network saw the image at half size (objects 40 -> 20 px)
    assert any("rescaled by 0.50" in n for n in out.notes)
    np.testing.assert_array_equal(nuclei[0][:100, :120], image)  # the user's image untouched


def test_stack_is_rescaled_plane_by_plane_with_unique_ids(model, nuclei):
    stack = np.stack([nuclei[0][:64, :64], nuclei[0][64:128, :64]])
    out = run(predict(model, stack, "ZYX", PredictConfig(object_size=10)))
    assert out.labels.shape == (2, 64, 64)
    ids0, ids1 = set(np.unique(out.labels[0])) - {0}, set(np.unique(out.labels[1])) - {0}
    assert not ids0 & ids1


def test_model_without_object_size_says_so(model, nuclei):
    model.training = {}
    out = run(predict(model, nuclei[0][:64, :64], "YX", PredictConfig(object_size=40)))
    assert any("no object size" in n for n in out.notes)


def test_median_diameter():
    lab = np.zeros((40, 40), np.int32)
    lab[:10, :10] = 1
    lab[20:30, 20:30] = 2
    assert median_diameter(lab) == pytest.approx(2 * np.sqrt(100 / np.pi))
    assert median_diameter(np.zeros((4, 4), np.int32)) is None


@pytest.mark.parametrize("bad", [0, -5, 1, "big", True])
def test_bad_object_size_is_refused(bad):
    with pytest.raises(ConfigError, match="object size"):
        PredictConfig(object_size=bad)


def test_cli_object_size_flag(tmp_path, model, nuclei):
    import tifffile

    from napari_unet.cli import main

    model.save(tmp_path / "m.safetensors")
    tifffile.imwrite(tmp_path / "img.tif", nuclei[0][:64, :64])
    assert main(["predict", str(tmp_path / "m.safetensors"), str(tmp_path / "img.tif"), "--out",
                 str(tmp_path / "out"), "--object-size", "40", "--quiet"]) == 0
    assert tifffile.imread(tmp_path / "out" / "img.tif").shape == (64, 64)
    assert main(["predict", str(tmp_path / "m.safetensors"), str(tmp_path / "img.tif"), "--out",
                 str(tmp_path / "out"), "--object-size", "huge", "--quiet"]) != 0


def test_small_objects_are_segmented_on_the_enlarged_grid(model, monkeypatch):
    """Objects smaller than the learned size are segmented where the network saw them (the
    enlarged grid), then the labels are shrunk: shrinking the probabilities first lowers the
    distance peak of small objects under the seed threshold (they vanished: x0.5 recall)."""
    from scipy import ndimage as ndi

    from napari_unet import predict as P
    from napari_unet.instances import PostProcessing
    from napari_unet.targets import boundary_distance

    # what a network predicts for two touching nuclei of radius 6 (a blurred distance map)
    yy, xx = np.mgrid[:96, :96]
    truth = np.zeros((96, 96), np.int32)
    truth[(yy - 48) ** 2 + (xx - 43) ** 2 <= 36] = 1
    truth[((yy - 48) ** 2 + (xx - 53) ** 2 <= 36) & (truth == 0)] = 2
    enlarged = np.stack([(truth > 0).astype(np.float32), ndi.gaussian_filter(boundary_distance(truth), 2)])
    model.postprocessing = PostProcessing(0.5, 0.6, 17, 0.1).to_json()
    real = P._predict_native  # the network's pass at one scale

    def network(m, image, axes, settings, probabilities=False, **kw):
        assert image.shape[-2:] == (96, 96)  # the 48 px image enlarged twice (objects 10 -> 20 px)
        result = yield from real(m, image, axes, settings, True, **kw)
        result.probabilities = enlarged
        return result

    monkeypatch.setattr(P, "_predict_native", network)
    image = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    out = run(P.predict(model, image, "YX", PredictConfig(object_size=10)))
    assert out.labels.shape == (48, 48)
    assert len(np.unique(out.labels)) - 1 == 2  # both nuclei, apart
    assert set(np.unique(out.labels[24, 18:30])) >= {1, 2}


# ---------------------------------------------------------------------------------------------
# training at one object size (rescale_objects)


def _discs(radius: int, n: int = 4, size: int = 96) -> np.ndarray:
    lab = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    for k in range(n):
        cy, cx = 20 + (k // 2) * 45, 20 + (k % 2) * 45
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k + 1
    return lab


@pytest.mark.parametrize("radius, target", [(5, 20.0), (16, 12.0)])
def test_rescale_to_object_size_brings_objects_to_the_diameter(radius, target):
    from napari_unet.data import rescale_to_object_size

    lab = _discs(radius)
    image = np.stack([(lab > 0).astype(np.float32), np.full(lab.shape, 0.5, np.float32)])
    before_image, before_labels = image.copy(), lab.copy()
    img2, lab2 = rescale_to_object_size(image, lab, target)
    assert median_diameter(lab2) == pytest.approx(target, rel=0.1)
    assert set(np.unique(lab2)) == set(np.unique(lab))  # ids kept, none blended or lost
    assert img2.shape == (2,) + lab2.shape and img2.dtype == np.float32
    assert abs(img2[0][lab2 > 0].mean() - 1) < 0.2 and abs(img2[0][lab2 == 0].mean()) < 0.1  # image follows labels
    np.testing.assert_array_equal(image, before_image)  # the inputs are untouched
    np.testing.assert_array_equal(lab, before_labels)


def test_rescale_factor_is_bounded_and_empty_planes_are_left_alone():
    from napari_unet.data import rescale_to_object_size

    lab = _discs(2, size=40)  # 4-5 px objects brought to 100 px would be x20: capped at x4
    img2, lab2 = rescale_to_object_size(lab[None].astype(np.float32), lab, 100.0)
    assert lab2.shape == (160, 160)
    empty = np.zeros((30, 30), np.int32)
    img3, lab3 = rescale_to_object_size(np.zeros((1, 30, 30), np.float32), empty, 20.0)
    assert lab3 is empty and img3.shape == (1, 30, 30)


@pytest.mark.parametrize("values, match", [
    (dict(mode="semantic", rescale_objects=20), "instance mode"),
    (dict(mode="instance", rescale_objects=2), "diameter in pixels"),
    (dict(mode="instance", rescale_objects=20, dims=3), "2D network"),
])
def test_rescale_objects_settings_are_checked(values, match):
    from napari_unet.training import TrainConfig

    with pytest.raises(ConfigError, match=match):
        TrainConfig(**values)


def test_training_at_one_object_size_is_recorded_and_prediction_estimates_the_size(nuclei, tmp_path):
    from napari_unet.data import Pair
    from napari_unet.training import TrainConfig, Trainer

    image, labels = nuclei
    pairs = [Pair("a", image[:128], labels[:128]), Pair("b", image[128:], labels[128:])]
    cfg = TrainConfig(mode="instance", epochs=1, depth=2, base_width=8, patch=48, batch=2,
                      steps_per_epoch=2, tile=64, rescale_objects=30, device="cpu")
    trainer = Trainer(pairs, cfg, out=tmp_path / "m.safetensors")
    trainer.prepare()
    for s in trainer.samples:  # every plane was brought to 30 px objects
        assert median_diameter(s.labels) == pytest.approx(30, rel=0.15)
    run(trainer.run())
    saved = UNetModel.load(tmp_path / "m.safetensors")
    assert saved.training["object_size"]["rescaled_to"] == 30.0
    assert saved.training["object_size"]["diameter"] == pytest.approx(30, rel=0.15)
    np.testing.assert_array_equal(nuclei[1][:128], labels[:128])  # the user's labels untouched
    crop = image[:96, :96]
    plain = run(predict(saved, crop, "YX"))  # no object size given: estimated for this image
    assert any("learned 30 px" in n for n in plain.notes), plain.notes  # the auto path ran
    given = run(predict(saved, crop, "YX", PredictConfig(object_size=60)))
    assert any("rescaled by 0.50" in n for n in given.notes) and given.labels.shape == (96, 96)


def test_fine_tuning_follows_the_object_size_of_its_starting_model(nuclei):
    """A fine-tune sees its images at the scale its starting model learned, whatever the
    settings say: a model trained at 30 px objects is tuned at 30 px, one trained at the
    images' own scale stays there."""
    from napari_unet.data import Pair
    from napari_unet.training import TrainConfig, Trainer

    image, labels = nuclei
    pairs = [Pair("a", image[:128], labels[:128]), Pair("b", image[128:], labels[128:])]
    tiny = dict(mode="instance", epochs=1, depth=2, base_width=8, patch=48, batch=2, steps_per_epoch=2,
                tile=64, device="cpu")
    start = UNetModel.create(TrainConfig(**tiny).model_config(None, 1), halo=16, tile=64)
    start.training["object_size"] = {"diameter": 30.0, "area": 707.0, "rescaled_to": 30.0}
    tuned = Trainer(pairs, TrainConfig(**tiny), init=start)
    tuned.prepare()
    assert all(median_diameter(s.labels) == pytest.approx(30, rel=0.15) for s in tuned.samples)
    assert tuned.object_size["rescaled_to"] == 30.0
    start.training["object_size"] = {"diameter": 30.0, "area": 707.0}  # learned at its images' own scale
    native = Trainer(pairs, TrainConfig(rescale_objects=60, **tiny), init=start)
    native.prepare()
    assert [s.labels.shape for s in native.samples] == [(128, 256), (128, 256)]
    assert "rescaled_to" not in native.object_size


@pytest.mark.parametrize("size", ["30", "auto"])
def test_cli_predict_with_object_size_writes_its_labels_and_probabilities(tmp_path, nuclei, size):
    """`napari-unet predict --object-size` writes what the in-memory prediction gives (it wrote
    all-zero files before: the rescaled result never reached the output memory maps)."""
    import tifffile

    from napari_unet.cli import main
    from napari_unet.sample import SAMPLE_MODEL

    image = nuclei[0][:160, :200]
    tifffile.imwrite(tmp_path / "img.tif", image)
    assert main(["predict", str(SAMPLE_MODEL), str(tmp_path / "img.tif"), "--out", str(tmp_path / "out"),
                 "--object-size", size, "--probabilities", "--device", "cpu", "--quiet"]) == 0
    model = UNetModel.load(SAMPLE_MODEL)
    given = "auto" if size == "auto" else float(size)
    want = run(predict(model, image, "YX", PredictConfig(device="cpu", object_size=given), probabilities=True))
    got = tifffile.imread(tmp_path / "out" / "img.tif")
    assert want.labels.max() > 5  # a real segmentation
    np.testing.assert_array_equal(got, want.labels)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "out" / "img_prob.tif"), want.probabilities, atol=1e-6)
