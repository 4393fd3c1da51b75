import pickle

import numpy as np
import pytest
import torch

from napari_unet.config import ModelConfig, Normalization
from napari_unet.modelfile import ModelFileError, UNetModel


def small(**kw):
    return UNetModel.create(ModelConfig(depth=2, base_width=4, **kw))


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = small(classes=3, class_names=("bg", "cell", "edge"))
    model.normalization = Normalization(2.0, 99.0)
    model.history = [{"epoch": 1, "loss": 0.5}]
    path = model.save(tmp_path / "m.safetensors")
    back = UNetModel.load(path)
    assert back.config == model.config and back.normalization == model.normalization
    assert back.tile == model.tile and back.halo == model.halo and back.history == model.history
    x = torch.randn(1, 1, 60, 60)
    with torch.no_grad():
        np.testing.assert_array_equal(model.network.eval()(x).numpy(), back.network(x).numpy())


def test_smp_round_trip(tmp_path):
    model = UNetModel.create(ModelConfig(arch="smp", encoder="resnet18", classes=2), halo=32)
    back = UNetModel.load(model.save(tmp_path / "smp.safetensors"))
    assert back.config.encoder == "resnet18" and back.halo == 32


def test_pickled_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="pickle"):
        UNetModel.load(path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelFileError, match="pickle"):
        UNetModel.load(tmp_path / "ckpt.pt")
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path):
    path = small().save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated|damaged"):
        UNetModel.load(tmp_path / "cut.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty or truncated"):
        UNetModel.load(tmp_path / "empty.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="not a napari-unet model"):
        UNetModel.load(tmp_path / "other.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        UNetModel.load(tmp_path / "nope.safetensors")


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = small().save(tmp_path / "m.safetensors")
    before = path.read_bytes()
    import napari_unet.modelfile as mf

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(mf.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        small(classes=4).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
