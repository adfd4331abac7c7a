"""One owner per fact, through the real window: a relabel is one undo step (images and volumes alike),
the document owns its threshold and the slider follows it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from isegformer_app.ui import panels

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def nifti(tmp_path) -> Path:
    image = nib.load(NIBABEL_DATA / "anatomical.nii")
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj).astype(np.int16), np.eye(4)), path)
    return path


def open_volume(qtbot, window, path: Path):
    assert window.open_path(path)
    qtbot.waitUntil(lambda: window.volume.active, timeout=10000)
    return window.volume.doc


def finish_one_object(qtbot, window, y: int, x: int):
    click(qtbot, window, y, x)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    (obj,) = window.doc.objects
    return window.doc.object(obj.uid)


def rename_in_the_objects_panel(qtbot, window, monkeypatch, uid: int, name: str) -> None:
    """Select object ``uid`` in the Objects panel and press its Rename button, answering ``name``."""
    panel = window.objects_panel
    (item,) = [panel.list.item(r) for r in range(panel.list.count())
               if panel.list.item(r).data(Qt.ItemDataRole.UserRole) == uid]  # fmt: skip
    qtbot.mouseClick(
        panel.list.viewport(), Qt.MouseButton.LeftButton, pos=panel.list.visualItemRect(item).center()
    )
    assert window.doc.selected_uid == uid
    monkeypatch.setattr(panels, "ask_item", lambda *a, **k: (name, True))
    (button,) = [b for b in panel.findChildren(QPushButton) if b.text() == "Rename"]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def assert_one_undo_restores_the_label_and_colour(qtbot, window, monkeypatch, obj) -> None:
    before = (obj.label, tuple(obj.color))
    rename_in_the_objects_panel(qtbot, window, monkeypatch, obj.uid, "person")
    person = window.labels.get("person")
    assert (obj.label, tuple(obj.color)) == ("person", tuple(person.color)) != before
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (obj.label, tuple(obj.color)) == before  # name and colour back in one step
    assert window.objects_panel.list.item(0).text().endswith(before[0])
    assert [o.uid for o in window.doc.objects] == [obj.uid]  # the finish was not undone with it
    qtbot.keyClick(
        window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier
    )
    assert (obj.label, tuple(obj.color)) == ("person", tuple(person.color))  # and redone in one step


def test_relabelling_a_photo_object_is_one_undo_step(
    qtbot, tmp_path, photo_folder, messages, monkeypatch
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, photo_folder)
    obj = finish_one_object(qtbot, window, 60, 50)
    assert_one_undo_restores_the_label_and_colour(qtbot, window, monkeypatch, obj)


def test_relabelling_a_volume_object_is_one_undo_step(qtbot, tmp_path, nifti, messages, monkeypatch) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor(with_prev_mask=True))
    window.resize(1000, 700)
    open_volume(qtbot, window, nifti)
    obj = finish_one_object(qtbot, window, 20, 15)
    assert_one_undo_restores_the_label_and_colour(qtbot, window, monkeypatch, obj)


# the threshold: the document owns it, the slider shows the shown document's and sends the user's moves
def test_a_photos_restored_threshold_moves_the_slider_and_the_slider_moves_the_document(
    qtbot, tmp_path, photo_folder, messages
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())  # the disks predict 0.9 inside, 0 outside
    slider = window.view_panel.threshold
    assert open_and_wait(window, photo_folder)
    click(qtbot, window, 60, 50)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    slider.setValue(95)  # the user's move goes to the document: nothing is above 0.95
    assert window.doc.threshold == pytest.approx(0.95) and not window.doc.current_mask().any()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # a.png is autosaved with its threshold
    assert window.images.wait_for_load() and window.doc.path.name == "b.png"
    slider.setValue(40)
    assert window.doc.threshold == pytest.approx(0.40)
    qtbot.keyClick(window.canvas, Qt.Key.Key_A)
    assert window.images.wait_for_load() and window.doc.path.name == "a.png"
    assert window.doc.threshold == pytest.approx(0.95)  # restored from its autosave ...
    assert slider.value() == 95 and window.view_panel.threshold_value.text() == "0.95"  # ... and shown
    assert len(window.doc.clicks) == 1 and not window.doc.current_mask().any()
    slider.setValue(50)
    assert window.doc.threshold == pytest.approx(0.50) and window.doc.current_mask()[60, 50]


def test_a_volumes_saved_threshold_survives_loading_and_the_slider_shows_it(
    qtbot, tmp_path, nifti, photo_folder, messages
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor(with_prev_mask=True))
    window.resize(1000, 700)
    slider = window.view_panel.threshold
    doc = open_volume(qtbot, window, nifti)
    click(qtbot, window, 20, 15)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert doc.label_slice()[20, 15] == 1
    slider.setValue(95)  # to the volume document: the slice's object follows
    assert doc.threshold == pytest.approx(0.95) and not doc.label_slice().any()
    assert window.save_now()
    qtbot.waitUntil(lambda: not doc.dirty, timeout=5000)
    assert open_and_wait(window, photo_folder) and window.mode is window.images
    slider.setValue(40)  # the photo's threshold
    assert window.doc.threshold == pytest.approx(0.40)

    doc = open_volume(qtbot, window, nifti)
    assert doc is not window.images.doc and len(doc.clicks) == 1
    assert doc.threshold == pytest.approx(0.95)  # the autosave's, not the slider's of the photo
    assert slider.value() == 95 and not doc.label_slice().any()
    slider.setValue(50)
    assert doc.threshold == pytest.approx(0.50) and doc.label_slice()[20, 15] == 1
