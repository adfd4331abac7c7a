"""Issue 22, "the first hour": what a new user met in an hour of real use, each point driven as they did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted
from PIL import Image
from PySide6.QtCore import Qt


@pytest.fixture
def folder(tmp_path) -> Path:
    """a.png, broken.jpg (cut short), c.png, notanimage.png (text), grove.png."""
    out = tmp_path / "imgs"
    out.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a.png", "c.png", "grove.png"):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(out / name)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(out / "broken.jpg")
    data = (out / "broken.jpg").read_bytes()
    (out / "broken.jpg").write_bytes(data[: len(data) // 2])
    (out / "notanimage.png").write_text("hello")
    return out


def click_file(qtbot, window, name: str) -> None:
    files = window.images.files
    row = files.names.index(name)
    rect = files.list.visualItemRect(files.list.item(row))
    qtbot.mouseClick(files.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    window.images.wait_for_load()


# 2 ------------------------------------------------------------------ Files dock
def test_clicking_an_unreadable_file_says_why_and_the_dock_keeps_showing_the_canvas_image(
    qtbot, tmp_path, folder
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder) and window.doc.path.name == "a.png"
    files = window.images.files
    click_file(qtbot, window, "notanimage.png")
    text = window.message_label.text()
    assert text.startswith("Cannot open notanimage.png: not an image"), text
    assert "No more readable images" not in text and "(cannot identify" not in text
    assert window.doc.path.name == "a.png"
    assert files.names[files.list.currentRow()] == "a.png"  # the selection is what the canvas shows
    assert files.statuses[files.names.index("notanimage.png")] == "unreadable"
    click_file(qtbot, window, "broken.jpg")
    assert window.message_label.text() == (
        "Cannot open broken.jpg: the file is incomplete: it ends before the image does.")
    assert files.names[files.list.currentRow()] == "a.png"
    click_file(qtbot, window, "grove.png")  # a readable one still opens and is selected
    assert window.doc.path.name == "grove.png" and files.names[files.list.currentRow()] == "grove.png"
    window.close()
