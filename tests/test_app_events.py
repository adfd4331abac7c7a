"""One annotation-document design: typed events with subscribers (Qt-free state, widgets subscribe), worker
results to the mode, the autosave timer on dirty events only, one snapshot type, no import cycle."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted
from PIL import Image
from PySide6.QtCore import Qt

from isegformer_app.state import events as ev
from isegformer_app.state import image_sidecar
from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.volume_document import SliceObject, VolumeDocument
from isegformer_app.ui import main_window as main_window_module
from isegformer_app.ui.panels import ObjectsPanel
from isegformer_app.volumes import open_volume
from model.prediction import Prediction

ROOT = Path(__file__).resolve().parents[1]


def record(doc: AnnotationDocument) -> list[object]:
    """Every event of ``doc``, in order."""
    seen: list[object] = []
    for emitter in doc.events.emitters():
        emitter.connect(seen.append)
    return seen


def kinds(seen: list[object]) -> list[str]:
    return [type(e).__name__ for e in seen]


def photo_doc(h: int = 40, w: int = 60) -> Document:
    return Document(LoadedImage(path=Path("x.png"), rgb=np.zeros((h, w, 3), np.uint8), full_size=(h, w)))


def disk(shape: tuple[int, int], y: int, x: int, r: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.where((yy - y) ** 2 + (xx - x) ** 2 <= r * r, 0.9, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------- Qt-free state
def test_a_photo_document_says_what_changed_and_a_prediction_is_no_change_of_objects() -> None:
    doc = photo_doc()
    seen = record(doc)
    doc.add_click(20, 30, True)
    assert kinds(seen) == ["ClicksChanged", "DirtyChanged"] and seen[-1].dirty
    seen.clear()
    assert doc.set_prediction(doc.clicks, Prediction.of(disk(doc.shape, 20, 30)))
    assert kinds(seen) == ["PredictionChanged"]  # not an edit: the objects and the revision stay
    seen.clear()
    obj = doc.finish_object("cat", (255, 0, 0))
    assert kinds(seen) == ["ObjectsChanged", "ClicksChanged", "DirtyChanged"]
    seen.clear()
    doc.select(obj.uid)
    doc.select(obj.uid)  # no change, no event
    doc.set_threshold(0.7)
    assert seen == [ev.SelectionChanged(obj.uid), ev.ThresholdChanged(0.7)]
    seen.clear()
    doc.relabel_object(obj.uid, "dog", (0, 255, 0))
    assert kinds(seen) == ["ObjectsChanged", "DirtyChanged"]
    assert doc.undo() and (obj.label, obj.color) == ("cat", (255, 0, 0))  # one step back
    assert doc.undo() and doc.objects == [] and len(doc.clicks) == 1  # then the finish
    seen.clear()
    snapshot = doc.snapshot()
    doc.saved(snapshot, image_sidecar.SaveOutcome())
    assert seen == [ev.DirtyChanged(False)] and not doc.dirty


def small_volume(folder: Path) -> VolumeDocument:
    path = folder / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((30, 24, 6), np.int16), np.eye(4)), path)
    return VolumeDocument(open_volume(path), path)


def test_a_volume_shows_typed_slice_objects_and_merges_its_two_histories_explicitly(tmp_path) -> None:
    doc = small_volume(tmp_path)
    seen = record(doc)
    doc.set_view("axial", 2)  # (the view of a fresh document already, but set: announced)
    assert kinds(seen) == ["ViewChanged"]
    seen.clear()
    doc.add_click(10, 10, True)  # starts an object: a volume command, then the slice's click
    assert kinds(seen) == ["ObjectsChanged", "ClicksChanged", "DirtyChanged", "ClicksChanged", "DirtyChanged"]
    seen.clear()
    assert doc.set_prediction(doc.clicks, Prediction.of(disk(doc.shape, 10, 10)), doc.prediction_key())
    assert kinds(seen) == ["PredictionChanged", "DirtyChanged"]  # written into the label volume
    (obj,) = doc.objects
    assert type(obj) is SliceObject and not hasattr(SliceObject, "__getattr__")  # no proxy
    assert obj.mask[10, 10] and obj.mask.sum() == disk(doc.shape, 10, 10).astype(bool).sum()
    assert doc.can_undo() and not doc.can_redo()
    doc.set_view(index=3)  # another slice: only the volume's command is there to undo
    assert doc.can_undo() and doc.undo() and doc.objects == [] and not doc.can_undo() and doc.can_redo()
    assert not hasattr(doc, "history")  # the merge is can_undo/can_redo/undo/redo, not a fake History


def test_both_documents_write_one_snapshot_type_named_by_the_same_key_scheme(tmp_path) -> None:
    photo = photo_doc()
    volume = small_volume(tmp_path)
    for doc, name in ((photo, "x.png.isegformer.npz"), (volume, "v.nii.gz.isegformer-volume.npz")):
        snapshot = doc.snapshot()
        assert isinstance(snapshot, image_sidecar.Snapshot) and snapshot.name == name
        assert snapshot.key == doc.path.parent / ".isegformer" / name  # what the background writer keys
        assert snapshot.target(tmp_path / "elsewhere") == tmp_path / "elsewhere" / name
        outcome = snapshot.write(tmp_path / name)
        assert (tmp_path / name).is_file() and outcome.notice == "" and outcome.merged == []


# ---------------------------------------------------------------------------------------- the window
@pytest.fixture
def photo_folder(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(folder / name)
    return folder


def test_a_prediction_redraws_the_canvas_without_rebuilding_the_objects_panel(
    qtbot, tmp_path, photo_folder, messages, monkeypatch
) -> None:
    refreshes: list[int] = []
    real_refresh = ObjectsPanel.refresh
    monkeypatch.setattr(ObjectsPanel, "refresh",
                        lambda self, _event=None: refreshes.append(1) or real_refresh(self))  # fmt: skip
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, photo_folder / "a.png")
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    assert window.objects_panel.list.count() == 1
    first_item = window.objects_panel.list.item(0)
    refreshes.clear()
    overlays: list[object] = []
    real_set_overlay = window.canvas.set_overlay
    monkeypatch.setattr(window.canvas, "set_overlay",
                        lambda rgba: overlays.append(rgba) or real_set_overlay(rgba))  # fmt: skip
    click(qtbot, window, 80, 110)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert overlays and overlays[-1] is not None  # the prediction is drawn ...
    assert refreshes == [] and window.objects_panel.list.item(0) is first_item  # ... the panel left alone
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    assert refreshes and window.objects_panel.list.count() == 2  # a new object: the panel follows


def test_the_autosave_is_scheduled_by_dirty_events_only(qtbot, tmp_path, photo_folder, messages) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, photo_folder / "a.png")
    timer, doc = window.autosave_timer, window.doc
    assert not timer.isActive() and not doc.dirty
    for event in (ev.ClicksChanged(), ev.PredictionChanged(), ev.ObjectsChanged(), ev.ViewChanged(),
                  ev.SelectionChanged(None), ev.ThresholdChanged(0.5), ev.DirtyChanged(False)):  # fmt: skip
        doc.events.emit(event)
        assert not timer.isActive(), type(event).__name__
    doc.events.emit(ev.DirtyChanged(True))
    assert timer.isActive()
    timer.stop()
    click(qtbot, window, 30, 30)  # a real edit: its DirtyChanged starts the timer
    assert timer.isActive() and window.windowTitle().startswith("a.png *")
    qtbot.waitUntil(lambda: not window.doc.dirty, timeout=5000)  # written when it fired
    assert window.windowTitle().startswith("a.png —") and not timer.isActive()


def test_worker_results_go_to_the_mode_and_the_window_holds_no_refresh_switch(
    qtbot, tmp_path, photo_folder, messages
) -> None:
    source = inspect.getsource(main_window_module)
    for gone in ("_hold_refresh", "apply_prediction", "def refresh(", "listeners"):
        assert gone not in source, gone
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, photo_folder / "a.png")
    stored: list[int] = []
    window.images.predictions.shown.connect(stored.append)  # the image mode's link stored it
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert stored == [window.worker.latest_request_id()]


def test_save_now_writes_in_the_background_for_photos_as_for_volumes(
    qtbot, tmp_path, photo_folder, messages, monkeypatch
) -> None:
    real_write = image_sidecar.write_snapshot
    monkeypatch.setattr(image_sidecar, "write_snapshot",
                        lambda snapshot, path: (time.sleep(0.5), real_write(snapshot, path))[1])  # fmt: skip
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, photo_folder / "a.png")
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    started = time.perf_counter()
    assert window.save_now()
    assert time.perf_counter() - started < 0.3 and window.doc.dirty  # the GUI did not wait on the disk
    qtbot.waitUntil(lambda: not window.doc.dirty, timeout=5000)
    assert window.project.sidecar_for(photo_folder / "a.png").is_file()


def test_no_import_cycle_in_any_package_type_checking_imports_included() -> None:
    config = (ROOT / "pyproject.toml").read_text()
    assert "exclude_type_checking_imports" not in config
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "no import cycles among the modules of any package KEPT" in result.stdout


def test_nothing_is_set_onto_the_window_from_another_module() -> None:
    ui = ROOT / "isegformer_app" / "ui"
    for path in ui.glob("*.py"):
        text = path.read_text()
        if path.name != "main_window.py":
            assert "window.recent_menu =" not in text and "window.training_dialog =" not in text, path.name
            assert "window.shortcut_sheet =" not in text and "window.about_box =" not in text, path.name
        assert "__dict__" not in text, path.name


@pytest.fixture
def nifti(tmp_path) -> Path:
    path = tmp_path / "head.nii.gz"
    data = np.zeros((40, 48, 12), np.int16)
    data[10:30, 12:36, 2:10] = 500
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def test_a_volume_slice_change_redraws_without_touching_the_objects_panel(
    qtbot, tmp_path, nifti, messages, monkeypatch
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.active, timeout=10000)
    click(qtbot, window, 20, 15)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert window.objects_panel.list.count() == 1 and window.actions_by_name["undo"].isEnabled()
    item = window.objects_panel.list.item(0)
    window.volume.step_slice(+1)  # nothing on this slice: only the volume's new object can be undone
    assert window.objects_panel.list.item(0) is item and window.doc.clicks == []
    assert window.actions_by_name["undo"].isEnabled()  # the merged history, followed through ViewChanged


def test_one_clicks_path_has_no_turn_between_window_and_mode(tmp_path, qapp):
    """The click-path benchmark (which drives the real window) runs, and a click no longer turns back into
    the window or a mode: at most the canvas is re-entered while its mouse handler is on the stack."""
    from isegformer_app.benchmarks.click_path import follow_one_click

    path = follow_one_click(tmp_path)
    assert "isegformer_app/ui/canvas_input.py" in path.files
    assert "isegformer_app/state/image_sidecar.py" in path.files  # the autosave was written
    callees = {turn.split(" -> ")[1].split(":")[0] for turn in path.back_turns}
    assert not callees & {"isegformer_app/ui/main_window.py", "isegformer_app/ui/image_mode.py"}
    assert all(turn.split(" -> ")[1].startswith("isegformer_app/ui/canvas.py") for turn in path.ui_turns())
