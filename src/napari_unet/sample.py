"""Paths of the bundled sample data (a real DSB2018 nuclei image, CC0) and model."""

from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "sample_data"
SAMPLE_IMAGE = SAMPLE_DIR / "nuclei.tif"
SAMPLE_LABELS = SAMPLE_DIR / "nuclei_labels.tif"
SAMPLE_MODEL = SAMPLE_DIR / "nuclei_model.safetensors"
