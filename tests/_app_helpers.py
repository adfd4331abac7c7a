"""The shared fake click predictor, and driving the window like a user (waiting for its background
work: image loads, predictions)."""

from __future__ import annotations

from pathlib import Path

from fakes import RADIUS, DiskPredictor  # noqa: F401  (re-exported for the app tests)
from PySide6.QtCore import Qt

from isegformer_app.settings import Settings
from isegformer_app.ui.main_window import MainWindow


def make_window(qtbot, tmp_path, predictor: DiskPredictor) -> MainWindow:
    window = MainWindow(Settings.load(tmp_path / "config"), engines={"disks": lambda: predictor})
    qtbot.addWidget(window, before_close_func=_forget_unsaved)
    window.show()
    qtbot.waitUntil(lambda: window.models.active == ("engine", "disks"), timeout=5000)
    return window


def click(qtbot, window: MainWindow, y: int, x: int, button=Qt.MouseButton.LeftButton, mods=None) -> None:
    pos = window.canvas.image_to_view(y, x)
    qtbot.mouseClick(window.canvas.viewport(), button, mods or Qt.KeyboardModifier.NoModifier, pos)


def predicted(window: MainWindow, n_clicks: int):
    return lambda: window.doc.prob is not None and len(window.doc.clicks) == n_clicks and not (
        window.doc.needs_prediction())




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


def _forget_unsaved(window: MainWindow) -> None:
    """Before pytest-qt closes a window after a test (also a failed one): nothing left to ask about,
    so the window really closes and its threads stop instead of outliving it (Qt aborts on that)."""
    doc = window.doc
    if doc is not None:
        doc.saved_revision = doc.revision
