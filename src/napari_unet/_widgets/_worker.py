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

from napari.qt.threading import GeneratorWorker, create_worker

from napari_unet.devices import avoid_llvm_clash

CANCELLED = object()


class JobError(Exception):
    """An error of the core generator, as the worker must see it.

    superqt's worker treats a ``RuntimeError`` as "the worker object was deleted": it only
    warns, and emits neither ``errored`` nor ``finished``, so a CUDA out-of-memory error or a
    :class:`napari_unet.devices.DeviceError` would leave the widget "running" forever. Every
    exception of the core is therefore re-raised as this (not a RuntimeError); the message is
    the original one and ``__cause__`` (also ``original``) the original exception.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original) or type(original).__name__)
        self.original = original


def _cancellable(gen: Generator, cancel: threading.Event) -> Generator:
    try:
        while True:
            if cancel.is_set():
                return CANCELLED
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            except Exception as err:
                raise JobError(err) from err
            yield item
    finally:
        try:
            gen.close()
        except Exception as err:  # a failing cleanup must reach the widget too
            raise JobError(err) from err


class _Worker(GeneratorWorker):
    """A napari generator worker whose ``quit()`` is our Cancel.

    napari calls ``quit()`` itself: when its window closes (its task list cancels every
    running worker) and when the application quits. superqt's ``quit()`` would stop at the next
    yield, leave the core generator suspended (its ``finally`` not run) and never report a
    result; here it sets the cancel flag, so the core cleans up and ``returned`` gets
    ``CANCELLED``, exactly as with the Cancel button.
    """

    def __init__(self, func: Callable, gen: Generator, cancel: threading.Event, **kwargs: Any) -> None:
        super().__init__(func, gen, cancel, **kwargs)
        self._cancel_event = cancel

    def quit(self) -> None:
        self._cancel_event.set()


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
        self._activity = None
        # errors go to ``on_error`` (and napari's notifications); without _ignore_errors the
        # worker would also re-raise them in the GUI thread, as an unhandled exception in a slot
        self.worker = create_worker(
            _cancellable, gen, self._cancel, _start_thread=False, _ignore_errors=True, _worker_class=_Worker
        )
        self.running = False
        # connected first, so that the callbacks below already see the job as finished (and
        # its activity closed), whatever they do
        self.worker.started.connect(lambda: setattr(self, "running", True))
        self.worker.finished.connect(lambda: setattr(self, "running", False))
        self.worker.finished.connect(self._close_activity)
        self.worker.yielded.connect(on_yield)
        self.worker.returned.connect(on_return)
        self.worker.errored.connect(on_error)
        self.worker.finished.connect(on_finish)

    def start(self, desc: str = "napari-unet") -> None:
        from napari.utils import progress

        avoid_llvm_clash()
        self.running = True
        # Created here, on the GUI thread, before any signal can arrive: creating it inside a
        # progress callback may process events, deliver ``finished`` and re-enter that callback.
        self._activity = progress(total=0, desc=desc)
        self.worker.start()

    def activity(self, done: int, total: int, desc: str) -> None:
        """Mirror progress in napari's activity dock (bottom right).

        Harmless at any time: a progress signal that arrives after the job finished (or while
        ``finished`` closes the bar, re-entrantly) changes nothing.
        """
        bar = self._activity
        if bar is None:
            return  # a late progress signal after the job finished
        if bar.total != total:
            bar.total = total
        bar.set_description(desc)
        if done != bar.n:
            bar.update(done - bar.n)  # emits the value event the activity dock listens to

    def _close_activity(self) -> None:
        bar, self._activity = self._activity, None
        if bar is not None:
            bar.close()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()
