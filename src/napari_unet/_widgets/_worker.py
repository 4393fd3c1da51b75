"""Running a core generator in a napari thread worker, with a deterministic Cancel.

napari's workers stop at the next yield when quit, but leave the generator suspended. Here the
worker itself checks a cancel flag at every yield and closes the core generator in its own
thread, so the core's ``finally`` blocks (restoring the best model, releasing GPU memory) run
before the worker reports that it finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import create_worker

CANCELLED = object()


def _cancellable(gen: Generator, cancel: threading.Event) -> Generator:
    try:
        while True:
            if cancel.is_set():
                return CANCELLED
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield item
    finally:
        gen.close()


def avoid_llvm_clash() -> None:
    """Keep torch from loading triton when Mesa's LLVM is already in the process.

    torch.optim imports torch._dynamo on first use, which imports triton; triton bundles its
    own LLVM, and loading it next to Mesa's libLLVM (software OpenGL: VMs, remote desktops,
    Xvfb) crashes napari with a segmentation fault. napari-unet never compiles kernels, so
    triton is not needed: it is marked unavailable in that case only.
    """
    import sys

    if "triton" in sys.modules:
        return
    try:
        with open("/proc/self/maps") as fh:
            mesa_llvm = any("libLLVM" in line for line in fh)
    except OSError:
        return
    if mesa_llvm:
        sys.modules["triton"] = None  # "import triton" now raises ImportError


class Job:
    """A generator running in a thread; ``cancel()`` stops it at its next yield."""

    def __init__(
        self,
        gen: Generator,
        on_yield: Callable[[Any], None],
        on_return: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        on_finish: Callable[[], None],
    ) -> None:
        self._cancel = threading.Event()
        self.worker = create_worker(_cancellable, gen, self._cancel, _start_thread=False)
        self.running = False
        # connected first, so that the callbacks below already see the job as finished
        self.worker.started.connect(lambda: setattr(self, "running", True))
        self.worker.finished.connect(lambda: setattr(self, "running", False))
        self.worker.yielded.connect(on_yield)
        self.worker.returned.connect(on_return)
        self.worker.errored.connect(on_error)
        self.worker.finished.connect(on_finish)
        self.worker.finished.connect(self._close_activity)

    def start(self) -> None:
        avoid_llvm_clash()
        self.running = True
        self.worker.start()

    def activity(self, done: int, total: int, desc: str) -> None:
        """Mirror progress in napari's activity dock (bottom right)."""
        from napari.utils import progress

        if getattr(self, "_activity", None) is None or self._activity.total != total:
            self._close_activity()
            self._activity = progress(total=total, desc=desc)
        self._activity.set_description(desc)
        self._activity.n = done
        self._activity.refresh()

    def _close_activity(self) -> None:
        if getattr(self, "_activity", None) is not None:
            self._activity.close()
            self._activity = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()
