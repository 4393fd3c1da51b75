from pathlib import Path

import numpy as np
import pytest
import tifffile

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def nuclei() -> tuple[np.ndarray, np.ndarray]:
    """A real DSB2018 image (256x256 uint8) and its instance labels."""
    return (
        tifffile.imread(DATA / "dsb_243443ae303c.tif"),
        tifffile.imread(DATA / "dsb_243443ae303c_labels.tif"),
    )


@pytest.fixture
def membranes() -> tuple[np.ndarray, np.ndarray]:
    """A real ISBI 2012 EM crop (192x192 uint8) and its membrane labels (1 = membrane)."""
    return tifffile.imread(DATA / "isbi_00.tif"), tifffile.imread(DATA / "isbi_00_labels.tif")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} not present")
    return SHARED
