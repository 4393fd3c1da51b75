"""Driving the core's progress generators (the one helper every caller shares)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


def run(gen: Generator[Any, None, T]) -> T:
    """Drive a progress generator to the end and return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
