"""The window's two modes (images, volumes) behind one API, and image loading off the GUI thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted, step_and_wait
from PIL import Image
from PySide6.QtCore import Qt, QTimer

from isegformer_app.state import image_sidecar, volume_sidecar
from isegformer_app.state import project as project_module
from isegformer_app.state.autosave import read_sidecar
from isegformer_app.state.volume_autosave import volume_sidecar_path


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "imgs"
    out.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(out / name)
    return out


def slow_loads(monkeypatch, seconds: float) -> list[int]:
    """Make image decoding take ``seconds``; returns the ids of the threads that decoded."""
    threads: list[int] = []
    real = project_module.load_image

    def load(path, max_side):
        threads.append(threading.get_ident())
        time.sleep(seconds)
        return real(path, max_side)

    monkeypatch.setattr(project_module, "load_image", load)
    return threads


def test_opening_and_stepping_decode_off_the_gui_thread_and_the_event_loop_keeps_running(
    qtbot, tmp_path, folder, monkeypatch
) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    threads = slow_loads(monkeypatch, 0.4)
    ticks: list[float] = []
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    started = time.perf_counter()
    assert window.open_path(folder)  # returns at once: the image is read in the background
    assert time.perf_counter() - started < 0.2 and window.doc is None
    qtbot.waitUntil(lambda: window.doc is not None, timeout=5000)  # the event loop runs meanwhile
    assert window.doc.path.name == "a.png" and "(1/4)" in window.message_label.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    assert window.doc.path.name == "a.png"
    qtbot.waitUntil(lambda: window.doc.path.name == "b.png", timeout=5000)
    timer.stop()
    assert threads and threading.main_thread().ident not in threads
    gaps = np.diff([started, *ticks])
    assert len(ticks) >= 20 and gaps.max() < 0.25  # two 0.4 s decodes, no stall near that long


def test_keys_pressed_while_an_image_loads_add_up(qtbot, tmp_path, folder, monkeypatch) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder)
    slow_loads(monkeypatch, 0.3)
    for _ in range(3):
        qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    assert window.doc.path.name == "a.png"  # still shown while b.png loads
    window.images.wait_for_load()
    assert window.doc.path.name == "d.png"  # a + 3
    qtbot.keyClick(window.canvas, Qt.Key.Key_A)
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # net zero: d.png is read again
    window.images.wait_for_load()
    assert window.doc.path.name in ("c.png", "d.png")
    assert window.project.index == [p.name for p in window.project.paths].index(window.doc.path.name)


def test_the_image_left_is_saved_in_the_load_thread_after_any_autosave_in_flight(
    qtbot, tmp_path, folder, monkeypatch
) -> None:
    """A slow autosave of a.png is still being written when the user presses D after two more clicks:
    the newer state written on the way must be the one left on disk, written off the GUI thread."""
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder)
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    writes: list[tuple[int, int]] = []  # (thread id, clicks written)
    real_write = image_sidecar.write_snapshot

    def slow_write(snapshot, path):
        time.sleep(1.0 if _clicks(snapshot) == 1 else 0.1)  # the older write is the slower one
        writes.append((threading.get_ident(), _clicks(snapshot)))
        return real_write(snapshot, path)

    monkeypatch.setattr(image_sidecar, "write_snapshot", slow_write)  # every image snapshot's write
    window.autosave()  # 1 click, in flight for 1 s
    click(qtbot, window, 60, 60)
    click(qtbot, window, 60, 90, button=Qt.MouseButton.RightButton)
    qtbot.waitUntil(predicted(window, 3), timeout=5000)
    a = window.doc.path
    assert step_and_wait(window, +1) and window.doc.path.name == "b.png"
    qtbot.waitUntil(lambda: not window.sidecar_writer.busy, timeout=5000)
    assert [n for _t, n in writes] == [1, 3]
    assert threading.main_thread().ident not in {t for t, _n in writes}
    assert len(read_sidecar(window.project.sidecar_for(a)).meta["clicks"]) == 3
    assert step_and_wait(window, -1) and len(window.doc.clicks) == 3


def _clicks(snapshot) -> int:

    return len(snapshot.meta["clicks"])


def test_both_modes_answer_the_same_window_api(qtbot, tmp_path, folder) -> None:
    """Clicks, predictions, threshold, save and the close check go through ``window.mode``."""
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.mode is window.images and window.doc is None
    nifti = tmp_path / "head.nii.gz"
    data = np.zeros((40, 48, 12), np.int16)
    data[10:30, 12:36, 2:10] = 500
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), nifti)
    for path, mode in ((folder / "a.png", window.images), (nifti, window.volume)):
        assert window.open_path(path)
        window.images.wait_for_load()
        qtbot.waitUntil(lambda m=mode: window.mode is m and window.doc is not None, timeout=10000)
        h, w = window.doc.shape
        click(qtbot, window, h // 2, w // 2)
        qtbot.waitUntil(lambda: window.doc.prob is not None and not window.doc.needs_prediction(),
                        timeout=5000)  # fmt: skip
        assert window.doc.current_mask()[h // 2, w // 2] and window.doc.dirty
        window.view_panel.threshold.setValue(95)  # the disks predict 0.9: nothing is above 0.95
        assert not window.doc.current_mask().any()
        window.view_panel.threshold.setValue(49)
        assert window.save_now()
        qtbot.waitUntil(lambda: not window.doc.dirty, timeout=5000)
        assert mode.close_check(window.close)  # nothing unsaved: may close without asking
    assert window.project is None and window.images.doc is None  # the image was closed for the volume
    assert window.open_path(folder / "b.png") and window.images.wait_for_load()
    assert window.mode is window.images and window.volume.doc is None


def test_files_dock_lists_the_folder_with_status_and_opens_on_click(qtbot, tmp_path, folder) -> None:
    (folder / "c.png").write_bytes(b"not a png")
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder)
    files = window.images.files
    assert window.images.files_dock.isVisible() and files.list.count() == 4
    assert files.list.currentRow() == 0 and files.statuses == ["new"] * 4
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert files.statuses[0] == "in progress"
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)  # finish the object
    assert files.statuses[0] == "done" and files.text(0).startswith("●")
    qtbot.mouseClick(files.list.viewport(), Qt.MouseButton.LeftButton,
                     pos=files.list.visualItemRect(files.list.item(3)).center())  # fmt: skip
    window.images.wait_for_load()
    assert window.doc.path.name == "d.png" and files.list.currentRow() == 3
    qtbot.keyClick(window.canvas, Qt.Key.Key_A)  # D/A still work, passing over the broken c.png
    window.images.wait_for_load()
    assert window.doc.path.name == "b.png" and files.statuses[2] == "unreadable"

    again = make_window(qtbot, tmp_path, DiskPredictor())  # statuses come back from the sidecars
    assert open_and_wait(again, folder)
    qtbot.waitUntil(lambda: again.images.files.statuses[0] == "done", timeout=5000)
    assert again.images.files.statuses[1:] == ["new", "new", "new"]


def test_file_dialogs_start_beside_the_shown_file_and_empty_folders_say_so(
    qtbot, tmp_path, folder, monkeypatch, messages
) -> None:
    from PySide6.QtWidgets import QFileDialog

    window = make_window(qtbot, tmp_path, DiskPredictor())
    started: list[str] = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: started.append(a[2]) or ("", ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: started.append(a[2]) or "")
    window.open_image_dialog()
    assert started[-1] == str(Path.home())
    assert open_and_wait(window, folder / "b.png")
    window.open_folder_dialog()
    window.volume.files.open_file_dialog()
    window.open_image_dialog()
    assert started[1:] == [str(folder)] * 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not window.open_path(empty)
    assert "is empty" in messages[-1][1] and "DICOM" in messages[-1][1]
    assert window.doc.path.name == "b.png"


def test_labels_belong_to_the_project_and_new_projects_start_from_the_default(
    qtbot, tmp_path, folder, monkeypatch
) -> None:
    from isegformer_app.ui import panels

    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(other / "x.png")
    window = make_window(qtbot, tmp_path, DiskPredictor())
    default = window.labels.names()
    assert open_and_wait(window, folder)
    monkeypatch.setattr(panels, "ask_text", lambda *a, **k: ("tumour", True))
    window.labels_panel.add()  # the user adds a class to this folder's labels
    qtbot.waitUntil(lambda: not window.sidecar_writer.busy, timeout=5000)
    assert window.labels.names() == [*default, "tumour"] and window.settings.labels != window.labels.to_json()
    assert open_and_wait(window, other)  # another folder: the default set, not the edited one
    assert window.labels.names() == default
    window.actions_by_name["labels_default"].trigger()  # Edit > Use these labels for new projects
    assert window.settings.labels == window.labels.to_json()
    assert open_and_wait(window, folder / "a.png")  # back: this folder's own list, from its file
    assert window.labels.names() == [*default, "tumour"]
    window.close()
    again = make_window(qtbot, tmp_path, DiskPredictor())  # closing did not make them the default
    assert again.labels.names() == default


def test_mask_outline_is_drawn_in_screen_pixels_not_voxels(qtbot, tmp_path, folder) -> None:
    from isegformer_app.ui.overlay import outline_segments, render_overlay

    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder / "a.png")
    window.canvas.zoom(8.0)
    click(qtbot, window, 45, 60)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    pen, path = window.canvas.outline_item.pen(), window.canvas.outline_item.path()
    assert pen.isCosmetic() and pen.widthF() <= 2 and path.elementCount() > 8
    box = path.boundingRect()  # around the disk of radius 12 at (45, 60), through the border pixels
    assert abs(box.center().x() - 60.5) < 1 and abs(box.center().y() - 45.5) < 1 and 22 <= box.width() <= 26
    shown = window.canvas.overlay_item.pixmap().toImage()
    white = [(x, y) for y in range(shown.height()) for x in range(shown.width())
             if shown.pixelColor(x, y).getRgb()[:3] == (255, 255, 255)]  # fmt: skip
    assert white == []  # no voxel-thick outline in what the window shows
    opacity = window.view_panel.opacity.value() / 100
    assert not (render_overlay(window.doc, opacity, outlines=False)[..., :3] == 255).all(axis=-1).any()
    assert (render_overlay(window.doc, opacity)[..., :3] == 255).all(axis=-1).sum() > 40  # voxel outline
    rng = np.random.default_rng(0)
    noisy = rng.random((300, 300)) > 0.5  # thousands of specks: too many vertices for a path
    assert outline_segments(noisy) is None and len(outline_segments(noisy[:20, :20])) > 0


def test_volume_cursor_readout_file_slice_numbers_and_linked_views(qtbot, tmp_path) -> None:
    data = np.arange(20 * 24 * 10, dtype=np.int16).reshape(20, 24, 10)  # every voxel its own value
    affine = np.array([[0, -2.0, 0, 20], [2.0, 0, 0, -30], [0, 0, 3.0, 5], [0, 0, 0, 1]])  # i->A, j->L
    nifti = tmp_path / "grid.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), nifti)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    doc = window.volume.doc
    assert doc.axis == "axial" and window.volume.panel.slice_label.text().startswith(f"Slice k = {doc.index}")
    row, col = 7, 5
    qtbot.mouseMove(window.canvas.viewport(), window.canvas.image_to_view(row, col))
    text = window.cursor_label.text()
    i, j, k = (int(v) for v in text.split("voxel (i, j, k) ")[1].split("  ")[0].split(", "))
    assert f"value {data[i, j, k]}" in text and k == doc.index
    r, a, s = (affine @ [i, j, k, 1.0])[:3]  # the file's own affine maps its voxel to RAS
    assert f"RAS {r:.1f}, {a:.1f}, {s:.1f} mm" in text
    window.volume.show_slice(axis="coronal")  # the slice through the voxel under the cursor
    assert window.volume.panel.slice_label.text().startswith(f"Slice i = {i}")  # the file's i runs A-P
    cross = window.canvas.crosshair()
    assert cross is not None
    window.canvas.hovered.emit(*cross)
    assert f"voxel (i, j, k) {i}, {j}, {k} " in window.cursor_label.text()


def test_window_level_drags_with_the_right_button_in_wl_mode(qtbot, tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 1000, (16, 16, 8)).astype(np.int16)
    nifti = tmp_path / "wl.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), nifti)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    before = window.volume.display_window
    window.view_panel.set_tool("wl")
    viewport, start = window.canvas.viewport(), window.canvas.image_to_view(8, 8)
    qtbot.mousePress(viewport, Qt.MouseButton.RightButton, pos=start)
    qtbot.mouseMove(viewport, start + type(start)(40, 0))
    qtbot.mouseRelease(viewport, Qt.MouseButton.RightButton, pos=start + type(start)(40, 0))
    after = window.volume.display_window
    assert after.width > before.width and window.doc.clicks == []  # a W/L drag, not a negative click


def test_a_single_coronal_slice_opens_in_its_own_plane(qtbot, tmp_path) -> None:
    coronal = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # j->S, k->A
    nifti = tmp_path / "coronal.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(30 * 40, dtype=np.int16).reshape(30, 40, 1), coronal), nifti)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    assert window.volume.doc.axis == "coronal" and window.canvas.image_size == (40, 30)  # not a 1-px stripe


def test_a_4d_file_has_a_frame_selector_and_each_frame_its_own_annotation(qtbot, tmp_path) -> None:
    rng = np.random.default_rng(0)
    nifti = tmp_path / "series4d.nii.gz"
    nib.save(nib.Nifti1Image(rng.integers(0, 500, (40, 30, 6, 3)).astype(np.int16), np.eye(4)), nifti)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(rng.integers(0, 500, (40, 30, 6)).astype(np.int16), np.eye(4)), flat)
    window = make_window(qtbot, tmp_path, DiskPredictor(radius=4))
    panel = window.volume.panel
    assert window.open_path(flat)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    assert panel.frame.isHidden() and panel.frame_label.isHidden()  # a 3-D file: no frame selector
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.doc is not None and window.volume.doc.path == nifti, timeout=10000)
    assert not panel.frame.isHidden() and (panel.frame.minimum(), panel.frame.maximum()) == (0, 2)
    assert panel.frame.value() == 0 and "of 0–2" in panel.frame.text()
    click(qtbot, window, 10, 12)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    first = window.volume.doc
    panel.frame.setValue(2)  # the user picks frame 2: it opens, frame 0 is autosaved
    qtbot.waitUntil(lambda: window.volume.doc is not first and window.volume.doc is not None, timeout=10000)
    doc = window.volume.doc
    assert doc.volume.metadata["frame"] == 2 and not doc.labels.data.any()
    assert not np.array_equal(doc.volume.voxels, first.volume.voxels)  # another frame's voxels
    panel.frame.setValue(0)  # back: frame 0's clicks and mask come back from its own autosave
    qtbot.waitUntil(lambda: window.volume.doc is not doc and window.volume.doc is not None, timeout=10000)
    back = window.volume.doc
    assert back.volume.metadata["frame"] == 0 and len(back.clicks) == 1 and back.current_mask()[10, 12]


def test_autosaves_of_frames_queued_behind_a_slow_write_all_reach_disk(qtbot, tmp_path, monkeypatch) -> None:
    from isegformer_app.state.volume_document import VolumeDocument
    from isegformer_app.volumes import open_volume

    nifti = tmp_path / "frames.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((30, 20, 4, 3), np.int16), np.eye(4)), nifti)
    window = make_window(qtbot, tmp_path, DiskPredictor(radius=3))
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    shown = window.volume.doc
    real_write, calls = volume_sidecar.write_snapshot, []

    def slow_write(snapshot, path):
        calls.append(path.name)
        time.sleep(0.3 if len(calls) == 1 else 0)
        return real_write(snapshot, path)

    monkeypatch.setattr(volume_sidecar, "write_snapshot", slow_write)
    frames = [VolumeDocument(open_volume(nifti, frame=f), nifti) for f in (2, 0, 1)]
    for doc in frames:
        doc.add_click(5, 5, True)
        window.volume.doc = doc  # what the shown document is when its autosave is asked for
        window.volume.save()  # the first is written (slowly), the other two wait their turn
    window.volume.doc = shown

    def sidecar_of(doc):
        return volume_sidecar_path(nifti, doc.volume, window.sidecars.folder_for(nifti.parent))

    qtbot.waitUntil(lambda: not window.sidecar_writer.busy, timeout=5000)
    assert sorted(calls) == sorted(sidecar_of(d).name for d in frames) and len(set(calls)) == 3
    assert all(sidecar_of(d).is_file() and not d.dirty for d in frames)


def test_task_progress_deletes_its_dialog_only_after_a_nested_set_value_returns(qtbot) -> None:
    from PySide6.QtWidgets import QProgressDialog, QWidget

    from isegformer_app.ui.tasks import TaskProgress

    parent = QWidget()
    qtbot.addWidget(parent)
    progress = TaskProgress(parent, "Work", on_cancel=lambda: None)
    deleted: list[int] = []
    progress.dialog.deleteLater = lambda: deleted.append(progress._depth)
    real_set_value = progress.dialog.setValue

    def set_value(value: int) -> None:  # a modal setValue processes events: a report, then the task ends
        if value == 500:
            progress.advance(0.6, "nested report")
            progress.close()
            assert deleted == []  # not while the outer setValue is still running
        real_set_value(value)

    progress.dialog.setValue = set_value
    progress.advance(0.5, "outer report")
    assert deleted == [0]
    progress.advance(0.9, "late")  # a report queued before the end changes nothing
    assert deleted == [0]
    QProgressDialog.deleteLater(progress.dialog)


def test_autosave_snapshots_and_decoded_images_are_released_once_written(qtbot, tmp_path, folder,
                                                                          monkeypatch) -> None:  # fmt: skip
    """Finished background tasks stay children of the window: they must not keep what they wrote or read
    (at 4096² each autosave copy is ~80 MB: a long session grew by gigabytes)."""
    import gc
    import weakref

    from isegformer_app.state.document import Document
    from isegformer_app.ui.tasks import BackgroundTask

    real_snapshot, held = Document.snapshot, []

    def recording(doc):
        snapshot = real_snapshot(doc)
        held.append(weakref.ref(snapshot.arrays["brush"]))
        return snapshot

    monkeypatch.setattr(Document, "snapshot", recording)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folder)
    for i in range(3):
        click(qtbot, window, 20 + 10 * i, 30)
        qtbot.waitUntil(predicted(window, i + 1), timeout=5000)
        window.autosave()  # written in the background
        qtbot.waitUntil(lambda: not window.sidecar_writer.busy, timeout=5000)
    left = weakref.ref(window.doc)
    assert step_and_wait(window, +1)
    qtbot.waitUntil(lambda: not window.sidecar_writer.busy, timeout=5000)
    qtbot.wait(50)  # the worker takes the new image
    gc.collect()
    assert left() is None  # the document left (its pixels, masks, caches) is not kept by any callback
    assert len(held) == 3 and all(ref() is None for ref in held)
    # finished thread objects are deleted from the event loop: none is left behind holding anything
    qtbot.waitUntil(lambda: window.findChildren(BackgroundTask) == [], timeout=3000)


def test_a_volume_load_waits_for_the_autosaves_asked_for_and_a_newer_open_replaces_it(
    qtbot, tmp_path, monkeypatch
) -> None:
    from isegformer_app.ui import volume_files

    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(np.full((20, 16, 4), 10, np.int16), np.eye(4)), paths[-1])
    window = make_window(qtbot, tmp_path, DiskPredictor(radius=3))
    assert window.open_path(paths[0])
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    events: list[str] = []
    real_write, real_open = volume_sidecar.write_snapshot, volume_files.open_volume

    def slow_write(snapshot, path):
        time.sleep(0.4)
        outcome = real_write(snapshot, path)
        events.append("written")
        return outcome

    def recording_open(path, *args, **kwargs):
        events.append(f"open {Path(path).stem.split('.')[0]}")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(volume_sidecar, "write_snapshot", slow_write)
    monkeypatch.setattr(volume_files, "open_volume", recording_open)
    window.volume.doc.add_click(5, 5, True)
    window.volume.save()  # a slow autosave in flight
    assert window.open_path(paths[1]) and window.open_path(paths[2])  # b, then c while b still waits
    assert "once the autosave is written" in window.message_label.text()
    qtbot.waitUntil(lambda: window.volume.doc is not None and window.volume.doc.path == paths[2],
                    timeout=10000)  # fmt: skip
    assert events == ["written", "open c"]  # b never started: c replaced it


def test_closing_the_window_drops_a_volume_load_waiting_for_an_autosave(qtbot, tmp_path, monkeypatch) -> None:
    from isegformer_app.ui import volume_files

    first, second = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    for path in (first, second):
        nib.save(nib.Nifti1Image(np.full((20, 16, 4), 10, np.int16), np.eye(4)), path)
    window = make_window(qtbot, tmp_path, DiskPredictor(radius=3))
    assert window.open_path(first)
    qtbot.waitUntil(lambda: window.volume.doc is not None, timeout=10000)
    opened, real_write, real_open = [], volume_sidecar.write_snapshot, volume_files.open_volume
    monkeypatch.setattr(volume_sidecar, "write_snapshot",
                        lambda snapshot, p: (time.sleep(0.3), real_write(snapshot, p))[1])  # fmt: skip
    monkeypatch.setattr(volume_files, "open_volume", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    doc = window.volume.doc
    doc.add_click(5, 5, True)
    sidecar = volume_sidecar_path(first, doc.volume, window.sidecars.folder_for(first.parent))
    window.volume.save()
    assert window.open_path(second)  # waits for the autosave
    doc.saved_revision = doc.revision  # nothing to ask about when closing
    assert window.close()
    assert sidecar.is_file()  # the autosave in flight was finished by the close
    qtbot.wait(300)
    assert opened == []  # the load that waited for it never started in the closed window
