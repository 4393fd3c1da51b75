"""Train U-Net: train or fine-tune on (image, labels) layer pairs, with a live loss plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, ProgressBar,
    Select, SpinBox,
)

from ._layers import axes_choices, layer_choices, resolve_axes, visible_plane
from ._plot import LossPlot
from ._state import CURRENT
from ._worker import CANCELLED, Job

if TYPE_CHECKING:
    import napari

DEFAULT_MODEL = Path.home() / "napari-unet" / "model.safetensors"
PREVIEW_LAYER = "U-Net preview"


def device_hint() -> str:
    """What torch sees, in a line (imports torch: call when the widget is built)."""
    from napari_unet.devices import describe_torch

    return describe_torch()


def defaults_note(width: int, arch: str, dims: int) -> str:
    """What the defaults were chosen for, and what they gave there (docs/benchmarks.md)."""
    note = "Defaults chosen by measurement on a 2-core laptop CPU (docs/benchmarks.md)"
    if arch != "unet" or dims != 2:
        return note + "."
    if width == 8:
        return (note + ": base width 8 where the CPU trains in float32 (no native bfloat16, as here); "
                "20 minutes there gave DSB2018 test AP@0.5 0.70-0.74.")
    return (note + ": base width 16 where the CPU computes bfloat16 or on a GPU; 20 minutes of a CPU "
            "with bfloat16 gave DSB2018 test AP@0.5 0.70-0.77.")


class TrainWidget(Container):
    """Dock widget: pick layer pairs and settings, then Start / Cancel training.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are trained on.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.image = ComboBox(label="image", choices=lambda w: layer_choices(viewer, "image"),
                              tooltip="Image layer to train on")
        self.labels = ComboBox(label="labels", choices=lambda w: layer_choices(viewer, "labels"),
                               tooltip="Labels layer painted on that image (0 = background)")
        self.axes = ComboBox(label="image axes", choices=["auto"], value="auto",
                             tooltip="Layout of the image (stacks are trained plane by plane)")
        self.add_pair = PushButton(text="Add pair")
        self.remove_pair = PushButton(text="Remove selected")
        self.pairs = Select(label="pairs", choices=[], tooltip="Extra (image, labels) pairs; "
                            "when empty, the pair above is used")
        self.mode = ComboBox(label="mode", choices=["instance", "semantic"], value="instance",
                             tooltip="instance: every object has its own id; semantic: values are classes")
        self.unlabelled_zero = CheckBox(text="0 = unlabelled (scribbles)", value=False,
                                        tooltip="Semantic: pixels with 0 are not annotated and ignored")
        from napari_unet.training import TrainConfig

        defaults = TrainConfig()
        self.instance_targets = ComboBox(
            label="instance targets", choices=["distance", "3-class"], value=defaults.instance_targets,
            tooltip="distance: foreground + distance to the object's boundary (separates touching nuclei "
                    "best in our measurements); 3-class: background / interior / boundary (the U-Net paper)")
        self.invert_bright = CheckBox(
            text="invert bright backgrounds", value=defaults.normalization.polarity == "auto",
            tooltip="Images whose background is bright (brightfield, stained tissue) are inverted before the "
                    "network sees them, decided per image, in training and prediction: one model for both "
                    "polarities (off by default: on DSB2018 nuclei the gain was within run-to-run noise)")
        self.arch = ComboBox(label="architecture", choices=["unet", "unet-paper", "smp"], value=defaults.arch,
                             tooltip="unet: the paper's layout with padded convolutions (fastest to train on a CPU); "
                                     "unet-paper: Ronneberger et al. 2015, valid convolutions, exact tiling; "
                                     "smp: segmentation-models-pytorch encoders")
        self.encoder = ComboBox(label="encoder", choices=["resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0"],
                                value="resnet34", tooltip="smp encoder")
        self.encoder_weights = ComboBox(
            label="encoder weights", choices=["random", "imagenet"], value="random",
            tooltip="smp: start the encoder from ImageNet-pretrained weights (fetched once through the Hugging "
                    "Face cache; offline, copy them there: see the user guide), or from random weights")
        self.dims = ComboBox(
            label="network", choices=[("2D (plane by plane)", 2), ("3D (volumes)", 3)], value=defaults.dims,
            tooltip="2D: every plane of a stack is an image of its own (fast, works on any stack); 3D: the "
                    "network sees whole volumes (ZYX) in patches of 'patch z' planes, so objects keep one id "
                    "through z and z context is used (Cicek et al. 2016)")
        self.patch_z = SpinBox(label="patch z", value=defaults.patch_z, min=1, max=512,
                               tooltip="3D: depth of a training patch in planes")
        self.base_width = SpinBox(label="base width", value=defaults.base_width, min=4, max=128, step=4,
                                  tooltip="Channels of the first level (the paper: 64). Until you change it, "
                                          "it follows the device: 8 for the padded unet on a CPU without "
                                          "native bfloat16, else 16 (measured, docs/benchmarks.md)")
        self._width_is_default = True  # follows the device until the user sets it
        self._setting_width = False
        self.epochs = SpinBox(label="epochs", value=defaults.epochs, min=1, max=10000,
                              tooltip="Maximum number of validations; training also stops at the time limit")
        self.time_limit = FloatSpinBox(label="time limit (min)", value=0.0, min=0.0, max=10000.0, step=1.0,
                                       tooltip="Minutes for the whole run, tuning included (0 = no limit); the "
                                               "learning rate anneals by the end, the best model is kept")
        self.patch = SpinBox(label="patch", value=defaults.patch, min=16, max=2048, step=16,
                             tooltip="Output size of a training patch in pixels")
        self.batch = SpinBox(label="batch", value=defaults.batch, min=1, max=256)
        self.lr = FloatSpinBox(label="learning rate", value=defaults.lr, min=1e-6, max=1.0, step=1e-4)
        self.val_fraction = FloatSpinBox(label="validation", value=defaults.val_fraction, min=0.05, max=0.5,
                                         step=0.05, tooltip="Fraction held out (a strip holding that share of the "
                                                            "labels when there is one image)")
        self.defaults_note = Label(value="")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.device_info = Label(value="")
        self.fine_tune = CheckBox(text="fine-tune the current model", value=False,
                                  tooltip="Start from the model last trained or loaded here")
        self.freeze_encoder = CheckBox(text="freeze encoder", value=False)
        self.live_preview = CheckBox(
            text="live preview", value=False,
            tooltip="After each epoch, predict the part of the image shown in the canvas with the current "
                    f"weights, into the '{PREVIEW_LAYER}' layer (at most 512x512 pixels, at most 10 % of the run's time)")
        self.save_path = FileEdit(label="save model to", mode="w", value=str(DEFAULT_MODEL),
                                  filter="*.safetensors")
        self.start = PushButton(text="Start")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.save_settings = PushButton(text="Save settings...")
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.status = Label(value="")
        self.plot = LossPlot()
        self.extend([
            self.image, self.labels, self.axes, self.add_pair, self.pairs, self.remove_pair,
            self.mode, self.unlabelled_zero, self.instance_targets, self.invert_bright, self.dims, self.arch,
            self.encoder, self.encoder_weights, self.base_width, self.patch_z,
            self.epochs, self.time_limit, self.patch, self.batch, self.lr, self.val_fraction, self.defaults_note,
            self.device, self.device_info,
            self.fine_tune, self.freeze_encoder, self.live_preview, self.save_path, self.start, self.cancel,
            self.save_settings, self.progress, self.status,
        ])
        self.native.layout().addWidget(self.plot)
        self.status.native.setWordWrap(True)
        self.device_info.native.setWordWrap(True)
        self.defaults_note.native.setWordWrap(True)
        self.job: Job | None = None
        self.trainer = None
        self._training_started = False
        self._preview_source = None
        self._preview_request = None
        self._preview_transform = {}
        self.preview_info = ""
        self._pairs: list[tuple[str, str]] = []
        self.device_info.value = device_hint()

        self.start.changed.connect(self.run)
        self.cancel.changed.connect(self.stop)
        self.add_pair.changed.connect(self._add_pair)
        self.remove_pair.changed.connect(self._remove_pair)
        self.save_settings.changed.connect(lambda: self.write_settings())
        self.image.changed.connect(self._refresh)
        self.labels.changed.connect(self._refresh)
        self.mode.changed.connect(self._refresh)
        self.arch.changed.connect(self._refresh)
        self.dims.changed.connect(self._refresh)
        for choice in (self.device, self.arch, self.dims):
            choice.changed.connect(self._follow_device)
        self.base_width.changed.connect(self._width_set)
        self.fine_tune.changed.connect(self._fine_tune_changed)
        self._follow_device()
        self.closed = False
        self._listening = [
            (CURRENT.changed, self._fine_tune_changed),
            (viewer.layers.events.inserted, self._layers_changed),
            (viewer.layers.events.removed, self._layers_changed),
            (viewer.layers.selection.events.active, self._select_active),
        ]
        for emitter, callback in self._listening:
            emitter.connect(callback)
        self.native.destroyed.connect(self._on_destroyed)
        self._select_active()
        self._refresh()

    def _on_destroyed(self, *args) -> None:
        """The dock or napari was closed: stop listening and cancel training. The best model so
        far is already on disk; nothing here touches the (deleted) Qt widgets."""
        self.closed = True
        for emitter, callback in self._listening:
            emitter.disconnect(callback)
        if self.job is not None and self.job.running:
            self.job.cancel()

    # -- layer choices ----------------------------------------------------------------------

    def _layers_changed(self, event=None) -> None:
        self.reset_choices()
        self._refresh()

    def _select_active(self, event=None) -> None:
        """Default the combos to the selected layers."""
        import napari

        self.reset_choices()
        active = self.viewer.layers.selection.active
        if active is not None and active.name == PREVIEW_LAYER:
            return  # the preview appearing must not become the labels to train on
        if isinstance(active, napari.layers.Labels):
            self.labels.value = active
        elif isinstance(active, napari.layers.Image):
            self.image.value = active

    def _add_pair(self) -> None:
        if self.image.value is None or self.labels.value is None:
            return
        pair = (self.image.value.name, self.labels.value.name)
        if pair not in self._pairs:
            self._pairs.append(pair)
        self.pairs.choices = [f"{i} + {l}" for i, l in self._pairs]

    def _remove_pair(self) -> None:
        chosen = set(self.pairs.value)
        self._pairs = [p for p in self._pairs if f"{p[0]} + {p[1]}" not in chosen]
        self.pairs.choices = [f"{i} + {l}" for i, l in self._pairs]

    def _width_set(self, event=None) -> None:
        if not self._setting_width:
            self._width_is_default = False

    def _fine_tune_changed(self, event=None) -> None:
        """Fine-tuning: the network is the current model's. Its settings are shown, and locked
        (the starting model decides them); unticked, they are the user's again."""
        model = CURRENT.model if self.fine_tune.value else None
        for control in (self.mode, self.instance_targets, self.invert_bright, self.dims, self.arch, self.encoder,
                        self.encoder_weights, self.base_width):
            control.enabled = model is None
        if model is None:
            self._follow_device()
            return
        c = model.config
        self.mode.value = c.mode
        if c.mode == "instance":
            self.instance_targets.value = c.instance_targets
        self.invert_bright.value = model.normalization.polarity == "auto"  # what its network learned
        self.dims.value = c.dims
        self.arch.value = c.arch.replace("unet3d", "unet")  # unet3d-paper -> unet-paper
        if c.arch == "smp" and c.encoder in self.encoder.choices:
            self.encoder.value = c.encoder
        self._show_width(c.base_width)
        self.defaults_note.value = (f"Fine-tuning the current model: {c.arch}, base width {c.base_width}, "
                                    f"{c.mode} mode; its network decides these settings.")

    def _show_width(self, width: int) -> None:
        """Set the base width for the user to see, not as the user's own choice."""
        self._setting_width = True
        try:
            self.base_width.value = width
        finally:
            self._setting_width = False

    def _follow_device(self, event=None) -> None:
        """The base width default of the chosen device (the command line's), and what it was measured on."""
        from napari_unet.training import default_base_width

        if self.fine_tune.value and CURRENT.model is not None:
            return  # the starting model's width stays shown
        width = default_base_width(self.device.value, self.arch.value, self.dims.value)
        if self._width_is_default and self.base_width.value != width:
            self._show_width(width)
        self.defaults_note.value = defaults_note(width, self.arch.value, self.dims.value)

    def _refresh(self, event=None) -> None:
        running = self.job is not None and self.job.running
        self.axes.choices = axes_choices(self.image.value)
        self.unlabelled_zero.visible = self.mode.value == "semantic"
        self.encoder.visible = self.arch.value == "smp"
        self.encoder_weights.visible = self.arch.value == "smp"
        self.base_width.visible = self.arch.value in ("unet", "unet-paper")
        self.patch_z.visible = self.dims.value == 3
        self.live_preview.visible = self.dims.value == 2  # the preview shows one plane
        self.instance_targets.visible = self.mode.value == "instance"
        have = bool(self._pairs) or (self.image.value is not None and self.labels.value is not None)
        self.start.enabled = have and not running
        self.cancel.enabled = running
        hints = ("Add an image", "Add a Labels")
        if not running and (not self.status.value or self.status.value.startswith(hints)):
            # hints never replace the message of a finished or failed run
            if not layer_choices(self.viewer, "image"):
                self.status.value = "Add an image layer (File > Open, or the sample data) to train on."
            elif not layer_choices(self.viewer, "labels"):
                self.status.value = "Add a Labels layer and paint objects or classes on it."
            else:
                self.status.value = ""

    # -- settings ---------------------------------------------------------------------------

    def config(self):
        """The TrainConfig these controls describe."""
        from napari_unet.training import TrainConfig

        return TrainConfig(
            mode=self.mode.value, unlabelled_zero=bool(self.unlabelled_zero.value and self.mode.value == "semantic"),
            arch=self.arch.value, encoder=self.encoder.value, base_width=int(self.base_width.value),
            encoder_weights=(self.encoder_weights.value if self.arch.value == "smp"
                             and self.encoder_weights.value != "random" else None),
            epochs=int(self.epochs.value), patch=int(self.patch.value), batch=int(self.batch.value),
            lr=float(self.lr.value), val_fraction=float(self.val_fraction.value), device=self.device.value,
            freeze_encoder=bool(self.freeze_encoder.value), instance_targets=self.instance_targets.value,
            polarity="auto" if self.invert_bright.value else "as-is",
            time_limit=float(self.time_limit.value) or None,
            dims=int(self.dims.value), patch_z=int(self.patch_z.value),
        )

    def write_settings(self, path: str | Path | None = None) -> Path | None:
        """Save the settings as JSON for ``napari-unet train --config FILE``."""
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Save training settings", "train.json", "JSON (*.json)")
            if not path:
                return None
        from napari_unet.modelfile import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(path, json.dumps(self.config().to_json(), indent=2).encode())
        self.status.value = f"Settings saved to {path}; replay with: napari-unet train --config {path} ..."
        return path

    # -- training ---------------------------------------------------------------------------

    def _layer_pairs(self):
        from napari_unet.data import Pair

        names = self._pairs or [(self.image.value.name, self.labels.value.name)]
        pairs = []
        for image_name, labels_name in names:
            if image_name not in self.viewer.layers or labels_name not in self.viewer.layers:
                raise ValueError(f"layer {image_name!r} or {labels_name!r} no longer exists")
            image = self.viewer.layers[image_name]
            labels = self.viewer.layers[labels_name]
            axes = resolve_axes(image, self.axes.value, 3 if getattr(image, "rgb", False) else 1)
            # copies: the user may edit or delete the layers while training runs
            pairs.append(Pair(image_name, np.array(image.data), np.array(labels.data), axes))
        return pairs

    def run(self) -> None:
        """Start (or fine-tune) training in a worker thread."""
        from napari_unet.training import Trainer

        if self.job is not None and self.job.running:
            self.status.value = "Training is already running."
            return
        init = CURRENT.model if self.fine_tune.value else None
        if self.fine_tune.value and init is None:
            self.status.value = "No current model to fine-tune: train one first or load one in Predict with U-Net."
            return
        try:
            from napari_unet.io import check_writable

            check_writable(self.save_path.value)  # now, not at the first save after minutes
            pairs = self._layer_pairs()
            # the costly preparation (targets, normalisation, the network) runs in the worker
            self.trainer = Trainer(pairs, self.config(), out=self.save_path.value, init=init, prepare=False,
                                   init_path=CURRENT.path if init is not None else None)
        except (ValueError, RuntimeError) as err:
            self.status.value = f"Cannot start: {err}"
            from napari.utils.notifications import show_error

            show_error(f"Train U-Net: {err}")
            return
        self.plot.clear()
        self.progress.value = 0
        self.status.value = "Preparing the training data..."
        self._training_started = False
        gen = self.trainer.run()
        self._preview_source = None
        if self.live_preview.value and self.trainer.config.dims == 2:
            from napari_unet.preview import with_previews

            first = pairs[0]
            self._preview_source = (self.viewer.layers[first.name], first.image, first.axes)
            self._update_preview_request()
            trainer = self.trainer
            gen = with_previews(gen, lambda: trainer.model, lambda: trainer.device, lambda: self._preview_request)
        self.job = Job(gen, self._on_progress, self._on_done, self._on_error, self._on_finish)
        self.job.start("Training U-Net")
        self._refresh()

    def stop(self) -> None:
        """Cancel: training stops at the next step; the best model so far is kept."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.value = "Cancelling... (the best model so far is kept)"

    def _update_preview_request(self) -> None:
        """GUI thread: what the canvas shows now, for the worker's next preview (read there)."""
        from napari_unet.preview import PreviewRequest

        layer, data, axes = self._preview_source
        try:
            plane, plane_axes, region, self._preview_transform = visible_plane(self.viewer, layer, axes, data)
        except (ValueError, IndexError, RuntimeError):  # the layer changed under us: keep the last one
            return
        self._preview_request = PreviewRequest(plane, plane_axes, region)

    def _show_preview(self, p) -> None:
        """Put a preview into the preview layer (created once, then updated in place)."""
        import napari

        data = np.zeros(p.plane_shape, np.int32)
        y0, y1, x0, x1 = p.region
        data[y0:y1, x0:x1] = p.labels
        layers = self.viewer.layers
        layer = layers[PREVIEW_LAYER] if PREVIEW_LAYER in layers else None
        if isinstance(layer, napari.layers.Labels) and layer.data.shape == data.shape:
            layer.data = data
        else:
            if layer is not None:
                layers.remove(layer)
            active = layers.selection.active
            layer = self.viewer.add_labels(data, name=PREVIEW_LAYER, opacity=0.5, **self._preview_transform)
            if active is not None and active in layers:
                layers.selection.active = active  # keep the user's selection
        layer.metadata["napari_unet_preview"] = {"epoch": p.epoch, "region": p.region, "seconds": p.seconds}
        self.preview_info = (f"preview after epoch {p.epoch}: {p.seconds:.2f} s, "
                             f"{100 * p.share:.0f} % of the run so far")

    def _on_progress(self, p) -> None:
        if self.closed:
            return
        from napari_unet.preview import Preview

        if isinstance(p, Preview):
            self._show_preview(p)
            self.status.value = self.preview_info
            return
        if self._preview_source is not None and p.kind in ("step", "epoch"):
            self._update_preview_request()
        if p.kind != "preparing":
            self._training_started = True  # an error now is a failure, not a refusal to start
        if p.kind == "step":
            self.progress.max = p.steps * p.epochs
            self.progress.value = (p.epoch - 1) * p.steps + p.step
            self.status.value = f"epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}, loss {p.loss:.4f}"
            self.job.activity(self.progress.value, self.progress.max, f"Training U-Net, epoch {p.epoch}/{p.epochs}")
        elif p.kind == "epoch":
            self.plot.add_epoch(p.epoch, p.loss, p.val_loss, p.val_metric, p.metric_name)
            if p.epoch == 0:  # fine-tuning: the starting model was scored, no training loss yet
                self.status.value = (f"starting model: val loss {p.val_loss:.4f}, {p.metric_name} "
                                     f"{p.val_metric:.3f} (kept unless training beats it)")
            else:
                self.status.value = (f"epoch {p.epoch}/{p.epochs}: loss {p.loss:.4f}, val loss {p.val_loss:.4f}, "
                                     f"{p.metric_name} {p.val_metric:.3f} (best {p.best_metric:.3f})")
        elif p.kind in ("validating", "tuning") and p.steps:
            self.status.value = f"{p.message} ({p.step}/{p.steps})..."
        elif p.message:
            self.status.value = p.message + ("" if p.kind == "note" else "...")

    def _on_done(self, result) -> None:
        model = self.trainer.model
        path = self.trainer.out  # not the control: it may be deleted already
        if model is None:  # cancelled while preparing: nothing trained, nothing saved
            if not self.closed:
                self.status.value = "Cancelled before training started; nothing was saved."
            return
        trained = self.trainer.saved or (result is not CANCELLED and result.best_epoch is not None)
        if trained or self.trainer.init is not None:
            # never an untrained network; a stale file at ``path`` is not this run's model
            CURRENT.set(model, path if self.trainer.saved else None)
        if self.closed:
            return
        if result is CANCELLED and not self.trainer.saved:
            self.status.value = ("Cancelled before the first validation; nothing was saved "
                                 + ("(the starting model is kept in use)." if self.trainer.init is not None
                                    else f"(no model written to {path})."))
        elif result is CANCELLED:
            self.status.value = f"Cancelled; the best model so far is in use and saved to {path}."
        elif not self.trainer.saved and path is not None:
            self.status.value = (f"{result.stopped}; best epoch {result.run_best_epoch}; {path} is the "
                                 "starting model's own file and was left as it was.")
        else:
            self.status.value = f"{result.stopped}; best epoch {result.run_best_epoch}; saved to {path}."

    def _on_error(self, err: Exception) -> None:
        if not self.closed:  # napari's notifications show it too
            started = self._training_started
            self.status.value = f"Training failed: {err}" if started else f"Cannot start: {err}"

    def _on_finish(self) -> None:
        if not self.closed:
            self._refresh()
