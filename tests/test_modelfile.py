import json
import os
import pathlib
import pickle
import stat

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


class Payload:
    """Unpickling this writes ``marker``: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path(self.marker).write_text, ("code from the file ran",))


def test_pickle_payload_would_run_if_unpickled(tmp_path):
    """Control for the test below: the payload is live."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").read_text() == "code from the file ran"


def test_pickled_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload(marker)))  # a raw pickle
    torch.save({"w": torch.zeros(2), "evil": Payload(marker)}, tmp_path / "ckpt.pt")  # torch's zip format
    for name in ("evil.pt", "ckpt.pt"):
        with pytest.raises(ModelFileError, match="pickle.*can run arbitrary code"):
            UNetModel.load(tmp_path / name)
        assert not marker.exists(), name
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
    from napari_unet.io import OutputError

    with pytest.raises(OutputError, match="cannot write .*disk full"):
        small(classes=4).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def rewrite_settings(path, change):
    """Edit the napari-unet settings in a model file's header, as a damaged or forged file would."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as f:
        try:
            meta = json.loads(f.metadata()["napari-unet"])
        except ValueError:
            meta = None  # damaged by an earlier rewrite
    tensors = load_file(path)
    raw = change(meta)
    save_file(tensors, str(path), metadata={"napari-unet": raw if isinstance(raw, str) else json.dumps(meta)})
    return path


def test_encoder_weights_in_a_file_never_reach_smp(tmp_path, monkeypatch):
    """Pretrained weights named in a file would make smp download them at load time."""
    import segmentation_models_pytorch as smp

    path = UNetModel.create(ModelConfig(arch="smp", encoder="resnet18"), halo=32).save(tmp_path / "m.safetensors")
    rewrite_settings(path, lambda meta: meta["model"].update(encoder_weights="imagenet"))
    asked = []
    original = smp.Unet

    def recording_unet(*args, **kwargs):
        asked.append(kwargs.get("encoder_weights"))
        return original(*args, **{**kwargs, "encoder_weights": None})

    monkeypatch.setattr(smp, "Unet", recording_unet)
    model = UNetModel.load(path)
    assert asked == [None] and model.config.encoder_weights is None


def test_malformed_settings_json_names_the_file(tmp_path):
    path = rewrite_settings(small().save(tmp_path / "m.safetensors"), lambda meta: '{"model": {"arch": ')
    with pytest.raises(ModelFileError, match=f"{path}.*not valid JSON"):
        UNetModel.load(path)
    rewrite_settings(path, lambda meta: "[1, 2]")
    with pytest.raises(ModelFileError, match=f"{path}.*not a JSON object"):
        UNetModel.load(path)


@pytest.mark.parametrize("settings,message", [
    ({"base_width": 10**6}, "base_width 1000000 is beyond"),
    ({"classes": 10**7}, "classes 10000000 is beyond"),
    ({"in_channels": 10**5}, "in_channels 100000 is beyond"),
    ({"depth": 60}, "depth 60 is too deep"),
    ({"base_width": 2048, "depth": 6}, "weights"),  # each value plausible, the network is not
])
def test_absurd_sizes_are_refused_before_building_the_network(tmp_path, monkeypatch, settings, message):
    import napari_unet.modelfile as mf

    path = rewrite_settings(small().save(tmp_path / "m.safetensors"), lambda meta: meta["model"].update(settings))

    def no_building(config):
        raise AssertionError("the network was built")

    monkeypatch.setattr(mf, "build_network", no_building)
    with pytest.raises(ModelFileError, match=f"{path}.*{message}"):
        UNetModel.load(path)


@pytest.mark.parametrize("field,value", [("tile", 0), ("tile", -64), ("tile", "256"), ("tile", True), ("halo", -1),
                                         ("halo", 2.5), ("tile", 10**9)])
def test_tile_and_halo_are_validated(tmp_path, field, value):
    path = rewrite_settings(small().save(tmp_path / "m.safetensors"), lambda meta: meta.update({field: value}))
    with pytest.raises(ModelFileError, match=f"{field} must be an integer"):
        UNetModel.load(path)


def test_settings_of_the_wrong_type_are_refused(tmp_path):
    path = rewrite_settings(small().save(tmp_path / "m.safetensors"), lambda meta: meta.update(history="oops"))
    with pytest.raises(ModelFileError, match="'history' must be a JSON list"):
        UNetModel.load(path)
    rewrite_settings(path, lambda meta: meta.update(history=[], format_version="2"))
    with pytest.raises(ModelFileError, match="format_version must be an integer"):
        UNetModel.load(path)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_saved_files_get_the_users_usual_mode(tmp_path, umask, mode):
    from napari_unet.modelfile import atomic_write_bytes

    old = os.umask(umask)
    try:
        small().save(tmp_path / "m.safetensors")
        atomic_write_bytes(tmp_path / "settings.json", b"{}")
    finally:
        os.umask(old)
    for name in ("m.safetensors", "settings.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.mark.parametrize("change,message", [
    (lambda m: m["model"].update(arch="fcn"), "unknown architecture 'fcn'; choose one of"),
    (lambda m: m["model"].update(base_width=0), "base_width must be a number >= 1"),
    (lambda m: m["model"].update(mode="instance", classes=5), "instance mode with 3-class targets predicts 3"),
    (lambda m: m["model"].update(class_names=["a"]), "1 class names given for 2 classes"),
    (lambda m: m["model"].update(bogus=1), r"unknown ModelConfig setting\(s\) \['bogus'\]; valid:"),
    (lambda m: m.update(normalization={"low": 50, "high": 10}), "percentiles must satisfy"),
])
def test_invalid_settings_are_named_with_the_file(tmp_path, change, message):
    path = rewrite_settings(small().save(tmp_path / "m.safetensors"), change)
    with pytest.raises(ModelFileError, match=f"{path}: the model settings in this file are invalid: .*{message}"):
        UNetModel.load(path)
    rewrite_settings(path, lambda m: m.pop("model"))
    with pytest.raises(ModelFileError, match=f"{path}: this file has no model settings"):
        UNetModel.load(path)


def test_newer_format_and_mismatched_weights_are_refused(tmp_path):
    path = rewrite_settings(small().save(tmp_path / "m.safetensors"), lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="written by a newer napari-unet"):
        UNetModel.load(path)
    path = rewrite_settings(small().save(tmp_path / "w.safetensors"), lambda m: m["model"].update(depth=3))
    with pytest.raises(ModelFileError, match=r"weights do not fit the described network \(size mismatch for") as err:
        UNetModel.load(path)
    assert "\n" not in str(err.value)  # one line: the CLI prints errors as one line
    path = rewrite_settings(small().save(tmp_path / "b.safetensors"), lambda m: m["model"].update(batch_norm=True))
    with pytest.raises(ModelFileError, match=r"weights do not fit the described network \(missing"):
        UNetModel.load(path)


def test_a_header_length_whose_first_byte_looks_like_pickle_still_loads(tmp_path):
    """A safetensors header of 128 + 256k bytes starts the file with 0x80, the pickle protocol
    byte: such a model file (about 1 in 256) must load, not be refused as a pickle."""
    import struct

    path = small().save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    pad = (256 - (n % 256) + 0x80) % 256  # spaces after the JSON: still a valid header
    header = data[8 : 8 + n] + b" " * pad
    forged = struct.pack("<Q", len(header)) + header + data[8 + n :]
    assert forged[:1] == b"\x80"
    path.write_bytes(forged)
    assert UNetModel.load(path).config == small().config


def test_float16_storage_halves_the_file_and_loads_into_float32(tmp_path):
    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(depth=2, base_width=8, batch_norm=True, classes=3))
    full = model.save(tmp_path / "full.safetensors")
    half = model.save(tmp_path / "half.safetensors", float16=True)
    weights = sum(v.numel() * 4 for v in model.network.state_dict().values() if v.is_floating_point())
    # the float weights take half the bytes (the headers differ only in dtypes and offsets)
    assert abs(full.stat().st_size - half.stat().st_size - weights // 2) < 1024
    back = UNetModel.load(half)
    assert back.config == model.config
    assert all(v.dtype == torch.float32 for v in back.network.state_dict().values() if v.is_floating_point())
    # batch-norm counters are integers and stay exact
    counters = [k for k, v in back.network.state_dict().items() if not v.is_floating_point()]
    assert counters and all(back.network.state_dict()[k].dtype == torch.int64 for k in counters)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        ref, out = model.network.eval()(x), back.network(x)
    assert not torch.equal(ref, out)  # rounded, not a copy of the float32 file
    assert torch.allclose(ref, out, atol=1e-2, rtol=1e-2)


def test_float16_storage_refuses_weights_beyond_its_range(tmp_path):
    model = small()
    with torch.no_grad():
        next(model.network.parameters()).view(-1)[0] = 1e6
    with pytest.raises(ModelFileError, match="float16's range"):
        model.save(tmp_path / "half.safetensors", float16=True)
    assert not (tmp_path / "half.safetensors").exists()
    assert UNetModel.load(model.save(tmp_path / "full.safetensors")).network is not None
