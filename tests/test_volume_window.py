"""pytest-qt tests of volume mode through the real main window (offscreen) with a fake click predictor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _app_helpers import open_and_wait
from fakes import DiskPredictor
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QInputDialog, QPushButton

from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
from isegformer_app.settings import Settings
from isegformer_app.ui import volume_files
from isegformer_app.ui.main_window import MainWindow
from model.prediction import Prediction

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
RADIUS = 4


def disks() -> DiskPredictor:
    return DiskPredictor(radius=RADIUS, with_prev_mask=True)


@pytest.fixture
def nifti(tmp_path) -> Path:
    """anatomical.nii with 3 mm slices (anisotropic: coronal/sagittal pixels are 3x taller than wide)."""
    image = nib.load(NIBABEL_DATA / "anatomical.nii")
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj).astype(np.int16), affine), path)
    return path


def make_window(qtbot, tmp_path, predictor: DiskPredictor) -> MainWindow:
    window = MainWindow(Settings.load(tmp_path / "config"), engines={"disks": lambda: predictor})
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.show()
    qtbot.waitUntil(lambda: window.models.active == ("engine", "disks"), timeout=5000)
    return window


def open_volume(qtbot, window: MainWindow, path: Path) -> None:
    assert window.open_path(path)
    qtbot.waitUntil(lambda: window.volume.active, timeout=10000)


def click(qtbot, window: MainWindow, y: int, x: int) -> None:
    pos = window.canvas.image_to_view(y, x)
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)


def predicted(window: MainWindow, n: int):
    doc = window.volume.doc
    return lambda: len(doc.clicks) == n and doc.prob is not None and not doc.needs_prediction()


def test_volume_click_slices_views_window_level_propagate_export(qtbot, tmp_path, nifti, messages) -> None:
    predictor = disks()
    window = make_window(qtbot, tmp_path, predictor)
    open_volume(qtbot, window, nifti)
    doc = window.volume.doc
    assert doc.volume.shape == (25, 41, 33) and (doc.axis, doc.index) == ("axial", 12)
    assert window.volume.panel.isVisible() and "33x41x25" in window.message_label.text()
    assert window.actions_by_name["slice_up"].isEnabled()
    click(qtbot, window, 20, 15)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert threading.get_ident() not in predictor.thread_ids  # predicted in the worker thread
    yy, xx = np.mgrid[:41, :33]
    disk = ((yy - 20) ** 2 + (xx - 15) ** 2 <= RADIUS**2).astype(np.uint8)
    assert np.array_equal(doc.labels.data[12], disk)

    qtbot.keyClick(window.canvas, Qt.Key.Key_Up)  # next slice
    assert doc.index == 13 and window.volume.panel.slider.value() == 13 and not doc.current_mask().any()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Down)
    assert doc.index == 12 and doc.current_mask()[20, 15] and not doc.needs_prediction()  # cache

    window.volume.propagate_to(13)  # in the worker, with the slice's mask as previous mask
    qtbot.waitUntil(lambda: window.volume.propagation is None and doc.index == 13, timeout=5000)
    assert np.array_equal(doc.labels.data[13], doc.labels.data[12]) and len(doc.clicks) == 1

    qtbot.keyClick(window.canvas, Qt.Key.Key_2)  # coronal view: 3 mm slices, pixels 1.5x taller than wide
    assert doc.axis == "coronal" and doc.shape == (25, 33)
    transform = window.canvas.transform()
    assert transform.m22() / transform.m11() == pytest.approx(1.5)
    assert window.canvas.image_size == (25, 33)

    # window/level drag in W/L mode changes the displayed window, not the clicks
    window.volume.panel.wl_button.setChecked(True)
    before = window.volume.display_window
    y, x = 12, 16
    pixel_before = window.canvas.image_item.pixmap().toImage().pixelColor(x, y).red()
    start = window.canvas.image_to_view(y, x)
    viewport = window.canvas.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, start + QPoint(60, 30))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(60, 30))
    after = window.volume.display_window
    assert after.width > before.width * 1.2 and after.center > before.center and doc.clicks == []
    value = doc.volume.slice_values("coronal", doc.index)[y, x]
    expected = np.clip((value - after.low) / after.width, 0, 1) * 255
    assert abs(window.canvas.image_item.pixmap().toImage().pixelColor(x, y).red() - expected) <= 1
    assert pixel_before != window.canvas.image_item.pixmap().toImage().pixelColor(x, y).red() or value == 0
    window.volume.panel.wl_button.setChecked(False)

    qtbot.keyClick(window.canvas, Qt.Key.Key_1)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)  # finish the object
    assert doc.active is None and [o.uid for o in doc.object_list] == [1]
    out = tmp_path / "export" / "seg.nii.gz"
    task = window.volume.files.export_nifti(out)
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    saved = nib.load(out)
    np.testing.assert_allclose(saved.affine, np.diag([2.0, 2.0, 3.0, 1.0]), atol=1e-5)
    assert np.array_equal(doc.volume.source.to_display_array(np.asarray(saved.dataobj)), doc.labels.data)
    assert (out.parent / "seg_itksnap.txt").is_file() and (out.parent / "seg.ctbl").is_file()

    task = window.volume.files.export_slices(tmp_path / "png", "oai_zib")
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    assert [s.index for s in task.result] == [12, 13]
    assert task.result[0].mask_path == tmp_path / "png" / "test" / "annotations" / "head_axial_0012.png"
    presets = doc.volume.window_presets
    window.volume.panel.presets.activated.emit(len(presets) - 1)
    assert window.volume.display_window == presets[-1]

    # re-import for correction: replaces the labels (undoable)
    doc.delete_object(1)
    assert not doc.labels.data.any()
    task = window.volume.files.import_labels(out)
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    assert doc.labels.data[12].any() and np.array_equal(doc.labels.data[13], doc.labels.data[12])
    assert [o.uid for o in doc.object_list] == [1] and "Imported 1 label" in window.message_label.text()
    assert "Names and colours from" in window.message_label.text()  # the ITK-SNAP file export wrote

    # re-import of a label map that does not fit: one clear message, labels unchanged
    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), wrong)
    task = window.volume.files.import_labels(wrong)
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    assert messages and "wrong.nii.gz" in messages[-1][1] and "shape" in messages[-1][1]
    assert doc.labels.data[12].any()
    window.close()


def test_event_loop_runs_during_slow_load_and_export(qtbot, tmp_path, nifti, messages, monkeypatch) -> None:
    window = make_window(qtbot, tmp_path, disks())
    real_open, real_export = volume_files.open_volume, volume_files.export_volume_labels

    def slow_open(path, series_uid=None, frame=None, progress=None, cancel=None):
        for step in range(10):
            time.sleep(0.05)
            progress(step / 10, "reading")
        return real_open(path, series_uid, progress=progress, cancel=cancel)

    def slow_export(labels, volume, path, progress=None):
        time.sleep(0.5)
        return real_export(labels, volume, path, progress)

    monkeypatch.setattr(volume_files, "open_volume", slow_open)
    monkeypatch.setattr(volume_files, "export_volume_labels", slow_export)
    ticks = []
    probe = QTimer(window, interval=10)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    started = time.perf_counter()
    assert window.open_path(nifti)
    assert time.perf_counter() - started < 0.3 and not window.volume.active  # returned at once
    qtbot.waitUntil(lambda: window.volume.active, timeout=10000)
    assert len(ticks) >= 15 and np.diff(ticks).max() < 0.3  # the GUI kept running while loading
    ticks.clear()
    task = window.volume.files.export_nifti(tmp_path / "slow.nii.gz")
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    assert len(ticks) >= 15 and np.diff(ticks).max() < 0.3 and (tmp_path / "slow.nii.gz").is_file()

    def endless(path, series_uid=None, frame=None, progress=None, cancel=None):
        while not cancel.is_set():
            time.sleep(0.01)
            progress(0.5, "reading")
        from isegformer_app.volumes import LoadCancelled

        raise LoadCancelled("cancelled")

    monkeypatch.setattr(volume_files, "open_volume", endless)
    doc = window.volume.doc
    task = window.volume.files.open(nifti)
    QTimer.singleShot(100, task.progress_dialog.findChild(QPushButton).click)  # its Cancel button
    qtbot.waitUntil(lambda: task.handled, timeout=5000)
    assert task.cancelled and window.volume.doc is doc and "cancelled" in window.message_label.text()
    probe.stop()
    window.close()


def test_dicom_series_chooser_and_autosave_reopen(qtbot, tmp_path, messages, monkeypatch) -> None:
    image = nib.load(NIBABEL_DATA / "anatomical.nii")
    stored = np.asarray(image.dataobj).astype(np.int16)
    folder = tmp_path / "study"
    write_dicom_series(stored[:, :, :6], image.affine, folder / "a",
                       SeriesOptions(series_description="first"))
    write_dicom_series(stored[:, :, :9], image.affine, folder / "b",
                       SeriesOptions(series_description="second", seed=2))
    chosen = []

    def choose(parent, title, label, items, current, editable):
        chosen.append(list(items))
        return next(i for i in items if "second" in i), True

    monkeypatch.setattr(QInputDialog, "getItem", choose)
    predictor = disks()
    window = make_window(qtbot, tmp_path, predictor)
    open_volume(qtbot, window, folder)
    assert len(chosen[0]) == 2 and window.volume.doc.volume.shape[0] == 9
    click(qtbot, window, 20, 15)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    labels = window.volume.doc.labels.data.copy()
    assert window.save_now()
    qtbot.waitUntil(lambda: not window.volume.doc.dirty, timeout=5000)
    sidecars = list((tmp_path / ".isegformer").glob("study-*.isegformer-volume.npz"))
    assert len(sidecars) == 1
    window.close()

    again = make_window(qtbot, tmp_path, disks())
    open_volume(qtbot, again, folder)
    assert np.array_equal(again.volume.doc.labels.data, labels) and len(again.doc.clicks) == 1
    again.close()


class SlowPredictor(DiskPredictor):
    def predict(self, clicks, state=None) -> Prediction:
        time.sleep(0.08)
        return super().predict(clicks, state)


def test_propagate_range_cancel_and_volume_warnings(qtbot, tmp_path, messages) -> None:
    window = make_window(qtbot, tmp_path, SlowPredictor())
    open_volume(qtbot, window, NIBABEL_DATA / "example4d.nii.gz")  # 4-D: a warning says which frame is shown
    assert window.volume.notes_dock.isVisible() and "frame 0" in window.volume.notes.toPlainText()
    doc = window.volume.doc
    start = doc.index
    click(qtbot, window, 40, 60)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert window.volume.propagate_to(doc.slice_count - 1)  # a range: progress dialog with Cancel
    dialog = window.volume.propagation.dialog
    qtbot.waitUntil(lambda: window.volume.propagation.done >= 2, timeout=5000)
    assert "Propagate: slice" in dialog.dialog.labelText() and dialog.dialog.value() > 0  # reports arrive
    dialog.dialog.findChild(QPushButton).click()
    qtbot.waitUntil(lambda: window.volume.propagation is None, timeout=5000)
    done = [z for z in range(start + 1, doc.slice_count) if doc.labels.data[z].any()]
    assert 2 <= len(done) < doc.slice_count - 1 - start
    assert done == list(range(start + 1, start + 1 + len(done)))  # contiguous from the start slice
    assert "cancelled" in window.message_label.text() and doc.index == start
    assert window.volume.propagate_to(start - 2)  # backwards, to the end: not cancelled
    qtbot.waitUntil(lambda: window.volume.propagation is None, timeout=5000)
    assert window.message_label.text() == "Propagated to 2 of 2 slice(s)."
    assert doc.labels.data[start - 1].any() and doc.labels.data[start - 2].any()
    window.close()


def test_image_export_runs_in_background(qtbot, tmp_path, messages, monkeypatch) -> None:
    from PIL import Image


    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(tmp_path / "a.png")
    window = make_window(qtbot, tmp_path, disks())
    assert open_and_wait(window, tmp_path / "a.png") and not window.volume.active
    assert not window.actions_by_name["slice_up"].isEnabled()  # volume keys are free in image mode
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(lambda: window.doc.prob is not None, timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    import isegformer_app.state.export as export_module

    real = export_module.export_items

    def slow_export(items, out, labels, report=None, cancel=None, **kwargs):
        for step in range(5):
            time.sleep(0.1)
            report(step / 5, "a.png")
        return real(items, out, labels, report, cancel, **kwargs)

    monkeypatch.setattr(export_module, "export_items", slow_export)
    ticks = []
    probe = QTimer(window, interval=10)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    task = window.images.export_to(tmp_path / "out")
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    probe.stop()
    assert task.result.exported == 1 and (tmp_path / "out" / "masks" / "a.png").is_file()
    assert len(ticks) >= 15 and np.diff(ticks).max() < 0.3
    window.close()


def test_a_volume_autosave_from_a_newer_version_is_set_aside_not_overwritten(tmp_path) -> None:
    from isegformer_app.state.sidecar_codec import read_sidecar_file, write_sidecar
    from isegformer_app.state.sidecar_location import SidecarLocator
    from isegformer_app.state.volume_autosave import save_volume_document, volume_sidecar_path
    from isegformer_app.state.volume_document import VolumeDocument
    from isegformer_app.volumes import open_volume

    nifti = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 16, 5), 50, np.int16), np.eye(4)), nifti)
    volume = open_volume(nifti)
    doc = VolumeDocument(volume, nifti)
    doc.add_click(4, 4, True)
    sidecar = volume_sidecar_path(nifti, volume)
    save_volume_document(doc, sidecar)
    meta, arrays = read_sidecar_file(sidecar, newest_version=1)
    write_sidecar(sidecar, {**meta, "version": 2}, arrays)
    newer = sidecar.read_bytes()
    notes: list[str] = []
    again = volume_files.build_document(volume, nifti, SidecarLocator(), notes, lambda f, m: None)
    assert any("newer isegformer" in n and "newer-version" in n for n in notes)
    assert again.dirty and not again.labels.data.any()  # nothing half-restored
    assert not sidecar.exists() and sidecar.with_name(sidecar.name + ".newer-version").read_bytes() == newer


def test_a_malformed_volume_autosave_leaves_the_document_as_it_was(tmp_path) -> None:
    from isegformer_app.state.sidecar_codec import SidecarError
    from isegformer_app.state.volume_autosave import (
        read_volume_sidecar,
        restore_volume_document,
        save_volume_document,
    )
    from isegformer_app.state.volume_document import VolumeDocument
    from isegformer_app.volumes import open_volume

    nifti = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 16, 5), 50, np.int16), np.eye(4)), nifti)
    volume = open_volume(nifti)
    doc = VolumeDocument(volume, nifti)
    doc.add_click(4, 4, True)
    doc.set_prediction(list(doc.clicks), Prediction.of(np.full(doc.shape, 0.9, np.float32)))
    path = tmp_path / "side.npz"
    save_volume_document(doc, path)
    contents = read_volume_sidecar(path)
    contents["meta"]["sessions"][0]["index"] = 99  # a slice that does not exist, after valid labels
    fresh = VolumeDocument(volume, nifti)
    with pytest.raises(SidecarError, match="slice session 0 does not match"):
        restore_volume_document(fresh, contents)
    assert not fresh.labels.data.any() and fresh.object_list == [] and fresh.sessions == {}
