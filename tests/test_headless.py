"""The core never imports Qt, napari or magicgui: a fresh interpreter proves it."""

import subprocess
import sys

CORE = [
    "napari_unet", "napari_unet.config", "napari_unet.models", "napari_unet.tiling",
    "napari_unet.predict", "napari_unet.modelfile", "napari_unet.cli", "napari_unet.io",
    "napari_unet.axes", "napari_unet.normalization", "napari_unet.instances",
    "napari_unet.training", "napari_unet.data", "napari_unet.targets", "napari_unet.augment",
    "napari_unet.metrics", "napari_unet.evaluation", "napari_unet.report", "napari_unet.cli_train",
    "napari_unet.sample", "napari_unet.devices",
]


def test_core_imports_no_gui():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'vispy')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_import_is_light():
    code = "import sys, napari_unet; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
