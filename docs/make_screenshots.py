"""Take the user guide's screenshots in a real napari window (run under Xvfb):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py [--only export|big MOSAIC.tif|3d MODEL VOLUME.tif]

Steps: open the sample data, dock both widgets, train a few epochs from the layers, predict
with the bundled model, correct a label, fine-tune. Writes docs/images/guide_*.png.
``--only export``: export the bundled model to bioimage.io from the Predict widget, then open the
package again (guide_6, guide_7). ``--only tune [MODEL]``: choose the instance settings on the
sample's labels, then predict with them (guide_10). ``--only 3d MODEL VOLUME``: a 3D rendering of a predicted volume.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_unet._widgets import PredictWidget, TrainWidget
from napari_unet.sample import SAMPLE_MODEL

OUT = Path(__file__).parent / "images"


def pump(seconds: float = 0.3) -> None:
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait(widget, timeout: float = 900) -> None:
    end = time.time() + timeout
    while widget.job is not None and widget.job.running and time.time() < end:
        pump(0.2)
    pump(0.5)


def shot(viewer, name: str) -> None:
    pump(0.5)
    viewer.window.screenshot(str(OUT / f"guide_{name}.png"), canvas_only=False, flash=False)
    print("wrote", OUT / f"guide_{name}.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-unet user guide")
    viewer.window._qt_window.resize(1800, 1100)
    viewer.open_sample("napari-unet", "nuclei")
    shot(viewer, "1_sample")

    train = TrainWidget(viewer)
    train_dock = viewer.window.add_dock_widget(train, name="Train U-Net", area="right")
    train.image.value = viewer.layers["nuclei"]
    train.labels.value = viewer.layers["nuclei labels"]
    train.epochs.value = 12  # default settings otherwise: about 6 s per epoch on 2 CPU cores
    tmp = Path(tempfile.mkdtemp())
    train.save_path.value = str(tmp / "nuclei.safetensors")
    train.live_preview.value = True
    train.run()
    end = time.time() + 900
    while (len(train.plot.epochs) < 10 or "U-Net preview" not in viewer.layers) and time.time() < end:
        pump(0.2)
    viewer.layers["nuclei labels"].visible = False  # the preview over the image
    shot(viewer, "2_training")
    viewer.layers["nuclei labels"].visible = True
    wait(train)
    if "U-Net preview" in viewer.layers:
        viewer.layers.remove("U-Net preview")
    shot(viewer, "3_trained")

    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict, name="Predict with U-Net", area="right", tabify=True)
    predict.source.value = "model file"
    predict.model_file.value = str(SAMPLE_MODEL)
    predict.image.value = viewer.layers["nuclei"]
    predict.run()
    wait(predict)
    viewer.layers["nuclei labels"].visible = False
    shot(viewer, "4_predicted")

    out = viewer.layers["nuclei U-Net labels"]
    data = out.data.copy()
    data[:60, :60] = 0  # a correction: erase the objects in a corner
    out.data = data
    viewer.layers.selection.active = out
    train.labels.value = out
    train.fine_tune.value = True
    train.live_preview.value = False
    train.epochs.value = 2
    train.run()
    wait(train)
    train_dock.raise_()  # the Train tab: its curve starts at epoch 0, the starting model's score
    pump(0.5)
    shot(viewer, "5_finetuned")
    viewer.close()


def sample_with_predict():
    """A viewer with the sample data and the Predict widget docked on its image."""
    viewer = napari.Viewer(title="napari-unet user guide")
    viewer.window._qt_window.resize(1800, 1100)
    viewer.open_sample("napari-unet", "nuclei")
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict, name="Predict with U-Net", area="right")
    predict.image.value = viewer.layers["nuclei"]
    return viewer, predict


def export() -> None:
    viewer, predict = sample_with_predict()
    predict.authors.value = "A. Biologist"
    package = Path(tempfile.mkdtemp()) / "nuclei_model.zip"
    predict.export(package)
    wait(predict)
    shot(viewer, "6_exported")
    predict.source.value = "model file"
    predict.model_file.value = str(package)
    predict.run()
    wait(predict)
    viewer.layers["nuclei labels"].visible = False
    shot(viewer, "7_package_predicted")
    viewer.close()


def big(mosaic: str) -> None:
    """A big compressed TIFF opened lazily (dask), predicted into a zarr store: lazy labels."""
    import dask.array as da
    import zarr

    from napari_unet.io import open_image

    viewer = napari.Viewer(title="napari-unet user guide")
    viewer.window._qt_window.resize(1800, 1100)
    lazy = open_image(mosaic)
    viewer.add_image(da.from_zarr(lazy) if isinstance(lazy, zarr.Array) else da.from_array(lazy), name="mosaic",
                     contrast_limits=(0, 120))
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict, name="Predict with U-Net", area="right")
    predict.image.value = viewer.layers["mosaic"]
    predict._image_changed()
    predict.store.value = str(Path(tempfile.mkdtemp()) / "mosaic_unet.zarr")
    predict.source.value = "bundled nuclei model (DSB2018)"
    predict.device.value = "cpu"
    predict.run()
    wait(predict, timeout=1800)
    viewer.camera.zoom = 1.2
    viewer.camera.center = (0, 700, 700)
    shot(viewer, "9_big_lazy_labels")
    viewer.close()


def tune(model: str | None = None) -> None:
    """Choose the instance settings on a Labels layer (the sample's labels, standing for a
    corrected prediction), then predict with them (guide_10)."""
    viewer, predict = sample_with_predict()
    if model:
        predict.source.value = "model file"
        predict.model_file.value = model
    predict.device.value = "cpu"
    predict.adjust_objects.value = True
    predict.tune_labels.value = viewer.layers["nuclei labels"]
    predict.tune()
    wait(predict)
    status = predict.status.value
    predict.run()
    wait(predict)
    predict.status.value = status  # what the choice gave, as the user saw it before predicting
    viewer.layers["nuclei labels"].visible = False
    shot(viewer, "10_settings_chosen")
    viewer.close()


def volume(model: str, image: str) -> None:
    import tifffile

    viewer = napari.Viewer(title="napari-unet user guide", ndisplay=3)
    viewer.window._qt_window.resize(1800, 1100)
    data = tifffile.imread(image)
    viewer.add_image(data, name="nuclei volume", scale=(2.0, 1.0, 1.0), rendering="attenuated_mip")
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict, name="Predict with U-Net", area="right")
    predict.image.value = viewer.layers["nuclei volume"]
    predict.source.value = "model file"
    predict.model_file.value = model
    predict.device.value = "cpu"
    predict.run()
    wait(predict)
    viewer.layers["nuclei volume"].visible = False
    viewer.reset_view()
    viewer.camera.angles = (0, -25, 60)
    viewer.camera.zoom = 3.5
    shot(viewer, "8_volume_3d")
    viewer.close()


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--only"] and sys.argv[2] == "export":
        export()
    elif sys.argv[1:2] == ["--only"] and sys.argv[2] == "big":
        big(sys.argv[3])
    elif sys.argv[1:2] == ["--only"] and sys.argv[2] == "tune":
        tune(sys.argv[3] if len(sys.argv) > 3 else None)
    elif sys.argv[1:2] == ["--only"] and sys.argv[2] == "3d":
        volume(sys.argv[3], sys.argv[4])
    else:
        main()
