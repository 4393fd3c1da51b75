"""Live preview while training: region prediction, its cost budget, and the widget's layer."""

import numpy as np
import pytest

from napari_unet.config import ModelConfig, PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict, run
from napari_unet.preview import (
    Preview, PreviewRequest, clip_region, predict_region, region_probabilities, with_previews,
)
from napari_unet.training import TrainProgress


def _paper_model(mode="semantic"):
    import torch

    torch.manual_seed(0)
    return UNetModel.create(ModelConfig(arch="unet-paper", depth=2, base_width=4, mode=mode,
                                        classes=3 if mode == "instance" else 2))


@pytest.mark.parametrize("region", [(40, 130, 60, 200), (0, 70, 180, 256), (200, 256, 0, 256)])
def test_region_prediction_equals_the_whole_image_prediction_there(nuclei, region):
    """The halo comes from the image and the percentiles from the whole plane, so the preview
    shows exactly what predicting the whole image gives in that region (valid convolutions:
    tiling is exact)."""
    import torch

    image = nuclei[0]
    model = _paper_model()
    whole = run(predict(model, image, "YX", PredictConfig(device="cpu"))).labels
    labels, got = predict_region(model, PreviewRequest(image, "YX", region), torch.device("cpu"))
    y0, y1, x0, x1 = region
    assert got == region and labels.shape == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(labels, whole[y0:y1, x0:x1])
    assert not model.network.training  # left in eval mode, on its device


@pytest.mark.parametrize("region", [(40, 130, 60, 200), (0, 256, 0, 256), (180, 256, 200, 256)])
def test_padded_network_region_is_one_pass_with_mirrored_image_borders(nuclei, region):
    """A padded network runs once on region + halo (mirrored only where the image ends); the
    probabilities match whole-image prediction within the tiling tolerance of padded networks,
    and match one pass over the whole image much closer inside."""
    import torch

    torch.manual_seed(1)
    model = UNetModel.create(ModelConfig(arch="unet", depth=3, base_width=8))
    image = nuclei[0]
    whole = run(predict(model, image, "YX", PredictConfig(device="cpu", tile=512), probabilities=True))
    probs, got = region_probabilities(model, PreviewRequest(image, "YX", region), torch.device("cpu"))
    y0, y1, x0, x1 = region
    assert probs.shape == (2, y1 - y0, x1 - x0)
    assert np.abs(probs - whole.probabilities[:, y0:y1, x0:x1]).max() < 1e-3


def test_region_prediction_of_an_instance_model_and_a_channel_image(nuclei):
    import torch

    model = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4, mode="instance", classes=3, in_channels=2))
    image = np.stack([nuclei[0], nuclei[0][::-1]])  # CYX
    labels, region = predict_region(model, PreviewRequest(image, "CYX", (10, 90, 20, 60)), torch.device("cpu"))
    assert region == (10, 90, 20, 60) and labels.shape == (80, 40) and labels.dtype.kind == "i"
    with pytest.raises(ValueError, match="one plane"):
        predict_region(model, PreviewRequest(np.zeros((3, 2, 32, 32)), "ZCYX", (0, 8, 0, 8)), torch.device("cpu"))


def test_regions_are_clipped_and_bounded():
    assert clip_region((-5, 50, 10, 2000), (100, 300), 512) == (0, 50, 10, 300)
    assert clip_region((0, 1000, 0, 1000), (1000, 1000), 256) == (372, 628, 372, 628)  # centre kept
    assert clip_region((0, 1000, 900, 1000), (1000, 1000), 256) == (372, 628, 900, 1000)
    assert clip_region((50, 50, 0, 0), (64, 80), 512) == (0, 64, 0, 80)  # nothing visible: the plane


def _fake_training(epochs, seconds_per_epoch, now, closed):
    try:
        for e in range(1, epochs + 1):
            now[0] += seconds_per_epoch
            yield TrainProgress("step", e, epochs, 1, 1, 0.5, now[0])
            yield TrainProgress("epoch", e, epochs, 1, 1, 0.5, now[0])
        return "result"
    finally:
        closed.append(True)


def test_previews_follow_epochs_and_keep_within_their_budget(nuclei, monkeypatch):
    """A fake clock: an epoch costs 10 s, a preview 3 s. With a 10 % budget, previews are
    skipped until the run's time pays for them, and the share stays near the budget."""
    import torch

    from napari_unet import preview as P

    now = [0.0]

    def slow_region(model, request, device, max_side):
        now[0] += 3.0
        return np.ones((2, 2), np.int32), (0, 2, 0, 2)

    monkeypatch.setattr(P, "predict_region", slow_region)
    closed = []
    request = PreviewRequest(nuclei[0], "YX", (0, 2, 0, 2))
    gen = with_previews(_fake_training(30, 10.0, now, closed), lambda: _paper_model(), lambda: torch.device("cpu"),
                        lambda: request, budget=0.1, clock=lambda: now[0])
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            assert stop.value == "result"
            break
    previews = [i for i in items if isinstance(i, Preview)]
    kinds = [getattr(i, "kind", "preview") for i in items]
    assert all(kinds[kinds.index("preview", k) - 1] == "epoch" for k in range(len(kinds)) if kinds[k] == "preview")
    assert 5 <= len(previews) < 30  # some epochs skipped
    assert previews[-1].share <= 0.1 + 3.0 / now[0]  # within budget (plus one preview's overshoot)
    assert previews[0].plane_shape == nuclei[0].shape and closed == [True]


def test_no_request_no_preview_and_closing_closes_training(nuclei):
    import torch

    now, closed = [0.0], []
    gen = with_previews(_fake_training(3, 1.0, now, closed), lambda: _paper_model(), lambda: torch.device("cpu"),
                        lambda: None)
    assert [type(i).__name__ for i in list(gen)] == ["TrainProgress"] * 6
    closed.clear()
    gen = with_previews(_fake_training(3, 1.0, now, closed), lambda: _paper_model(), lambda: torch.device("cpu"),
                        lambda: PreviewRequest(nuclei[0], "YX", (0, 64, 0, 64)))
    next(gen)
    gen.close()  # Cancel: the training generator's cleanup runs
    assert closed == [True]


@pytest.mark.gui
def test_train_widget_live_preview_layer(make_napari_viewer, qtbot, tmp_path, nuclei):
    pytest.importorskip("napari")
    from napari_unet._widgets import TrainWidget
    from napari_unet._widgets._train import PREVIEW_LAYER

    v = make_napari_viewer()
    img = v.add_image(nuclei[0][:96, :128], name="img", scale=(0.5, 0.25))
    lab = v.add_labels(nuclei[1][:96, :128].astype(np.int32), name="lab")
    w = TrainWidget(v)
    w.image.value, w.labels.value = img, lab
    w.base_width.value, w.epochs.value, w.patch.value, w.batch.value, w.device.value = 8, 3, 48, 2, "cpu"
    w.save_path.value = str(tmp_path / "m.safetensors")
    w.live_preview.value = True
    seen = []
    w.run()
    qtbot.waitUntil(lambda: PREVIEW_LAYER in v.layers, timeout=120_000)
    seen.append(v.layers[PREVIEW_LAYER])
    qtbot.waitUntil(lambda: not w.job.running, timeout=120_000)
    layer = v.layers[PREVIEW_LAYER]
    assert layer is seen[0]  # one layer, updated in place
    assert layer.data.shape == (96, 128) and tuple(layer.scale) == (0.5, 0.25)
    meta = layer.metadata["napari_unet_preview"]
    assert meta["epoch"] >= 1 and meta["seconds"] > 0
    y0, y1, x0, x1 = meta["region"]
    assert 0 <= y0 < y1 <= 96 and 0 <= x0 < x1 <= 128
    assert w.labels.value is lab  # the preview never became the labels to train on
    assert "preview after epoch" in w.preview_info and "% of the run" in w.preview_info
    assert not (v.layers["img"].data != nuclei[0][:96, :128]).any()  # the image untouched
