"""What annotators expect in the first minute: visible values, a hint before the first click, a
shortcut sheet and About box, relabelled objects in their new colour, the unsaved-work prompt in
proper English, a grayscale notice, widgets that fit their text, "Custom" after a W/L drag."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from _app_helpers import DiskPredictor, click, open_and_wait
from _app_helpers import make_window as make_disk_window
from PIL import Image
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractButton, QComboBox, QMessageBox, QTableWidget

from isegformer_app.state.document import Document
from isegformer_app.state.export import export_items, item_from_document
from isegformer_app.state.imageio import LoadedImage, load_image
from isegformer_app.state.labels import LabelList
from isegformer_app.ui import dialogs, panels
from isegformer_app.ui.actions import key_text, plain_text
from isegformer_app.ui.canvas import CanvasView
from isegformer_app.ui.main_window import MainWindow
from isegformer_app.ui.overlay import render_overlay
from isegformer_app.ui.panels import ObjectsPanel, ViewPanel, input_dialog
from isegformer_app.ui.volume_panel import VolumePanel
from isegformer_app.volumes import WindowPreset


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "imgs" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


def make_window(qtbot, tmp_path) -> MainWindow:
    return make_disk_window(qtbot, tmp_path, DiskPredictor())


def make_doc(folder: Path, h: int = 40, w: int = 60) -> Document:
    rgb = np.zeros((h, w, 3), np.uint8)
    Image.fromarray(rgb).save(folder / "doc.png")
    return Document(LoadedImage(folder / "doc.png", rgb, (h, w)))


# 1 ------------------------------------------------------------------ slider values
def test_view_panel_shows_the_slider_values_as_they_move(qtbot) -> None:
    panel = ViewPanel(opacity=0.5, threshold=0.49, brush_radius=8)
    qtbot.addWidget(panel)
    assert panel.opacity_value.text() == "50 %" and panel.threshold_value.text() == "0.49"
    panel.opacity.setValue(73)
    panel.threshold.setValue(62)
    assert panel.opacity_value.text() == "73 %" and panel.threshold_value.text() == "0.62"
    panel.brush.setValue(15)
    assert panel.brush.text() == "15 px"


# 2 ------------------------------------------------------------------ canvas hint
def test_canvas_hint_shows_with_an_image_until_the_first_click(qtbot, tmp_path, photo, messages) -> None:
    canvas = CanvasView()
    qtbot.addWidget(canvas)
    canvas.set_hint("click somewhere")
    assert canvas.hint() is None  # no image yet
    canvas.set_image(np.zeros((10, 10, 3), np.uint8))
    assert canvas.hint() == "click somewhere"
    canvas.set_hint(None)
    assert canvas.hint() is None

    window = make_window(qtbot, tmp_path)
    assert window.canvas.hint() is None  # nothing displayed yet
    assert open_and_wait(window, photo)
    hint = window.canvas.hint()
    finish = window.actions_by_name["finish"].shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    assert hint is not None and "Left click = object" in hint and "Right click = background" in hint
    assert f"{finish} = finish" in hint and finish == "Space"
    label = window.canvas.hint_label
    assert label.isVisible() and label.width() <= window.canvas.viewport().width()
    click(qtbot, window, 60, 50)
    qtbot.waitUntil(lambda: window.doc is not None and len(window.doc.clicks) == 1, timeout=5000)
    assert window.canvas.hint() is None and not label.isVisible()
    window.close()


# 3 ------------------------------------------------------------------ Help menu
def test_shortcut_sheet_lists_every_action_with_a_shortcut_and_about_names_the_version(
    qtbot, tmp_path, monkeypatch
) -> None:
    window = make_window(qtbot, tmp_path)
    menus = [plain_text(a) for a in window.menuBar().actions()]
    assert menus[-1] == "Help"
    window.actions_by_name["shortcuts"].trigger()
    sheet = window.shortcut_sheet
    assert sheet.isVisible()
    table = sheet.findChild(QTableWidget, "shortcut_table")
    rows = {(table.item(r, 1).text(), table.item(r, 2).text()) for r in range(table.rowCount())}
    with_keys = [a for a in window.findChildren(QAction) if not a.shortcut().isEmpty()]
    assert len(with_keys) >= 20
    for action in with_keys:
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        assert any(text == plain_text(action) and keys in shown for text, shown in rows), (
            f"{action.text()} ({keys}) missing from the shortcut sheet")
    finish = window.actions_by_name["finish"]
    assert ("Finish object", key_text(finish)) in rows and key_text(finish) == "Space"
    assert any("Right click" in shown for _text, shown in rows)  # mouse bindings too
    sheet.close()

    window.actions_by_name["about"].trigger()
    box = window.about_box
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert version("isegformer") in box.text() and DiskPredictor.name in box.text()
    box.close()
    window.close()


# 5 ------------------------------------------------------------------ relabel = new colour
def test_renaming_an_object_to_another_label_gives_it_that_labels_colour(
    qtbot, tmp_path, monkeypatch
) -> None:
    labels = LabelList()
    doc = make_doc(tmp_path)
    doc.current.prob = np.zeros(doc.shape, np.float32)
    doc.current.prob[10:20, 10:30] = 0.9
    first = labels.classes[0]
    obj = doc.finish_object(first.name, first.color)
    panel = ObjectsPanel(labels)
    qtbot.addWidget(panel)
    panel.set_document(doc)
    doc.selected_uid = obj.uid
    added = []
    panel.labels_changed.connect(lambda: added.append(True))
    monkeypatch.setattr(panels, "ask_item", lambda *a, **k: ("person", True))
    panel.rename()
    person = labels.get("person")
    assert obj.label == "person" and obj.color == person.color != first.color
    assert render_overlay(doc, 1.0)[15, 15, :3].tolist() == list(person.color)
    export_items([item_from_document(doc)], tmp_path / "out", labels)
    records = json.loads((tmp_path / "out" / "labels.json").read_text())["images"]["doc"]["instances"]
    assert any(r["label"] == "person" and r["color"] == list(person.color) for r in records)
    assert not added  # "person" was already a class

    monkeypatch.setattr(panels, "ask_item", lambda *a, **k: ("tree", True))
    panel.rename()
    tree = labels.get("tree")
    assert tree is not None and obj.label == "tree" and obj.color == tree.color and added == [True]
    while doc.undo():
        pass
    assert obj.label == first.name and obj.color == first.color  # undo puts label and colour back


def test_input_dialogs_are_wide_enough_for_their_title(qtbot) -> None:
    for title in ("Rename object", "Rename label", "New label"):
        dialog = input_dialog(None, title, "Class name:")
        qtbot.addWidget(dialog)
        assert dialog.minimumWidth() >= dialog.fontMetrics().horizontalAdvance(title) + 100


# 6 ------------------------------------------------------------------ singular / plural
@pytest.mark.parametrize("count, expected", [(1, "(1 click of"), (2, "(2 clicks of")])
def test_unsaved_prompt_counts_clicks_in_proper_english(monkeypatch, count: int, expected: str) -> None:
    asked = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return QMessageBox.StandardButton.Cancel

    monkeypatch.setattr(QMessageBox, "question", question)
    doc = SimpleNamespace(clicks=[object()] * count, path=Path("photo.png"))
    assert dialogs.ask_unsaved(None, doc) == "cancel"
    assert all(expected in text for text in asked) and len(asked) == 1
    assert "1 clicks" not in asked[0]


# 7 ------------------------------------------------------------------ grayscale notice
def test_8bit_grayscale_image_gets_a_notice(tmp_path) -> None:
    Image.fromarray(np.full((8, 9), 77, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.full((8, 9, 3), 77, np.uint8)).save(tmp_path / "rgb.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.rgb[0, 0].tolist() == [77, 77, 77]
    assert len(gray.notices) == 1 and "grayscale" in gray.notices[0].lower()
    assert "8-bit" in gray.notices[0]
    assert load_image(tmp_path / "rgb.png").notices == []
    Image.fromarray(np.full((8, 9), 300, np.uint16)).save(tmp_path / "g16.png")
    assert any("16-bit" in n for n in load_image(tmp_path / "g16.png").notices)


# 8 ------------------------------------------------------------------ nothing clipped
def test_side_panel_buttons_and_boxes_fit_their_text(qtbot, tmp_path) -> None:
    window = make_window(qtbot, tmp_path)
    volume = window.volume.panel
    volume.set_presets([WindowPreset("file", 40, 400), WindowPreset("brain", 40, 80),
                        WindowPreset("knee/MSK", 300, 1500), WindowPreset("CT soft tissue", 40, 400)])
    volume.setVisible(True)  # as in volume mode
    qtbot.waitUntil(lambda: volume.isVisible())
    side = window.view_panel.parentWidget()
    widgets = [w for cls in (QAbstractButton, QComboBox) for w in side.findChildren(cls) if w.isVisible()]
    texts = {w.text() for w in widgets if isinstance(w, QAbstractButton)}
    assert {"Eraser", "Coronal", "Sagittal", "◀ Prev", "Next ▶", "Range…", "W/L drag"} <= texts
    def text(w) -> str:
        return w.text() if isinstance(w, QAbstractButton) else w.currentText()

    clipped = [(text(w), w.width(), w.sizeHint().width())
               for w in widgets if w.width() < w.sizeHint().width()]  # fmt: skip
    assert clipped == []
    window.close()


# 9 ------------------------------------------------------------------ "Custom" window
def test_preset_box_says_custom_after_a_manual_window_change(qtbot) -> None:
    panel = VolumePanel()
    qtbot.addWidget(panel)
    presets = [WindowPreset("file", 40, 400), WindowPreset("brain", 40, 80)]
    panel.set_presets(presets)
    chosen = []
    panel.preset_chosen.connect(chosen.append)
    panel.show_window(presets[1])
    assert panel.presets.currentText() == "brain (40/80)" and panel.presets.count() == 2
    panel.show_window(WindowPreset("custom", 52.25, 96.5))
    assert panel.presets.currentText() == "Custom (52.25/96.5)" and panel.presets.count() == 3
    panel.presets.activated.emit(2)  # choosing "Custom" itself changes nothing
    assert chosen == []
    panel.show_window(presets[0])
    assert panel.presets.currentText() == "file (40/400)" and panel.presets.count() == 2
    panel.show_custom_window()
    assert panel.presets.currentText() == "Custom"


def test_wl_drag_in_the_window_switches_the_preset_box_to_custom(qtbot, tmp_path, messages) -> None:
    data = (np.arange(24 * 20 * 6).reshape(24, 20, 6) % 400).astype(np.int16)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    window = make_window(qtbot, tmp_path)
    assert window.open_path(path)
    qtbot.waitUntil(lambda: window.volume.active, timeout=10000)
    box = window.volume.panel.presets
    assert not box.currentText().startswith("Custom")
    window.canvas.window_dragged.emit(12.0, 4.0)
    assert box.currentText().startswith("Custom")
    window.close()


def test_the_readme_screenshot_script_makes_the_window_with_a_finished_object(qtbot, tmp_path, monkeypatch):
    from isegformer_app import screenshot

    monkeypatch.setenv("ISEGFORMER_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "window.png"
    assert screenshot.main(["--out", str(out), "--size", "1000x700"]) == 0
    shot = np.asarray(Image.open(out).convert("RGB"))
    assert shot.shape == (700, 1000, 3) and shot.std() > 20  # a drawn window, not a blank grab
