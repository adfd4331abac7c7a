"""pytest-qt tests driving the real main window (offscreen) with a small fake click predictor."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _app_helpers import RADIUS, DiskPredictor, click, make_window, open_and_wait, predicted
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from isegformer_app.settings import Settings
from isegformer_app.state.imageio import read_png
from isegformer_app.ui.main_window import MainWindow


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_clicks_predict_in_worker_and_undo_redo(qtbot, tmp_path, images, messages) -> None:
    predictor = DiskPredictor()
    window = make_window(qtbot, tmp_path, predictor)
    assert open_and_wait(window, images)
    click(qtbot, window, 60, 50)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    mask = window.doc.current_mask()
    assert mask[60, 50] and mask[60, 50 + RADIUS] and not mask[60, 50 + RADIUS + 2] and not mask[5, 5]
    assert threading.get_ident() not in predictor.thread_ids  # inference ran off the GUI thread
    assert "ms" in window.latency_label.text() and "disks" in window.latency_label.text()

    click(qtbot, window, 60, 56, Qt.MouseButton.RightButton)  # negative
    qtbot.waitUntil(predicted(window, 2), timeout=5000)
    assert not window.doc.current_mask()[60, 56] and window.doc.current_mask()[60, 40]
    click(qtbot, window, 20, 120, mods=Qt.KeyboardModifier.ShiftModifier)  # Shift = negative too
    qtbot.waitUntil(predicted(window, 3), timeout=5000)
    assert [c.is_positive for c in window.doc.clicks] == [True, False, False]

    calls = len(predictor.calls)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(window.doc.clicks) == 1 and window.doc.current_mask()[60, 56]  # restored from the cache
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(window.doc.clicks) == 2 and not window.doc.current_mask()[60, 56]
    assert len(predictor.calls) == calls  # undo/redo needed no new prediction
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert window.doc.clicks == [] and not window.doc.current_mask().any()
    window.close()


def test_clicks_during_slow_prediction_are_coalesced(qtbot, tmp_path, images, messages) -> None:
    predictor = DiskPredictor(delay=0.4)
    window = make_window(qtbot, tmp_path, predictor)
    open_and_wait(window, images / "a.png")
    for x in (20, 40, 60, 80, 100):
        click(qtbot, window, 60, x)
    assert window.busy_bar.isVisible()
    qtbot.waitUntil(predicted(window, 5), timeout=10000)
    assert predictor.calls[-1] == 5 and len(predictor.calls) < 5  # intermediate click lists skipped
    assert window.worker.coalesced >= 1
    assert all(window.doc.current_mask()[60, x] for x in (20, 40, 60, 80, 100))
    qtbot.waitUntil(lambda: not window.busy_bar.isVisible(), timeout=5000)
    window.close()


def test_finish_export_reopen_round_trip(qtbot, tmp_path, images, messages, monkeypatch) -> None:
    predictor = DiskPredictor()
    window = make_window(qtbot, tmp_path, predictor)
    open_and_wait(window, images)
    click(qtbot, window, 40, 40)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)  # finish object 1
    assert len(window.doc.objects) == 1 and window.doc.clicks == []
    click(qtbot, window, 48, 48)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    window.labels_panel.list.setCurrentRow(2)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)  # object 2 overlaps object 1 and is on top
    assert [o.label for o in window.doc.objects] == ["object", "animal"]
    window.actions_by_name["undo"].trigger()
    assert len(window.doc.objects) == 1 and len(window.doc.clicks) == 1
    window.actions_by_name["redo"].trigger()
    assert len(window.doc.objects) == 2

    window.view_panel.set_tool("brush")
    window.doc.selected_uid = window.doc.objects[0].uid
    start, end = window.canvas.image_to_view(100, 10), window.canvas.image_to_view(100, 30)
    qtbot.mousePress(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(window.canvas.viewport(), end)
    qtbot.mouseRelease(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    assert window.doc.objects[0].mask[100, 10:31].all()  # brush stroke added to object 1
    expected = window.doc.instance_map()
    assert expected[32, 32] == 1 and expected[48, 48] == 2 and expected[100, 20] == 1

    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # next image: autosaves a.png
    window.images.wait_for_load()
    assert window.doc.path.name == "b.png"
    out = tmp_path / "export"
    task = window.images.export_to(out)  # runs in a background thread
    qtbot.waitUntil(lambda: task.handled, timeout=10000)
    assert task.result.exported == 1 and "Exported 1 image" in window.message_label.text()
    assert "skipped 1 — no finished object: b.png" in window.message_label.text()  # says what it left out
    exported = read_png(out / "masks" / "a.png")
    assert np.array_equal(exported, expected)
    assert (out / "images" / "a.png").is_file() and (out / "classes" / "a.png").is_file()
    asked = []
    cancel = QMessageBox.StandardButton.Cancel
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or cancel)
    assert window.images.export_to(out) is None and "earlier export (1 image(s))" in asked[0]
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "notes.txt").write_text("not an export")
    assert window.images.export_to(tmp_path / "documents") is None and "not empty" in messages[-1][1]
    window.close()

    again = make_window(qtbot, tmp_path, DiskPredictor())
    open_and_wait(again, images)
    assert [o.label for o in again.doc.objects] == ["object", "animal"]
    assert np.array_equal(again.doc.instance_map(), exported)
    assert [c.coords for c in again.doc.objects[1].clicks] == [(48.0, 48.0)]
    again.close()


def test_bad_checkpoint_and_bad_image_keep_app_usable(qtbot, tmp_path, images, messages) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"this is not a checkpoint")
    window.models.load_checkpoint(bad)
    qtbot.waitUntil(lambda: len(messages) == 1, timeout=30000)
    assert "broken.pth" in messages[0][1] and "previous model stays active" in messages[0][1]
    assert window.models.active == ("engine", "disks")

    # a broken image first and one in the middle: the folder opens, D/A pass over them with a notice
    (images / "0_truncated.png").write_bytes((images / "a.png").read_bytes()[:300])
    (images / "a_z_garbage.png").write_bytes(b"not a png at all")
    assert open_and_wait(window, images) and window.doc.path.name == "a.png"
    assert "0_truncated.png" in window.message_label.text() and len(messages) == 1
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # skips a_z_garbage.png
    window.images.wait_for_load()
    assert window.doc.path.name == "b.png" and "a_z_garbage.png" in window.message_label.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)  # the end: b.png stays open
    window.images.wait_for_load()
    assert window.doc.path.name == "b.png" and "No more" in window.message_label.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_A)
    window.images.wait_for_load()
    assert window.doc.path.name == "a.png" and len(messages) == 1
    assert set(window.project.unreadable) == {images / "0_truncated.png", images / "a_z_garbage.png"}
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    window.images.wait_for_load()
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert window.doc.current_mask()[30, 30]
    assert not window.open_path(tmp_path / "missing.png") and len(messages) == 2
    window.close()


def test_close_prompts_for_unsaved_work(qtbot, tmp_path, images, monkeypatch) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    open_and_wait(window, images / "a.png")
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Cancel)
    assert not window.close() and window.isVisible() and "(1 click of an unfinished object)" in asked[0]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Save)
    assert not window.close()  # written in the background first (as for volumes), then the window closes
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert (images / ".isegformer" / "a.png.isegformer.npz").is_file()


def test_screenshot_with_mask(qtbot, tmp_path, messages) -> None:
    import shutil
    from pathlib import Path

    sample = tmp_path / "sample.jpg"  # a copy: the autosave must not land in resources/
    shutil.copy(Path(__file__).resolve().parents[1] / "resources" / "samples" / "sample.jpg", sample)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    window.resize(1100, 700)
    open_and_wait(window, sample)
    click(qtbot, window, 200, 250)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    click(qtbot, window, 150, 120)
    click(qtbot, window, 160, 130, Qt.MouseButton.RightButton)
    qtbot.waitUntil(predicted(window, 2), timeout=5000)
    shot = window.grab()
    assert shot.width() == 1100 and shot.save(str(tmp_path / "app.png"))
    view = window.canvas.viewport().grab().toImage()
    rgb = window.doc.image.rgb.astype(float)
    # 50 % opacity: finished object in its class colour, current object in the highlight colour
    for (y, x), color in (((200, 240), (128, 0, 0)), ((146, 116), (255, 200, 0)), ((20, 20), None)):
        c = view.pixelColor(window.canvas.image_to_view(y, x))
        expected = rgb[y, x] if color is None else 0.5 * rgb[y, x] + 0.5 * np.array(color)
        assert np.abs(np.array([c.red(), c.green(), c.blue()]) - expected).max() < 12, (y, x)
    window.close()


def test_object_panel_huge_image_notice_and_zoom(qtbot, tmp_path, messages) -> None:
    Image.fromarray(np.full((300, 2000, 3), 120, np.uint8)).save(tmp_path / "wide.png")
    window = MainWindow(Settings.load(tmp_path / "config"), engines={"disks": lambda: DiskPredictor()},
                        max_side=500)  # fmt: skip
    qtbot.addWidget(window)
    window.show()
    assert open_and_wait(window, tmp_path / "wide.png")
    assert window.doc.shape == (75, 500) and "2000x300" in window.message_label.text()
    click(qtbot, window, 30, 100)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    click(qtbot, window, 30, 300)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    panel = window.objects_panel.list
    assert panel.count() == 2 and panel.item(0).text().endswith("object")  # top of the z-order first
    panel.setCurrentRow(1)  # the bottom object (uid 1)
    assert window.doc.selected_uid == window.doc.objects[0].uid
    panel.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert not window.doc.objects[0].visible
    window.actions_by_name["undo"].trigger()
    assert window.doc.objects[0].visible
    window.objects_panel.move(+1)  # raise the selected object to the top
    assert window.doc.objects[1].uid == 1 and panel.item(0).text().startswith("2")
    window.actions_by_name["delete"].trigger()
    assert [o.uid for o in window.doc.objects] == [2]

    before = window.canvas.transform().m11()
    pos = window.canvas.image_to_view(30, 100)
    qtbot.wait(10)
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent

    wheel = QWheelEvent(QPointF(pos), QPointF(window.canvas.viewport().mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)  # fmt: skip
    QApplication.sendEvent(window.canvas.viewport(), wheel)
    assert window.canvas.transform().m11() == pytest.approx(before * 1.25**2)
    after = window.canvas.image_to_view(30, 100)
    assert abs(after.x() - pos.x()) <= 2  # zoomed at the cursor (vertically the image still fits: centred)
    viewport = window.canvas.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.MiddleButton, pos=after)
    qtbot.mouseMove(viewport, after + QPoint(-50, 0))
    qtbot.mouseRelease(viewport, Qt.MouseButton.MiddleButton, pos=after + QPoint(-50, 0))
    panned = window.canvas.image_to_view(30, 100)
    assert panned.x() == after.x() - 50 and len(window.doc.clicks) == 0  # drag pans, does not click
    window.close()


def test_requests_carry_the_cached_state_of_the_longest_prefix(qtbot, tmp_path, images, messages) -> None:
    """The worker keeps no predictor state: each request carries the state of the longest predicted
    prefix from the session's cache (none for a new object), and the result's state is stored there."""
    predictor = DiskPredictor()  # its zoom box is the last click: shows which state a request carried
    window = make_window(qtbot, tmp_path, predictor)
    open_and_wait(window, images / "a.png")
    for n, (y, x) in enumerate(((30, 30), (30, 40), (30, 50)), start=1):
        click(qtbot, window, y, x)
        qtbot.waitUntil(predicted(window, n), timeout=5000)
    assert predictor.states[0] is None  # first click of the object: no state
    assert [s.zoom_box for s in predictor.states[1:]] == [(30, 30, 30, 30), (30, 30, 40, 40)]
    assert predictor.states[2].prob is window.doc.predictions.values()[1].prob  # from the cache, no copy
    window.undo()
    window.undo()
    click(qtbot, window, 80, 80)  # continues from the state after the first click, not the third
    qtbot.waitUntil(predicted(window, 2), timeout=5000)
    assert predictor.states[-1].zoom_box == (30, 30, 30, 30) and len(predictor.calls) == 4
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    click(qtbot, window, 100, 100)  # a new object starts from no state
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert predictor.states[-1] is None
    assert not hasattr(window.worker, "_states")
    window.close()


@pytest.mark.parametrize("reduced", [False, True])
def test_reference_checkpoint_predicts_in_the_window(
    qtbot, tmp_path, images, messages, reference_dir, reduced
) -> None:
    from model.predictor import fast_autocast

    window = make_window(qtbot, tmp_path, DiskPredictor())
    window.models.set_precision(reduced)
    window.models.load_checkpoint(reference_dir / "isegformer_tiny_6ch_prevmask.pth")
    qtbot.waitUntil(lambda: window.models.active[0] == "checkpoint", timeout=60000)
    precision = fast_autocast("cpu") if reduced else None
    assert window.engine_text.endswith(f"cpu {precision}" if precision else "· cpu")
    open_and_wait(window, images / "a.png")
    click(qtbot, window, 60, 80)
    qtbot.waitUntil(predicted(window, 1), timeout=60000)
    prob = window.doc.prob
    assert prob.shape == (120, 160) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    assert not messages
    window.close()


def test_last_checkpoint_is_reloaded_at_start(qtbot, tmp_path, messages, reference_dir) -> None:
    settings = Settings.load(tmp_path / "config")
    settings.last_checkpoint = str(reference_dir / "isegformer_tiny_5ch.pth")
    settings.model_source = "checkpoint"
    settings.save()
    window = MainWindow(Settings.load(tmp_path / "config"), engines={"disks": DiskPredictor})
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.models.active[0] == "checkpoint", timeout=60000)
    assert window.models.active[1].endswith("isegformer_tiny_5ch.pth")
    window.models.use_engine("disks")
    qtbot.waitUntil(lambda: window.models.active == ("engine", "disks"), timeout=5000)
    assert window.models.settings.model_source == "engine" and not messages
    window.close()


def test_closing_waits_for_background_writes(qtbot, tmp_path, messages) -> None:
    from isegformer_app.ui.tasks import run_task

    window = make_window(qtbot, tmp_path, DiskPredictor())
    target = tmp_path / "written.txt"

    def slow_write(report, cancel) -> None:
        time.sleep(0.4)
        target.write_text("done")

    task = run_task(window, "Export", slow_write, lambda t: None, dialog=False)
    assert task.isRunning()
    assert window.close()
    assert not task.isRunning() and target.read_text() == "done"


def test_unwritable_folder_autosaves_in_the_user_folder_and_navigation_goes_on(
    qtbot, tmp_path, images, messages
) -> None:
    from isegformer_app.state.sidecar_location import user_sidecar_dir

    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, images)
    (images / ".isegformer").write_bytes(b"")  # the folder stops being writable after it was opened
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    window.autosave()  # the background write fails beside the images, and is redone in the user folder
    qtbot.waitUntil(lambda: not window.doc.dirty, timeout=5000)
    assert "autosaved in" in window.message_label.text() and messages == []
    assert (user_sidecar_dir(images) / "a.png.isegformer.npz").is_file()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    window.images.wait_for_load()
    click(qtbot, window, 40, 40)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_A)  # saves b.png synchronously, in the user folder too
    window.images.wait_for_load()
    assert window.doc.path.name == "a.png" and window.doc.clicks and messages == []
    assert (user_sidecar_dir(images) / "b.png.isegformer.npz").is_file()
    window.close()


def test_bundled_sample_autosaves_outside_the_installation(qtbot, tmp_path, messages) -> None:
    from isegformer_app.state.sidecar_location import user_sidecar_dir
    from resources import SAMPLE_IMAGE

    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, SAMPLE_IMAGE)
    assert window.project.sidecar_for(SAMPLE_IMAGE).parent == user_sidecar_dir(SAMPLE_IMAGE.parent)
    click(qtbot, window, 100, 100)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert window.save_now()
    qtbot.waitUntil(lambda: not window.doc.dirty, timeout=5000)  # written (in the background)
    assert not (SAMPLE_IMAGE.parent / ".isegformer").exists()
    window.close()


def test_the_one_prediction_cache_is_bounded_by_bytes(qtbot, tmp_path, images, messages, monkeypatch) -> None:
    """Probabilities and predictor states live in one cache per session (a state shares its map with
    the probability), bounded in bytes; the worker holds none."""
    from isegformer_app.state import click_session

    monkeypatch.setattr(click_session, "SESSION_CACHE_BYTES", 3 * 4 * 120 * 160)  # 3 maps of the image
    window = make_window(qtbot, tmp_path, DiskPredictor())
    open_and_wait(window, images / "a.png")
    for n in range(1, 9):
        click(qtbot, window, 20 + 5 * n, 30)
        qtbot.waitUntil(predicted(window, n), timeout=5000)
    cache = window.doc.current.predictions
    held = sum(p.nbytes for p in cache.values())
    assert all(p.state.prob is p.prob for p in cache.values())
    assert len(cache) == 3 and held == 3 * 4 * 120 * 160  # 8 unbounded; a state beside each: 6
    window.close()


def test_export_with_nothing_open_says_so_without_a_picker(qtbot, tmp_path, messages, monkeypatch) -> None:
    from isegformer_app.ui import image_mode

    picked = []
    monkeypatch.setattr(image_mode, "ask_folder", lambda *a, **k: picked.append(a) or "")
    window = make_window(qtbot, tmp_path, DiskPredictor())
    window.export_dialog()
    assert picked == [] and messages and "Open an image" in messages[-1][1]
    window.close()
