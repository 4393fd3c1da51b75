"""3D networks: geometry per axis, exact overlap-tile prediction of volumes, 3D instances."""

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import normalization as norm
from napari_unet.axes import AxesError, Planes
from napari_unet.config import ConfigError, ModelConfig, PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.models import PaperUNet, paper_geometry
from napari_unet.predict import predict, run


@pytest.fixture(scope="module")
def isbi_stack(request):
    from pathlib import Path

    data = Path(__file__).parent / "data"
    return tifffile.imread(data / "isbi_stack_00-09.tif"), tifffile.imread(data / "isbi_stack_00-09_labels.tif")


@pytest.fixture(scope="module")
def model3d():
    torch.manual_seed(0)
    return UNetModel.create(ModelConfig(arch="unet3d-paper", depth=2, base_width=4, classes=2, z_pooling=1))


def one_pass_3d(model: UNetModel, volume: np.ndarray) -> np.ndarray:
    """Reference: the whole mirror-extended volume through the network at once."""
    pads, offsets = [], []
    for g, n, h in zip(model.geometry, volume.shape, model.halo):
        core = int(np.ceil(n / g.step)) * g.step
        m = h if g.padded else g.valid_margin
        size = g.tile_input(core, m)
        pads.append((m, size - n - m))
        offsets.append(m - g.valid_margin)
    ext = np.pad(volume, pads, mode="reflect")
    lo, hi = norm.percentiles(Planes(volume, "ZYX", "ZYX"), model.normalization)
    x = torch.from_numpy(norm.apply(ext[None], lo, hi))[None]
    with torch.no_grad():
        p = torch.softmax(model.network.eval()(x), 1)[0].numpy()
    return p[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offsets, volume.shape))]


def test_padded_3d_network_tiles_exactly_too(isbi_stack):
    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="unet3d", depth=2, base_width=4, classes=2, z_pooling=1,
                                         batch_norm=True))
    model.network.eval()
    assert model.halo == (12, 22, 22)  # its receptive-field reach per axis (a multiple of step / 2)
    volume = isbi_stack[0][:, :50, :61]
    tiled = run(predict(model, volume, "ZYX", PredictConfig(tile=(4, 16, 24)), probabilities=True))
    assert np.abs(tiled.probabilities - one_pass_3d(model, volume)).max() < 1e-5


def test_geometry_per_axis_follows_the_pooling():
    net = PaperUNet(1, 2, depth=2, base_width=4, dims=3, z_pooling=1)
    gz, gy, gx = net.geometry
    assert gy == gx == paper_geometry(2)  # in-plane: the 2D network's rules
    assert gz.step == 2 and gy.step == 4  # z pooled on one level only
    for g in net.geometry:  # every valid size gives the promised output size
        for k in range(3):
            n = g.min_input + k * g.step
            shape = [gz.min_input, gy.min_input, gx.min_input]
            shape[net.geometry.index(g)] = n
            out = net(torch.zeros(1, 1, *shape))
            assert tuple(out.shape[2:]) == tuple(gg.output_size(s) for gg, s in zip(net.geometry, shape))
    with pytest.raises(ConfigError, match="z_pooling"):
        ModelConfig(arch="unet", z_pooling=1)
    with pytest.raises(ConfigError, match="z_pooling must be"):
        ModelConfig(arch="unet3d", depth=2, z_pooling=3)


@pytest.mark.parametrize("tile", [(4, 8, 8), (6, 20, 28), (16, 96, 96), (2, 4, 4)])
def test_tiled_volume_equals_one_pass(model3d, isbi_stack, tile):
    """Real EM volume (10 x 96 x 96), valid 3D network, several tile sizes including one
    tile larger than the volume and tiles smaller than the halo: tiled == one pass."""
    volume = isbi_stack[0][:, :61, :83]  # odd sizes
    tiled = run(predict(model3d, volume, "ZYX", PredictConfig(tile=tile), probabilities=True))
    ref = one_pass_3d(model3d, volume)
    assert tiled.probabilities.shape == ref.shape == (2,) + volume.shape
    assert np.abs(tiled.probabilities - ref).max() < 1e-5
    np.testing.assert_array_equal(tiled.labels, ref.argmax(0))
    assert tiled.plan.ndim == 3 and "per volume" in tiled.plan.describe()


def test_model_file_keeps_3d_tiling(model3d, tmp_path):
    path = model3d.save(tmp_path / "m3d.safetensors")
    again = UNetModel.load(path)
    assert again.config.dims == 3 and again.config.z_pooling == 1
    assert again.tile == model3d.tile and isinstance(again.tile, tuple) and len(again.tile) == 3
    assert again.halo == tuple(g.valid_margin for g in model3d.geometry)
    x = torch.randn(1, 1, *(g.min_input for g in model3d.geometry))
    with torch.no_grad():
        torch.testing.assert_close(again.network(x), model3d.network.eval()(x))


def test_3d_model_needs_a_z_axis_and_time_is_a_loop(model3d, isbi_stack):
    with pytest.raises(AxesError, match="needs a Z axis"):
        run(predict(model3d, isbi_stack[0][0], "YX", PredictConfig(tile=(4, 16, 16))))
    movie = np.stack([isbi_stack[0][:, :40, :40]] * 2)  # T, Z, Y, X: two frames
    out = run(predict(model3d, movie, "TZYX", PredictConfig(tile=(4, 16, 16)), probabilities=True))
    assert out.labels.shape == movie.shape
    np.testing.assert_array_equal(out.labels[0], out.labels[1])


def test_3d_instances_keep_one_id_through_z(data_dir):
    """Real nuclei volume: perfect 3D distance targets, segmented in 3D, give back every
    nucleus as one object spanning its z planes (2D per plane would give one id per plane)."""
    from napari_unet.instances import instances_from_probabilities
    from napari_unet.metrics import iou_matrix
    from napari_unet.targets import boundary_distance

    labels = tifffile.imread(data_dir / "bbbc050_16cell_crop_labels.tif").astype(np.int32)
    p = np.stack([(labels > 0).astype(np.float32), boundary_distance(labels)])
    out = instances_from_probabilities(p, min_size=20, interior_threshold=0.3, seed_dynamic=0.1)
    iou, t_ids, p_ids = iou_matrix(labels, out)
    big = [i for i, t in enumerate(t_ids) if (labels == t).sum() >= 400]
    assert all(iou[i].max() > 0.8 for i in big)
    for i in big:  # one predicted id covers the nucleus in every plane it occupies
        t = t_ids[i]
        ids = np.unique(out[labels == t])
        assert (np.bincount(out[labels == t]).argmax() > 0) and len(ids[ids > 0]) == 1


def test_cli_init_and_predict_a_volume(tmp_path, isbi_stack, capsys):
    """Headless: a 3D model from `init`, a ZYX TIFF in, a ZYX labels TIFF out; tile given as
    Z,Y,X; a malformed tile is a one-line error."""
    from napari_unet.cli import main

    model = tmp_path / "m3d.safetensors"
    assert main(["init", "--arch", "unet3d-paper", "--depth", "2", "--base-width", "4", "--z-pooling", "1",
                 "--tile", "4,16,16", "--out", str(model)]) == 0
    assert UNetModel.load(model).tile == (4, 16, 16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, isbi_stack[0][:, :40, :40])
    out = tmp_path / "out"
    assert main(["predict", str(model), str(src), "--out", str(out), "--axes", "ZYX", "--tile", "6,24,24",
                 "--device", "cpu", "--quiet"]) == 0
    labels = tifffile.imread(out / "stack.tif")
    assert labels.shape == (10, 40, 40)
    assert main(["predict", str(model), str(src), "--out", str(out), "--tile", "6,24", "--quiet"]) != 0
    assert "three (Z,Y,X)" in capsys.readouterr().err


def test_link_planes_gives_overlapping_objects_one_id():
    from napari_unet.instances import link_planes

    stack = np.zeros((4, 20, 20), np.int32)
    stack[0, 2:8, 2:8] = 5  # object A, planes 0-2, drifting slightly
    stack[1, 3:9, 2:8] = 1
    stack[2, 3:9, 3:9] = 7
    stack[1, 12:18, 12:18] = 2  # object B appears in plane 1
    stack[2, 12:18, 12:18] = 3
    stack[3, 12:14, 2:4] = 4  # small, far from A's last position: a new object
    original = stack.copy()
    out = link_planes(stack, 0.25)
    np.testing.assert_array_equal(stack, original)  # input untouched
    a, b = out[0, 5, 5], out[1, 15, 15]
    assert a > 0 and b > 0 and a != b
    assert out[1, 5, 5] == a and out[2, 6, 6] == a and out[2, 15, 15] == b
    assert out[3, 13, 3] not in (0, a, b)
    assert set(np.unique(out)) == {0, 1, 2, 3}  # consecutive
    # a strict threshold links only B's identical outlines: A's three planes stay apart
    assert len(np.unique(link_planes(stack, 0.99))) - 1 == 5


def test_2d_model_on_a_stack_links_nuclei_through_z(data_dir):
    """Real nuclei volume, bundled 2D model plane by plane: without linking every plane has
    its own ids; with --link-z a nucleus keeps one id through the planes it spans."""
    from napari_unet.sample import SAMPLE_MODEL

    model = UNetModel.load(SAMPLE_MODEL)
    volume = tifffile.imread(data_dir / "bbbc050_16cell_crop.tif")[8:20]
    plain = run(predict(model, volume, "ZYX", PredictConfig(device="cpu")))
    linked = run(predict(model, volume, "ZYX", PredictConfig(device="cpu", link_z=0.25)))
    assert linked.labels.shape == volume.shape
    assert any("linked through z" in n for n in linked.notes)
    assert (linked.labels > 0).sum() == (plain.labels > 0).sum()  # same pixels, other ids
    assert len(np.unique(linked.labels)) < len(np.unique(plain.labels)) / 2
    with pytest.raises(ConfigError, match="link_z"):
        PredictConfig(link_z=1.5)


def test_3d_training_on_a_real_volume_learns_and_saves(tmp_path, data_dir):
    """A tiny 3D U-Net trained on a real nuclei volume (one volume: validation is a block
    of it) improves its loss, writes a 3D model file, and the model predicts the volume."""
    from napari_unet.data import Pair
    from napari_unet.training import TrainConfig, Trainer

    image = tifffile.imread(data_dir / "bbbc050_16cell_crop.tif")
    labels = tifffile.imread(data_dir / "bbbc050_16cell_crop_labels.tif")
    cfg = TrainConfig(dims=3, mode="instance", depth=2, base_width=4, patch=32, patch_z=8, batch=2,
                      steps_per_epoch=6, epochs=3, tile=64, device="cpu", lr=3e-3, z_pooling=1)
    out = tmp_path / "nuclei3d.safetensors"
    trainer = Trainer([Pair("embryo", image, labels, "ZYX")], cfg, out=out)
    epochs = [p for p in trainer.run() if p.kind == "epoch"]
    assert epochs[-1].loss < epochs[0].loss
    model = UNetModel.load(out)
    assert model.config.arch == "unet3d" and model.config.dims == 3
    assert len(model.tile) == 3 and len(model.halo) == 3
    pred = run(predict(model, image, "ZYX", PredictConfig(device="cpu")))
    assert pred.labels.shape == image.shape
    np.testing.assert_array_equal(image, tifffile.imread(data_dir / "bbbc050_16cell_crop.tif"))


def test_3d_semantic_training_from_a_few_annotated_planes(tmp_path, isbi_stack):
    """The 3D U-Net paper's use case: a real EM volume of which only 3 planes are annotated
    (0 = not annotated); the valid 3D network trains on them, the unannotated planes cost
    nothing, and the model predicts every plane."""
    from napari_unet.data import Pair
    from napari_unet.training import TrainConfig, Trainer

    image, membranes = isbi_stack
    sparse = np.zeros(membranes.shape, np.uint8)
    for z in (1, 5, 8):
        sparse[z] = membranes[z] + 1  # classes 1 (cell) and 2 (membrane) on three planes only
    cfg = TrainConfig(dims=3, arch="unet-paper", mode="semantic", unlabelled_zero=True, depth=2, base_width=4,
                      patch=24, patch_z=4, batch=2, steps_per_epoch=5, epochs=2, tile=32, device="cpu",
                      z_pooling=1, val_fraction=0.3)
    trainer = Trainer([Pair("em", image, sparse, "ZYX")], cfg, out=tmp_path / "em3d.safetensors")
    epochs = [p for p in trainer.run() if p.kind == "epoch"]
    assert len(epochs) == 2 and all(np.isfinite(e.loss) for e in epochs)
    model = UNetModel.load(tmp_path / "em3d.safetensors")
    assert model.config.arch == "unet3d-paper" and model.config.classes == 2
    pred = run(predict(model, image, "ZYX", PredictConfig(device="cpu")))
    assert pred.labels.shape == image.shape and set(np.unique(pred.labels)) <= {0, 1}


def test_3d_model_file_with_a_2d_tile_is_refused(model3d, tmp_path):
    import json
    import struct

    from napari_unet.modelfile import ModelFileError

    path = model3d.save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["napari-unet"])
    meta["tile"] = 256
    header["__metadata__"]["napari-unet"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    with pytest.raises(ModelFileError, match="tile of a 3D model must be a list of 3 integers"):
        UNetModel.load(bad)


def test_3d_networks_train_in_float32_on_the_cpu():
    """oneDNN's bf16 3D convolutions gave non-finite outputs here (benchmarks/bf16_conv3d.py):
    mixed precision on the CPU is for 2D networks only."""
    from napari_unet.devices import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, cpu=True, spatial_dims=3) is None
    assert autocast_dtype(cpu, cpu=False) is None  # prediction: float32 on the CPU
