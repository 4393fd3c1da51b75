"""Pretrained smp encoders (--encoder-weights imagenet): loaded through
segmentation-models-pytorch's own code from the Hugging Face hub cache; never downloaded here.

The tests point the hub cache at a temporary folder in offline mode: one test writes a weights
file where smp looks for it (a randomly initialised resnet18 encoder's state dict standing for
the real ImageNet weights) and checks that exactly those tensors are loaded; another leaves the
cache empty and checks the error message.
"""

import json

import pytest
import torch

from napari_unet.cli import main
from napari_unet.config import ConfigError
from napari_unet.models import pretrained_source
from napari_unet.training import TrainConfig, build_model


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache in offline mode (no network can be tried)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _write_weights(encoder="resnet18"):
    """Put an encoder state dict where smp's loader looks for the ImageNet weights."""
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    source = pretrained_source(encoder, "imagenet")
    torch.manual_seed(123)
    state = smp.encoders.get_encoder(encoder, in_channels=3, weights=None).state_dict()
    source["folder"].mkdir(parents=True)
    (source["folder"] / "config.json").write_text("{}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(source["folder"] / "model.safetensors"))
    return state


def test_cached_weights_are_loaded_by_smp_without_network(hub_cache):
    state = _write_weights()
    cfg = TrainConfig(mode="semantic", arch="smp", encoder="resnet18", encoder_weights="imagenet")
    model = build_model(cfg, 2, 1, None)
    encoder = model.network.net.encoder.state_dict()
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(encoder[key], state[key])  # exactly the file's tensors
    # the first convolution is adapted to one input channel by smp (sum over RGB)
    torch.testing.assert_close(encoder["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    random = build_model(TrainConfig(mode="semantic", arch="smp", encoder="resnet18"), 2, 1, None)
    assert not torch.equal(random.network.net.encoder.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_missing_weights_offline_are_explained(hub_cache):
    cfg = TrainConfig(mode="semantic", arch="smp", encoder="resnet18", encoder_weights="imagenet")
    with pytest.raises(ConfigError) as err:
        build_model(cfg, 2, 1, None)
    message = str(err.value)
    source = pretrained_source("resnet18", "imagenet")
    assert "smp-hub/resnet18.imagenet" in message and "snapshot_download" in message
    assert str(source["folder"]) in message and "HF_HOME" in message
    assert source["folder"].is_relative_to(hub_cache)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="only for --arch smp"):
        TrainConfig(encoder_weights="imagenet")  # the default arch is unet
    assert TrainConfig(arch="smp", encoder_weights="none").encoder_weights is None
    with pytest.raises(ConfigError, match="no pretrained weights 'bogus'.*imagenet"):
        pretrained_source("resnet18", "bogus")


def test_cli_flag_reaches_training_and_the_model_file_loads_offline(hub_cache, tmp_path, data_dir, capsys):
    import shutil

    from napari_unet.modelfile import UNetModel

    _write_weights()
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for n in ("243443ae303c", "0c6507d493bf"):
        shutil.copy(data_dir / f"dsb_{n}.tif", images / f"{n}.tif")
        shutil.copy(data_dir / f"dsb_{n}_labels.tif", labels / f"{n}.tif")
    out = tmp_path / "m.safetensors"
    rc = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out), "--arch", "smp",
               "--encoder", "resnet18", "--encoder-weights", "imagenet", "--epochs", "1", "--steps", "2",
               "--patch", "64", "--batch", "2", "--device", "cpu", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    model = UNetModel.load(out)
    assert model.training["config"]["encoder_weights"] == "imagenet"
    # loading never asks for the pretrained weights again: the file has the weights
    shutil.rmtree(hub_cache)
    assert UNetModel.load(out).config.encoder_weights is None


def test_cli_explains_missing_weights(hub_cache, tmp_path, data_dir, capsys):
    import shutil

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(data_dir / "dsb_243443ae303c.tif", images / "a.tif")
    shutil.copy(data_dir / "dsb_243443ae303c_labels.tif", labels / "a.tif")
    out = tmp_path / "m.safetensors"
    rc = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out), "--arch", "smp",
               "--encoder", "resnet18", "--encoder-weights", "imagenet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "napari-unet: error: could not get the pretrained 'imagenet' weights" in err
    assert not out.exists()


@pytest.mark.gui
def test_train_widget_encoder_weights_setting(make_napari_viewer):
    pytest.importorskip("napari")
    from napari_unet._widgets import TrainWidget

    w = TrainWidget(make_napari_viewer())
    assert w.encoder_weights.native.isHidden() and w.config().encoder_weights is None
    w.arch.value = "smp"
    assert not w.encoder_weights.native.isHidden()
    w.encoder_weights.value = "imagenet"
    cfg = w.config()
    assert cfg.encoder_weights == "imagenet" and cfg.arch == "smp"
    assert TrainConfig.from_json(json.loads(json.dumps(cfg.to_json()))).encoder_weights == "imagenet"
    w.arch.value = "unet"  # hidden again, and not passed to an architecture without it
    assert w.encoder_weights.native.isHidden() and w.config().encoder_weights is None
