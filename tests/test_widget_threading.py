"""Thread workers of the widgets: late signals, errors the worker would swallow, CPU load.

The Job tests need a QApplication (qtbot) but no viewer; the widget tests run under Xvfb.
"""

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


class SimulatedDeviceError(RuntimeError):
    """Stands for CUDA out-of-memory and napari_unet.devices.DeviceError (RuntimeErrors)."""


def _counting(n):
    for i in range(1, n + 1):
        yield i
    return "done"


def _failing():
    yield 1
    raise SimulatedDeviceError("CUDA out of memory (simulated)")


def _open_bars(desc):
    from napari.utils import progress

    return [p for p in progress._all_instances if desc in (p.desc or "")]


def _run_job(qtbot, gen, desc="threading test"):
    """Run ``gen`` in a Job until it finished; returns the job and what its callbacks saw."""
    from napari_unet._widgets._worker import Job

    seen = {"yielded": [], "returned": [], "errored": [], "finished": 0}
    job = None

    def on_yield(i):
        seen["yielded"].append(i)
        job.activity(i, 3, desc)

    def on_finish():
        seen["finished"] += 1

    job = Job(gen, on_yield, seen["returned"].append, seen["errored"].append, on_finish)
    job.start(desc)
    assert job.running
    qtbot.waitUntil(lambda: seen["finished"] == 1, timeout=60_000)
    return job, seen


def test_progress_after_finish_is_harmless(qtbot, load):
    job, seen = _run_job(qtbot, _counting(3))
    assert seen["yielded"] == [1, 2, 3] and seen["returned"] == ["done"] and not job.running
    assert not _open_bars("threading test")  # closed when the job finished
    job.activity(3, 3, "threading test, late")  # a progress signal that arrives late
    job.activity(1, 5, "threading test, late")
    assert not _open_bars("threading test")  # no new bar left open in the activity dock


def test_finish_while_progress_is_updated_is_harmless(qtbot, monkeypatch):
    """The failure seen on a busy machine: ``finished`` closed the bar from inside a progress
    update (a Qt call there processed events); the update then met ``None``."""
    from napari.utils import progress

    from napari_unet._widgets._worker import Job

    job = Job(_counting(1), lambda i: None, lambda r: None, lambda e: None, lambda: None)
    job.start("re-entrant test")
    original = progress.set_description

    def finishing_meanwhile(self, desc):
        original(self, desc)
        job._close_activity()  # what the finished handler does

    monkeypatch.setattr(progress, "set_description", finishing_meanwhile)
    job.activity(1, 2, "re-entrant test")  # must not raise
    monkeypatch.undo()
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    assert not _open_bars("re-entrant test")


def test_runtime_error_in_a_job_is_reported_and_ends_it(qtbot, load):
    from napari_unet._widgets._worker import JobError

    job, seen = _run_job(qtbot, _failing())
    assert seen["yielded"] == [1] and not job.running
    (err,) = seen["errored"]
    assert isinstance(err, JobError) and not isinstance(err, RuntimeError)
    assert str(err) == "CUDA out of memory (simulated)"
    assert isinstance(err.__cause__, SimulatedDeviceError) and err.original is err.__cause__
    assert not _open_bars("threading test")


def test_napari_quitting_a_worker_cancels_it_cleanly(qtbot):
    """napari calls worker.quit() when its window closes: the core must still clean up (its
    finally) and the job report CANCELLED, as with our Cancel."""
    from napari_unet._widgets._worker import CANCELLED, Job

    cleaned = []

    def core():
        try:
            for i in range(10_000):
                yield i
        finally:
            cleaned.append(True)

    returned, finished = [], []

    def on_yield(i):
        if i == 1:
            job.worker.quit()

    job = Job(core(), on_yield, returned.append, lambda e: None, lambda: finished.append(cleaned[:]))
    job.start("quit test")
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    assert returned == [CANCELLED] and finished == [[True]] and job.cancelled and not job.running


def test_busy_cpu_fixture_really_spins(busy_cpu):
    import time

    time.sleep(0.5)
    assert all(p.poll() is None for p in busy_cpu)  # still spinning, killed at teardown


# --------------------------------------------------------------------------------------------
# widgets: a RuntimeError in the core ends the run, explains it, and re-enables Start


@pytest.fixture
def viewer(make_napari_viewer, nuclei):
    v = make_napari_viewer()
    image, labels = nuclei
    v.add_image(image[:64, :64], name="img")
    v.add_labels(labels[:64, :64].astype(np.int32), name="lab")
    return v


def _device_error(*args, **kwargs):
    from napari_unet.devices import DeviceError

    yield from ()
    raise DeviceError("CUDA device 0 ran out of memory (simulated)")


def test_train_widget_reports_device_error_and_can_start_again(viewer, qtbot, tmp_path, monkeypatch):
    from napari_unet._widgets import TrainWidget
    from napari_unet.training import TrainProgress, Trainer

    def failing_run(self):
        yield TrainProgress("step", 1, 1, 1, 4, 0.5, 0.1)
        yield from _device_error()

    monkeypatch.setattr(Trainer, "run", failing_run)
    w = TrainWidget(viewer)
    w.image.value, w.labels.value = viewer.layers["img"], viewer.layers["lab"]
    w.base_width.value, w.epochs.value, w.device.value = 8, 1, "cpu"
    w.save_path.value = str(tmp_path / "m.safetensors")
    w.run()
    assert not w.start.enabled
    qtbot.waitUntil(lambda: not w.job.running, timeout=60_000)
    assert "Training failed" in w.status.value and "ran out of memory" in w.status.value
    assert w.start.enabled and not w.cancel.enabled
    assert not _open_bars("Training U-Net")


def test_predict_widget_reports_device_error_and_can_start_again(viewer, qtbot, tmp_path, monkeypatch):
    import napari_unet.predict
    from napari_unet._widgets import PredictWidget
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel
    from napari_unet.tiling import TileProgress

    def failing_predict(*args, **kwargs):
        yield TileProgress(done=0, total=4, batch=1)
        yield from _device_error()

    monkeypatch.setattr(napari_unet.predict, "predict", failing_predict)
    path = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "m.safetensors")
    w = PredictWidget(viewer)
    w.source.value = "model file"
    w.model_file.value = path
    w.image.value = viewer.layers["img"]
    assert w.run_button.enabled
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    assert "Prediction failed" in w.status.value and "ran out of memory" in w.status.value
    assert w.run_button.enabled and not w.cancel.enabled
    assert "img U-Net labels" not in viewer.layers


def test_train_widget_prepares_in_the_worker_thread(viewer, qtbot, tmp_path, monkeypatch):
    """The costly preparation (targets, normalisation, the network) must not block napari."""
    import threading

    from napari_unet._widgets import TrainWidget
    from napari_unet.training import Trainer

    threads = []
    real = Trainer.prepare
    checked = threading.Event()  # a busy machine may start the worker before the check below

    def recording(self):
        checked.wait(60)  # in run() on the GUI thread this would stall it, and fail below
        threads.append(threading.current_thread())
        real(self)

    monkeypatch.setattr(Trainer, "prepare", recording)
    w = TrainWidget(viewer)
    w.image.value, w.labels.value = viewer.layers["img"], viewer.layers["lab"]
    w.base_width.value, w.epochs.value, w.device.value = 8, 1, "cpu"
    w.patch.value, w.batch.value = 48, 2
    w.save_path.value = str(tmp_path / "m.safetensors")
    w.run()
    assert threads == [] and w.status.value.startswith("Preparing")  # run() returned at once
    checked.set()
    qtbot.waitUntil(lambda: not w.job.running, timeout=120_000)
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert "saved to" in w.status.value and (tmp_path / "m.safetensors").exists()


def test_predict_widget_checksums_new_labels_in_the_worker(viewer, qtbot, tmp_path, monkeypatch):
    """The new labels' checksum (a full pass over them) is computed in the worker; only the
    check of an existing, possibly edited layer runs on the GUI thread."""
    import threading

    from napari_unet._widgets import PredictWidget, _predict
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    calls = []
    real = _predict.checksum

    def recording(data):
        calls.append(threading.current_thread() is threading.main_thread())
        return real(data)

    monkeypatch.setattr(_predict, "checksum", recording)
    path = UNetModel.create(ModelConfig(depth=2, base_width=4)).save(tmp_path / "m.safetensors")
    w = PredictWidget(viewer)
    w.source.value = "model file"
    w.model_file.value = path
    w.image.value = viewer.layers["img"]
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    layer = viewer.layers["img U-Net labels"]
    assert calls == [False]  # the new labels, in the worker
    assert layer.metadata["napari_unet_checksum"] == real(layer.data)
    w.run()  # again: the unedited layer is checked on the GUI thread, then updated in place
    qtbot.waitUntil(lambda: not w.job.running, timeout=60_000)
    assert calls == [False, False, True] and viewer.layers["img U-Net labels"] is layer
