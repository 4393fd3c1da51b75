"""Predict with U-Net: overlap-tile prediction of an image layer into a Labels layer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, ProgressBar

from napari_unet.config import POSTPROCESSING_FIELDS

from ._layers import axes_choices, checksum, layer_choices, resolve_axes, spatial_transform
from ._state import CURRENT
from ._worker import CANCELLED, Job

if TYPE_CHECKING:
    import napari

LAST = "model trained in this session"
BUNDLED = "bundled nuclei model (DSB2018)"
FILE = "model file"
TILES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
HALOS = (0, 16, 32, 48, 64, 96, 128, 192, 256)
AUTO = "auto (the model's)"
BATCHES = [("auto (1 on the CPU, 4 on a GPU)", 0)] + [(str(b), b) for b in (1, 2, 4, 8, 16, 32)]


def tile_choices(model) -> list[tuple[str, int]]:
    """Tile sizes for a ComboBox: 0 = the model's default, shown with its value."""
    if model is None:
        return [(AUTO, 0)] + [(str(t), t) for t in TILES]
    from napari_unet.models import axes_geometry

    step = axes_geometry(model.geometry)[-1].step
    return [(f"auto ({_shown(model.tile)})", 0)] + [(str(t), t) for t in TILES if t >= step]


def _shown(value) -> str:
    """A tile or halo: one number, or z x y x x for 3D models."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def halo_choices(model) -> list[tuple[str, int]]:
    """Halos for a ComboBox: -1 = the model's own; networks with valid convolutions have no other."""
    if model is None:
        return [(AUTO, -1)] + [(str(h), h) for h in HALOS]
    from napari_unet.models import axes_geometry

    if not axes_geometry(model.geometry)[-1].padded:
        return [(f"auto ({_shown(model.halo)}, fixed by the network)", -1)]
    return [(f"auto ({_shown(model.halo)}, from the network)", -1)] + [(str(h), h) for h in HALOS]


OBJECT_SIZES = [("as trained (no rescaling)", "off"), ("auto (estimate)", "auto")] + [
    (f"{d} px", float(d)) for d in (8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)]


def object_size_choices(model) -> list[tuple[str, object]]:
    """Object diameters for a ComboBox, naming the size the model learned when it is known."""
    from napari_unet.predict import rescaled_to, trained_diameter

    learned = trained_diameter(model) if model is not None else None
    if learned is None:
        return OBJECT_SIZES
    one_size = rescaled_to(model) if model is not None else None
    if one_size:  # trained at one size: its default estimates the size
        return [(f"auto (trained on {one_size:.0f} px objects: estimated)", "off")] + OBJECT_SIZES[2:]
    return [(f"as trained ({learned:.0f} px, no rescaling)", "off")] + OBJECT_SIZES[1:]


MODELS = -1  # choice value: keep the model's own post-processing setting
POST_CHOICES = {  # PredictConfig field: the values offered besides the model's own
    "seed_threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "seed_dynamic": (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4),
    "foreground_threshold": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "min_size": (0, 5, 10, 15, 20, 30, 50, 100, 200),
}


def _post_value(name: str, value) -> str:
    if name == "seed_dynamic" and not value:
        return "off"
    return f"{value} px" if name == "min_size" else f"{value:g}"


def postprocessing_choices(model, name: str, extra=None) -> list[tuple[str, float]]:
    """Choices of one instance post-processing setting (``name``: a PredictConfig field) for a
    ComboBox: first the model's own value (MODELS), named, then the values offered (with
    ``extra``, a value tuned on the user's labels, in its place)."""
    first = "the model's"
    if model is not None and model.config.mode == "instance":
        from napari_unet.instances import PostProcessing

        own = getattr(PostProcessing.from_json(model.postprocessing, model.config.classes), POSTPROCESSING_FIELDS[name])
        first = f"the model's ({_post_value(name, own)})"
    values = sorted(set(POST_CHOICES[name]) | ({extra} if extra is not None else set()))
    return [(first, MODELS)] + [(_post_value(name, v), v) for v in values]


def set_choices(box: ComboBox, choices: list[tuple[str, object]]) -> None:
    """New choices in their order, keeping the chosen value when it is still offered
    (magicgui alone moves a renamed choice, such as the model's own value, to the end)."""
    if [box.native.itemText(i) for i in range(box.native.count())] == [name for name, _ in choices]:
        return
    value = box.value
    box.choices = []
    box.choices = choices
    if any(value == v for _, v in choices):
        box.value = value


class PredictWidget(Container):
    """Dock widget: predict an image layer with the current model or a model file.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are predicted.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.image = ComboBox(label="image", choices=lambda w: layer_choices(viewer, "image"), tooltip="Image layer to segment")
        self.axes = ComboBox(label="image axes", choices=["auto"], value="auto",
                             tooltip="Layout of the image: stacks (ZYX, TYX) are predicted plane by plane; "
                                     "C marks a channel axis")
        self.source = ComboBox(label="model", choices=[LAST, BUNDLED, FILE], value=BUNDLED,
                               tooltip="The model trained (or loaded) in this session, the nuclei model that "
                                       "comes with napari-unet (trained on DSB2018 fluorescence nuclei), or a file")
        self.model_file = FileEdit(label="model file", mode="r", filter="*.safetensors *.zip *.yaml",
                                   tooltip="A napari-unet model (.safetensors) or a bioimage.io package (.zip, rdf.yaml)")
        self.trust_code = CheckBox(
            text="trust this package's code", value=False,
            tooltip="bioimage.io packages not made by napari-unet contain code (TorchScript, Python files) that "
                    "runs when they are used. Tick only for packages whose authors you trust.")
        self.tile = ComboBox(label="tile", choices=tile_choices(None), value=0,
                             tooltip="Output pixels per tile side; the halo is added around it. auto = the "
                                     "model's default. Larger tiles are faster but need more memory.")
        self.halo = ComboBox(label="halo", choices=halo_choices(None), value=-1,
                             tooltip="Context on each side of a tile, taken from the neighbouring image "
                                     "(mirrored at the borders). auto = what the network needs; unet-paper's "
                                     "valid convolutions fix it.")
        self.batch = ComboBox(label="batch", choices=BATCHES, value=0,
                              tooltip="Tiles per forward pass. auto = 1 on the CPU (as fast as more, and far "
                                      "lighter), 4 on a GPU; halved by itself when the GPU runs out of memory.")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.probabilities = CheckBox(text="also add probabilities", value=False)
        self.tta = CheckBox(text="test-time augmentation (8x slower)", value=False,
                            tooltip="Average the predictions of the 8 flips and 90 degree rotations of every "
                                    "tile (as the U-Net paper did): smoother, usually more accurate")
        self.object_size = ComboBox(label="object size", choices=OBJECT_SIZES, value="off",
                                    tooltip="Instance models: typical object diameter in this image. The image is "
                                            "rescaled so that objects have the size the model learned (like "
                                            "Cellpose's diameter). auto = estimated from a first prediction")
        self.adjust_objects = CheckBox(
            text="adjust how objects are separated", value=False,
            tooltip="Instance models: change the settings that turn probabilities into objects (tuned on the "
                    "model's validation images). Nuclei from another lab may want others, like Cellpose's and "
                    "StarDist's thresholds; the command line takes the same settings")
        tips = {
            "seed_threshold": "Height (P(interior), or the distance to the border) a seed must exceed: higher = "
                              "fewer, surer objects",
            "seed_dynamic": "How deep the valley between two maxima must be to make two objects: higher = fewer "
                            "splits of touching objects; off = one object per region above the seed threshold",
            "foreground_threshold": "Probability of foreground an object grows into: higher = tighter outlines",
            "min_size": "Smallest object kept, in pixels (voxels for 3D models)",
        }
        self.post = {name: ComboBox(label=name.replace("_", " "), choices=postprocessing_choices(None, name),
                                    value=MODELS, tooltip=tips[name]) for name in POST_CHOICES}
        self.tune_labels = ComboBox(label="your labels", choices=lambda w: layer_choices(viewer, "labels"),
                                    tooltip="A Labels layer of this image's objects, painted or corrected (30 objects "
                                            "or more): the settings above are chosen to match it")
        self.tune_button = PushButton(
            text="Choose the settings on these labels",
            tooltip="Predict the image and choose the seed and size settings that best reproduce your labels (the "
                    "network is not changed; seconds, not a retraining). Like StarDist's threshold optimisation; "
                    "the command line's `napari-unet tune` does the same")
        self._tuned: dict = {}  # PredictConfig field: value chosen on the user's labels
        self._post_model = None  # the model the settings above were chosen for
        self._tuning_model = None  # the model a running tuning chooses settings for
        self.tuned = None  # what the last tuning found (evaluation.Tuned)
        self._doing = "Prediction"  # what the running job is, for its error message
        self.run_button = PushButton(text="Predict")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.status = Label(value="")
        self.to_zarr = CheckBox(
            text="write to a zarr store (large images)", value=False,
            tooltip="Predict block by block into a zarr store on disk, with bounded memory, and show the result "
                    "as a lazy Labels layer; chosen by itself for multiscale and dask layers. A cancelled run "
                    "resumes where it stopped when you predict into the same store again.")
        self.store = FileEdit(label="zarr store", mode="w", filter="*.zarr",
                              tooltip="Where the labels go (default: next to the image's file, or your home folder)")
        self.authors = LineEdit(label="authors", value="",
                                tooltip="Who made the model (comma-separated), for the bioimage.io package")
        self.export_button = PushButton(text="Export to bioimage.io...",
                                        tooltip="Save the chosen model as a bioimage.io package (.zip) for Fiji "
                                                "(deepImageJ), ilastik, QuPath or BiaPy; the image layer gives its test data")
        self.link_z = CheckBox(
            text="link objects through z", value=False,
            tooltip="2D instance models on Z stacks: objects of consecutive planes that overlap (IoU > 0.25) "
                    "get one id, like Cellpose's stitch threshold; 3D models separate objects in 3D anyway")
        self.extend([self.image, self.axes, self.source, self.model_file, self.trust_code, self.tile, self.halo,
                     self.batch, self.device, self.object_size, self.tta, self.link_z, self.adjust_objects,
                     *self.post.values(), self.tune_labels, self.tune_button, self.probabilities,
                     self.to_zarr, self.store, self.run_button, self.cancel, self.progress, self.status, self.authors, self.export_button])
        self.status.native.setWordWrap(True)
        self.job: Job | None = None
        self._loaded: tuple[tuple, object] | None = None  # ((path, mtime), model) of the last file read
        self._load_error = ""
        self.run_button.changed.connect(self.run)
        self.cancel.changed.connect(self.stop)
        self.image.changed.connect(self._refresh)
        self.image.changed.connect(self._image_changed)
        self.to_zarr.changed.connect(self._refresh)
        self.adjust_objects.changed.connect(self._refresh)
        self.source.changed.connect(self._refresh)
        self.model_file.changed.connect(self._refresh)
        self.trust_code.changed.connect(self._refresh)
        self.export_button.changed.connect(self._ask_export)
        self.tune_button.changed.connect(self.tune)
        self.closed = False
        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        CURRENT.changed.connect(self._model_changed)
        self.native.destroyed.connect(self._on_destroyed)
        if CURRENT.model is not None:
            self.source.value = LAST
        self._refresh()

    def _on_destroyed(self, *args) -> None:
        """The dock or napari was closed: stop listening and cancel a running prediction
        (nothing here touches the deleted Qt widgets)."""
        self.closed = True
        self.viewer.layers.events.inserted.disconnect(self._layers_changed)
        self.viewer.layers.events.removed.disconnect(self._layers_changed)
        CURRENT.changed.disconnect(self._model_changed)
        if self.job is not None and self.job.running:
            self.job.cancel()

    def _model_changed(self, model) -> None:
        if self.closed or (self._loaded is not None and model is self._loaded[1]):
            return  # gone, or our own file load: keep "model file" selected
        self.source.value = LAST
        self._refresh()

    def reset_choices(self, *args) -> None:
        """The layer choices follow the viewer's layers (napari calls this when layers come and
        go). The other choices are the widget's own (_refresh): magicgui's reset would put back
        the ones they started with and drop a value chosen since, such as a tuned minimum size."""
        self.image.reset_choices()
        self.tune_labels.reset_choices()

    def _layers_changed(self, event=None) -> None:
        self.reset_choices()
        self._refresh()

    def _refresh(self, event=None) -> None:
        running = self.job is not None and self.job.running
        self.axes.choices = axes_choices(self.image.value)
        self.model_file.visible = self.source.value == FILE
        self.trust_code.visible = self._package_chosen()
        self.store.visible = bool(self.to_zarr.value)
        model = self._chosen()
        set_choices(self.tile, tile_choices(model))
        set_choices(self.halo, halo_choices(model))
        set_choices(self.object_size, object_size_choices(model))
        instance = model is not None and model.config.mode == "instance"
        self.object_size.visible = self.adjust_objects.visible = instance
        if model is not self._post_model:  # another model: its own settings, not those chosen for the last
            self._post_model, self._tuned = model, {}
            for box in self.post.values():
                box.value = MODELS
        for name, box in self.post.items():
            set_choices(box, postprocessing_choices(model, name, self._tuned.get(name)))
            box.visible = instance and bool(self.adjust_objects.value)
        self.tune_labels.visible = self.tune_button.visible = instance and bool(self.adjust_objects.value)
        self.run_button.enabled = self.image.value is not None and model is not None and not running
        self.export_button.enabled = self.run_button.enabled
        self.tune_button.enabled = self.run_button.enabled and self.tune_labels.value is not None
        self.cancel.enabled = running
        if running:
            return
        if self.image.value is None:
            self.status.value = "Add an image layer to predict."
        elif model is None:
            self.status.value = (self._load_error or ("Train a model first (Train U-Net)." if self.source.value == LAST
                                                      else "Choose a model file (.safetensors) or a bioimage.io package (.zip)."))
        elif self.status.value.startswith(("Add an image", "Train a model", "Choose a model", "Cannot use")):
            self.status.value = ""

    def _image_changed(self, event=None) -> None:
        """Multiscale and lazy (dask, zarr) layers go to a zarr store, next to their file."""
        layer = self.image.value
        if layer is None:
            return
        lazy = getattr(layer, "multiscale", False) or not isinstance(layer.data, np.ndarray)
        self.to_zarr.value = bool(lazy)
        source = getattr(getattr(layer, "source", None), "path", None)
        folder = Path(source).parent if source else Path.home()
        self.store.value = folder / f"{layer.name.replace(' ', '_')}_unet.zarr"

    def _package_chosen(self) -> bool:
        from napari_unet.zoo import is_package

        return self.source.value == FILE and is_package(str(self.model_file.value))

    def _path(self) -> Path | None:
        """The file the model source names (None: the model trained in this session)."""
        if self.source.value == LAST:
            return None
        if self.source.value == BUNDLED:
            from napari_unet.sample import SAMPLE_MODEL

            return SAMPLE_MODEL
        return Path(str(self.model_file.value))

    def _chosen(self):
        """The model the source names, read from its file once (None if there is none)."""
        from napari_unet.modelfile import ModelFileError, load_model

        self._load_error = ""
        path = self._path()
        if path is None:
            return CURRENT.model
        if not path.is_file():
            return None
        trust = bool(self.trust_code.value) and self._package_chosen()
        key = (str(path), path.stat().st_mtime_ns, trust)
        if self._loaded is None or self._loaded[0] != key:
            try:
                self._loaded = (key, load_model(path, trust_code=trust))
            except ModelFileError as err:
                self._load_error = f"Cannot use this model: {err}"
                return None
        return self._loaded[1]

    def model(self):
        """The model to predict with; a model read from a file becomes the session's current
        model (the one Train U-Net fine-tunes)."""
        model = self._chosen()
        if model is None:
            raise ValueError(self._load_error or "no model chosen")
        if self.source.value != LAST and CURRENT.model is not model:
            CURRENT.set(model, self._path())
        return model

    def run(self) -> None:
        from napari_unet.config import PredictConfig
        from napari_unet.predict import image_planes, predict

        if self.job is not None and self.job.running:
            return
        layer = self.image.value
        try:
            model = self.model()
            axes = resolve_axes(layer, self.axes.value, model.config.in_channels)
            settings = PredictConfig(**self.tiling_settings(model),
                                     object_size=None if self.object_size.value == "off" else self.object_size.value,
                                     link_z=0.25 if self.link_z.value and model.dims == 2 else None,
                                     **self.postprocessing_settings(model))
            data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data  # full resolution
            image_planes(data, axes, model.config.in_channels, model.dims)  # axes and channels, cheaply
            if self.to_zarr.value:
                from napari_unet.blockwise import predict_blockwise

                store = Path(str(self.store.value))
                if store.suffix.lower() != ".zarr":
                    raise ValueError(f"the zarr store must be named *.zarr, got {store.name}")
                gen = predict_blockwise(model, data, store, axes, settings,
                                        probabilities=bool(self.probabilities.value))
            else:
                gen = predict(model, data, axes, settings, probabilities=bool(self.probabilities.value))
        except (ValueError, RuntimeError) as err:
            self.status.value = f"Cannot predict: {err}"
            from napari.utils.notifications import show_error

            show_error(f"Predict with U-Net: {err}")
            return
        self._target = (layer, axes, model)
        self.progress.value = 0
        self.status.value = "Normalising and predicting..."
        done = self._on_block_done if self.to_zarr.value else self._on_done
        self._doing = "Prediction"
        self.job = Job(gen if self.to_zarr.value else _with_checksum(gen), self._on_progress, done,
                       self._on_error, self._on_finish)
        self.job.start("U-Net: predicting")
        self._refresh()

    def tiling_settings(self, model) -> dict:
        """PredictConfig's tile, halo, batch, device and test-time augmentation chosen here."""
        tile = self.tile.value or None
        if tile and model.dims == 3:  # the choice is the in-plane size; z keeps the model's
            tile = (model.tile[0], tile, tile)
        return {"tile": tile, "halo": None if self.halo.value < 0 else self.halo.value,
                "batch": int(self.batch.value) or None, "device": self.device.value, "tta": bool(self.tta.value)}

    def postprocessing_settings(self, model) -> dict:
        """PredictConfig's instance post-processing settings chosen here (none: the model's own,
        also when the settings are hidden or the model is semantic)."""
        if not self.adjust_objects.value or model.config.mode != "instance":
            return {}
        return {name: box.value for name, box in self.post.items() if box.value != MODELS}

    # -- settings chosen on the user's labels ------------------------------------------------

    def tune(self) -> None:
        """Choose the instance settings on a Labels layer of the image (``tune_on_pairs``, as
        ``napari-unet tune``), in a worker thread; they then show in the settings above and
        the next Predict uses them. The layers are not changed."""
        from napari_unet.config import PredictConfig
        from napari_unet.data import Pair
        from napari_unet.evaluation import tune_on_pairs

        if self.job is not None and self.job.running:
            return
        layer, labels_layer = self.image.value, self.tune_labels.value
        try:
            model = self.model()
            if labels_layer is None:
                raise ValueError("add a Labels layer of this image's objects (painted, or a corrected prediction)")
            if getattr(layer, "multiscale", False) or not isinstance(layer.data, np.ndarray):
                raise ValueError("choosing the settings needs an image in memory: crop a region of this one into a "
                                 "new layer and label its objects")
            axes = resolve_axes(layer, self.axes.value, model.config.in_channels)
            settings = PredictConfig(**self.tiling_settings(model))
            # a copy: the user may go on painting while the worker reads it
            pair = Pair(labels_layer.name, layer.data, np.array(labels_layer.data), axes)
            gen = tune_on_pairs(model, [pair], settings)
        except (ValueError, RuntimeError) as err:
            self.status.value = f"Cannot choose the settings: {err}"
            return
        self._tuning_model = model
        self.progress.value = 0
        self.status.value = f"Choosing the settings on {labels_layer.name}..."
        self._doing = "Choosing the settings"
        self.job = Job(gen, self._on_progress, self._on_tuned, self._on_error, self._on_finish)
        self.job.start("U-Net: choosing the settings")
        self._refresh()

    def _on_tuned(self, result) -> None:
        if self.closed:
            return
        if result is CANCELLED:
            self.status.value = "Cancelled; the settings are as they were."
            return
        if self._chosen() is not self._tuning_model:
            self.status.value = "The model was changed while the settings were chosen: choose them again."
            return
        self._tuned = result.settings()
        self.adjust_objects.value = True
        model = self._tuning_model
        for name, box in self.post.items():
            set_choices(box, postprocessing_choices(model, name, self._tuned[name]))
            box.value = self._tuned[name]
        self.tuned = result
        self.status.value = (f"Settings chosen on {result.objects} objects: AP@0.5 {result.own_ap:.2f} with the "
                             f"model's, {result.ap:.2f} with these (chosen on these labels: check them on another "
                             f"image). Predict to apply them; the command line takes {result.flags()}")

    def stop(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()

    # -- export ---------------------------------------------------------------------------

    def _ask_export(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        start = str((self._path() or Path.home() / "model").with_suffix(".zip"))
        path, _ = QFileDialog.getSaveFileName(self.native, "Export to bioimage.io", start, "bioimage.io package (*.zip)")
        if path:
            self.export(path)

    def export(self, path: str | Path) -> None:
        """Write the chosen model as a bioimage.io package, in a worker thread; its test data
        come from the centre of the chosen image layer."""
        from napari_unet.predict import image_planes
        from napari_unet.zoo import export_job

        if self.job is not None and self.job.running:
            return
        authors = [a.strip() for a in str(self.authors.value).split(",") if a.strip()]
        try:
            if not authors:
                raise ValueError("give the model's authors (comma-separated) for the package")
            model = self.model()
            layer = self.image.value
            if layer is None:
                raise ValueError("add an image layer: the package's test data come from it")
            axes = resolve_axes(layer, self.axes.value, model.config.in_channels)
            planes = image_planes(layer.data, axes, model.config.in_channels, model.dims)
            image = planes.read(0, *((slice(None),) * len(planes.spatial)))
            gen = export_job(model, path, image, authors=authors)
        except (ValueError, RuntimeError) as err:
            self.status.value = f"Cannot export: {err}"
            return
        self.status.value = f"Exporting to {Path(path).name}..."
        self._doing = "Export"
        self.job = Job(gen, lambda p: None, self._on_exported, self._on_error, self._on_finish)
        self.job.start("U-Net: exporting to bioimage.io")
        self._refresh()

    def _on_exported(self, result) -> None:
        if not self.closed and result is not CANCELLED:
            self.exported = Path(result)
            self.status.value = (f"Wrote {self.exported.name}: a bioimage.io package (open it again here, or in "
                                 "Fiji, ilastik, QuPath)")

    def _on_progress(self, p) -> None:
        if self.closed:
            return
        self.progress.max = max(p.total, 1)
        self.progress.value = p.done
        self.status.value = f"{p.message or 'predicting tiles'}: {p.done}/{p.total}"
        if self.job is not None:
            self.job.activity(p.done, max(p.total, 1), f"U-Net: {p.message or 'predicting tiles'}")

    def _on_error(self, err: Exception) -> None:
        if not self.closed:  # napari's notifications show it too
            self.status.value = f"{self._doing} failed: {err}"

    def _on_finish(self) -> None:
        if not self.closed:
            self._refresh()

    def _on_done(self, result) -> None:
        if self.closed:
            return
        if result is CANCELLED:
            self.status.value = "Prediction cancelled; no layer was changed."
            return
        layer, axes, model = self._target
        transform = spatial_transform(layer, axes)
        name = f"{layer.name} U-Net labels"
        self.output = self._write_labels(name, result.labels, transform, getattr(result, "checksum", None))
        if result.probabilities is not None:
            pname = f"{layer.name} U-Net probabilities"
            if pname in self.viewer.layers:
                self.viewer.layers[pname].data = result.probabilities
            else:
                self.viewer.add_image(result.probabilities, name=pname, scale=[1] + transform["scale"],
                                      translate=[0] + transform["translate"], visible=False)
        notes = "; ".join(result.notes)
        self.status.value = (f"{self.output.name}: {result.plan.describe()}, {result.device}, "
                             f"{result.seconds:.1f} s" + (f" ({notes})" if notes else ""))

    def _on_block_done(self, result) -> None:
        """A lazy Labels layer backed by the zarr store (never loaded whole)."""
        if self.closed:
            return
        if result is CANCELLED:
            self.status.value = ("Prediction cancelled; the zarr store keeps the finished blocks: Predict "
                                 "again into the same store to go on.")
            return
        import dask.array as da

        layer, axes, model = self._target
        name = f"{layer.name} U-Net labels"
        k = 2
        while name in self.viewer.layers:
            name = f"{layer.name} U-Net labels [{k}]"
            k += 1
        transform = spatial_transform(layer, axes)
        self.output = self.viewer.add_labels(da.from_zarr(result.labels), name=name, **transform)
        if result.probabilities is not None:  # lazy too, hidden as for in-memory results
            self.viewer.add_image(da.from_zarr(result.probabilities), name=f"{name} probabilities", visible=False,
                                  scale=[1] + list(transform["scale"]), translate=[0] + list(transform["translate"]))
        resumed = f", {result.skipped} already done" if result.skipped else ""
        notes = "".join(f"; {n}" for n in result.notes)
        self.status.value = (f"{name}: {result.blocks} blocks{resumed} into {result.store.name}, "
                             f"{result.seconds:.1f} s (lazy layer: read from the store as you browse{notes})")

    def _write_labels(self, name: str, labels: np.ndarray, transform: dict, labels_checksum: int | None = None):
        """Update our own layer in place; never overwrite labels the user has edited.
        ``labels_checksum``: the new labels' checksum, computed in the worker thread."""
        if labels_checksum is None:
            labels_checksum = checksum(labels)
        if name in self.viewer.layers:
            existing = self.viewer.layers[name]
            if existing.metadata.get("napari_unet_checksum") == checksum(existing.data):
                existing.data = labels
                existing.scale, existing.translate = transform["scale"], transform["translate"]
                existing.metadata["napari_unet_checksum"] = labels_checksum
                return existing
            k = 2
            while f"{name} [{k}]" in self.viewer.layers:
                k += 1
            name = f"{name} [{k}]"  # the user corrected the old result: keep it
        out = self.viewer.add_labels(labels, name=name, **transform)
        out.metadata["napari_unet_checksum"] = labels_checksum
        return out


def _with_checksum(gen):
    """Worker thread: the prediction, with its labels' checksum (a full pass over the labels:
    not on napari's GUI thread)."""
    result = yield from gen
    result.checksum = checksum(result.labels)
    return result
