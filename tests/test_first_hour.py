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


def test_a_folder_scan_that_ends_late_never_overrides_a_status_seen_since(qtbot) -> None:
    """The sidecar scan starts when the folder is listed; an image found unreadable (or left with clicks)
    before the scan ends keeps that mark (the race the test above met under load)."""
    from isegformer_app.ui.file_list import FileListPanel

    panel = FileListPanel()
    qtbot.addWidget(panel)
    panel.set_paths([Path("a.png"), Path("b.png"), Path("c.png")])
    panel.set_status(1, "unreadable")
    for index, status in enumerate(["new", "new", "done"]):  # the scan's late result
        panel.fill_status(index, status)
    assert panel.statuses == ["new", "unreadable", "done"]
    assert panel.text(1).startswith("✕") and panel.text(2).startswith("●")
    panel.set_paths([Path("a.png"), Path("b.png")])  # a new listing: its scan fills every row again
    panel.fill_status(1, "in progress")
    assert panel.statuses == ["new", "in progress"]


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
    doc.undo()  # one step: the object goes back to being clicked on, and the mark comes back
    assert not doc.objects and doc.has_current() and doc.no_objects
    doc.redo()
    assert doc.objects and not doc.no_objects


# 6 ------------------------------------------------------------------ outlines on pixel edges
def border_lies_on_pixel_edges(path, mask: np.ndarray) -> None:
    """Every outline segment is a pixel edge with the mask on one side only, and every such edge is drawn."""
    points = [(path.elementAt(i).x, path.elementAt(i).y) for i in range(path.elementCount())]
    assert points and all(float(x).is_integer() and float(y).is_integer() for x, y in points)
    padded = np.pad(mask, 1)
    drawn = 0
    for (x0, y0), (x1, y1) in zip(points[::2], points[1::2], strict=True):
        if y0 == y1:  # horizontal: between pixel rows y-1 and y
            for x in range(int(min(x0, x1)), int(max(x0, x1))):
                assert padded[int(y0), x + 1] != padded[int(y0) + 1, x + 1]
                drawn += 1
        else:
            assert x0 == x1
            for y in range(int(min(y0, y1)), int(max(y0, y1))):
                assert padded[y + 1, int(x0)] != padded[y + 1, int(x0) + 1]
                drawn += 1
    edges = (padded[1:, 1:-1] != padded[:-1, 1:-1]).sum() + (padded[1:-1, 1:] != padded[1:-1, :-1]).sum()
    assert drawn == edges


def test_outlines_follow_pixel_edges_on_a_magnified_photo(qtbot, tmp_path, folder) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder / "a.png")
    window.canvas.zoom(12.0)
    click(qtbot, window, 45, 60)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    mask = window.doc.current_mask()
    border_lies_on_pixel_edges(window.canvas.outline_item.path(), mask)
    ys, xs = np.nonzero(mask)
    box = window.canvas.outline_item.path().boundingRect()  # the fill's box exactly, not half a pixel in
    edges = (box.left(), box.top(), box.right(), box.bottom())
    assert edges == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    window.close()


def test_outlines_follow_voxel_edges_on_an_anisotropic_volume_view(qtbot, tmp_path) -> None:
    import nibabel as nib

    data = np.zeros((12, 14, 9), np.int16)
    data[3:9, 4:11, 2:7] = 100
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])), path)
    window = make_window(qtbot, tmp_path, DiskPredictor(radius=3))
    assert window.open_path(path)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    window.volume.show_slice(axis="coronal")
    doc = window.volume.doc
    h, w = doc.shape
    click(qtbot, window, h // 2, w // 2)
    qtbot.waitUntil(lambda: doc.prob is not None and not doc.needs_prediction(), timeout=5000)
    border_lies_on_pixel_edges(window.canvas.outline_item.path(), doc.current_mask())
    window.close()


def test_outline_segments_are_exactly_the_pixel_edges_of_any_mask() -> None:
    from PySide6.QtGui import QPainterPath

    from isegformer_app.ui.overlay import outline_segments

    rng = np.random.default_rng(5)
    for _ in range(200):  # holes, diagonal touches, single pixels, masks touching the image border
        mask = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < rng.random()
        segments = outline_segments(mask, max_segments=10**6)
        path = QPainterPath()
        for x0, y0, x1, y1 in segments.tolist():
            path.moveTo(x0, y0)
            path.lineTo(x1, y1)
        if mask.any():
            border_lies_on_pixel_edges(path, mask)
        else:
            assert len(segments) == 0


# 5 ------------------------------------------------------------------ status bar
def test_status_messages_fit_beside_the_readout_with_the_full_text_in_the_tooltip(
    qtbot, tmp_path, folder
) -> None:
    from PySide6.QtWidgets import QFrame, QLabel

    window = make_window(qtbot, tmp_path, DiskPredictor())
    window.resize(900, 600)
    assert open_and_wait(window, folder / "a.png")
    qtbot.mouseMove(window.canvas.viewport(), window.canvas.image_to_view(30, 40))
    qtbot.waitUntil(lambda: "RGB" in window.cursor_label.text(), timeout=2000)
    long = "Exported 2 image(s) to " + "/very/long/folder" * 30 + "; skipped 3 — unreadable: broken.jpg"
    window.inform("Export", long + "\nbroken.jpg: unreadable — the file is incomplete")
    qtbot.wait(50)
    label = window.message_label
    shown = QLabel.text(label)  # what the label paints
    assert shown.endswith("…") and len(shown) < len(long)
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.geometry().right() < window.cursor_label.geometry().left()  # not under the readout
    assert window.cursor_label.width() >= window.cursor_label.sizeHint().width()  # the readout is whole
    assert long in label.toolTip() and "the file is incomplete" in label.toolTip()
    assert window.statusBar().width() <= window.width()
    # a separator between the readout and the latency ("RGB 63, 60, 51 | 136 ms")
    lines = [f for f in window.statusBar().findChildren(QFrame) if f.frameShape() == QFrame.Shape.VLine]
    cursor, latency = window.cursor_label.geometry(), window.latency_label.geometry()
    assert any(cursor.right() <= f.geometry().left() and f.geometry().right() <= latency.left()
               for f in lines if f.isVisible())  # fmt: skip
    window.close()


def test_a_message_about_one_slice_goes_when_the_slice_changes(qtbot, tmp_path) -> None:
    import nibabel as nib

    data = np.zeros((12, 14, 9), np.int16)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(path)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    window.finish_object()  # nothing clicked on this slice
    assert window.message_label.text() == "Nothing to finish: click on the object first."
    qtbot.keyClick(window.canvas, Qt.Key.Key_Up)
    assert window.message_label.text() == ""
    window.close()


# 3 ------------------------------------------------------------------ panels never clip
def clipped_widgets(panel) -> list[str]:
    """The panel's own widgets (not the insides of a spin box) that got less room than they need."""
    from PySide6.QtWidgets import QWidget

    out = []
    for child in [panel, *panel.findChildren(QWidget)]:
        if child is not panel and child.parentWidget() is not panel:
            continue
        need = child.minimumSizeHint()
        if child.isVisible() and (child.width() < need.width() or child.height() < need.height()):
            out.append(f"{type(child).__name__} {child.size().toTuple()} < {need.toTuple()}")
    return out


@pytest.mark.parametrize("size", [(1300, 700), (1000, 560)])
def test_panels_keep_their_room_with_the_volume_notes_shown(qtbot, tmp_path, size) -> None:
    import nibabel as nib

    window = make_window(qtbot, tmp_path, DiskPredictor())
    window.resize(*size)
    assert window.open_path(Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz")
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    qtbot.waitUntil(lambda: window.volume.notes_dock.isVisible(), timeout=2000)
    qtbot.wait(50)
    panel = window.volume.panel
    assert panel.frame.isVisible() and panel.frame.suffix() == " of 0–1"
    for widget in (panel, window.view_panel, window.labels_panel, window.objects_panel):
        assert clipped_widgets(widget) == [], type(widget).__name__
        assert widget.height() >= widget.minimumSizeHint().height()
    column = window.side_panels
    assert column.widget().height() >= column.widget().minimumSizeHint().height()  # scrolls, not squeezed
    central = window.centralWidget().geometry()
    assert column.height() == central.height()  # the notes take no height from the panels
    assert not window.volume.notes_dock.geometry().intersects(window.centralWidget().geometry())
    window.close()


# 7 ------------------------------------------------------------------ label sets per kind of data
def test_volumes_start_with_neutral_labels_presets_apply_and_the_selection_is_remembered(
    qtbot, tmp_path, folder
) -> None:
    import nibabel as nib

    from isegformer_app.state.labels import LABEL_PRESETS

    data = np.zeros((12, 14, 9), np.int16)
    volume = tmp_path / "knee.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), volume)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(volume)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    assert window.labels.names() == ["structure 1"]  # not "object, person, ..."
    window.actions_by_name["preset_Knee bones and cartilage (OAI-ZIB)"].trigger()
    assert window.labels.names() == list(LABEL_PRESETS["Knee bones and cartilage (OAI-ZIB)"])
    window.labels_panel.list.setCurrentRow(2)  # tibia
    assert window.volume.doc.new_object_label[0] == "tibia"
    qtbot.waitUntil(lambda: not window.sidecar_writer.busy, timeout=5000)
    assert open_and_wait(window, folder / "a.png")  # photos: the photo set
    assert window.labels.names() == ["object", "person", "animal", "vehicle"]
    window.close()

    again = make_window(qtbot, tmp_path, DiskPredictor())  # a restart
    assert again.open_path(volume)
    qtbot.waitUntil(lambda: again.volume.doc is not None, timeout=10000)
    assert again.labels.names() == ["femur", "femoral cartilage", "tibia", "tibial cartilage"]
    assert again.labels_panel.current().name == "tibia" and again.volume.doc.new_object_label[0] == "tibia"
    click(qtbot, again, 6, 7)
    qtbot.waitUntil(lambda: again.volume.doc.prob is not None, timeout=5000)
    again.finish_object()
    assert [o.label for o in again.volume.doc.objects] == ["tibia"]
    again.actions_by_name["preset_BraTS tumour regions"].trigger()  # the object's class stays listed
    assert again.labels.names() == [*LABEL_PRESETS["BraTS tumour regions"], "tibia"]
    again.close()


def test_the_default_set_for_new_volume_projects_is_kept_apart_from_the_photo_one(tmp_path) -> None:
    from isegformer_app.settings import Settings
    from isegformer_app.state.labels import LabelList
    from isegformer_app.state.project_labels import ProjectLabels, read_project_labels, write_project_labels

    settings = Settings.load(tmp_path)
    assert LabelList.default_for("volumes", settings.volume_labels).names() == ["structure 1"]
    assert LabelList.default_for("photos", settings.labels).names()[:2] == ["object", "person"]
    settings.volume_labels = LabelList.of_names(["liver", "tumour"]).to_json()
    settings.save()
    loaded = Settings.load(tmp_path)
    assert LabelList.default_for("volumes", loaded.volume_labels).names() == ["liver", "tumour"]
    assert LabelList.default_for("photos", loaded.labels).names()[0] == "object"
    path = tmp_path / "p" / "labels.json"
    write_project_labels(ProjectLabels(LabelList.of_names(["a", "b"]), "b"), path)
    project, _seen = read_project_labels(path, LabelList())
    assert project.labels.names() == ["a", "b"] and project.selected == "b"


# 8 ------------------------------------------------------------------ smaller things
def test_the_rename_dialog_shows_its_whole_title_once_on_screen(qtbot) -> None:
    from PySide6.QtCore import QTimer

    from isegformer_app.ui.panels import TITLE_ROOM, input_dialog

    dialog = input_dialog(None, "Rename object", "Class label:")
    dialog.setComboBoxItems(["object", "person"])
    seen = []
    QTimer.singleShot(50, lambda: (seen.append(dialog.width()), dialog.reject()))
    dialog.exec()  # shown as the app shows it (QInputDialog resizes itself to its fields when shown)
    assert seen and seen[0] >= dialog.fontMetrics().horizontalAdvance("Rename object") + TITLE_ROOM


def double_click(qtbot, widget, pos) -> None:
    """What a mouse sends: press, release, then the double-click (QTest's mouseDClick is only the last)."""
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(widget, Qt.MouseButton.LeftButton, pos=pos)


def test_double_clicking_an_object_edits_it_as_return_does(qtbot, tmp_path, monkeypatch) -> None:
    import nibabel as nib

    from isegformer_app.ui import panels

    data = np.zeros((12, 14, 9), np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    window = make_window(qtbot, tmp_path, DiskPredictor(radius=2))
    assert window.open_path(tmp_path / "v.nii.gz")
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    doc = window.volume.doc
    for row in (3, 9):
        click(qtbot, window, row, 6)
        qtbot.waitUntil(lambda: doc.prob is not None and not doc.needs_prediction(), timeout=5000)
        window.finish_object()
    lst = window.objects_panel.list
    first = next(lst.item(i) for i in range(lst.count()) if lst.item(i).data(Qt.ItemDataRole.UserRole) == 1)
    double_click(qtbot, lst.viewport(), lst.visualItemRect(first).center())
    assert "Clicks now edit object 1" in window.message_label.text()
    window.close()

    asked = []
    monkeypatch.setattr(panels, "ask_item", lambda *a, **k: asked.append(a[1]) or ("animal", True))
    photos = make_window(qtbot, tmp_path, DiskPredictor())
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "p.png")
    assert open_and_wait(photos, tmp_path / "p.png")
    click(qtbot, photos, 20, 25)
    qtbot.waitUntil(predicted(photos, 1), timeout=5000)
    photos.finish_object()
    lst = photos.objects_panel.list
    double_click(qtbot, lst.viewport(), lst.visualItemRect(lst.item(0)).center())
    assert asked == ["Rename object"] and photos.doc.objects[0].label == "animal"
    photos.close()


def test_the_propagate_dialog_names_slices_as_the_panel_does(qtbot, tmp_path, monkeypatch) -> None:
    import nibabel as nib
    from PySide6.QtWidgets import QInputDialog

    data = np.zeros((12, 14, 10), np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(tmp_path / "v.nii.gz")
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    window.volume.show_slice(index=5)
    panel_text = window.volume.panel.slice_label.text()
    assert panel_text == "Slice k = 5  (6/10)"
    asked, targets = [], []
    monkeypatch.setattr(QInputDialog, "getInt", lambda *a: asked.append(a) or (8, True))
    monkeypatch.setattr(window.volume, "propagate_to", targets.append)
    window.actions_by_name["propagate_range"].trigger()
    parent, title, label, value, low, high = asked[0][:6]
    assert label == "Propagate from slice k = 5  (6/10) up to slice k =" and (value, low, high) == (9, 0, 9)
    assert targets == [8]  # slice k = 8 of the file
    window.close()


def test_export_starts_outside_the_installation_and_creates_a_new_folder(
    qtbot, tmp_path, monkeypatch
) -> None:
    from isegformer_app.ui import dialogs, image_mode
    from resources import SAMPLE_IMAGE

    window = make_window(qtbot, tmp_path, DiskPredictor())
    starts = []
    monkeypatch.setattr(image_mode, "ask_folder", lambda parent, title, start: starts.append(start) or "")
    assert open_and_wait(window, SAMPLE_IMAGE)
    window.export_dialog()
    assert starts == [str(Path.home())]  # not inside the installation
    dialog = dialogs.FolderDialog(window, "Export", str(tmp_path))
    target = tmp_path / "exports" / "new"
    dialog.selectFile(str(target))
    dialog.accept()  # a name that does not exist yet: created, not "Directory not found"
    assert dialog.result() == 1 and target.is_dir() and dialog.selectedFiles() == [str(target)]
    window.close()


def test_the_first_click_hint_does_not_cover_restored_work(qtbot, tmp_path, folder) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder / "a.png") and window.canvas.hint() is not None
    click(qtbot, window, 40, 60)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    window.finish_object()
    assert window.save_now()
    qtbot.waitUntil(lambda: not window.doc.dirty, timeout=5000)  # written (in the background)
    window.close()
    again = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(again, folder / "a.png") and len(again.doc.objects) == 1
    assert again.canvas.hint() is None
    assert open_and_wait(again, folder / "c.png") and again.canvas.hint() is None  # it went for the session
    again.close()


def test_moving_to_the_next_image_replaces_the_previous_images_messages_and_readout(
    qtbot, tmp_path, folder
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder)
    qtbot.mouseMove(window.canvas.viewport(), window.canvas.image_to_view(30, 40))
    qtbot.waitUntil(lambda: "RGB" in window.cursor_label.text(), timeout=2000)
    window.finish_object()
    assert window.message_label.text() == "Nothing to finish: click on the object first."
    window.next_image()
    window.images.wait_for_load()
    assert window.doc.path.name == "c.png"
    assert window.message_label.text().startswith("c.png (3/5) — Skipped broken.jpg: the file is incomplete")
    assert window.cursor_label.text() == ""  # a.png's pixel is not c.png's
    window.close()
