import numpy as np
import pytest
import torch

from napari_unet import normalization as norm
from napari_unet.axes import Planes
from napari_unet.config import ModelConfig, PredictConfig
from napari_unet.devices import DeviceError
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict, run
from napari_unet.tiling import TilePlan, plan_tiles, reflect_indices


@pytest.mark.parametrize("n,start,stop", [(5, -12, 20), (1, -3, 4), (2, -5, 7), (7, 0, 7)])
def test_reflect_indices_match_numpy_reflect_for_any_length(n, start, stop):
    a = np.arange(n)
    pad_before, pad_after = max(0, -start), max(0, stop - n)
    expected = np.pad(a, (pad_before, pad_after), mode="reflect")[start + pad_before : stop + pad_before]
    np.testing.assert_array_equal(reflect_indices(start, stop, n), expected)


def one_pass(model: UNetModel, image: np.ndarray) -> np.ndarray:
    """Reference: the whole mirror-extended image through the network in one pass."""
    g = model.geometry
    h, w = image.shape[-2:]
    m = g.valid_margin if not g.padded else model.halo
    sizes = []
    for n in (h, w):
        core = int(np.ceil(n / g.step)) * g.step
        sizes.append(g.tile_input(core, m))
    ext = np.pad(image, ((m, sizes[0] - h - m), (m, sizes[1] - w - m)), mode="reflect")
    lo, hi = norm.percentiles(Planes(image, "YX"), model.normalization)
    x = torch.from_numpy(norm.apply(ext[None], lo, hi))[None]
    with torch.no_grad():
        p = torch.softmax(model.network.eval()(x), 1)[0].numpy()
    off = m - g.valid_margin
    return p[:, off : off + h, off : off + w]


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return UNetModel.create(ModelConfig(depth=3, base_width=8, classes=3))


@pytest.mark.parametrize(
    "shape,tile",
    [
        ((64, 64), 64),  # a single tile
        ((20, 13), 32),  # smaller than a tile, odd sizes
        ((100, 77), 16),  # many small tiles, odd sizes
        ((129, 200), 48),  # tile not dividing the image
        ((150, 150), 40),  # tile rounded to 40 (multiple of 8)
        ((7, 300), 64),  # a thin strip: halo larger than the image (repeated mirroring)
        ((140, 200), 128),  # balanced cores (72 x 104 with step 8), not the requested 128
    ],
)
def test_tiled_equals_one_pass_for_paper_unet(paper_model, nuclei, shape, tile):
    image = nuclei[0][: shape[0], : shape[1]] if shape[0] <= 256 and shape[1] <= 256 else None
    if image is None:
        image = np.tile(nuclei[0], (1, 2))[: shape[0], : shape[1]]
    tiled = run(predict(paper_model, image, "YX", PredictConfig(tile=tile), probabilities=True))
    ref = one_pass(paper_model, image)
    assert tiled.probabilities.shape == ref.shape
    assert np.abs(tiled.probabilities - ref).max() < 1e-5
    np.testing.assert_array_equal(tiled.labels, ref.argmax(0))


def test_tiled_deviates_when_tiles_start_off_the_pooling_grid(paper_model, nuclei, monkeypatch):
    """Sanity check of the exactness test above: the same tiler, with every tile but the first
    starting half a pooling step earlier (off the grid), no longer equals one pass, so the
    exactness test would catch a misaligned grid."""
    image = nuclei[0][:96, :96]
    ref = one_pass(paper_model, image)
    settings = PredictConfig(tile=32)
    aligned = run(predict(paper_model, image, "YX", settings, probabilities=True)).probabilities
    assert np.abs(aligned - ref).max() < 1e-5
    shift = paper_model.geometry.step // 2
    planned = TilePlan.origins.fget

    def off_grid(plan):
        # each tile starts `shift` pixels early and overlaps its predecessor: the cores still
        # cover the image, later tiles overwrite the overlap
        return [(max(0, y - shift), max(0, x - shift)) for y, x in planned(plan)]

    monkeypatch.setattr(TilePlan, "origins", property(off_grid))
    origins = plan_tiles((96, 96), paper_model.geometry, 32, 0).origins
    assert any(y % paper_model.geometry.step for y, _ in origins)  # really off the grid
    shifted = run(predict(paper_model, image, "YX", settings, probabilities=True)).probabilities
    assert np.abs(shifted - ref).max() > 1e-3


def test_plan_rounds_tile_and_reports_it(paper_model):
    plan = plan_tiles((500, 500), paper_model.geometry, 100, 0)
    assert plan.core == (104, 104) and plan.rounded  # 100 / 8 = 12.5, halves round up
    assert plan.halo == (paper_model.geometry.valid_margin,) * 2
    assert plan.input[0] == paper_model.geometry.tile_input(104, plan.halo[0])


def test_tiles_are_balanced_over_the_image(paper_model):
    """The tile is the largest core: an axis gets the fewest tiles that allows, of equal size,
    so no tile computes far beyond the image (the cost of tiling a 520 x 696 image)."""
    step = paper_model.geometry.step
    plan = plan_tiles((520, 696), paper_model.geometry, 512, 0)
    assert plan.largest == (512, 512) and not plan.rounded
    assert len(plan.origins) == 4  # 2 x 2, as with 512-pixel cores ...
    up = lambda n: -(-n // step) * step  # noqa: E731  (rounded up to the pooling step)
    assert plan.core == (up(260), up(348))  # ... but of half the image each, not 512
    assert all(c % step == 0 for c in plan.core)
    for n, c in zip((520, 696), plan.core):
        assert c * (-(-n // c)) - n < step * 2  # the grid overshoots the image by under a step per tile
    assert plan_tiles((512, 1024), paper_model.geometry, 512, 0).core == (512, 512)  # exact fits stay
    assert plan_tiles((100, 40), paper_model.geometry, 512, 0).core == (up(100), up(40))  # one small tile


def test_stack_is_predicted_plane_by_plane(paper_model, nuclei):
    stack = np.stack([nuclei[0][:64, :64], nuclei[0][64:128, :64], nuclei[0][:64, 64:128]])
    res = run(predict(paper_model, stack, "ZYX", PredictConfig(tile=32), probabilities=True))
    assert res.labels.shape == stack.shape and res.axes == "ZYX"
    # whole-stack normalisation: compare each plane with a one-pass prediction using the
    # same statistics
    lo, hi = norm.percentiles(Planes(stack, "ZYX"), paper_model.normalization)
    for z in range(3):
        p = one_pass_with(paper_model, stack[z], lo, hi)
        assert np.abs(res.probabilities[:, z] - p).max() < 1e-5


def one_pass_with(model, image, lo, hi):
    g = model.geometry
    h, w = image.shape
    sizes = [g.tile_input(int(np.ceil(n / g.step)) * g.step, g.valid_margin) for n in (h, w)]
    m = g.valid_margin
    ext = np.pad(image, ((m, sizes[0] - h - m), (m, sizes[1] - w - m)), mode="reflect")
    x = torch.from_numpy(norm.apply(ext[None], lo, hi))[None]
    with torch.no_grad():
        return torch.softmax(model.network.eval()(x), 1)[0, :, :h, :w].numpy()


@pytest.mark.parametrize("axes", ["CYX", "YXC"])
def test_multichannel_input(nuclei, axes):
    torch.manual_seed(1)
    model = UNetModel.create(ModelConfig(depth=2, base_width=4, in_channels=3))
    rgb = np.stack([nuclei[0][:50, :60], nuclei[0][50:100, :60], nuclei[0][100:150, :60]])
    image = rgb if axes == "CYX" else np.moveaxis(rgb, 0, -1)
    res = run(predict(model, image, axes, PredictConfig(tile=16), probabilities=True))
    assert res.labels.shape == (50, 60)
    ref = run(predict(model, rgb, "CYX", PredictConfig(tile=64), probabilities=True))
    assert np.abs(res.probabilities - ref.probabilities).max() < 1e-5


def test_channel_count_mismatch_is_a_clear_error(nuclei):
    model = UNetModel.create(ModelConfig(depth=2, base_width=4, in_channels=2))
    with pytest.raises(ValueError, match="1 channel.*takes 2"):
        run(predict(model, nuclei[0], "YX"))


def test_user_image_is_not_modified(paper_model, nuclei):
    image = nuclei[0].copy()
    image.setflags(write=False)
    run(predict(paper_model, image, "YX", PredictConfig(tile=64)))
    np.testing.assert_array_equal(image, nuclei[0])


def test_nan_pixels_are_rejected(paper_model):
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    image[3, 5] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        run(predict(paper_model, image, "YX"))


def test_preallocated_memmap_output(paper_model, nuclei, tmp_path):
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint8, shape=(100, 90))
    image = nuclei[0][:100, :90]
    res = run(predict(paper_model, image, "YX", PredictConfig(tile=32), labels_out=out))
    assert res.labels is out
    ref = run(predict(paper_model, image, "YX", PredictConfig(tile=128)))
    np.testing.assert_array_equal(np.asarray(out), ref.labels)


def test_progress_is_yielded_per_batch(paper_model, nuclei):
    gen = predict(paper_model, nuclei[0][:64, :64], "YX", PredictConfig(tile=16, batch=4))
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration:
        pass
    assert [s.done for s in steps] == [0, 4, 8, 12, 16] and steps[-1].total == 16


def test_the_default_batch_is_one_tile_on_the_cpu_four_on_a_gpu(paper_model, nuclei):
    """No batch set: one tile per forward pass on the CPU (as fast as four there, and a quarter
    of the activations' memory; docs/benchmarks.md), four on a GPU."""
    from napari_unet.devices import default_tile_batch

    assert default_tile_batch(torch.device("cpu")) == 1
    assert default_tile_batch(torch.device("cuda", 0)) == 4
    assert PredictConfig().batch is None
    steps = list(predict(paper_model, nuclei[0][:64, :64], "YX", PredictConfig(tile=16, device="cpu")))
    assert [s.done for s in steps] == list(range(17)) and steps[-1].total == 16
    with pytest.raises(ValueError, match="batch"):
        PredictConfig(batch=0)


def test_simulated_out_of_memory_halves_the_batch(paper_model, nuclei):
    calls = []
    real = paper_model.network.forward

    def flaky(x):
        calls.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(x)

    paper_model.network.forward = flaky
    try:
        res = run(predict(paper_model, nuclei[0][:64, :64], "YX", PredictConfig(tile=16, batch=8), probabilities=True))
    finally:
        del paper_model.network.forward
    assert calls[0] == 8 and calls[1] == 4 and set(calls[2:]) == {2}
    assert any("reduced to 2" in n for n in res.notes)
    ref = one_pass(paper_model, nuclei[0][:64, :64])
    assert np.abs(res.probabilities - ref).max() < 1e-5


def test_out_of_memory_with_one_tile_gives_clear_error(paper_model, nuclei):
    def always(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    paper_model.network.forward = always
    try:
        with pytest.raises(DeviceError, match="even with one tile"):
            run(predict(paper_model, nuclei[0][:32, :32], "YX", PredictConfig(tile=16, batch=2)))
    finally:
        del paper_model.network.forward


def test_smp_tiling_is_close_to_one_pass(nuclei):
    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="smp", encoder="resnet18"), tile=64)
    image = nuclei[0][:160, :160]
    res = run(predict(model, image, "YX", PredictConfig(tile=64), probabilities=True))
    ref = one_pass(model, image)
    # padded convolutions: not exact, but the measured halo keeps tiles consistent
    assert np.abs(res.probabilities - ref).max() < 0.05


@pytest.mark.parametrize("shape,tile", [((100, 77), 16), ((129, 200), 48), ((64, 64), 64)])
def test_padded_unet_tiled_equals_one_pass(nuclei, shape, tile):
    """The padded `unet`: with its receptive field as the halo, no tile's zero padding reaches
    its core, so tiles stitch exactly like the valid network's (one pass over the image
    mirror-extended by the halo)."""
    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="unet", depth=3, base_width=8, batch_norm=True, classes=3))
    assert model.halo == 48  # its receptive-field reach (46) rounded to a valid halo
    model.network.eval()
    image = np.tile(nuclei[0], (1, 2))[: shape[0], : shape[1]]
    tiled = run(predict(model, image, "YX", PredictConfig(tile=tile), probabilities=True))
    ref = one_pass(model, image)
    assert np.abs(tiled.probabilities - ref).max() < 1e-5
    smaller = run(predict(model, image, "YX", PredictConfig(tile=tile, halo=8), probabilities=True))
    assert np.abs(smaller.probabilities - ref).max() > 1e-3  # a short halo is not exact


def test_channels_last_check_looks_at_every_convolution():
    """A one-channel first convolution is in both memory formats at once: it must not make a
    contiguous network look converted (the predictor would then skip channels_last)."""
    import torch
    from torch import nn

    from napari_unet.tiling import _in_format

    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3))
    assert not _in_format(net, torch.channels_last)
    net.to(memory_format=torch.channels_last)
    assert _in_format(net, torch.channels_last)
