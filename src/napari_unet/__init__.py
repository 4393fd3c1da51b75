"""napari-unet: train and apply U-Nets on microscopy images, in napari or headless.

This module imports nothing heavy: napari imports it for every contribution.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
