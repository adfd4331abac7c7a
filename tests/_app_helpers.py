"""Driving the window like a user and waiting for its background work (image loads)."""

from __future__ import annotations

from pathlib import Path


def open_and_wait(window, path: str | Path) -> bool:
    """``window.open_path(path)``; for images, wait until the background load is shown.

    True if the image is shown (volumes: if loading started — wait for them as the volume tests do).
    """
    if not window.open_path(path):
        return False
    return window.images.wait_for_load() if window.images.loading is not None else True


def step_and_wait(window, delta: int) -> bool:
    """D (+1) / A (-1) and wait for the image to be shown; False if none was opened."""
    (window.next_image if delta > 0 else window.previous_image)()
    return window.images.wait_for_load()
