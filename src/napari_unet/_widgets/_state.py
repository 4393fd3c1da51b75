"""The model shared by the Train and Predict widgets of a session (the one just trained)."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class CurrentModel:
    """Holds the latest trained model; emits ``changed`` when a new one arrives."""

    changed = Signal(object)

    def __init__(self) -> None:
        self.model = None
        self.path: Path | None = None

    def set(self, model, path: Path | None = None) -> None:
        self.model = model
        self.path = path
        self.changed.emit(model)


CURRENT = CurrentModel()
