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


# 4 ------------------------------------------------------------------ export reasons, negative images
def test_export_names_each_skipped_image_with_its_true_reason_and_exports_images_marked_empty(
    qtbot, tmp_path, folder
) -> None:
    import json

    from isegformer_app.state.export import SkippedImage
    from isegformer_app.state.imageio import read_png

    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder) and window.doc.path.name == "a.png"
    click(qtbot, window, 40, 60)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # passes over broken.jpg
    window.images.wait_for_load()
    assert window.doc.path.name == "c.png"
    qtbot.keyClick(window.canvas, Qt.Key.Key_N)  # checked: nothing to annotate here
    assert window.doc.no_objects and window.actions_by_name["no_objects"].isChecked()
    files = window.images.files
    assert files.statuses[files.names.index("c.png")] == "done"
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # autosaves c.png
    window.images.wait_for_load()
    assert window.doc.path.name == "grove.png" and not window.actions_by_name["no_objects"].isChecked()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # tries notanimage.png, the last one
    window.images.wait_for_load()
    task = window.images.export_to(tmp_path / "out")
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    summary = task.result
    assert summary.exported == 2
    assert [(s.path.name, s.reason) for s in summary.skipped] == [
        ("broken.jpg", "unreadable"), ("grove.png", "no finished object"), ("notanimage.png", "unreadable")]
    assert isinstance(summary.skipped[0], SkippedImage) and "incomplete" in summary.skipped[0].detail
    assert window.message_label.text() == (
        f"Exported 2 image(s) to {tmp_path / 'out'}; skipped 3 — unreadable: broken.jpg, notanimage.png; "
        "no finished object: grove.png.")
    out = tmp_path / "out"
    empty = read_png(out / "masks" / "c.png")
    assert empty.shape == (90, 120) and not empty.any() and not read_png(out / "classes" / "c.png").any()
    meta = json.loads((out / "labels.json").read_text())
    assert meta["images"]["c"]["instances"] == [] and meta["images"]["c"]["no_objects"] is True
    coco = json.loads((out / "annotations_coco.json").read_text())
    c_id = next(im["id"] for im in coco["images"] if im["file_name"] == "c.png")
    assert not [a for a in coco["annotations"] if a["image_id"] == c_id]
    assert len([a for a in coco["annotations"] if a["image_id"] != c_id]) == 1
    window.close()


def test_the_no_objects_mark_is_undoable_autosaved_and_dropped_by_a_finished_object(tmp_path) -> None:
    from isegformer_app.state.autosave import save_document, sidecar_path
    from isegformer_app.state.document import Document
    from isegformer_app.state.image_status import sidecar_status
    from isegformer_app.state.imageio import load_image
    from isegformer_app.state.project import Project

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "x.png")
    doc = Document(load_image(tmp_path / "x.png"))
    doc.mark_no_objects()
    assert doc.no_objects and doc.dirty
    side = sidecar_path(tmp_path / "x.png")
    save_document(doc, side)
    assert sidecar_status(side) == "done"
    project = Project.from_path(tmp_path)
    again = project.open_index(0)
    assert again.no_objects
    assert again.undo() is False  # the restored mark is the saved state, not an undo step
    doc.undo()
    assert not doc.no_objects
    doc.redo()
    doc.current.brush[5:10, 5:10] = 1  # a brush stroke made an object after all
    assert doc.finish_object("object", (1, 2, 3)) is not None and not doc.no_objects
    doc.undo()  # the object goes back to being clicked on; one more undo brings the mark back
    assert not doc.objects and doc.has_current() and not doc.no_objects
    doc.undo()
    assert doc.no_objects
