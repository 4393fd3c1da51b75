"""napari front end, headless under Xvfb: widgets built with make_napari_viewer and driven
through their public methods, as a user would click them."""

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(make_napari_viewer, nuclei):
    v = make_napari_viewer()
    image, labels = nuclei
    v.add_image(image[:96, :128], name="img", scale=(0.5, 0.25), translate=(10, 20))
    v.add_labels(labels[:96, :128].astype(np.int32), name="lab")
    return v


def configure_tiny(w, tmp_path, epochs=2):
    w.base_width.value = 8
    w.epochs.value = epochs
    w.patch.value = 48
    w.batch.value = 4
    w.device.value = "cpu"
    w.save_path.value = str(tmp_path / "model.safetensors")


def make_tiny_config(w):
    """Shrink the network for a fast test: depth 2 is not a widget control, so patch the config."""
    from dataclasses import replace

    original = w.config

    def small():
        return replace(original(), depth=2, steps_per_epoch=4, tile=64)

    w.config = small


def wait_job(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.job is not None and not widget.job.running, timeout=timeout)
    qtbot.wait(50)


def test_train_from_layers_then_predict_labels_layer(viewer, qtbot, tmp_path, load):
    from napari_unet._widgets import PredictWidget, TrainWidget
    from napari_unet._widgets._state import CURRENT

    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    train.image.value = viewer.layers["img"]
    train.labels.value = viewer.layers["lab"]
    configure_tiny(train, tmp_path)
    make_tiny_config(train)
    before = viewer.layers["lab"].data.copy()
    assert train.start.enabled
    train.run()
    assert not train.start.enabled and train.cancel.enabled  # no second start while running
    wait_job(qtbot, train)
    assert "saved to" in train.status.value
    assert train.start.enabled and not train.cancel.enabled  # ready for the next run
    assert len(train.plot.epochs) == 2 and all(np.isfinite(train.plot.train))
    assert (tmp_path / "model.safetensors").exists()
    assert CURRENT.model is train.trainer.model
    np.testing.assert_array_equal(viewer.layers["lab"].data, before)  # user's layers untouched

    predict = PredictWidget(viewer)
    assert predict.source.value == "model trained in this session"
    predict.image.value = viewer.layers["img"]
    predict.device.value = "cpu"
    predict.tile.value = 32
    predict.run()
    wait_job(qtbot, predict)
    assert predict.run_button.enabled and not predict.cancel.enabled
    out = viewer.layers["img U-Net labels"]
    assert isinstance(out, napari.layers.Labels)
    assert out.data.shape == (96, 128) and np.issubdtype(out.data.dtype, np.integer)
    np.testing.assert_allclose(out.scale, (0.5, 0.25))
    np.testing.assert_allclose(out.translate, (10, 20))
    n_layers = len(viewer.layers)
    predict.run()  # re-running updates the same layer
    wait_job(qtbot, predict)
    assert len(viewer.layers) == n_layers

    # human in the loop: correct the result, fine-tune on it
    out.data[:10, :10] = out.data.max() + 1  # paint a missed object
    out.refresh()
    predict.run()  # the corrected layer is kept, a new one appears
    wait_job(qtbot, predict)
    assert "img U-Net labels [2]" in viewer.layers
    train.labels.value = out
    train.fine_tune.value = True
    train.epochs.value = 1
    train.run()
    wait_job(qtbot, train)
    assert train.trainer.init is not None
    history = train.trainer.model.history
    assert [h["epoch"] for h in history if not h.get("start")] == [1, 2, 3]  # 2 epochs + 1 fine-tuning
    assert [h["epoch"] for h in history if h.get("start")] == [2]  # the start model was scored


def test_cancel_mid_training_keeps_usable_model(viewer, qtbot, tmp_path, load):
    from napari_unet._widgets import TrainWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.modelfile import UNetModel

    train = TrainWidget(viewer)
    train.image.value = viewer.layers["img"]
    train.labels.value = viewer.layers["lab"]
    configure_tiny(train, tmp_path, epochs=200)
    make_tiny_config(train)
    train.run()
    qtbot.waitUntil(lambda: len(train.plot.epochs) >= 1, timeout=60_000)
    from napari.utils import progress

    assert any("Training U-Net" in (p.desc or "") for p in progress._all_instances)  # activity dock
    viewer.layers.remove("lab")  # deleting a layer mid-training does not break it
    train.stop()
    wait_job(qtbot, train)
    assert "Cancelled" in train.status.value
    assert not [p for p in progress._all_instances if "Training U-Net" in (p.desc or "")]
    saved = UNetModel.load(tmp_path / "model.safetensors")
    assert saved.training["best_epoch"] >= 1
    assert CURRENT.model is train.trainer.model
    assert train.start.enabled is False  # no labels layer left: Start disabled


def test_bad_inputs_are_explained(make_napari_viewer, qtbot, tmp_path, nuclei):
    from napari_unet._widgets import TrainWidget

    v = make_napari_viewer()
    train = TrainWidget(v)
    assert not train.start.enabled and "image layer" in train.status.value
    v.add_image(nuclei[0][:64, :64], name="img")
    assert not train.start.enabled and "Labels layer" in train.status.value
    v.add_labels(np.zeros((64, 64), np.int32), name="empty")
    train.image.value, train.labels.value = v.layers["img"], v.layers["empty"]
    configure_tiny(train, tmp_path)
    train.run()  # the labels are checked while preparing, in the worker
    qtbot.waitUntil(lambda: not train.job.running, timeout=60_000)
    assert "Cannot start" in train.status.value and "all zero" in train.status.value
    assert train.start.enabled and not (tmp_path / "model.safetensors").exists()
    v.add_labels(np.zeros((3, 64, 64), np.int32), name="3d")
    v.layers["3d"].data[1, 5:9, 5:9] = 1
    train.labels.value = v.layers["3d"]
    train.run()
    qtbot.waitUntil(lambda: not train.job.running, timeout=60_000)
    assert "shape" in train.status.value
    # the layer combos follow the viewer: a new layer is offered (and preselected, being the
    # active one); a removed one is neither offered nor kept as the choice
    v.add_image(np.ones((64, 64), np.float32) * 0.5, name="floaty")
    assert [layer.name for layer in train.image.choices] == ["img", "floaty"]
    assert train.image.value is v.layers["floaty"]
    v.layers.remove("floaty")
    assert [layer.name for layer in train.image.choices] == ["img"]
    assert train.image.value is v.layers["img"]
    train.run()  # runs on what is there: the 3D labels' shape is still the problem named
    qtbot.waitUntil(lambda: not train.job.running, timeout=60_000)
    assert "shape" in train.status.value and "Cannot start" in train.status.value


def test_predict_stack_and_multichannel(make_napari_viewer, qtbot, tmp_path, nuclei):
    from napari_unet._widgets import PredictWidget
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    v = make_napari_viewer()
    stack = np.stack([nuclei[0][:64, :64]] * 3)
    v.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    rgb = np.stack([nuclei[0][:48, :40]] * 3, axis=-1)
    v.add_image(rgb, name="rgb", rgb=True)
    gray_path = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "gray.safetensors")
    rgb_path = UNetModel.create(ModelConfig(depth=2, base_width=4, in_channels=3)).save(tmp_path / "rgb.safetensors")

    w = PredictWidget(v)
    w.source.value = "model file"
    w.model_file.value = gray_path
    w.device.value = "cpu"
    w.image.value = v.layers["stack"]
    assert "ZYX" in w.axes.choices
    w.axes.value = "ZYX"
    w.run()
    wait_job(qtbot, w)
    out = v.layers["stack U-Net labels"]
    assert out.data.shape == (3, 64, 64)
    np.testing.assert_allclose(out.scale, (2.0, 0.5, 0.5))

    w.model_file.value = rgb_path
    w.image.value = v.layers["rgb"]
    assert w.axes.choices == ("YXC",)
    w.probabilities.value = True
    w.run()
    wait_job(qtbot, w)
    assert v.layers["rgb U-Net labels"].data.shape == (48, 40)
    assert v.layers["rgb U-Net probabilities"].data.shape == (2, 48, 40)

    w.image.value = v.layers["stack"]
    w.axes.value = "CYX"  # read as 3 channels: the grayscale model cannot take it
    w.model_file.value = gray_path
    previous = w.job
    w.run()
    assert "3 channel(s)" in w.status.value and "takes 1" in w.status.value
    assert w.job is previous  # nothing was started


def test_settings_replay_in_cli(viewer, tmp_path):
    from napari_unet._widgets import TrainWidget
    from napari_unet.cli import build_parser
    from napari_unet.cli_train import train_config_from_args

    w = TrainWidget(viewer)
    w.mode.value = "semantic"
    w.unlabelled_zero.value = True
    w.epochs.value = 7
    w.lr.value = 0.002
    path = w.write_settings(tmp_path / "train.json")
    assert json.loads(path.read_text())["epochs"] == 7
    args = build_parser().parse_args(["train", "--images", "i", "--labels", "l", "--out", "m", "--config", str(path)])
    assert train_config_from_args(args) == w.config()


def test_device_hint_names_what_torch_sees(viewer):
    from napari_unet._widgets import TrainWidget

    w = TrainWidget(viewer)
    assert w.device_info.value.startswith("torch ")


def test_sample_data_loads(make_napari_viewer):
    v = make_napari_viewer()
    v.open_sample("napari-unet", "nuclei")
    assert isinstance(v.layers["nuclei"], napari.layers.Image)
    labels = v.layers["nuclei labels"]
    assert isinstance(labels, napari.layers.Labels) and labels.data.max() > 50


def test_manifest_validates():
    import npe2

    pm = npe2.PluginManifest.from_distribution("napari-unet")
    pm.validate_imports()
    names = {w.display_name for w in pm.contributions.widgets}
    assert names == {"Train U-Net", "Predict with U-Net"}
    segment = pm.contributions.menus["napari/layers/segment"]
    assert {m.command for m in segment} == {"napari-unet.train", "napari-unet.predict"}


def test_closing_napari_mid_training_stops_and_keeps_best_model(make_napari_viewer, qtbot, tmp_path, nuclei, load):
    """napari cancels its running workers when its window closes, and destroys the docks."""
    from napari_unet._widgets import PredictWidget, TrainWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.modelfile import UNetModel

    v = make_napari_viewer()
    v.add_image(nuclei[0][:96, :128], name="img")
    v.add_labels(nuclei[1][:96, :128].astype(np.int32), name="lab")
    train = TrainWidget(v)
    v.window.add_dock_widget(train)
    predict = PredictWidget(v)  # listens to the model training will hand over after closing
    v.window.add_dock_widget(predict)
    train.image.value, train.labels.value = v.layers["img"], v.layers["lab"]
    configure_tiny(train, tmp_path, epochs=200)
    make_tiny_config(train)
    train.run()
    path = tmp_path / "model.safetensors"
    qtbot.waitUntil(lambda: len(train.plot.epochs) >= 1 and path.exists(), timeout=120_000)
    job = train.job
    assert job.running
    v.close()  # napari closes: its window, the dock and our widget are destroyed
    qtbot.waitUntil(lambda: train.closed and predict.closed, timeout=10_000)
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)  # stops within seconds
    assert job.cancelled
    saved = UNetModel.load(path)
    assert saved.training["best_epoch"] >= 1
    assert CURRENT.model is train.trainer.model and CURRENT.path == path
    assert not [p for p in napari.utils.progress._all_instances if "Training U-Net" in (p.desc or "")]


def test_predict_offers_the_bundled_model_and_names_auto_values(make_napari_viewer, qtbot, tmp_path, nuclei, monkeypatch):
    from napari_unet._widgets import PredictWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel
    from napari_unet.sample import SAMPLE_MODEL

    bundled_name = "bundled nuclei model (DSB2018)"
    monkeypatch.setattr(CURRENT, "model", None)  # a fresh session
    bundled = UNetModel.load(SAMPLE_MODEL)
    v = make_napari_viewer()
    v.add_image(nuclei[0][:96, :128], name="img")
    w = PredictWidget(v)
    assert w.source.value == bundled_name  # ready to predict without training anything
    assert w.tile.value == 0 and w.tile.current_choice == f"auto ({bundled.tile})"
    assert w.halo.value == -1 and w.halo.current_choice == f"auto ({bundled.halo}, from the network)"
    assert bundled.halo == 96 and 32 in w.halo.choices  # padded unet: its receptive field, or a choice

    paper = UNetModel.create(ModelConfig(arch="unet-paper", depth=2, base_width=4), tile=128)
    w.source.value = "model file"
    w.model_file.value = paper.save(tmp_path / "paper.safetensors")
    assert w.tile.current_choice == "auto (128)"
    assert w.halo.current_choice == f"auto ({paper.halo}, fixed by the network)"
    assert w.halo.choices == (-1,)  # unet-paper: the valid convolutions decide
    padded = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4), tile=128)
    w.model_file.value = padded.save(tmp_path / "padded.safetensors")
    assert w.halo.current_choice == f"auto ({padded.halo}, from the network)"
    assert 32 in w.halo.choices and 64 in w.tile.choices
    w.halo.value = 32
    w.model_file.value = tmp_path / "missing.safetensors"
    assert not w.run_button.enabled and "Choose a model file" in w.status.value
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 20)
    w.model_file.value = tmp_path / "broken.safetensors"
    assert not w.run_button.enabled and "Cannot use this model" in w.status.value

    w.source.value = bundled_name
    w.image.value = v.layers["img"]
    w.device.value = "cpu"
    assert w.run_button.enabled
    w.run()
    wait_job(qtbot, w)
    found = v.layers["img U-Net labels"].data
    assert len(np.unique(found[found > 0])) >= 5  # it finds nuclei
    assert CURRENT.path == SAMPLE_MODEL  # and is now the session's model (to fine-tune)

    CURRENT.set(UNetModel.create(ModelConfig(depth=2, base_width=4)))
    assert w.source.value == "model trained in this session"
    assert bundled_name in w.source.choices  # always offered


def test_loss_plot_says_no_training_yet_then_labels_its_axes(qtbot):
    from napari_unet._widgets._plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    assert plot.state == "empty"
    assert plot.message.get_visible() and "No training yet" in plot.message.get_text()
    assert not plot.loss_axes.get_visible() and not plot.metric_axes.get_visible()  # no meaningless frame

    plot.add_epoch(0, float("nan"), 0.4, 0.6, "ap@0.5")  # fine-tuning: the starting model
    plot.add_epoch(1, 0.5, 0.35, 0.7, "ap@0.5")
    assert plot.state == "training" and not plot.message.get_visible()
    assert plot.epochs == [0, 1]
    assert plot.loss_axes.get_ylabel() == "loss" and plot.loss_axes.get_xlabel() == "epoch"
    assert plot.metric_axes.get_ylabel() == "validation AP@0.5"

    plot.figure.set_size_inches(4, 2.6)
    plot.figure.canvas.draw()
    renderer = plot.figure.canvas.get_renderer()
    figure_box = plot.figure.bbox
    boxes = {
        "loss label": plot.loss_axes.yaxis.label.get_window_extent(renderer),
        "metric label": plot.metric_axes.yaxis.label.get_window_extent(renderer),
        "epoch label": plot.loss_axes.xaxis.label.get_window_extent(renderer),
    }
    for name, box in boxes.items():  # readable: inside the figure, not on each other
        assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1, name
        assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1, name
    assert not boxes["loss label"].overlaps(boxes["metric label"])
    # one legend, inside the figure, above the axes: never over the curves
    assert len(plot.figure.legends) == 1 and not plot.loss_axes.get_legend()
    legend = plot.figure.legends[0].get_window_extent(renderer)
    axes_box = plot.loss_axes.get_window_extent(renderer)
    assert legend.y0 >= axes_box.y1 - 1 and legend.y1 <= figure_box.y1 + 1
    assert figure_box.x0 - 1 <= legend.x0 and legend.x1 <= figure_box.x1 + 1
    frame = plot.loss_axes.get_window_extent(renderer)
    assert boxes["loss label"].x1 <= frame.x0 and boxes["metric label"].x0 >= frame.x1  # one on each side
    for tick in plot.metric_axes.get_yticklabels():
        if tick.get_text():
            assert not tick.get_window_extent(renderer).overlaps(boxes["metric label"])

    plot.clear()
    assert plot.state == "empty" and plot.message.get_visible()


def test_widget_messages_before_and_during_a_run(make_napari_viewer, qtbot, tmp_path, nuclei, monkeypatch):
    from napari_unet._widgets import PredictWidget, TrainWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.training import Trainer, TrainProgress

    monkeypatch.setattr(CURRENT, "model", None)
    v = make_napari_viewer()
    predict = PredictWidget(v)
    assert not predict.run_button.enabled and predict.status.value == "Add an image layer to predict."
    v.add_image(nuclei[0][:64, :64], name="img")
    predict.source.value = "model trained in this session"
    assert not predict.run_button.enabled and "Train a model first" in predict.status.value

    v.add_labels(nuclei[1][:64, :64].astype(np.int32), name="lab")
    train = TrainWidget(v)
    train.image.value, train.labels.value = v.layers["img"], v.layers["lab"]
    configure_tiny(train, tmp_path)
    train.fine_tune.value = True
    train.run()
    assert "No current model to fine-tune" in train.status.value and train.job is None
    train.fine_tune.value = False

    train._add_pair()
    v.add_labels(nuclei[1][:64, :64].astype(np.int32), name="lab2")
    train.labels.value = v.layers["lab2"]
    train._add_pair()
    v.layers.remove("lab2")
    train.run()
    assert "Cannot start" in train.status.value and "no longer exists" in train.status.value
    train._pairs.clear()

    def endless(self):  # a training run that goes on until cancelled, at a human pace
        import time

        for step in range(1, 10**6):
            time.sleep(0.02)
            yield TrainProgress("step", 1, 1, step, 10**6, 0.5, 0.1)

    monkeypatch.setattr(Trainer, "run", endless)
    train.labels.value = v.layers["lab"]
    train.run()
    qtbot.waitUntil(lambda: train.progress.value > 0, timeout=60_000)
    first = train.job
    train.run()  # a second click (the button is disabled; a script could still call it)
    assert train.status.value == "Training is already running." and train.job is first
    train.stop()
    qtbot.waitUntil(lambda: not first.running, timeout=60_000)
    assert "Cancelled" in train.status.value and train.start.enabled


def test_train_3d_on_a_volume_layer_then_predict_it(make_napari_viewer, qtbot, tmp_path, data_dir):
    """3D from the widgets: a real nuclei volume (ZYX, anisotropic voxels) and its labels
    layer, the network set to 3D, trained, then predicted back as a 3D Labels layer with the
    image's scale; the 2D preview is not offered for 3D."""
    import tifffile

    from napari_unet._widgets import PredictWidget, TrainWidget

    v = make_napari_viewer()
    image = tifffile.imread(data_dir / "bbbc050_16cell_crop.tif")
    labels = tifffile.imread(data_dir / "bbbc050_16cell_crop_labels.tif").astype(np.int32)
    v.add_image(image, name="vol", scale=(1.75, 0.8, 0.8))
    v.add_labels(labels, name="nuclei", scale=(1.75, 0.8, 0.8))
    train = TrainWidget(v)
    train.image.value, train.labels.value = v.layers["vol"], v.layers["nuclei"]

    def shown(widget):  # the viewer window is not shown in tests: ask whether it was hidden
        return not widget.native.isHidden()

    assert not shown(train.patch_z) and shown(train.live_preview)  # 2D by default
    train.dims.value = 3
    assert shown(train.patch_z) and not shown(train.live_preview)
    configure_tiny(train, tmp_path, epochs=2)
    train.base_width.value = 4
    train.patch.value = 32
    train.patch_z.value = 8
    train.batch.value = 2
    make_tiny_config(train)
    assert train.config().dims == 3 and train.config().network_arch == "unet3d"
    train.run()
    wait_job(qtbot, train)
    assert "saved to" in train.status.value, train.status.value
    assert train.trainer.model.config.dims == 3

    predict = PredictWidget(v)
    predict.image.value = v.layers["vol"]
    predict.device.value = "cpu"
    predict.run()
    wait_job(qtbot, predict)
    out = v.layers["vol U-Net labels"]
    assert out.data.shape == image.shape
    np.testing.assert_allclose(out.scale, (1.75, 0.8, 0.8))


def test_predict_links_2d_objects_through_z(make_napari_viewer, qtbot, data_dir):
    import tifffile

    from napari_unet._widgets import PredictWidget

    v = make_napari_viewer()
    v.add_image(tifffile.imread(data_dir / "bbbc050_16cell_crop.tif")[8:16], name="stack")
    w = PredictWidget(v)
    w.source.value = "bundled nuclei model (DSB2018)"  # a 2D nuclei model, whatever ran before
    w.image.value = v.layers["stack"]
    w.device.value = "cpu"
    w.run()
    wait_job(qtbot, w)
    plain = v.layers["stack U-Net labels"].data.copy()
    w.link_z.value = True
    w.run()
    wait_job(qtbot, w)
    linked = v.layers["stack U-Net labels"].data
    assert (linked > 0).sum() == (plain > 0).sum()
    assert len(np.unique(linked)) < len(np.unique(plain))


def test_export_to_bioimageio_then_open_the_package_in_predict(make_napari_viewer, qtbot, tmp_path, nuclei, monkeypatch):
    from napari_unet._widgets import PredictWidget
    from napari_unet._widgets._state import CURRENT

    monkeypatch.setattr(CURRENT, "model", None)
    v = make_napari_viewer()
    v.add_image(nuclei[0], name="img")
    w = PredictWidget(v)  # the bundled model is chosen
    w.device.value = "cpu"
    w.export(tmp_path / "nuclei.zip")
    assert "authors" in w.status.value and not (tmp_path / "nuclei.zip").exists()
    w.authors.value = "A. Biologist, B. Engineer"
    w.export(tmp_path / "nuclei.zip")
    wait_job(qtbot, w, timeout=120_000)
    assert w.status.value.startswith("Wrote nuclei.zip"), w.status.value
    w.run()
    wait_job(qtbot, w)
    bundled = v.layers["img U-Net labels"].data.copy()

    w.source.value = "model file"
    w.model_file.value = tmp_path / "nuclei.zip"
    assert not w.trust_code.native.isHidden() and not w.trust_code.value  # a package: offered, off by default
    assert w.run_button.enabled, w.status.value  # our own package needs no trust
    w.run()
    wait_job(qtbot, w)
    again = v.layers["img U-Net labels"].data
    assert bundled.max() > 20 and np.array_equal(again, bundled)  # the same ids from the package


def test_dask_layer_is_predicted_into_a_zarr_store_as_a_lazy_labels_layer(make_napari_viewer, qtbot, tmp_path, nuclei, monkeypatch):
    import dask.array as da
    import zarr

    from napari_unet._generators import run
    from napari_unet._widgets import PredictWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.config import PredictConfig
    from napari_unet.modelfile import UNetModel
    from napari_unet.predict import predict
    from napari_unet.sample import SAMPLE_MODEL

    monkeypatch.setattr(CURRENT, "model", None)
    v = make_napari_viewer()
    v.add_image(da.from_array(nuclei[0], chunks=64), name="big")
    w = PredictWidget(v)
    w.image.value = v.layers["big"]
    w._image_changed()
    assert w.to_zarr.value  # a dask layer: blockwise into a store, chosen by itself
    w.store.value = tmp_path / "big_unet.zarr"
    w.device.value = "cpu"
    w.tile.value = 64
    w.probabilities.value = True

    w.run()  # cancel at once: the store stays partial, and resumable
    w.stop()
    wait_job(qtbot, w)
    w.run()
    wait_job(qtbot, w, timeout=120_000)
    layer = v.layers["big U-Net labels"]
    assert isinstance(layer.data, da.Array)  # lazy: read from the store as napari browses
    assert zarr.open_group(str(tmp_path / "big_unet.zarr")).attrs["napari_unet"]["status"] == "complete"
    whole = run(predict(UNetModel.load(SAMPLE_MODEL), nuclei[0], settings=PredictConfig(device="cpu", tile=64))).labels
    got = np.asarray(layer.data)
    assert whole.max() > 20 and len(np.unique(got)) == len(np.unique(whole))
    probs = v.layers["big U-Net labels probabilities"]
    assert isinstance(probs.data, da.Array) and not probs.visible and probs.data.shape == (2,) + nuclei[0].shape


def test_fine_tune_shows_and_locks_the_current_models_network(viewer, monkeypatch):
    """Fine-tuning trains the current model's network: the widget shows its settings (not the
    device defaults) and locks them, follows a new current model, and unlocks when unticked."""
    import copy
    from dataclasses import replace

    from napari_unet._widgets import TrainWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.modelfile import UNetModel
    from napari_unet.sample import SAMPLE_MODEL

    monkeypatch.setattr(CURRENT, "model", None)
    train = TrainWidget(viewer)
    train.mode.value = "semantic"
    train.base_width.value = 8
    train.invert_bright.value = True
    bundled = UNetModel.load(SAMPLE_MODEL)
    width = bundled.config.base_width
    monkeypatch.setattr(CURRENT, "model", bundled)
    train.fine_tune.value = True
    assert (train.mode.value, train.arch.value, train.base_width.value) == ("instance", "unet", width)
    assert train.instance_targets.value == bundled.config.instance_targets
    assert train.invert_bright.value is False  # the bundled model learned its images as they are
    assert not any(c.enabled for c in (train.mode, train.arch, train.base_width, train.dims, train.invert_bright))
    assert f"base width {width}" in train.defaults_note.value
    train.device.value = "cpu"  # the device's default width must not replace the model's
    assert train.base_width.value == width

    other = copy.copy(bundled)
    other.config = replace(bundled.config, arch="unet3d-paper", base_width=12)
    monkeypatch.setattr(CURRENT, "model", other)
    CURRENT.changed.emit(other)  # e.g. a model just trained or loaded in Predict
    assert (train.arch.value, train.dims.value, train.base_width.value) == ("unet-paper", 3, 12)

    train.fine_tune.value = False
    assert all(c.enabled for c in (train.mode, train.arch, train.base_width, train.dims))
