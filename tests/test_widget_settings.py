"""The widgets start from the same defaults as the command line, and pass the new prediction
settings (test-time augmentation, object size) to the core."""

import dataclasses

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def test_train_widget_defaults_are_the_cli_defaults(make_napari_viewer):
    from napari_unet._widgets import TrainWidget
    from napari_unet.training import TrainConfig

    w = TrainWidget(make_napari_viewer())
    widget_config = w.config()
    cli = TrainConfig()
    for field in ("arch", "instance_targets", "base_width", "epochs", "patch", "batch", "lr", "val_fraction",
                  "time_limit", "mode"):
        assert getattr(widget_config, field) == getattr(cli, field), field
    assert widget_config.normalization == cli.normalization  # bright backgrounds kept as they are
    assert "2-core" in w.defaults_note.value
    assert not w.instance_targets.native.isHidden()  # (isHidden: the dock is not shown in tests)
    w.mode.value = "semantic"
    assert w.instance_targets.native.isHidden()
    w.time_limit.value = 5
    w.instance_targets.value = "3-class"
    w.mode.value = "instance"
    w.invert_bright.value = True
    cfg = w.config()
    assert cfg.time_limit == 5 and cfg.instance_targets == "3-class" and cfg.normalization.polarity == "auto"
    assert dataclasses.replace(cfg) == TrainConfig.from_json(cfg.to_json())  # replayable by the CLI


def test_train_widget_base_width_follows_the_device_until_set(make_napari_viewer, monkeypatch):
    from napari_unet import devices
    from napari_unet._widgets import TrainWidget

    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: False)  # a float32 CPU, as most laptops
    w = TrainWidget(make_napari_viewer())
    w.device.value = "cpu"
    assert w.base_width.value == 8 and w.config().base_width == 8
    assert "float32" in w.defaults_note.value and "2-core" in w.defaults_note.value
    w.arch.value = "unet-paper"
    assert w.base_width.value == 16  # width 8 was measured for the padded unet only
    w.arch.value = "unet"
    assert w.base_width.value == 8
    w.base_width.value = 24  # the user's choice is never overridden
    w.arch.value = "unet-paper"
    w.arch.value = "unet"
    w.device.value = "auto"
    assert w.base_width.value == 24 and w.config().base_width == 24


def test_predict_widget_passes_tta_and_object_size(make_napari_viewer, nuclei, monkeypatch, qtbot):
    from napari_unet import predict as P
    from napari_unet._widgets import PredictWidget
    from napari_unet._widgets._state import CURRENT

    monkeypatch.setattr(CURRENT, "model", None)  # the shared current model of earlier tests
    viewer = make_napari_viewer()
    viewer.add_image(nuclei[0][:64, :64], name="img")
    w = PredictWidget(viewer)
    w.image.value = viewer.layers["img"]
    w.device.value = "cpu"
    assert not w.object_size.native.isHidden()  # the bundled model is an instance model
    assert w.object_size.value == "off" and "auto" in w.object_size.choices
    names = [w.object_size.native.itemText(i) for i in range(w.object_size.native.count())]
    assert any("as trained (21 px" in n for n in names)  # names the size the model learned
    seen = {}
    real = P.predict

    def spy(model, image, axes=None, settings=None, *args, **kw):
        seen.setdefault("settings", settings)  # the widget's call (auto size predicts again inside)
        return real(model, image, axes, settings, *args, **kw)

    monkeypatch.setattr(P, "predict", spy)
    w.tta.value = True
    w.object_size.value = "auto"
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=120_000)
    assert seen["settings"].tta is True and seen["settings"].object_size == "auto", w.status.value
    assert "U-Net labels" in str([l.name for l in viewer.layers]), w.status.value
    assert isinstance(viewer.layers["img U-Net labels"], napari.layers.Labels)


def test_object_size_choices_say_that_a_model_trained_at_one_size_estimates_it():
    from napari_unet._widgets._predict import object_size_choices
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    m = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance",
                                     instance_targets="distance"), halo=16, tile=64)
    m.training["object_size"] = {"diameter": 24.0, "area": 452.0}
    assert object_size_choices(m)[0] == ("as trained (24 px, no rescaling)", "off")
    m.training["object_size"]["rescaled_to"] = 24.0
    first = object_size_choices(m)[0]
    assert first[1] == "off" and "estimated" in first[0]  # predict() estimates the size for such models
    assert "auto" not in [v for _, v in object_size_choices(m)]  # the same choice is not offered twice


def test_predict_widget_separates_objects_with_the_settings_chosen_as_the_cli_does(make_napari_viewer, nuclei,
                                                                                   monkeypatch, qtbot, load, tmp_path):
    """The instance settings are hidden until asked for, name the model's own values, and give
    the same Labels as the core (and so the command line) with the same settings."""
    from napari_unet._generators import run
    from napari_unet._widgets import PredictWidget
    from napari_unet._widgets._predict import MODELS
    from napari_unet._widgets._state import CURRENT
    from napari_unet.config import PredictConfig
    from napari_unet.modelfile import load_model
    from napari_unet.predict import predict
    from napari_unet.sample import SAMPLE_MODEL

    monkeypatch.setattr(CURRENT, "model", None)
    viewer = make_napari_viewer()
    crop = nuclei[0][:96, :96]
    viewer.add_image(crop, name="img")
    w = PredictWidget(viewer)
    w.image.value = viewer.layers["img"]
    w.device.value = "cpu"
    assert not w.adjust_objects.native.isHidden()  # the bundled model is an instance model
    assert all(box.native.isHidden() for box in w.post.values())  # until asked for
    w.adjust_objects.value = True
    assert not any(box.native.isHidden() for box in w.post.values())
    names = {n: box.native.itemText(0) for n, box in w.post.items()}
    assert names == {"seed_threshold": "the model's (0.5)", "seed_dynamic": "the model's (0.2)",
                     "foreground_threshold": "the model's (0.6)", "min_size": "the model's (17 px)"}
    assert all(box.value == MODELS for box in w.post.values())
    w.post["seed_threshold"].value = 0.8
    w.post["seed_dynamic"].value = 0.0  # off: one object per region above the threshold
    w.post["min_size"].value = 50
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=120_000)
    chosen = PredictConfig(device="cpu", seed_threshold=0.8, seed_dynamic=0.0, min_size=50)
    own = run(predict(load_model(SAMPLE_MODEL), crop, settings=PredictConfig(device="cpu"))).labels
    expected = run(predict(load_model(SAMPLE_MODEL), crop, settings=chosen)).labels
    got = viewer.layers["img U-Net labels"].data
    assert np.array_equal(got, expected), w.status.value
    assert not np.array_equal(got, own)
    w.adjust_objects.value = False  # hidden again: the model's own settings
    assert w.postprocessing_settings(w.model()) == {}
    w.adjust_objects.value = True
    assert w.postprocessing_settings(w.model()) == {"seed_threshold": 0.8, "seed_dynamic": 0.0, "min_size": 50}
    from napari_unet._widgets._predict import FILE
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    path = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4), tile=32).save(tmp_path / "sem.safetensors")
    w.source.value = FILE
    w.model_file.value = path
    assert w.adjust_objects.native.isHidden() and all(box.native.isHidden() for box in w.post.values())
    assert w.postprocessing_settings(w.model()) == {}  # a semantic model has no objects to separate


def test_predict_widget_chooses_the_settings_on_a_labels_layer_as_tune_does(make_napari_viewer, monkeypatch, qtbot,
                                                                           load, tmp_path):
    """'Choose the settings on these labels': the same choice as ``tune_on_pairs`` (and so
    ``napari-unet tune``), shown in the settings and used by the next Predict; the layers are
    not changed; labels of another shape are refused with the reason."""
    import tifffile

    from napari_unet._generators import run
    from napari_unet._widgets import PredictWidget
    from napari_unet._widgets._state import CURRENT
    from napari_unet.config import PredictConfig
    from napari_unet.data import Pair
    from napari_unet.evaluation import tune_on_pairs
    from napari_unet.modelfile import load_model
    from napari_unet.sample import SAMPLE_IMAGE, SAMPLE_LABELS, SAMPLE_MODEL

    monkeypatch.setattr(CURRENT, "model", None)
    image, truth = tifffile.imread(SAMPLE_IMAGE)[:256, :448], tifffile.imread(SAMPLE_LABELS)[:256, :448]
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    viewer.add_labels(truth.copy(), name="mine")
    viewer.add_labels(truth[:100].copy(), name="other shape")
    w = PredictWidget(viewer)
    w.image.value = viewer.layers["img"]
    w.device.value = "cpu"
    assert w.tune_button.native.isHidden()  # with the other instance settings, when asked for
    w.adjust_objects.value = True
    assert not w.tune_button.native.isHidden() and w.tune_button.enabled

    w.tune_labels.value = viewer.layers["other shape"]
    w.tune()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=120_000)
    assert "Choosing the settings failed" in w.status.value and "shape" in w.status.value
    assert all(box.value == -1 for box in w.post.values())  # nothing changed

    w.tune_labels.value = viewer.layers["mine"]
    w.tune()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=120_000)
    expected = run(tune_on_pairs(load_model(SAMPLE_MODEL), [Pair("mine", image, truth)], PredictConfig(device="cpu")))
    assert w.tuned.postprocessing == expected.postprocessing and w.tuned.ap == expected.ap, w.status.value
    assert expected.flags() in w.status.value
    post = expected.postprocessing
    assert w.postprocessing_settings(w.model()) == {
        "seed_threshold": post.interior_threshold, "seed_dynamic": post.seed_dynamic or 0.0,
        "foreground_threshold": post.foreground_threshold, "min_size": post.min_size}
    assert np.array_equal(viewer.layers["mine"].data, truth) and np.array_equal(viewer.layers["img"].data, image)
    viewer.add_labels(np.zeros((8, 8), np.int32), name="new layer")  # napari resets the widget's choices
    w.reset_choices()
    assert w.postprocessing_settings(w.model())["min_size"] == post.min_size  # the chosen values stay
    assert viewer.layers["new layer"] in w.tune_labels.choices  # the layer choices do follow
    from napari_unet._widgets._predict import FILE, MODELS
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    chosen = {n: box.value for n, box in w.post.items()}
    w._tuning_model = object()  # a tuning that ends after the user chose another model
    w._on_tuned(expected)
    assert "changed while" in w.status.value and {n: box.value for n, box in w.post.items()} == chosen

    other = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=4, classes=2, mode="instance",
                                         instance_targets="distance"), halo=16, tile=64)
    w.source.value = FILE
    w.model_file.value = other.save(tmp_path / "other.safetensors")
    assert all(box.value == MODELS for box in w.post.values())  # another model: its own settings again
    assert w.postprocessing_settings(w.model()) == {}
