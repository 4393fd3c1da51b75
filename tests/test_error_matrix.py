"""One test per line of docs/errors.md that had none: each user error is raised where the user
would meet it, with a message that names the problem (key words checked, not the sentence),
and nothing of the user's is written or changed."""

import shutil

import numpy as np
import pytest
import tifffile
import torch

from napari_unet.axes import AxesError, Planes, guess_axes, normalize_axes
from napari_unet.cli import main
from napari_unet.config import ConfigError, ModelConfig, PredictConfig, read_json
from napari_unet.data import Pair, kfold, prepare, split_holdout
from napari_unet.devices import DeviceError, resolve_device
from napari_unet.io import ImageFileError, list_tiffs, read_image
from napari_unet.modelfile import ModelFileError, UNetModel
from napari_unet.targets import LabelsError, check_labels
from napari_unet.training import TrainConfig, Trainer, TrainingError

TINY = dict(depth=2, base_width=8, patch=48, batch=4, steps_per_epoch=2, tile=64)


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"tile": 0}, "tile must be a number >= 1"),
    ({"batch": 0}, "batch must be a number >= 1"),
    ({"halo": -1}, "halo must be an integer >= 0"),
    ({"halo": 2.5}, "halo must be an integer >= 0"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_predict_settings_are_checked(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        PredictConfig(**kwargs)


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "x"}, "unknown mode 'x'; choose one of: instance, semantic"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"patch": 0}, "patch must be >= 1"),
    ({"batch": 0}, "batch must be >= 1"),
    ({"lr": 0.0}, "learning rate must be > 0"),
    ({"folds": 1}, "folds must be 0 .* or >= 2"),
    ({"folds": -2}, "folds must be 0 .* or >= 2"),
    ({"val_budget": 1.5}, "val_budget must be between 0 and 1"),
    ({"val_images": 0}, "val_images must be >= 1"),
    ({"val_crop": 8}, "val_crop must be 0 .* or >= 32"),
    ({"weight_average": 1.0}, r"weight_average must be in \[0, 1\)"),
    ({"dims": 4}, "dims must be 2 .* or 3"),
    ({"dims": 3, "arch": "smp"}, "smp encoders are 2D"),
    ({"dims": 3, "patch_z": 0}, "patch_z must be >= 1"),
    ({"dims": 3, "z_pooling": 9}, "z_pooling must be an integer from 0 to depth"),
])
def test_training_settings_are_checked(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kwargs)


def test_config_file_missing_or_not_json(tmp_path, folders_for_cli, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        read_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        read_json(bad)
    images, labels = folders_for_cli
    out = tmp_path / "m.safetensors"
    rc = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out), "--config", str(bad)])
    assert rc == 1 and "is not valid JSON" in capsys.readouterr().err and not out.exists()


# -- devices ---------------------------------------------------------------------------------


def test_gpu_index_beyond_the_gpus_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"'cuda:3' does not exist: torch sees 1 GPU"):
        resolve_device("cuda:3")


def test_mps_not_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="Apple MPS is not available"):
        resolve_device("mps")


def test_unknown_device_string():
    with pytest.raises(DeviceError, match="unknown device 'tpu'; choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")


# -- images, files, axes -------------------------------------------------------------------


def test_image_paths_that_are_not_images(tmp_path):
    with pytest.raises(ImageFileError, match="does not exist"):
        read_image(tmp_path / "missing.tif")
    with pytest.raises(ImageFileError, match="is a folder; give an image file"):
        read_image(tmp_path)
    empty = tmp_path / "empty.tif"
    tifffile.imwrite(empty, np.zeros((0, 8), np.uint8))
    with pytest.raises(ImageFileError, match="holds no image data"):
        read_image(empty, memmap=False)


def test_training_folders(tmp_path):
    with pytest.raises(ImageFileError, match="does not exist"):
        list_tiffs(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageFileError, match=r"holds no \.tif/\.tiff files"):
        list_tiffs(tmp_path)


@pytest.mark.parametrize("axes, shape, words", [
    ("WYX", (2, 8, 8), r"unknown axis letter\(s\) \['W'\]"),
    ("YYX", (2, 8, 8), "repeat a letter"),
    ("XY", (8, 8), "must contain Y and X, in that order"),
    ("ZYC", (2, 8, 8), "must contain Y and X"),
])
def test_bad_axes(axes, shape, words):
    with pytest.raises(AxesError, match=words):
        normalize_axes(axes, shape)


@pytest.mark.parametrize("shape, channels, words", [
    ((5,), 1, "at least 2 dimensions"),
    ((4, 64, 64), 3, "the model takes 3 channels but no axis of shape"),
    ((64, 64, 3), 1, "looks like an RGB"),
    ((2, 3, 4, 64, 64, 2), 1, "cannot tell the axes"),
])
def test_axes_cannot_be_guessed(shape, channels, words):
    with pytest.raises(AxesError, match=words):
        guess_axes(shape, channels)


def test_empty_image():
    with pytest.raises(AxesError, match=r"the image is empty \(shape \(0, 64\)\)"):
        Planes(np.zeros((0, 64)), "YX")


def test_cli_predict_axes_errors_reach_the_user(tmp_path, capsys):
    model = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "m.safetensors")
    image = tmp_path / "rgbish.tif"
    tifffile.imwrite(image, np.zeros((64, 64, 3), np.uint8), photometric="minisblack")
    before = image.read_bytes()
    rc = main(["predict", str(model), str(image), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1 and "looks like an RGB" in capsys.readouterr().err
    rc = main(["predict", str(model), str(image), "--out", str(tmp_path / "o"), "--axes", "WYX", "--quiet"])
    assert rc == 1 and "unknown axis letter" in capsys.readouterr().err
    assert image.read_bytes() == before and not list((tmp_path / "o").glob("*.tif"))


# -- labels and training data ------------------------------------------------------------------


def test_labels_of_a_non_numeric_type():
    with pytest.raises(LabelsError, match="labels have type complex128; labels must be integers"):
        check_labels(np.ones((8, 8), complex))
    assert check_labels(np.ones((8, 8), bool)).dtype == np.uint8  # a painted mask is fine


def test_no_labelled_pixel_anywhere():
    """Reached by library callers only: every labels array is checked first (all zero is
    refused per image, test_widgets.py::test_bad_inputs_are_explained) and Trainer refuses an
    empty list (test_no_training_pairs)."""
    with pytest.raises(LabelsError, match="no labelled pixels in any of the training images"):
        prepare([], "semantic", 2, 1, TrainConfig().normalization)


def test_validation_fraction_and_folds(nuclei):
    img, lab = nuclei
    samples = prepare([Pair("a", img, lab, "YX"), Pair("b", img[::-1], lab[::-1], "YX")], "instance", 2, 1,
                      TrainConfig().normalization)
    rng = np.random.default_rng(0)
    with pytest.raises(LabelsError, match="validation fraction must be between 0 and 1"):
        split_holdout(samples, 1.5, rng)
    # TrainConfig refuses folds = 1 first (test_training_settings_are_checked); the data
    # layer keeps its own guard for library callers
    with pytest.raises(LabelsError, match="needs at least 2 folds"):
        kfold(samples, 1, rng)


def test_fine_tuning_a_model_of_the_other_mode(nuclei):
    start = UNetModel.create(ModelConfig(depth=2, base_width=4, mode="semantic", classes=2))
    img, lab = nuclei
    with pytest.raises(TrainingError, match="the starting model was trained in semantic mode"):
        Trainer([Pair("a", img, lab, "YX")], TrainConfig(mode="instance", **TINY), init=start)


def test_no_training_pairs():
    with pytest.raises(TrainingError, match="no training images given"):
        Trainer([], TrainConfig(**TINY))


def test_classes_in_labels_and_settings_disagree(nuclei):
    img = nuclei[0][:64, :64]
    lab = (np.arange(64 * 64).reshape(64, 64) % 4).astype(np.int32)
    with pytest.raises(TrainingError, match="the labels hold 4 classes but 3 were configured"):
        Trainer([Pair("a", img, lab, "YX")], TrainConfig(mode="semantic", classes=3, **TINY))
    with pytest.raises(ConfigError, match="2 class names given for 4 classes|2 class names for 4 classes"):
        Trainer([Pair("a", img, lab, "YX")], TrainConfig(mode="semantic", classes=4, class_names=("a", "b"), **TINY))


# -- model files and predict outputs -------------------------------------------------------------


def test_a_folder_given_as_model(tmp_path, capsys):
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        UNetModel.load(tmp_path)
    image = tmp_path / "i.tif"
    tifffile.imwrite(image, np.zeros((32, 32), np.uint8))
    rc = main(["predict", str(tmp_path), str(image), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1 and "is a folder, not a model file" in capsys.readouterr().err


def test_predict_outputs_that_would_collide_or_are_a_file(tmp_path, capsys):
    model = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "m.safetensors")
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "x.tif", np.zeros((32, 32), np.uint8))
    out = tmp_path / "o"
    rc = main(["predict", str(model), str(tmp_path / "a" / "x.tif"), str(tmp_path / "b" / "x.tif"), "--out", str(out),
               "--quiet"])
    assert rc == 1 and "would both write" in capsys.readouterr().err and not out.exists()
    out.write_text("a file")
    rc = main(["predict", str(model), str(tmp_path / "a" / "x.tif"), "--out", str(out), "--quiet"])
    assert rc == 1 and "is a file; give a folder" in capsys.readouterr().err and out.read_text() == "a file"


def test_halo_not_an_integer(tmp_path, capsys):
    model = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "m.safetensors")
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((32, 32), np.uint8))
    rc = main(["predict", str(model), str(tmp_path / "x.tif"), "--out", str(tmp_path / "o"), "--halo", "x", "--quiet"])
    assert rc == 1 and "--halo must be an integer or 'auto', got 'x'" in capsys.readouterr().err


@pytest.fixture
def folders_for_cli(tmp_path, data_dir):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(data_dir / "dsb_243443ae303c.tif", images / "a.tif")
    shutil.copy(data_dir / "dsb_243443ae303c_labels.tif", labels / "a.tif")
    return images, labels


# -- writing results: not writable, full disk ------------------------------------------------------


def test_output_not_writable_is_refused_before_training(tmp_path, folders_for_cli, capsys):
    images, labels = folders_for_cli
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "m.safetensors"  # a file where a folder should be
    rc = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and f"cannot write {out}" in err and "is a file, not a folder" in err
    assert "Traceback" not in err and blocker.read_text() == "x"


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_saving_a_model_keeps_the_old_file(tmp_path, monkeypatch):
    from napari_unet import modelfile
    from napari_unet.io import OutputError

    path = tmp_path / "m.safetensors"
    UNetModel.create(ModelConfig(depth=2, base_width=4)).save(path)
    before = path.read_bytes()
    monkeypatch.setattr(modelfile.os, "fsync", _disk_full)
    with pytest.raises(OutputError, match="the disk is full.*the file already there is unchanged"):
        UNetModel.create(ModelConfig(depth=2, base_width=8)).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_full_disk_while_writing_labels_in_the_cli(tmp_path, monkeypatch, capsys):
    import tifffile as tf

    from napari_unet import io

    model = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "m.safetensors")
    image = tmp_path / "x.tif"
    tf.imwrite(image, np.zeros((32, 32), np.uint8))
    real = tf.imwrite

    def partial_then_full(path, *args, **kwargs):
        real(path, np.zeros((4, 4), np.uint8))  # something was written to the temporary file
        _disk_full()

    monkeypatch.setattr(io.tifffile, "imwrite", partial_then_full)
    monkeypatch.setattr(io.tifffile, "memmap", _disk_full)
    out = tmp_path / "o"
    rc = main(["predict", str(model), str(image), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "napari-unet: error: cannot write" in err and "the disk is full" in err
    assert not [p for p in out.iterdir()] if out.exists() else True  # no result, no temporary file


def test_train_widget_refuses_an_unwritable_save_path(make_napari_viewer, tmp_path, nuclei):
    pytest.importorskip("napari")
    from napari_unet._widgets import TrainWidget

    v = make_napari_viewer()
    v.add_image(nuclei[0][:64, :64], name="img")
    v.add_labels(nuclei[1][:64, :64].astype(np.int32), name="lab")
    w = TrainWidget(v)
    w.image.value, w.labels.value = v.layers["img"], v.layers["lab"]
    (tmp_path / "f").write_text("x")
    w.save_path.value = str(tmp_path / "f" / "m.safetensors")
    w.run()
    assert w.job is None and "Cannot start: cannot write" in w.status.value


def test_model_for_another_channel_count_at_fine_tuning(nuclei):
    start = UNetModel.create(ModelConfig(depth=2, base_width=4, mode="instance", classes=2, instance_targets="distance",
                                         in_channels=3))
    img, lab = nuclei
    with pytest.raises(TrainingError, match=r"the image has 1 channel\(s\) but the model takes 3"):
        Trainer([Pair("a", img, lab, "YX")], TrainConfig(mode="instance", **TINY), init=start)


def test_single_class_in_semantic_mode(nuclei):
    img = nuclei[0][:64, :64]
    with pytest.raises(TrainingError, match="one class"):
        Trainer([Pair("a", img, np.ones((64, 64), np.int32), "YX")], TrainConfig(mode="semantic", **TINY))
