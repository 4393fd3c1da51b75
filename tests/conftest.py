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


# --------------------------------------------------------------------------------------------
# CPU load: timing-dependent code (thread workers, signals) must also work on a busy machine

BUSY_SECONDS = 120
BUSY_PROCESSES = 2
_SPIN = (
    "import time\n"
    f"end = time.monotonic() + {BUSY_SECONDS}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


@pytest.fixture
def busy_cpu():
    """Keep the CPU busy while the test runs: BUSY_PROCESSES spinning processes, killed at
    teardown; each also stops by itself after BUSY_SECONDS, so an interrupted run leaves
    nothing behind for long. They inherit the test's niceness."""
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(BUSY_PROCESSES)]
    try:
        yield spinners
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait(timeout=10)


@pytest.fixture(params=["idle", "busy"])
def load(request):
    """Run a test twice: on an idle machine and under :func:`busy_cpu`."""
    if request.param == "busy":
        request.getfixturevalue("busy_cpu")
    return request.param
